"""Published index files: repodata.json byte equality, compression, current_repodata,
run_exports.json and channeldata.json."""

from __future__ import annotations

import bz2
import json
import random
from pathlib import Path

import pytest
import rattler
import zstandard

from graphconda.conda.records import dumps_record, is_v3
from graphconda.conda.repodata import (
    ChannelPackage,
    RecordEntry,
    build_channeldata,
    build_current_repodata,
    build_repodata,
    build_run_exports,
    compress_bz2,
    compress_zst,
    empty_repodata,
    version_key,
)


def reference(doc: dict) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def rec(name: str, version: str = "1.0", build: str = "0", **extra: object) -> dict:
    return {
        "name": name,
        "version": version,
        "build": build,
        "build_number": 0,
        "depends": [],
        "md5": "0" * 32,
        "sha256": "1" * 64,
        "size": 10,
        "subdir": "noarch",
        **extra,
    }


def entries_of(records: dict[str, dict]) -> list[RecordEntry]:
    return [RecordEntry(fn, dumps_record(r), is_v3(r)) for fn, r in records.items()]


MIXED = {
    "zeta-1.0-0.tar.bz2": rec("zeta", summary="ünïcödé ✓ 😀", license="MIT"),
    "alpha-2.0-h1_0.conda": rec("alpha", "2.0", "h1_0", depends=["python>=3.8", "zeta  1.*"]),
    "alpha-2.0-h1_0.tar.bz2": rec("alpha", "2.0", "h1_0", timestamp=1700000000000),
    "ctl-1.0-0.conda": rec("ctl", description='tab\there "quoted" back\\slash \u2028 \x00 \x1f'),
    "Ωmega-1.0-0.conda": rec("omega", extra={"ключ": "значение", "b": [1.5, None, True]}),
    "float-1.0-0.conda": rec("float", score=0.1, big=10**20, neg=-3),
}
V3 = {
    "cond-1.0-0.conda": rec("cond", depends=['foo[when="__unix"]']),
    "rev-3.0-0.tar.bz2": rec("rev", "3.0", repodata_revision=3),
    "flagged-1.0-0.conda": rec("flagged", flags=["gpu"], summary="v3 ✓"),
}


def test_empty_repodata_is_exact() -> None:
    assert empty_repodata("noarch") == (
        b'{"info":{"subdir":"noarch"},"packages":{},"packages.conda":{},"removed":[],"repodata_version":1}'
    )


def test_build_repodata_equals_json_dumps() -> None:
    records = dict(random.Random(4).sample(list(MIXED.items()), len(MIXED)))
    removed = ["old-1.0-0.tar.bz2", "gone-0.1-0.conda", "old-1.0-0.tar.bz2"]
    built = build_repodata("linux-64", entries_of(records), removed)
    doc = {
        "info": {"subdir": "linux-64"},
        "packages": {fn: r for fn, r in records.items() if fn.endswith(".tar.bz2")},
        "packages.conda": {fn: r for fn, r in records.items() if fn.endswith(".conda")},
        "removed": sorted(set(removed)),
        "repodata_version": 1,
    }
    assert built == reference(doc)
    assert json.loads(built) == doc
    assert b"\r" not in built


def test_build_repodata_with_v3_equals_json_dumps() -> None:
    records = {**MIXED, **V3}
    built = build_repodata("noarch", entries_of(records))
    doc = {
        "info": {"subdir": "noarch", "repodata_revisions": {"v3": {"n_packages": 3}}},
        "packages": {fn: r for fn, r in MIXED.items() if fn.endswith(".tar.bz2")},
        "packages.conda": {fn: r for fn, r in MIXED.items() if fn.endswith(".conda")},
        "removed": [],
        "repodata_version": 1,
        # CEP 48: keyed by extension without the dot, then filename without extension.
        "v3": {
            "conda": {"cond-1.0-0": V3["cond-1.0-0.conda"], "flagged-1.0-0": V3["flagged-1.0-0.conda"]},
            "tar.bz2": {"rev-3.0-0": V3["rev-3.0-0.tar.bz2"]},
        },
    }
    assert built == reference(doc)


def test_v3_repodata_is_read_by_rattler(tmp_path: Path) -> None:
    path = tmp_path / "repodata.json"
    path.write_bytes(build_repodata("noarch", entries_of({**MIXED, **V3})))
    repodata = rattler.RepoData.from_path(path)
    assert repodata.repodata_revisions == {"v3": {"n_packages": 3}}
    names = sorted(r.file_name for r in repodata.into_repo_data(rattler.Channel("test")))
    assert names == sorted([*MIXED, *V3])


