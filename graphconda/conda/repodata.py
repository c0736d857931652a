"""Building the published index files: repodata.json (+ .zst/.bz2), current_repodata.json,
run_exports.json and channeldata.json.

build_repodata is the hot path (hundreds of thousands of records per subdir):
records arrive already serialised by records.dumps_record and are spliced into
the document unparsed, producing exactly the bytes of
`json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`.
"""

from __future__ import annotations

import bz2
import functools
import gzip
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import zstandard
from rattler import BuildString, MatchSpec, PackageRecord, Version, VersionSpec
from rattler.exceptions import (
    InvalidMatchSpecError,
    InvalidPackageNameError,
    InvalidVersionError,
    PackageNameMatcherParseError,
)

from graphconda.conda.archive import TRAIT_KEYS

# The string encoder json.dumps(..., ensure_ascii=False) itself uses (C speed).
_encode_str = json.encoder.encode_basestring

REPODATA_VERSION = 1
REPODATA_VERSION_BASE_URL = 2  # CEP 15: only when info.base_url is written
RUN_EXPORTS_VERSION = 1
CHANNELDATA_VERSION = 1
ZSTD_LEVEL = 16
# Above this size compress with two worker threads, in jobs of a fixed size: zstd's multi-threaded
# output then depends on neither the number of workers nor how the input is fed, so the bytes
# stay reproducible. Each 4 MiB job re-reads only 1/64 of the window before it (overlap log 3;
# the default re-reads the whole window, which cost 40 % more time) and indexes it in tables of
# at most 2^18 entries, not the level's 2^22: repodata's repetition is between neighbouring
# records, so on 92 MB of it at level 16 this took 4.1 s and 42 MB for both workers where the
# level's tables took 7.3 s and 101 MB, for 0.8 % fewer bytes (on the corpus's real indexes,
# a single job each: 0.2 % more bytes, 35 % less time).
_ZSTD_THREADED_FROM = 1024 * 1024
_ZSTD_WORKERS = 2
_ZSTD_JOB_SIZE = 4 << 20
_ZSTD_OVERLAP_LOG = 3
_ZSTD_TABLE_LOG = 18


class RecordEntry(NamedTuple):
    """One published record: its filename, its dumps_record() JSON, and whether it is v3."""

    filename: str
    record_json: str
    v3: bool = False


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _join_map(items: Mapping[str, str]) -> str:
    """A JSON object from keys and already-encoded values, keys sorted like sort_keys does."""
    return "{" + ",".join([_encode_str(key) + ":" + items[key] for key in sorted(items)]) + "}"


def build_repodata(
    subdir: str,
    entries: Iterable[RecordEntry | tuple[str, str, bool]],
    removed: Iterable[str] = (),
    *,
    base_url: str | None = None,
) -> bytes:
    """repodata.json for one subdir.

    `.tar.bz2` records go under `packages`, `.conda` under `packages.conda`;
    v3 records (CEP 48) only under `v3.tar.bz2` / `v3.conda`, keyed by the
    filename without its extension, and `info.repodata_revisions.v3` counts
    them. With `base_url` (absolute, ending in '/') the document is
    `repodata_version` 2 (CEP 15). A filename given twice keeps its last entry.
    """
    legacy: dict[str, dict[str, str]] = {".tar.bz2": {}, ".conda": {}}
    v3: dict[str, dict[str, str]] = {".tar.bz2": {}, ".conda": {}}
    for filename, record_json, is_v3 in entries:
        if filename.endswith(".conda"):
            ext = ".conda"
        elif filename.endswith(".tar.bz2"):
            ext = ".tar.bz2"
        else:
            raise ValueError(f"not a conda package filename: {filename!r}")
        if is_v3:
            v3[ext][filename[: -len(ext)]] = record_json
        else:
            legacy[ext][filename] = record_json
    n_v3 = len(v3[".conda"]) + len(v3[".tar.bz2"])

    info: dict[str, Any] = {"subdir": subdir}
    version = REPODATA_VERSION
    if base_url is not None:
        if not base_url.endswith("/"):
            raise ValueError(f"base_url must end in '/', got {base_url!r}")
        info["base_url"] = base_url
        version = REPODATA_VERSION_BASE_URL
    if n_v3:
        info["repodata_revisions"] = {"v3": {"n_packages": n_v3}}

    parts = [
        '{"info":',
        _dumps(info),
        ',"packages":',
        _join_map(legacy[".tar.bz2"]),
        ',"packages.conda":',
        _join_map(legacy[".conda"]),
        ',"removed":',
        _dumps(sorted(set(removed))),
        ',"repodata_version":',
        str(version),
    ]
    if n_v3:
        parts += [',"v3":{"conda":', _join_map(v3[".conda"]), ',"tar.bz2":', _join_map(v3[".tar.bz2"]), "}"]
    parts.append("}")
    return "".join(parts).encode()


def empty_repodata(subdir: str) -> bytes:
    """The repodata.json of a subdir without packages (every channel serves noarch's)."""
    return build_repodata(subdir, ())


