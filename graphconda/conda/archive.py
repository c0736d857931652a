"""Reading and validating a package file's metadata (its info/ files) without extracting it.

`read_package` checks the container (`.conda`: an uncompressed ZIP holding
`metadata.json`, `info-<stem>.tar.zst` and `pkg-<stem>.tar.zst`, whose CRCs
must hold; `.tar.bz2`: a bzip2 tarball that must decompress to its end), lists
every tarball to its end within a work budget and with member paths checked
(conda.listing), keeps only the info/ members it needs, and checks
`info/index.json` against the filename. Every way a file can be broken ends in
InvalidPackageError with a message naming the problem (TooLargeError past the
budget); nothing from the archive is ever written to disk, and payload bytes
are never kept.
"""

from __future__ import annotations

import bz2
import json
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from conda_package_streaming import package_streaming
from rattler import IndexJson, RunExportsJson
from rattler.exceptions import IoError

from graphconda.conda.listing import CORRUPT, MAX_METADATA_MEMBER, ReadLimits, TarballScan, unsafe_path
from graphconda.conda.names import ParsedFilename, parse_filename, show, validate_subdir
from graphconda.errors import InvalidNameError, InvalidPackageError

# info/ members we read; everything else is skipped unread.
INDEX_JSON = "info/index.json"
ABOUT_JSON = "info/about.json"
RUN_EXPORTS_JSON = "info/run_exports.json"
PATHS_JSON = "info/paths.json"
HAS_PREFIX = "info/has_prefix"
FILES = "info/files"
_WANTED = frozenset({INDEX_JSON, ABOUT_JSON, RUN_EXPORTS_JSON, PATHS_JSON, HAS_PREFIX, FILES})

INT64_MAX = 2**63 - 1  # build_number and timestamp columns are signed 64-bit on every database

# The CEP 38 booleans channeldata.json needs, computed from info/ at upload.
TRAIT_KEYS = (
    "activate.d",
    "binary_prefix",
    "deactivate.d",
    "post_link",
    "pre_link",
    "pre_unlink",
    "text_prefix",
)


@dataclass(frozen=True)
class PackageMetadata:
    """What a package declares about itself, read from its info/ directory."""

    filename: str
    index: dict[str, Any]
    about: dict[str, Any] = field(default_factory=dict)
    run_exports: dict[str, Any] | None = None
    traits: Mapping[str, bool] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.index["name"]

    @property
    def version(self) -> str:
        return self.index["version"]

    @property
    def build(self) -> str:
        return self.index["build"]

    @property
    def subdir(self) -> str:
        return self.index["subdir"]


def read_package(path: Path, filename: str, limits: ReadLimits | None = None) -> PackageMetadata:
    """Validate the package file at `path` (uploaded as `filename`) and return its metadata.

    Raises InvalidNameError for a bad filename, TooLargeError when reading it would cost
    more than `limits` allow, and InvalidPackageError for anything wrong with the file
    itself (unsafe member paths included, unless `limits` allow them). OSError from
    opening `path` is the server's problem and propagates.
    """
    parsed = parse_filename(filename)
    limits = limits or ReadLimits()
    with open(path, "rb") as f:
        size = f.seek(0, 2)
        if size == 0:
            raise InvalidPackageError(f"{filename} is empty", field="file")
        f.seek(0)
        read = _read_conda if parsed.extension == ".conda" else _read_tar_bz2
        members = read(f, parsed, TarballScan(filename, size, limits))

    index = _parse_index(members, parsed)
    about = _parse_object(members, ABOUT_JSON, filename) or {}
    check_values(about, ABOUT_JSON, filename)
    run_exports = _parse_object(members, RUN_EXPORTS_JSON, filename)
    if run_exports is not None:
        check_values(run_exports, RUN_EXPORTS_JSON, filename)
        _check_with_rattler(RunExportsJson, members[RUN_EXPORTS_JSON], RUN_EXPORTS_JSON, filename)
    traits = _traits(parsed.name, members, filename, limits.allow_unsafe_paths)
    return PackageMetadata(filename, index, about, run_exports, traits)