def test_build_repodata_base_url_is_version_2() -> None:
    built = build_repodata("noarch", entries_of(MIXED), base_url="https://files.example/ch/noarch/")
    doc = json.loads(built)
    assert doc["repodata_version"] == 2
    assert doc["info"] == {"base_url": "https://files.example/ch/noarch/", "subdir": "noarch"}
    assert built == reference(doc)
    with pytest.raises(ValueError, match="end in '/'"):
        build_repodata("noarch", (), base_url="https://files.example/ch/noarch")


def test_build_repodata_duplicate_keeps_last_and_rejects_foreign_names() -> None:
    first, second = rec("a", summary="first"), rec("a", summary="second")
    built = build_repodata(
        "noarch",
        [("a-1.0-0.conda", dumps_record(first), False)] * 2 + [RecordEntry("a-1.0-0.conda", dumps_record(second))],
    )
    assert json.loads(built)["packages.conda"] == {"a-1.0-0.conda": second}
    with pytest.raises(ValueError, match="not a conda package filename"):
        build_repodata("noarch", [("a-1.0-0.zip", "{}", False)])


def test_build_repodata_of_many_records_is_what_json_makes() -> None:
    """Splicing 20,000 pre-serialised records gives the document json.dumps makes of them (their
    speed against that re-encoding is measured by bench/publish.py, not here)."""
    records = {
        f"pkg{i % 500}-1.{i}-h{i}_0.conda": rec(
            f"pkg{i % 500}", f"1.{i}", f"h{i}_0", depends=["python >=3.8", "numpy >=1.2,<2"], timestamp=i
        )
        for i in range(20_000)
    }
    entries = entries_of(records)
    doc = {
        "info": {"subdir": "noarch"},
        "packages": {},
        "packages.conda": records,
        "removed": [],
        "repodata_version": 1,
    }
    assert build_repodata("noarch", entries) == reference(doc)


# ---------------------------------------------------------------- compression


