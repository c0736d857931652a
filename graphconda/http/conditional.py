"""Conditional requests (RFC 9110 section 13): whether a client's cached copy is still current.

One implementation for the routed conda path (http/conda.py) and the fast path
(http/fastpath.py), so a 304 means the same thing whichever answers.
"""

from __future__ import annotations

from email.utils import parsedate_to_datetime


def _strip_weak(tag: str) -> str:
    return tag[2:] if tag.startswith("W/") else tag


def etag_matches(if_none_match: str, etag: str) -> bool:
    """If-None-Match against our ETag: weak comparison, lists and `*` (RFC 9110 13.1.2)."""
    if if_none_match == etag or if_none_match.strip() == "*":
        return True
    ours = _strip_weak(etag)
    return any(_strip_weak(tag.strip()) == ours for tag in if_none_match.split(","))


def not_modified(if_none_match: str | None, if_modified_since: str | None, etag: str, mtime: int | None) -> bool:
    """Whether to answer 304: If-None-Match, when sent, wins over If-Modified-Since."""
    if if_none_match is not None:
        return etag_matches(if_none_match, etag)
    if if_modified_since is None or mtime is None:
        return False
    try:
        return mtime <= int(parsedate_to_datetime(if_modified_since).timestamp())
    except (TypeError, ValueError, IndexError, OverflowError):
        return False
