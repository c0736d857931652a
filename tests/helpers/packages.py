"""Builds real, installable conda packages (`.conda` and `.tar.bz2`) for tests.

The archives come from conda-package-handling, the library conda-build uses, so
every test exercises the same bytes a real client or uploader would produce.
Each package carries `info/index.json`, `info/about.json`, `info/paths.json`
(with correct sha256 and size per file, so rattler can install it),
`info/files`, an optional `info/run_exports.json` and a tiny payload.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

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
    info: dict[str, bytes] = {
        "info/index.json": _json(index),
        "info/about.json": _json(about if about is not None else {"summary": f"test package {name}"}),
        "info/paths.json": _json({"paths": paths, "paths_version": 1}),
        "info/files": "".join(f"{path}\n" for path in sorted(files)).encode(),
    }
    if run_exports is not None:
        info["info/run_exports.json"] = _json(run_exports)

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


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _json(data: object) -> bytes:
    return json.dumps(data, indent=2, sort_keys=True).encode()