def _read_conda(f: IO[bytes], parsed: ParsedFilename, scan: TarballScan) -> dict[str, bytes]:
    filename = parsed.filename
    try:
        zf = zipfile.ZipFile(f)
        infos = zf.infolist()
    except CORRUPT as exc:
        raise InvalidPackageError(
            f"{filename} is not a valid .conda file: not a readable ZIP archive (corrupt, truncated or another format)",
            field="file",
        ) from exc
    with zf:
        names = [info.filename for info in infos]
        if len(names) != len(set(names)):
            raise InvalidPackageError(
                f"{filename} is not a valid .conda file: the ZIP archive has duplicate members",
                field="file",
            )
        expected = ("metadata.json", f"info-{parsed.stem}.tar.zst", f"pkg-{parsed.stem}.tar.zst")
        missing = [name for name in expected if name not in names]
        if missing:
            raise InvalidPackageError(
                f"{filename} is not a valid .conda file: missing {', '.join(missing)} (found {show(sorted(names))})",
                field="file",
            )
        # conda-package-streaming matches components by prefix; a second member
        # starting with "info-<stem>" would make the choice ambiguous.
        for prefix in ("info-", "pkg-"):
            clashes = [n for n in names if n.startswith(prefix + parsed.stem)]
            if len(clashes) != 1:
                raise InvalidPackageError(
                    f"{filename} is not a valid .conda file: ambiguous members {show(sorted(clashes))}",
                    field="file",
                )
        for info in infos:
            if info.filename in expected and info.compress_type != zipfile.ZIP_STORED:
                raise InvalidPackageError(
                    f"{filename} is not a valid .conda file: ZIP member {info.filename} "
                    "is compressed; .conda members must be stored uncompressed",
                    field="file",
                )
            if info.flag_bits & 0x1:
                raise InvalidPackageError(
                    f"{filename} is not a valid .conda file: ZIP member {show(info.filename)} is encrypted",
                    field="file",
                )
        if zf.getinfo("metadata.json").file_size > MAX_METADATA_MEMBER:
            raise InvalidPackageError(
                f"{filename} is not a valid .conda file: metadata.json is too large",
                field="file",
            )
        try:
            metadata = _loads(zf.read("metadata.json"))
        except CORRUPT as exc:
            raise InvalidPackageError(
                f"{filename} is not a valid .conda file: metadata.json is unreadable or not valid JSON",
                field="file",
            ) from exc
        if not isinstance(metadata, dict):
            raise InvalidPackageError(
                f"{filename} is not a valid .conda file: metadata.json is not a JSON object",
                field="file",
            )
        info_member, pkg_member = f"info-{parsed.stem}.tar.zst", f"pkg-{parsed.stem}.tar.zst"
        # Clients fetch the pkg- member unchecked; its ZIP CRC catches a
        # corrupt upload without decompressing anything.
        _check_crc(zf, pkg_member, filename)
        _check_crc(zf, info_member, filename)
        # Both tarballs are listed (conda extracts both into one directory), within one budget.
        for member, keep in ((info_member, _WANTED), (pkg_member, ())):
            try:
                raw = package_streaming.zstd.open(zf.open(member))
            except CORRUPT as exc:
                raise InvalidPackageError(f"{filename} is corrupt or truncated: its {member} could not be read",
                                          field="file") from exc
            with raw:
                scan.read(raw, member, keep)
        return scan.finish()


def _check_crc(zf: zipfile.ZipFile, member: str, filename: str) -> None:
    try:
        with zf.open(member) as stream:
            while stream.read(1 << 20):
                pass
    except CORRUPT as exc:
        raise InvalidPackageError(
            f"{filename} is corrupt or truncated: ZIP member {member} fails its checksum", field="file"
        ) from exc


def _read_tar_bz2(f: IO[bytes], parsed: ParsedFilename, scan: TarballScan) -> dict[str, bytes]:
    # The whole tarball is listed (payload skipped, not kept) so that a truncated or corrupt
    # file or an unsafe member is refused, not just one with a bad info/.
    with bz2.open(f, "rb") as raw:
        scan.read(raw, "bzip2 tarball", _WANTED)
    return scan.finish()