def zstd_compressor(level: int, size: int) -> zstandard.ZstdCompressor:
    """The compressor of `size` bytes that compress_zst uses: the same bytes streamed or not."""
    if size < _ZSTD_THREADED_FROM:
        return zstandard.ZstdCompressor(level=level, threads=0, write_content_size=True)
    base = zstandard.ZstdCompressionParameters.from_level(level, source_size=size)
    params = zstandard.ZstdCompressionParameters(
        window_log=base.window_log, chain_log=min(base.chain_log, _ZSTD_TABLE_LOG),
        hash_log=min(base.hash_log, _ZSTD_TABLE_LOG), search_log=base.search_log, min_match=base.min_match,
        target_length=base.target_length, strategy=base.strategy, threads=_ZSTD_WORKERS,
        job_size=_ZSTD_JOB_SIZE, overlap_log=_ZSTD_OVERLAP_LOG, write_content_size=True)
    return zstandard.ZstdCompressor(compression_params=params)


def compress_zst(data: bytes, level: int = ZSTD_LEVEL) -> bytes:
    """One zstd frame that records its content size (conda and mamba rely on it)."""
    return zstd_compressor(level, len(data)).compress(data)


def compress_bz2(data: bytes) -> bytes:
    return bz2.compress(data, 9)


def compress_gzip(data: bytes) -> bytes:
    """Deterministic gzip (no name, mtime 0): equal input gives equal bytes, so an equal ETag."""
    # Level 6: a third of level 9's time for 3 % more bytes (a fraction of the zstd-16 beside it).
    return gzip.compress(data, compresslevel=6, mtime=0)


def _record(record: Mapping[str, Any] | str) -> Mapping[str, Any]:
    return json.loads(record) if isinstance(record, str) else record


def build_run_exports(subdir: str, entries: Iterable[tuple[str, Mapping[str, Any] | str]]) -> bytes:
    """run_exports.json (CEP 12) from (filename, record or record JSON) pairs.

    Every package gets an entry; one without run_exports gets `{"run_exports": {}}`,
    as CEP 12 requires. Record JSON is parsed only when it mentions run_exports.
    """
    maps: dict[str, dict[str, Any]] = {"packages": {}, "packages.conda": {}}
    for filename, record in entries:
        key = "packages.conda" if filename.endswith(".conda") else "packages"
        if isinstance(record, str) and '"run_exports"' not in record:
            run_exports: Any = {}
        else:
            run_exports = _record(record).get("run_exports") or {}
        maps[key][filename] = {"run_exports": run_exports}
    doc = {"info": {"subdir": subdir, "version": RUN_EXPORTS_VERSION}, **maps}
    return _dumps(doc).encode()


# ---------------------------------------------------------------- ordering


@functools.lru_cache(maxsize=8192)  # a batch of records compares the same few versions many times
def version_key(version: str) -> tuple[bool, Version | None]:
    """Sort key in conda's version order; unparsable versions sort first."""
    try:
        return (True, Version(version))
    except InvalidVersionError:
        return (False, None)


def _timestamp_seconds(timestamp: float | None) -> int:
    """index.json timestamps are milliseconds, but old packages used seconds."""
    if not timestamp:
        return 0
    seconds = int(timestamp)
    return seconds // 1000 if seconds > 253402300799 else seconds  # later than 9999-12-31


# ---------------------------------------------------------------- current_repodata


def build_current_repodata(
    subdir: str,
    entries: Iterable[RecordEntry | tuple[str, str, bool]],
    removed: Iterable[str] = (),
    *,
    pins: Mapping[str, Iterable[str]] | None = None,
) -> bytes:
    """current_repodata.json: the subset conda's classic solver tries first.

    Like conda-index: every build of the latest version of each name, the
    latest version matching each pin (`{"python": ["3.11", "3.12"]}`), then one
    pass that backfills dependencies the subset cannot satisfy with the latest
    matching version from the full set, and, for names whose kept records use
    features, the newest feature-free record so the solver has an alternative.
    """
    all_entries = [RecordEntry(*entry) for entry in entries]
    records = {entry.filename: json.loads(entry.record_json) for entry in all_entries}
    by_name: dict[str, list[str]] = defaultdict(list)
    for filename, record in records.items():
        by_name[record["name"]].append(filename)
    keys = {fn: version_key(record["version"]) for fn, record in records.items()}
    for filenames in by_name.values():
        filenames.sort(key=lambda fn: (keys[fn], records[fn].get("build_number", 0)), reverse=True)

    def same_version(name: str, filename: str) -> set[str]:
        return {fn for fn in by_name[name] if keys[fn] == keys[filename]}

    keep: set[str] = set()
    for name, filenames in by_name.items():
        keep |= same_version(name, filenames[0])
        for pin in (pins or {}).get(name, ()):
            pinned = VersionSpec(f"={pin}")
            match = next((fn for fn in filenames if (v := keys[fn][1]) is not None and pinned.matches(v)), None)
            if match:
                keep |= same_version(name, match)

    package_records: dict[str, PackageRecord] = {}

    def matches(spec: MatchSpec, filename: str) -> bool:
        if not keys[filename][0]:
            return False  # an unparsable version matches nothing
        if filename not in package_records:
            record = records[filename]
            package_records[filename] = PackageRecord(
                record["name"], record["version"], BuildString(record["build"]), record["build_number"], subdir
            )
        return spec.matches(package_records[filename])

    backfill: set[str] = set()
    seen_specs: set[str] = set()
    for filename in sorted(keep):
        for dep in records[filename].get("depends") or ():
            if dep in seen_specs:
                continue
            seen_specs.add(dep)
            try:
                spec = MatchSpec(dep)
            except (InvalidMatchSpecError, InvalidPackageNameError, PackageNameMatcherParseError):
                continue  # a spec rattler cannot parse cannot be backfilled either
            dep_name = spec.name.normalized
            if dep_name not in by_name or any(matches(spec, fn) for fn in by_name[dep_name] if fn in keep):
                continue
            match = next((fn for fn in by_name[dep_name] if matches(spec, fn)), None)
            if match:
                backfill |= same_version(dep_name, match)
    keep |= backfill

    for filenames in by_name.values():
        kept = [fn for fn in filenames if fn in keep]
        if any(records[fn].get("track_features") or records[fn].get("features") for fn in kept):
            newest = max(keys[fn] for fn in kept)
            plain = next(
                (
                    fn
                    for fn in filenames
                    if keys[fn] <= newest and not (records[fn].get("track_features") or records[fn].get("features"))
                ),
                None,
            )
            if plain:
                keep.add(plain)

    return build_repodata(subdir, [entry for entry in all_entries if entry.filename in keep], removed)


