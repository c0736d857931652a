"""Builds real, installable conda packages (`.conda` and `.tar.bz2`) for tests.

The archives come from conda-package-handling, the library conda-build uses, so
every test exercises the same bytes a real client or uploader would produce.
Each package carries `info/index.json`, `info/about.json`, `info/paths.json`
(with correct sha256 and size per file, so rattler can install it),
`info/files`, an optional `info/run_exports.json` and a tiny payload.

For hostile-input tests, `build_raw_package` writes payload members as given (absolute
names, `..`, symlinks out of the package), and `build_zeros_bomb` / `build_many_members_conda`
make decompression and member-count bombs without holding them in memory.
"""

from __future__ import annotations

import bz2
import hashlib
import json
import tarfile
import tempfile
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import zstandard
from conda_package_handling import api as cph

FORMATS = (".conda", ".tar.bz2")


def build_package(
    dest_dir: Path,
    name: str,
    version: str = "1.0",
    build: str = "0",
    *,
    subdir: str = "noarch",
    fmt: str = ".conda",
    depends: Sequence[str] = (),
    constrains: Sequence[str] = (),
    build_number: int = 0,
    files: Mapping[str, bytes] | None = None,
    run_exports: dict | None = None,
    about: dict | None = None,
    index_overrides: dict | None = None,
    noarch: str | None = None,
    timestamp: int | None = None,
) -> Path:
    """Write `<dest_dir>/<name>-<version>-<build><fmt>` and return its path.

    `files` maps payload paths (relative, forward slashes) to contents; by
    default one small file under `share/<name>/` is installed. `noarch`
    defaults to "generic" for the noarch subdir. `index_overrides` is merged
    last into index.json (a value of None deletes the key), so tests can craft
    inconsistent metadata. `timestamp` is in milliseconds, as in index.json.
    """
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {FORMATS}, not {fmt!r}")
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    if noarch is None and subdir == "noarch":
        noarch = "generic"
    if files is None:
        files = {f"share/{name}/data.txt": f"{name} {version} {build}\n".encode()}

    index: dict = {
        "name": name,
        "version": version,
        "build": build,
        "build_number": build_number,
        "depends": list(depends),
        "license": "MIT",
        "subdir": subdir,
    }
    if constrains:
        index["constrains"] = list(constrains)
    if noarch:
        index["noarch"] = noarch
    if timestamp is not None:
        index["timestamp"] = timestamp
    for key, value in (index_overrides or {}).items():
        if value is None:
            index.pop(key, None)
        else:
            index[key] = value

    paths = [
        {
            "_path": path,
            "path_type": "hardlink",
            "sha256": hashlib.sha256(data).hexdigest(),
            "size_in_bytes": len(data),
        }
        for path, data in sorted(files.items())
    ]
    info = _info(index, about if about is not None else {"summary": f"test package {name}"}, paths, run_exports)

    filename = f"{name}-{version}-{build}{fmt}"
    with tempfile.TemporaryDirectory(prefix="gc-pkg-") as staging:
        root = Path(staging)
        members = {**info, **files}
        for rel, data in members.items():
            target = root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        out = dest_dir / filename
        out.unlink(missing_ok=True)
        cph.create(str(root), sorted(members), filename, out_folder=str(dest_dir))
    return out


def _info(index: dict, about: dict, paths: list[dict], run_exports: dict | None) -> dict[str, bytes]:
    info: dict[str, bytes] = {
        "info/index.json": _json(index),
        "info/about.json": _json(about),
        "info/paths.json": _json({"paths": paths, "paths_version": 1}),
        "info/files": "".join(f"{entry['_path']}\n" for entry in paths).encode(),
    }
    if run_exports is not None:
        info["info/run_exports.json"] = _json(run_exports)
    return info


# --- hostile packages: what no package builder makes, written member by member ----------------

Member = tuple[tarfile.TarInfo, bytes]


def file_member(name: str, data: bytes = b"x", *, pax_headers: Mapping[str, str] | None = None) -> Member:
    """A regular file; `pax_headers` go in a pax extended header before it."""
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o644
    info.pax_headers = dict(pax_headers or {})
    return info, data


def symlink_member(name: str, target: str) -> Member:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info, b""


def hardlink_member(name: str, target: str) -> Member:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.LNKTYPE, target
    return info, b""


def build_raw_package(
    dest_dir: Path,
    name: str,
    members: Sequence[Member],
    *,
    fmt: str = ".conda",
    paths: Sequence[str] | None = None,
    info_members: Sequence[Member] = (),
) -> Path:
    """`<dest_dir>/<name>-1.0-0<fmt>` (noarch) whose payload is exactly `members`: any name
    (absolute, `..`), symlinks and hard links anywhere. Its paths.json lists `paths` (default:
    the members' names); `info_members` are added to the info/ tarball of a .conda."""
    index = {"name": name, "version": "1.0", "build": "0", "build_number": 0, "depends": [], "license": "MIT",
             "subdir": "noarch", "noarch": "generic"}
    listed = [m.name for m, _ in members] if paths is None else list(paths)
    entries = [{"_path": p, "path_type": "hardlink", "sha256": hashlib.sha256(b"").hexdigest(), "size_in_bytes": 0}
               for p in listed]
    info = [file_member(k, v) for k, v in _info(index, {"summary": "hostile"}, entries, None).items()]
    return _write_archive(dest_dir / f"{name}-1.0-0{fmt}", [*info, *info_members], members)


