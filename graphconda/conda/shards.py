"""Sharded repodata (CEP 16): one zstd-compressed msgpack shard per package name, plus the index.

Shards are content-addressed (named by the sha256 of their compressed bytes),
so their bytes must be deterministic: maps are sorted recursively, compression
is single-threaded at a fixed level, and the zstd frame records its content
size. A republish that leaves a name's records alone therefore leaves its
shard, and every client's cached copy, valid.

Records can be packed once, when they are stored (`pack_record`), and shards then
assembled from those bytes (`build_shard_packed`) without decoding any record: the
result is byte for byte what `build_shard` makes from the decoded records.
"""

from __future__ import annotations

import bisect
import hashlib
import json
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


def pack_record(filename: str, record: Mapping[str, Any] | str) -> bytes:
    """A record (a mapping, or its records.dumps_record JSON) as it appears inside a shard.

    Canonical msgpack with checksums as bin; what build_shard_packed concatenates.
    """
    if isinstance(record, str):
        # dumps_record's maps are in sorted key order and json.loads keeps that order: nothing to sort.
        return msgpack.packb(_pack_record(filename, json.loads(record)), use_bin_type=True)
    return _packb(_pack_record(filename, record))


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


def _map_header(size: int) -> bytes:
    if size < 16:
        return bytes((0x80 | size,))
    if size < 0x10000:
        return b"\xde" + size.to_bytes(2, "big")
    return b"\xdf" + size.to_bytes(4, "big")


def _packed_map(entries: dict[str, bytes]) -> list[bytes]:
    """A msgpack map of already packed values, keys in sorted order (as _sorted orders them)."""
    parts = [_map_header(len(entries))]
    for key in sorted(entries):
        parts.append(msgpack.packb(key, use_bin_type=True))
        parts.append(entries[key])
    return parts


_PACKAGES, _CONDA, _REMOVED, _V3 = (msgpack.packb(key) for key in ("packages", "packages.conda", "removed", "v3"))
_V3_CONDA, _V3_TAR = (msgpack.packb(key) for key in ("conda", "tar.bz2"))


def build_shard_packed(records: Iterable[tuple[str, bytes, bool]], removed: Iterable[str] = (), *,
                       level: int = ZSTD_LEVEL) -> bytes:
    """build_shard from (filename, pack_record bytes, is v3) without decoding a record: the same bytes."""
    legacy: dict[str, bytes] = {}
    conda: dict[str, bytes] = {}
    v3_conda: dict[str, bytes] = {}
    v3_tar: dict[str, bytes] = {}
    for filename, packed, v3 in records:
        if filename.endswith(".conda"):
            target, stem = (v3_conda if v3 else conda), filename[: -len(".conda")]
        elif filename.endswith(".tar.bz2"):
            target, stem = (v3_tar if v3 else legacy), filename[: -len(".tar.bz2")]
        else:
            raise ValueError(f"not a conda package filename: {filename!r}")
        target[stem if v3 else filename] = packed
    has_v3 = bool(v3_conda or v3_tar)
    # Top-level keys in sorted order: "packages" < "packages.conda" < "removed" < "v3".
    parts = [_map_header(4 if has_v3 else 3), _PACKAGES, *_packed_map(legacy), _CONDA, *_packed_map(conda),
             _REMOVED, _packb(sorted(set(removed)))]
    if has_v3:
        parts += [_V3, _map_header(2), _V3_CONDA, *_packed_map(v3_conda), _V3_TAR, *_packed_map(v3_tar)]
    return _compress(b"".join(parts), level)


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
    return PackedIndex(shards).build(subdir, created_at, base_url=base_url, level=level)


def _index_entry(name: str, digest: bytes) -> bytes:
    if not isinstance(digest, bytes) or len(digest) != 32:
        raise ValueError(f"shard digest for {name!r} must be 32 raw bytes")
    return msgpack.packb(name, use_bin_type=True) + msgpack.packb(digest, use_bin_type=True)


class PackedIndex:
    """The `shards` map of an index, kept packed and sorted, so a change re-packs one entry, not all.

    An upload into a subdir of many names rewrites the whole index (CEP 16 makes it one
    document), but packing it from scratch each time cost more than the rest of the upload.
    `copy()` before changing one that a committed index was built from.
    """

    def __init__(self, shards: Mapping[str, bytes] | None = None) -> None:
        shards = shards or {}
        names = sorted(shards)
        self._names = names
        self._entries = [_index_entry(name, shards[name]) for name in names]

    def copy(self) -> PackedIndex:
        clone = PackedIndex()
        clone._names, clone._entries = list(self._names), list(self._entries)
        return clone

    def __len__(self) -> int:
        return len(self._names)

    def set(self, name: str, digest: bytes) -> None:
        entry = _index_entry(name, digest)
        at = bisect.bisect_left(self._names, name)
        if at < len(self._names) and self._names[at] == name:
            self._entries[at] = entry
        else:
            self._names.insert(at, name)
            self._entries.insert(at, entry)

    def remove(self, name: str) -> None:
        at = bisect.bisect_left(self._names, name)
        if at < len(self._names) and self._names[at] == name:
            del self._names[at], self._entries[at]

    def build(self, subdir: str, created_at: datetime, *, base_url: str = "", level: int = ZSTD_LEVEL) -> bytes:
        """The compressed index: the same bytes as packing the whole document with sorted maps."""
        if base_url and not base_url.endswith("/"):
            raise ValueError(f"base_url must end in '/', got {base_url!r}")
        info = {"subdir": subdir, "base_url": base_url, "shards_base_url": SHARDS_BASE_URL,
                "created_at": rfc3339(created_at)}
        # Keys in sorted order: "info" < "shards" < "version".
        parts = [_map_header(3), _INFO, _packb(info), _SHARDS, _map_header(len(self._names)), *self._entries,
                 _VERSION, _packb(SHARD_INDEX_VERSION)]
        return _compress(b"".join(parts), level)


_INFO, _SHARDS, _VERSION = (msgpack.packb(key) for key in ("info", "shards", "version"))