# ---------------------------------------------------------------- channeldata

# about.json fields copied into channeldata, newest non-empty value wins.
ABOUT_FIELDS = (
    "description",
    "dev_url",
    "doc_source_url",
    "doc_url",
    "home",
    "icon_hash",
    "icon_url",
    "identifiers",
    "keywords",
    "license",
    "recipe_origin",
    "source_git_url",
    "source_url",
    "summary",
    "tags",
)


@dataclass(frozen=True)
class ChannelPackage:
    """One package file's contribution to channeldata.json."""

    name: str
    version: str
    subdir: str
    timestamp: float | None = None  # as in index.json (milliseconds; seconds in old packages)
    about: Mapping[str, Any] = field(default_factory=dict)
    license: str | None = None  # index.json's, used when about.json has none
    run_exports: Mapping[str, Any] | None = None
    traits: Mapping[str, bool] = field(default_factory=dict)  # archive.PackageMetadata.traits

    @classmethod
    def from_record(
        cls,
        record: Mapping[str, Any],
        about: Mapping[str, Any] | None = None,
        traits: Mapping[str, bool] | None = None,
    ) -> ChannelPackage:
        return cls(
            name=record["name"],
            version=record["version"],
            subdir=record["subdir"],
            timestamp=record.get("timestamp"),
            about=about or {},
            license=record.get("license"),
            run_exports=record.get("run_exports"),
            traits=traits or {},
        )


def build_channeldata(
    channel_name: str,
    packages: Iterable[ChannelPackage],
    *,
    subdirs: Iterable[str] = (),
) -> bytes:
    """channeldata.json (CEP 38) for a whole channel.

    `channel_name` is not part of the CEP 38 document; it names the channel in
    error messages only. `subdirs` adds subdirs that have no packages (noarch).
    """
    groups: dict[str, list[ChannelPackage]] = defaultdict(list)
    for package in packages:
        groups[package.name].append(package)
    out = {name: channeldata_entry(group) for name, group in groups.items()}
    all_subdirs = {*subdirs, *(p.subdir for group in groups.values() for p in group)}
    return channeldata_document(channel_name, out, all_subdirs)


def channeldata_entry(group: list[ChannelPackage]) -> dict[str, Any]:
    """One name's channeldata.json entry from every file of that name (sorted in place)."""
    # Oldest first, so later (newer) values overwrite earlier ones.
    group.sort(key=lambda p: (version_key(p.version), _timestamp_seconds(p.timestamp)))
    entry: dict[str, Any] = {}
    for package in group:
        values = {key: package.about.get(key) for key in ABOUT_FIELDS}
        values["license"] = values["license"] or package.license
        entry.update({key: value for key, value in values.items() if value})
    run_exports: dict[str, Any] = {}
    for package in group:
        if package.run_exports:
            run_exports[package.version] = dict(package.run_exports)
    entry.update(
        {key: any(bool(package.traits.get(key)) for package in group) for key in TRAIT_KEYS},
        run_exports=run_exports,
        subdirs=sorted({package.subdir for package in group}),
        timestamp=max(_timestamp_seconds(package.timestamp) for package in group),
        version=group[-1].version,
    )
    return entry


def channeldata_document(channel_name: str, entries: Mapping[str, Any], subdirs: Iterable[str]) -> bytes:
    """channeldata.json from {name: channeldata_entry} and every subdir of the channel."""
    try:
        return _dumps({"channeldata_version": CHANNELDATA_VERSION, "packages": entries,
                       "subdirs": sorted(set(subdirs))}).encode()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"channel {channel_name!r}: package metadata is not JSON-serialisable") from exc