def _loads(data: bytes) -> Any:
    # NaN and Infinity are not JSON; letting them through would make us
    # publish a repodata.json that strict clients refuse.
    return json.loads(data, parse_constant=_reject_constant)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _parse_object(members: Mapping[str, bytes], member: str, filename: str) -> dict | None:
    """The JSON object in `member`, None when absent; corrupt JSON is an error."""
    data = members.get(member)
    if data is None:
        return None
    try:
        value = _loads(data)
    except (ValueError, RecursionError) as exc:
        raise InvalidPackageError(
            f"{filename} is not a valid package: {member} is not valid JSON", field="file"
        ) from exc
    if not isinstance(value, dict):
        raise InvalidPackageError(f"{filename} is not a valid package: {member} is not a JSON object", field="file")
    return value


def _is_uint63(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= INT64_MAX


# A string with one of these cannot be stored alike everywhere: PostgreSQL refuses NUL in
# text and JSON (SQLite keeps it), and a lone surrogate (from a JSON escape such as
# "\ud800") has no UTF-8 encoding, so no database, JSON document or shard can hold it.
_BAD_TEXT = re.compile(r"[\x00\ud800-\udfff]")


def _text_problem(text: str) -> str | None:
    found = _BAD_TEXT.search(text)
    if found is None:
        return None
    if found.group() == "\x00":
        return "a NUL character"
    return f"a lone surrogate (U+{ord(found.group()):04X}), which is not valid Unicode"


def check_values(value: Any, member: str, filename: str) -> None:
    """Refuse, naming the field, what would be stored differently (or not at all) per database.

    Every string and key of the parsed JSON `value` (read from `member`) must be free of NUL
    characters and lone surrogates, and every integer must fit in a signed 64-bit integer
    (what the database columns and msgpack shards hold). Iterative: JSON nests deeply.
    """
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, str):
            problem = _text_problem(item)
            if problem:
                raise InvalidPackageError(
                    f"{filename} is not a valid package: {member} {where or 'value'} contains {problem}",
                    field="file",
                )
        elif isinstance(item, int) and not isinstance(item, bool):
            if not -INT64_MAX - 1 <= item <= INT64_MAX:
                raise InvalidPackageError(
                    f"{filename} is not a valid package: {member} {where or 'value'} is an integer outside "
                    f"the signed 64-bit range ({-INT64_MAX - 1} to {INT64_MAX})",
                    field="file",
                )
        elif isinstance(item, list):
            stack.extend((f"{where}[{i}]", v) for i, v in reversed(list(enumerate(item))))
        elif isinstance(item, dict):
            for key in reversed(list(item)):
                problem = _text_problem(key)
                if problem:
                    raise InvalidPackageError(
                        f"{filename} is not a valid package: {member} has a key containing {problem}"
                        + (f" (in {where})" if where else ""),
                        field="file",
                    )
                stack.append((f"{where}.{key}" if where else key, item[key]))


def _parse_index(members: Mapping[str, bytes], parsed: ParsedFilename) -> dict[str, Any]:
    filename = parsed.filename
    index = _parse_object(members, INDEX_JSON, filename)
    if index is None:
        raise InvalidPackageError(f"{filename} is not a valid package: it has no {INDEX_JSON}", field="file")

    def bad(problem: str) -> InvalidPackageError:
        return InvalidPackageError(f"{filename} is not a valid package: {INDEX_JSON} {problem}", field="file")

    for key in ("name", "version", "build", "subdir"):
        if key not in index:
            raise bad(f"lacks the required field {key!r}")
        if not isinstance(index[key], str):
            raise bad(f"field {key!r} must be a string, not {show(index[key])}")
    if "build_number" not in index:
        raise bad("lacks the required field 'build_number'")
    build_number = index["build_number"]
    if not _is_uint63(build_number):
        raise bad(f"field 'build_number' must be an integer from 0 to {INT64_MAX}, not {show(build_number)}")
    for key in ("depends", "constrains"):
        value = index.get(key)
        if value is not None and not (isinstance(value, list) and all(isinstance(item, str) for item in value)):
            raise bad(f"field {key!r} must be a list of strings, not {show(value)}")
    timestamp = index.get("timestamp")
    if timestamp is not None and not _is_uint63(timestamp):
        raise bad(f"field 'timestamp' must be an integer from 0 to {INT64_MAX} (milliseconds), not {show(timestamp)}")
    check_values(index, INDEX_JSON, filename)
    try:
        validate_subdir(index["subdir"])
    except InvalidNameError as exc:
        raise bad(f"has an {exc.message}") from exc

    declared = f"{index['name']}-{index['version']}-{index['build']}"
    if declared != parsed.stem:
        raise InvalidPackageError(
            f"filename {show(filename)} does not match {INDEX_JSON} (name-version-build {show(declared)})",
            field="filename",
        )
    _check_with_rattler(IndexJson, members[INDEX_JSON], INDEX_JSON, filename)
    return index