def build_zeros_bomb(dest_dir: Path, name: str, zeros: int, *, file_size: int = 100 * 1024 * 1024) -> Path:
    """A valid-looking `.tar.bz2` whose payload is `zeros` zero bytes, in files of `file_size` (a few KB on disk).

    Written as concatenated bzip2 streams (which bzip2 readers decode as one), so the zeros
    are compressed once per 16 MiB and never held in memory.
    """
    sizes = [file_size] * (zeros // file_size) + ([zeros % file_size] if zeros % file_size else [])
    names = [f"share/zeros{i}" for i in range(len(sizes))]
    index = {"name": name, "version": "1.0", "build": "0", "build_number": 0, "depends": [], "subdir": "noarch"}
    paths = [{"_path": n, "path_type": "hardlink", "size_in_bytes": size} for n, size in zip(names, sizes, strict=True)]
    info = [file_member(k, v) for k, v in _info(index, {}, paths, None).items()]
    chunk = 16 * 1024 * 1024
    compressed_chunk = bz2.compress(bytes(chunk))
    path = dest_dir / f"{name}-1.0-0.tar.bz2"
    dest_dir.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as out:
        out.write(bz2.compress(_tar(info, end=False)))
        for member, size in zip(names, sizes, strict=True):
            header = tarfile.TarInfo(member)
            header.size = size
            out.write(bz2.compress(header.tobuf()))
            for _ in range(size // chunk):
                out.write(compressed_chunk)
            out.write(bz2.compress(bytes(size % chunk + (-size) % tarfile.BLOCKSIZE)))
        out.write(bz2.compress(bytes(2 * tarfile.BLOCKSIZE)))
    return path


def build_many_members_conda(dest_dir: Path, name: str, count: int, *, component: str = "pkg") -> Path:
    """A `.conda` whose `component` tarball ("pkg" or "info") holds `count` empty files
    (a few hundred KB for 200,000)."""
    template = tarfile.TarInfo(f"{'info' if component == 'info' else 'share'}/f0000000")
    template.mode = 0o644
    header = bytearray(template.tobuf(format=tarfile.USTAR_FORMAT))
    header[148:156] = b" " * 8
    digits_at = len(template.name) - 7
    base = sum(header) - sum(b"0000000")

    def headers() -> Iterator[bytes]:
        batch = bytearray()
        for i in range(count):
            digits = b"%07d" % i
            header[digits_at:digits_at + 7] = digits
            header[148:156] = b"%06o\0 " % (base + sum(digits))
            batch += header
            header[148:156] = b" " * 8
            if len(batch) >= 1 << 20:
                yield bytes(batch)
                batch.clear()
        yield bytes(batch) + bytes(2 * tarfile.BLOCKSIZE)

    index = {"name": name, "version": "1.0", "build": "0", "build_number": 0, "depends": [], "subdir": "noarch"}
    info = [file_member(k, v) for k, v in _info(index, {}, [], None).items()]
    compressor = zstandard.ZstdCompressor(level=10).compressobj()
    parts = headers() if component == "pkg" else iter([_tar(info, end=False), *headers()])
    bomb = b"".join(compressor.compress(part) for part in parts) + compressor.flush()
    path = dest_dir / f"{name}-1.0-0.conda"
    if component == "pkg":
        return _write_archive(path, info, [], pkg_zst=bomb)
    return _write_archive(path, [], [], info_zst=bomb)


def _tar(members: Iterable[Member], *, end: bool = True) -> bytes:
    """Members as a tar stream, headers exactly as given (tarfile.add would strip a leading '/')."""
    parts: list[bytes] = []
    for info, data in members:
        parts += [info.tobuf(format=tarfile.PAX_FORMAT), data, bytes(-len(data) % tarfile.BLOCKSIZE)]
    if end:
        parts.append(bytes(2 * tarfile.BLOCKSIZE))
    return b"".join(parts)


def _write_archive(path: Path, info: Sequence[Member], payload: Sequence[Member], *,
                   pkg_zst: bytes | None = None, info_zst: bytes | None = None) -> Path:
    """A .conda (ZIP of metadata.json and two zstd tarballs) or .tar.bz2, from members as given."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name.endswith(".tar.bz2"):
        path.write_bytes(bz2.compress(_tar([*info, *payload])))
        return path
    stem = path.name.removesuffix(".conda")
    zstd = zstandard.ZstdCompressor()
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("metadata.json", b'{"conda_pkg_format_version": 2}')
        zf.writestr(f"info-{stem}.tar.zst", info_zst if info_zst is not None else zstd.compress(_tar(info)))
        zf.writestr(f"pkg-{stem}.tar.zst", pkg_zst if pkg_zst is not None else zstd.compress(_tar(payload)))
    return path


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _json(data: object) -> bytes:
    return json.dumps(data, indent=2, sort_keys=True).encode()
