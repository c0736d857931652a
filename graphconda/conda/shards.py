"""Sharded repodata (CEP 16): one zstd-compressed msgpack shard per package name, plus the index.

Shards are content-addressed (named by the sha256 of their compressed bytes),
so their bytes must be deterministic: maps are sorted recursively, compression
is single-threaded at a fixed level, and the zstd frame records its content
size. A republish that leaves a name's records alone therefore leaves its
shard, and every client's cached copy, valid.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import msgpack
import zstandard

from graphconda.conda.records import is_v3

SHARD_INDEX_VERSION = 1
SHARDS_BASE_URL = "./shards/"
ZSTD_LEVEL = 16
# Record fields that rattler (de)serialises as digests: raw bytes in msgpack.
HASH_FIELDS = ("md5", "sha256", "legacy_bz2_md5", "attestations_sha256")


def _sorted(value: Any) -> Any:
    """A copy with every dict's keys in sorted order, so msgpack output is canonical."""
    kind = type(value)
    if kind is str or kind is int or kind is bytes or kind is bool or kind is float or value is None:
        return value  # the common leaves, without the (slow) ABC checks below
    if kind is dict or isinstance(value, Mapping):
        return {key: _sorted(value[key]) for key in sorted(value)}
    if isinstance(value, list | tuple):
        return [_sorted(item) for item in value]
    return value


def _packb(value: Any) -> bytes:
    return msgpack.packb(_sorted(value), use_bin_type=True)


def _compress(data: bytes, level: int = ZSTD_LEVEL) -> bytes:
    # threads=0: single-threaded output never depends on the machine.
    return zstandard.ZstdCompressor(level=level, threads=0, write_content_size=True).compress(data)


def _pack_record(filename: str, record: Mapping[str, Any]) -> dict[str, Any]:
    packed = dict(record)
    for key in HASH_FIELDS:
        value = packed.get(key)
        if isinstance(value, str):
            try:
                packed[key] = bytes.fromhex(value)
            except ValueError as exc:
                raise ValueError(f"{filename}: {key} is not hexadecimal: {value!r}") from exc
    return packed


def build_shard(records: Mapping[str, Mapping[str, Any]], removed: Iterable[str] = (), *,
                level: int = ZSTD_LEVEL) -> bytes:
    """The compressed shard for one package name from {filename: record}.

    Same layout as repodata.json: `packages` (.tar.bz2), `packages.conda`,
    `removed`, and a `v3` map (keyed by filename without extension) only when
    some record is v3 (records.is_v3). Checksums become msgpack bin.
    """
    shard: dict[str, Any] = {"packages": {}, "packages.conda": {}, "removed": sorted(set(removed))}
    v3: dict[str, dict[str, Any]] = {"conda": {}, "tar.bz2": {}}
    for filename, record in records.items():
        if filename.endswith(".conda"):
            legacy_key, v3_key, stem = "packages.conda", "conda", filename[: -len(".conda")]
        elif filename.endswith(".tar.bz2"):
            legacy_key, v3_key, stem = "packages", "tar.bz2", filename[: -len(".tar.bz2")]
        else:
            raise ValueError(f"not a conda package filename: {filename!r}")
        packed = _pack_record(filename, record)
        if is_v3(record):
            v3[v3_key][stem] = packed
        else:
            shard[legacy_key][filename] = packed
    if v3["conda"] or v3["tar.bz2"]:
        shard["v3"] = v3
    return _compress(_packb(shard), level)


def shard_digest(shard_bytes: bytes) -> bytes:
    """The 32-byte sha256 of a compressed shard: its name and its index entry."""
    return hashlib.sha256(shard_bytes).digest()


def shard_filename(digest: bytes) -> str:
    """`<sha256 hex>.msgpack.zst`, the shard's path under `shards_base_url`."""
    if len(digest) != 32:
        raise ValueError(f"a shard digest is 32 bytes, got {len(digest)}")
    return digest.hex() + ".msgpack.zst"


def rfc3339(moment: datetime) -> str:
    """UTC, 'Z' suffix, microseconds only when present: 2026-01-02T03:04:05Z."""
    if moment.tzinfo is None:
        raise ValueError("created_at must be timezone-aware")
    moment = moment.astimezone(UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}"
    return text + "Z"


def build_shard_index(
    subdir: str,
    shards: Mapping[str, bytes],
    created_at: datetime,
    *,
    base_url: str = "",
    level: int = ZSTD_LEVEL,
) -> bytes:
    """The compressed `repodata_shards.msgpack.zst` from {package name: shard digest}.

    `base_url` is where package files live relative to the index ("" means
    the subdir itself); `shards_base_url` is always "./shards/".
    """
    for name, digest in shards.items():
        if not isinstance(digest, bytes) or len(digest) != 32:
            raise ValueError(f"shard digest for {name!r} must be 32 raw bytes")
    if base_url and not base_url.endswith("/"):
        raise ValueError(f"base_url must end in '/', got {base_url!r}")
    index = {
        "version": SHARD_INDEX_VERSION,
        "info": {
            "subdir": subdir,
            "base_url": base_url,
            "shards_base_url": SHARDS_BASE_URL,
            "created_at": rfc3339(created_at),
        },
        "shards": dict(shards),
    }
    return _compress(_packb(index), level)
