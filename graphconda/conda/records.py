"""Repodata records: what one package file contributes to repodata.json, and its canonical JSON.

A record is the package's info/index.json, unchanged (match specs are kept
byte for byte as the package declared them), plus the server-computed `md5`,
`sha256` and `size`, plus `run_exports` from info/run_exports.json. Keys that
describe a location (`fn`, `url`, `channel`) are dropped, as are fields only
an indexer may set (see _DROPPED_KEYS).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from graphconda.conda.archive import PackageMetadata

# Locations clients derive themselves, and fields only the server may set:
# a package cannot vouch for its own checksums, size or indexing time, and
# run_exports comes from info/run_exports.json alone (as rattler's indexer does).
_DROPPED_KEYS = frozenset(
    {
        "fn",
        "url",
        "channel",
        "md5",
        "sha256",
        "size",
        "legacy_bz2_md5",
        "legacy_bz2_size",
        "indexed_timestamp",
        "attestations_sha256",
        "run_exports",
    }
)
_MD5 = re.compile(r"[0-9a-f]{32}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
# A match spec whose bracket options use a CEP 43/44/45 key (conditions,
# extras, flags): legacy clients cannot parse it, so it needs repodata v3.
_V3_SPEC = re.compile(r"\[[^\]]*\b(when|extras|flags)\s*=")


def make_record(meta: PackageMetadata, *, md5: str, sha256: str, size: int) -> dict[str, Any]:
    """The repodata record for a validated package and its server-computed checksums."""
    md5, sha256 = md5.lower(), sha256.lower()
    if not _MD5.fullmatch(md5):
        raise ValueError(f"md5 must be 32 hex digits, got {md5!r}")
    if not _SHA256.fullmatch(sha256):
        raise ValueError(f"sha256 must be 64 hex digits, got {sha256!r}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise ValueError(f"size must be a non-negative integer, got {size!r}")
    record = {key: value for key, value in meta.index.items() if key not in _DROPPED_KEYS}
    record["md5"] = md5
    record["sha256"] = sha256
    record["size"] = size
    if meta.run_exports:
        record["run_exports"] = meta.run_exports
    return record


def dumps_record(record: Mapping[str, Any]) -> str:
    """Canonical record JSON: compact, sorted keys, UTF-8 kept as is.

    repodata.build_repodata splices these strings into the published document
    unparsed, so this must stay the exact encoding of the whole document.
    """
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def is_v3(record: Mapping[str, Any]) -> bool:
    """Whether the record belongs under repodata's top-level `v3` key (CEP 48), not `packages`.

    True when the package asks for it (`repodata_revision` >= 3, as rattler
    reads it, or `schema_version` >= 3) or when it uses something only v3
    clients understand: package `flags`, or a dependency with `when=`,
    `extras=` or `flags=` in brackets (the same inference rattler's indexer makes).
    """
    for key in ("repodata_revision", "schema_version"):
        value = record.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 3:
            return True
    if record.get("flags"):
        return True
    specs: list[Any] = [*(record.get("depends") or ()), *(record.get("constrains") or ())]
    extra = record.get("extra_depends")
    if isinstance(extra, Mapping):
        for group in extra.values():
            if isinstance(group, list):
                specs.extend(group)
    # Most specs have no brackets at all: a substring test is far cheaper than the regex.
    return any(isinstance(spec, str) and "[" in spec and _V3_SPEC.search(spec) for spec in specs)