@pytest.mark.parametrize("size", [0, 100, 3 * 1024 * 1024])
def test_compress_zst_has_content_size(size: int) -> None:
    data = random.Random(size).randbytes(size // 2) + b"a" * (size - size // 2)
    compressed = compress_zst(data)
    assert zstandard.get_frame_parameters(compressed).content_size == len(data)
    assert zstandard.ZstdDecompressor().decompress(compressed) == data
    assert compress_zst(data) == compressed  # deterministic


def test_compress_bz2_round_trips() -> None:
    data = build_repodata("noarch", entries_of(MIXED))
    assert bz2.decompress(compress_bz2(data)) == data


# ---------------------------------------------------------------- run_exports.json


def test_build_run_exports_follows_cep_12() -> None:
    records = {
        "a-1.0-0.conda": rec("a", run_exports={"weak": ["a >=1.0"]}),
        "a-1.0-0.tar.bz2": rec("a", run_exports={"strong": ["a"]}),
        "b-1.0-0.conda": rec("b"),
        "cond-1.0-0.conda": rec("cond", depends=['foo[when="__unix"]'], run_exports={"noarch": ["cond"]}),
    }
    pairs = [(fn, dumps_record(r)) for fn, r in records.items()]
    built = build_run_exports("linux-64", pairs)
    assert json.loads(built) == {
        "info": {"subdir": "linux-64", "version": 1},
        "packages": {"a-1.0-0.tar.bz2": {"run_exports": {"strong": ["a"]}}},
        "packages.conda": {
            "a-1.0-0.conda": {"run_exports": {"weak": ["a >=1.0"]}},
            "b-1.0-0.conda": {"run_exports": {}},
            "cond-1.0-0.conda": {"run_exports": {"noarch": ["cond"]}},
        },
    }
    assert build_run_exports("linux-64", records.items()) == built  # dicts work too
    assert built == reference(json.loads(built))


# ---------------------------------------------------------------- current_repodata


def current(records: dict[str, dict], **kwargs: object) -> set[str]:
    built = build_current_repodata("noarch", entries_of(records), **kwargs)  # type: ignore[arg-type]
    doc = json.loads(built)
    assert built == reference(doc)
    return {*doc["packages"], *doc["packages.conda"], *(f"{k}.conda" for k in doc.get("v3", {}).get("conda", {}))}


def test_current_repodata_keeps_latest_version_all_builds() -> None:
    records = {
        "a-1.9-0.conda": rec("a", "1.9"),
        "a-1.10-0.conda": rec("a", "1.10"),
        "a-1.10-1.conda": rec("a", "1.10", "1", build_number=1),
        "a-1.10-1.tar.bz2": rec("a", "1.10", "1", build_number=1),
        "a-1.10.0rc1-0.conda": rec("a", "1.10.0rc1"),
        "b-0.1-0.conda": rec("b", "0.1"),
    }
    assert current(records) == {"a-1.10-0.conda", "a-1.10-1.conda", "a-1.10-1.tar.bz2", "b-0.1-0.conda"}


def test_current_repodata_backfills_unsatisfiable_dependencies() -> None:
    records = {
        "a-1.0-0.conda": rec("a", "1.0"),
        "a-1.5-0.conda": rec("a", "1.5"),
        "a-2.0-0.conda": rec("a", "2.0"),
        "b-1.0-0.conda": rec("b", depends=["a >=1,<2", "python >=3.8", "not a spec [", "c"]),
        "c-junk-0.conda": rec("c", "not-a-version"),
    }
    assert current(records) == {"a-2.0-0.conda", "a-1.5-0.conda", "b-1.0-0.conda", "c-junk-0.conda"}


def test_current_repodata_pins_and_features() -> None:
    records = {
        "python-3.11.9-0.conda": rec("python", "3.11.9"),
        "python-3.11.10-0.conda": rec("python", "3.11.10"),
        "python-3.12.1-0.conda": rec("python", "3.12.1"),
        "blas-2.0-mkl.conda": rec("blas", "2.0", "mkl", track_features="blas_mkl"),
        "blas-1.0-openblas.conda": rec("blas", "1.0", "openblas"),
    }
    assert current(records, pins={"python": ["3.11"]}) == {
        "python-3.12.1-0.conda",
        "python-3.11.10-0.conda",
        "blas-2.0-mkl.conda",
        "blas-1.0-openblas.conda",
    }


# ---------------------------------------------------------------- channeldata.json


def test_build_channeldata_follows_cep_38() -> None:
    packages = [
        ChannelPackage(
            "foo",
            "1.9",
            "linux-64",
            timestamp=1700000000000,
            about={"summary": "old summary", "home": "https://foo.example", "dev_url": "https://git.example/foo"},
            license="MIT",
            run_exports={"weak": ["foo >=1.9"]},
        ),
        ChannelPackage(
            "foo",
            "1.10",
            "noarch",
            timestamp=1600000000,  # seconds, as very old packages wrote it
            about={"summary": "new summary ✓", "license": "BSD-3-Clause"},
            run_exports={"weak": ["foo >=1.10"]},
            traits={"activate.d": True},
        ),
        ChannelPackage.from_record(rec("bar", "0.1", license="Apache-2.0", subdir="osx-arm64")),
    ]
    built = build_channeldata("mychannel", packages, subdirs=["noarch", "win-64"])
    doc = json.loads(built)
    assert built == reference(doc)
    falses = dict.fromkeys(
        ("binary_prefix", "deactivate.d", "post_link", "pre_link", "pre_unlink", "text_prefix"), False
    )
    assert doc == {
        "channeldata_version": 1,
        "subdirs": ["linux-64", "noarch", "osx-arm64", "win-64"],
        "packages": {
            "foo": {
                **falses,
                "activate.d": True,
                "dev_url": "https://git.example/foo",
                "home": "https://foo.example",
                "license": "BSD-3-Clause",
                "run_exports": {"1.9": {"weak": ["foo >=1.9"]}, "1.10": {"weak": ["foo >=1.10"]}},
                "subdirs": ["linux-64", "noarch"],
                "summary": "new summary ✓",
                "timestamp": 1700000000,
                "version": "1.10",
            },
            "bar": {
                **falses,
                "activate.d": False,
                "license": "Apache-2.0",
                "run_exports": {},
                "subdirs": ["osx-arm64"],
                "timestamp": 0,
                "version": "0.1",
            },
        },
    }


def test_version_key_orders_like_conda() -> None:
    versions = ["1.10", "1.9", "1.10.0rc1", "1!0.1", "not a version", "2024a", "1.0.post1"]
    assert sorted(versions, key=version_key) == [
        "not a version",
        "1.0.post1",
        "1.9",
        "1.10.0rc1",
        "1.10",
        "2024a",
        "1!0.1",
    ]
