"""Records: make_record, dumps_record, is_v3, and agreement with rattler's own indexer."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

import pytest
import rattler
from rattler.index import index_fs

from graphconda.conda.archive import PackageMetadata, read_package
from graphconda.conda.records import dumps_record, is_v3, make_record
from tests.helpers.packages import build_package, sha256_of

MD5 = "0123456789abcdef0123456789abcdef"
SHA256 = "ab" * 32


def meta(index: dict, run_exports: dict | None = None) -> PackageMetadata:
    return PackageMetadata("x-1-0.conda", index, {}, run_exports, {})


def test_make_record_adds_checksums_and_drops_locations_and_server_fields() -> None:
    index = {
        "name": "x",
        "version": "1",
        "build": "0",
        "build_number": 0,
        "depends": ["python>=3.8", "numpy  1.2.*"],
        "fn": "x-1-0.conda",
        "url": "https://elsewhere/x-1-0.conda",
        "channel": "https://elsewhere",
        "md5": "f" * 32,
        "sha256": "0" * 64,
        "size": 1,
        "legacy_bz2_md5": "zz",
        "legacy_bz2_size": -1,
        "indexed_timestamp": 1,
        "attestations_sha256": "x",
        "run_exports": {"weak": "not from the run_exports.json file"},
        "subdir": "noarch",
        "custom": {"nested": ["kept"]},
    }
    record = make_record(meta(index), md5=MD5.upper(), sha256=SHA256, size=123)
    assert record == {
        "name": "x",
        "version": "1",
        "build": "0",
        "build_number": 0,
        "depends": ["python>=3.8", "numpy  1.2.*"],  # byte for byte
        "subdir": "noarch",
        "custom": {"nested": ["kept"]},
        "md5": MD5,
        "sha256": SHA256,
        "size": 123,
    }
    assert "fn" in index  # the metadata itself is not mutated


def test_make_record_run_exports() -> None:
    index = {"name": "x", "version": "1", "build": "0", "build_number": 0, "subdir": "noarch"}
    assert "run_exports" not in make_record(meta(index, None), md5=MD5, sha256=SHA256, size=1)
    assert "run_exports" not in make_record(meta(index, {}), md5=MD5, sha256=SHA256, size=1)
    record = make_record(meta(index, {"weak": ["x >=1"]}), md5=MD5, sha256=SHA256, size=1)
    assert record["run_exports"] == {"weak": ["x >=1"]}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"md5": "xyz", "sha256": SHA256, "size": 1},
        {"md5": MD5, "sha256": SHA256[:-1], "size": 1},
        {"md5": MD5, "sha256": SHA256, "size": -1},
        {"md5": MD5, "sha256": SHA256, "size": True},
    ],
)
def test_make_record_rejects_bad_checksums(kwargs: dict) -> None:
    index = {"name": "x", "version": "1", "build": "0", "build_number": 0, "subdir": "noarch"}
    with pytest.raises(ValueError):
        make_record(meta(index), **kwargs)


def test_dumps_record_is_canonical() -> None:
    record = {"z": 1, "a": ["b", "a"], "summary": "héllo ✓", "nested": {"y": 1, "x": 2}}
    text = dumps_record(record)
    assert text == '{"a":["b","a"],"nested":{"x":2,"y":1},"summary":"héllo ✓","z":1}'
    assert dumps_record(json.loads(text)) == text
    with pytest.raises(ValueError):
        dumps_record({"x": float("nan")})


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"depends": ["python >=3.8", "numpy 1.2.*"]}, False),
        ({"depends": ["foo[version='>=1']"]}, False),
        ({"extra_depends": {"test": ["pytest"]}}, False),
        ({"repodata_revision": 3}, True),
        ({"repodata_revision": 1}, False),
        ({"schema_version": 3}, True),
        ({"schema_version": "3"}, False),
        ({"repodata_revision": True}, False),
        ({"flags": ["gpu"]}, True),
        ({"depends": ['foo[when="__unix"]']}, True),
        ({"constrains": ["bar[extras=[test]]"]}, True),
        ({"depends": ["baz[flags=[gpu]]"]}, True),
        ({"extra_depends": {"test": ['pytest[when="python >=3.10"]']}}, True),
    ],
)
def test_is_v3(record: dict, expected: bool) -> None:
    assert is_v3(record) is expected


def _index_with_rattler(channel: Path) -> dict[str, dict]:
    asyncio.run(index_fs(channel, write_zst=False, write_shards=False, force=True))
    records: dict[str, dict] = {}
    for repodata_path in channel.glob("*/repodata.json"):
        repodata = json.loads(repodata_path.read_text())
        for key in ("packages", "packages.conda"):
            records.update(repodata.get(key, {}))
    return records


def _spec(spec: str) -> str:
    return spec.replace(" ", "")


def test_records_agree_with_rattler_index(tmp_path: Path) -> None:
    """Our record for a file equals what rattler's indexer writes for it, with documented exceptions.

    - rattler adds `indexed_timestamp` (CEP 47, the time it indexed); we do not.
    - rattler rewrites match specs ("python>=3.8" -> "python >=3.8"); we keep the
      declared string, so `depends`/`constrains` are compared with spaces removed.
    Every other key, including md5/sha256/size/run_exports/timestamp, is equal.
    """
    channel = tmp_path / "channel"
    (channel / "noarch").mkdir(parents=True)
    built = [
        build_package(
            channel / "noarch",
            "foo",
            "1.0",
            "pyh_0",
            depends=["python>=3.8", "numpy  >=1.2,<2", "bar 1.2.*"],
            constrains=["scipy<2"],
            run_exports={"weak": ["foo >=1.0"], "strong_constrains": ["foo <2"]},
            timestamp=1700000000000,
        ),
        build_package(channel / "noarch", "foo", "1.1", "pyh_0", fmt=".tar.bz2", depends=["python"]),
        build_package(
            channel / "linux-64",
            "libbar",
            "2.0.1",
            "h1234_3",
            subdir="linux-64",
            build_number=3,
            depends=["libgcc-ng >=12"],
            index_overrides={"arch": "x86_64", "platform": "linux", "license_family": "MIT"},
        ),
        build_package(channel / "linux-64", "libbar", "2.0.1", "h1234_3", subdir="linux-64", fmt=".tar.bz2"),
    ]
    ours = {}
    for path in built:
        metadata = read_package(path, path.name)
        md5 = hashlib.md5(path.read_bytes()).hexdigest()
        ours[path.name] = make_record(metadata, md5=md5, sha256=sha256_of(path), size=path.stat().st_size)
    theirs = _index_with_rattler(channel)

    assert set(theirs) == set(ours)
    for filename, record in ours.items():
        other = dict(theirs[filename])
        assert isinstance(other.pop("indexed_timestamp"), int)
        assert set(other) == set(record), filename
        for key, value in record.items():
            if key in ("depends", "constrains"):
                assert [_spec(s) for s in other[key]] == [_spec(s) for s in value], (filename, key)
            else:
                assert other[key] == value, (filename, key)
    # The declared form survives on our side.
    assert ours["foo-1.0-pyh_0.conda"]["depends"][0] == "python>=3.8"
    assert theirs["foo-1.0-pyh_0.conda"]["depends"][0] == "python >=3.8"


def test_built_packages_solve_and_install_with_rattler(tmp_path: Path) -> None:
    """The test package builder makes packages a real client can solve and install."""
    channel = tmp_path / "channel"
    build_package(channel / "noarch", "app", "1.0", "0", depends=["lib >=2"])
    build_package(channel / "noarch", "lib", "2.0", "0", fmt=".tar.bz2", files={"share/lib/x.txt": b"hello\n"})
    build_package(channel / "linux-64", "native", "1.0", "h0_0", subdir="linux-64")
    prefix = tmp_path / "prefix"

    async def solve_and_install() -> list[str]:
        await index_fs(channel, write_zst=False, write_shards=False)
        records = await rattler.solve(
            [rattler.Channel(channel.as_uri())], ["app", "native"], platforms=["linux-64", "noarch"]
        )
        await rattler.install(records, target_prefix=prefix, cache_dir=tmp_path / "cache", show_progress=False)
        return sorted(r.file_name for r in records)

    assert asyncio.run(solve_and_install()) == ["app-1.0-0.conda", "lib-2.0-0.tar.bz2", "native-1.0-h0_0.conda"]
    assert (prefix / "share/lib/x.txt").read_bytes() == b"hello\n"
    assert (prefix / "share/app/data.txt").read_text() == "app 1.0 0\n"
    assert (prefix / "conda-meta/native-1.0-h0_0.json").is_file()
