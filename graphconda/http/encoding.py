"""Content negotiation for published JSON: whether a request gets the stored gzip copy.

repodata.json and current_repodata.json have a gzip copy beside them (written when they
are published); a client whose Accept-Encoding allows gzip gets its bytes with
`Content-Encoding: gzip`. Every answer for these files says `Vary: Accept-Encoding`, so
shared caches keep the two apart. Range requests always get the identity bytes: clients
that ask for a range want offsets into the JSON (and no client decodes partial gzip).
Both serving paths (http/conda.py, http/fastpath.py) decide through this module.
"""

from __future__ import annotations

VARY = "Accept-Encoding"


def _quality(params: list[str]) -> float:
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            try:
                return float(value.strip())
            except ValueError:
                return 0.0
    return 1.0


def accepts_gzip(header: str | bytes | None) -> bool:
    """RFC 9110 §12.5.3: gzip (or x-gzip, or *) listed with a non-zero quality."""
    if not header:
        return False
    text = header.decode("latin-1") if isinstance(header, bytes) else header
    star: float | None = None
    for item in text.split(","):
        coding, *params = item.split(";")
        coding = coding.strip().lower()
        if coding in ("gzip", "x-gzip"):
            return _quality(params) > 0
        if coding == "*":
            star = _quality(params)
    return star is not None and star > 0