def _check_with_rattler(
    parser: type[IndexJson] | type[RunExportsJson], data: bytes, member: str, filename: str
) -> None:
    """Parse `member` as rattler does when it reads repodata.

    rattler refuses a whole repodata document (or shard) when one record has a
    field of the wrong type (a float timestamp, a number as license, a bad
    purl, ...), so a package it cannot read must never be published.
    """
    try:
        parser.from_str(data.decode("utf-8"))
    except (IoError, UnicodeDecodeError) as exc:
        raise InvalidPackageError(
            f"{filename} is not a valid package: conda clients cannot read {member}: {show(str(exc), 200)}",
            field="file",
        ) from exc


def _traits(name: str, members: Mapping[str, bytes], filename: str, allow_unsafe_paths: bool) -> dict[str, bool]:
    """CEP 38 flags: activation scripts, link scripts, prefix placeholders.

    The paths conda links into the environment (paths.json, or info/files before it)
    must stay inside it, like the archive's own members.
    """
    paths: list[str] = []
    modes: list[str] = []  # file_mode of every file carrying a prefix placeholder
    paths_json = _parse_object(members, PATHS_JSON, filename)
    if paths_json is not None:
        check_values(paths_json, PATHS_JSON, filename)
        entries = paths_json.get("paths")
        if not isinstance(entries, list):
            raise InvalidPackageError(
                f"{filename} is not a valid package: {PATHS_JSON} has no 'paths' list",
                field="file",
            )
        for entry in entries:
            if not isinstance(entry, dict) or not isinstance(entry.get("_path"), str):
                raise InvalidPackageError(
                    f"{filename} is not a valid package: {PATHS_JSON} has an entry without a '_path': {show(entry)}",
                    field="file",
                )
            paths.append(entry["_path"])
            if entry.get("prefix_placeholder"):
                modes.append(str(entry.get("file_mode") or "text"))
    else:
        # Packages older than paths.json list files and placeholders in text files.
        paths = _lines(members.get(FILES))
        for line in _lines(members.get(HAS_PREFIX)):
            parts = line.split()
            modes.append(parts[1] if len(parts) == 3 else "text")

    if not allow_unsafe_paths:
        member = PATHS_JSON if paths_json is not None else FILES
        for path in paths:
            reason = unsafe_path(path)
            if reason is not None:
                raise InvalidPackageError(
                    f"{filename} is refused: {member} lists {show(path)}, which would land outside the install "
                    f"prefix ({reason}); a server operator may allow such paths for a channel "
                    "(limits.allow_unsafe_paths_channels)",
                    field="file",
                )

    def script(kind: str) -> re.Pattern[str]:
        return re.compile(rf"(bin|Scripts)/\.{re.escape(name)}-{kind}\.(sh|bat)")

    post_link, pre_link, pre_unlink = script("post-link"), script("pre-link"), script("pre-unlink")
    return {
        "activate.d": any(p.startswith("etc/conda/activate.d/") for p in paths),
        "binary_prefix": "binary" in modes,
        "deactivate.d": any(p.startswith("etc/conda/deactivate.d/") for p in paths),
        "post_link": any(post_link.fullmatch(p) for p in paths),
        "pre_link": any(pre_link.fullmatch(p) for p in paths),
        "pre_unlink": any(pre_unlink.fullmatch(p) for p in paths),
        "text_prefix": any(mode != "binary" for mode in modes),
    }


def _lines(data: bytes | None) -> list[str]:
    if not data:
        return []
    return [line.strip() for line in data.decode("utf-8", "replace").splitlines() if line.strip()]
