"""Sharded repodata (CEP 16): shard and index bytes, determinism, and a real rattler client reading them."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import http.server
import json
import random
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import msgpack
import pytest
import rattler
import zstandard
from rattler.index import index_fs

from graphconda.conda.archive import read_package
from graphconda.conda.records import dumps_record, is_v3, make_record
from graphconda.conda.shards import (
    PackedIndex,
    _packed_map,
    build_shard,
    build_shard_index,
    build_shard_packed,
    pack_record,
    rfc3339,
    shard_digest,
    shard_filename,
)
from tests.helpers.packages import build_package, sha256_of

CREATED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def rec(name: str, version: str = "1.0", build: str = "0", **extra: object) -> dict:
    return {
        "name": name,
        "version": version,
        "build": build,
        "build_number": 0,
        "depends": ["python >=3.8", "zlib"],
        "md5": hashlib.md5(f"{name}{version}{build}".encode()).hexdigest(),
        "sha256": hashlib.sha256(f"{name}{version}{build}".encode()).hexdigest(),
        "size": 1234,
        "subdir": "noarch",
        "run_exports": {"weak": [f"{name} >={version}"], "strong": []},
        **extra,
    }


def decode(data: bytes) -> dict:
    params = zstandard.get_frame_parameters(data)
    assert params.content_size != zstandard.CONTENTSIZE_UNKNOWN
    raw = zstandard.ZstdDecompressor().decompress(data)
    assert len(raw) == params.content_size
    return msgpack.unpackb(raw, raw=False)


def shuffled(value: object, rng: random.Random) -> object:
    """The same data with every dict's insertion order shuffled."""
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {k: shuffled(v, rng) for k, v in items}
    if isinstance(value, list):
        return [shuffled(v, rng) for v in value]
    return value


RECORDS = {
    "foo-1.0-0.tar.bz2": rec("foo", summary="ünïcödé ✓"),
    "foo-1.0-0.conda": rec("foo", timestamp=1700000000000),
    "foo-2.0-h1_0.conda": rec("foo", "2.0", "h1_0", legacy_bz2_md5="ab" * 16, score=0.5),
}


def test_shard_layout_and_binary_checksums() -> None:
    shard = decode(build_shard(RECORDS, removed=["foo-0.9-0.conda"]))
    assert set(shard) == {"packages", "packages.conda", "removed"}
    assert set(shard["packages"]) == {"foo-1.0-0.tar.bz2"}
    assert set(shard["packages.conda"]) == {"foo-1.0-0.conda", "foo-2.0-h1_0.conda"}
    assert shard["removed"] == ["foo-0.9-0.conda"]
    for group in ("packages", "packages.conda"):
        for fn, record in shard[group].items():
            original = RECORDS[fn]
            assert record["md5"] == bytes.fromhex(original["md5"]) and len(record["md5"]) == 16
            assert record["sha256"] == bytes.fromhex(original["sha256"]) and len(record["sha256"]) == 32
            rest = {k: v for k, v in record.items() if k not in ("md5", "sha256", "legacy_bz2_md5")}
            assert rest == {k: v for k, v in original.items() if k not in ("md5", "sha256", "legacy_bz2_md5")}
    assert shard["packages.conda"]["foo-2.0-h1_0.conda"]["legacy_bz2_md5"] == b"\xab" * 16
    assert RECORDS["foo-1.0-0.conda"]["md5"].__class__ is str  # input untouched


def test_shard_maps_are_sorted_in_the_bytes() -> None:
    raw = zstandard.ZstdDecompressor().decompress(build_shard(RECORDS))
    unpacker = msgpack.Unpacker(raw=False, object_pairs_hook=list)
    unpacker.feed(raw)
    top = next(unpacker)

    def check(pairs: object) -> None:
        if isinstance(pairs, list) and pairs and all(isinstance(p, tuple | list) and len(p) == 2 for p in pairs):
            keys = [k for k, _ in pairs]
            if all(isinstance(k, str) for k in keys):
                assert keys == sorted(keys)
            for _, value in pairs:
                check(value)

    check(top)
    assert [k for k, _ in top] == ["packages", "packages.conda", "removed"]


def test_shard_is_deterministic() -> None:
    expected = build_shard(RECORDS, removed=["b.conda", "a.conda"])
    rng = random.Random(7)
    for _ in range(5):
        records = shuffled(RECORDS, rng)
        assert build_shard(records, removed=["a.conda", "b.conda"]) == expected  # type: ignore[arg-type]


def test_v3_records_go_under_v3() -> None:
    records = {
        **RECORDS,
        "foo-3.0-0.conda": rec("foo", "3.0", depends=['bar[when="__unix"]']),
        "foo-3.0-0.tar.bz2": rec("foo", "3.0", repodata_revision=3),
    }
    shard = decode(build_shard(records))
    assert set(shard["v3"]) == {"conda", "tar.bz2"}
    assert set(shard["v3"]["conda"]) == {"foo-3.0-0"}
    assert set(shard["v3"]["tar.bz2"]) == {"foo-3.0-0"}
    assert shard["v3"]["conda"]["foo-3.0-0"]["sha256"] == bytes.fromhex(records["foo-3.0-0.conda"]["sha256"])
    assert "foo-3.0-0.conda" not in shard["packages.conda"]


def _prepacked(records: dict, removed: list[str]) -> bytes:
    """The shard assembled from records packed one by one from their stored JSON, as publishing does."""
    rows = [(fn, pack_record(fn, dumps_record(record)), is_v3(record)) for fn, record in records.items()]
    random.Random(3).shuffle(rows)
    return build_shard_packed(rows, removed)


@pytest.mark.parametrize("count", [0, 1, 15, 16, 40, 300])
def test_prepacked_records_give_the_same_shard_bytes(count: int) -> None:
    rng = random.Random(count)
    records: dict = {}
    for i in range(count):
        extra: dict = {"timestamp": 1_700_000_000_000 + i, "summary": "ünïcödé ✓" * (i % 3), "score": i / 7,
                       "nested": {"z": [1, {"b": None, "a": True}], "a": -i}, "noarch": "python" if i % 2 else None}
        if i % 5 == 0:
            extra["depends"] = ['bar[when="__unix"]']  # v3
        if i % 7 == 0:
            extra["legacy_bz2_md5"] = "cd" * 16
        ext = ".conda" if rng.random() < 0.6 else ".tar.bz2"
        records[f"foo-{i}.{rng.randrange(100)}-h{i:x}_0{ext}"] = shuffled(rec("foo", f"{i}", f"h{i:x}_0", **extra), rng)
    removed = [f"foo-0.{i}-0.conda" for i in range(count % 4)] * 2
    from_json = {fn: json.loads(dumps_record(record)) for fn, record in records.items()}
    assert _prepacked(records, removed) == build_shard(from_json, removed, level=16)
    if count == 40:
        assert "v3" in decode(_prepacked(records, removed))


@pytest.mark.parametrize("size", [0, 15, 16, 65_535, 65_536])
def test_prepacked_map_headers_are_msgpacks_own(size: int) -> None:
    entries = {f"k{i:06d}": b"\xc0" for i in range(size)}  # nil values
    assert b"".join(_packed_map(entries)) == msgpack.packb(dict.fromkeys(sorted(entries)), use_bin_type=True)


def test_prepacked_shard_of_real_packages(tmp_path: Path) -> None:
    """Records made from real archives of both formats, the way ingest stores them."""
    records = {}
    for fmt in (".conda", ".tar.bz2"):
        path = build_package(tmp_path, "real", "1.0", "0", fmt=fmt, depends=["dep >=2.0"])
        meta = read_package(path, path.name)
        records[path.name] = make_record(meta, md5="00" * 16, sha256=sha256_of(path), size=path.stat().st_size)
    assert _prepacked(records, []) == build_shard({fn: json.loads(dumps_record(r)) for fn, r in records.items()})


def test_bad_hex_and_filenames_are_refused() -> None:
    with pytest.raises(ValueError, match="sha256 is not hexadecimal"):
        build_shard({"a-1-0.conda": rec("a", sha256="zz")})
    with pytest.raises(ValueError, match="not a conda package filename"):
        build_shard({"a-1-0.whl": rec("a")})


def test_digest_and_filename() -> None:
    data = build_shard(RECORDS)
    digest = shard_digest(data)
    assert digest == hashlib.sha256(data).digest() and len(digest) == 32
    assert shard_filename(digest) == hashlib.sha256(data).hexdigest() + ".msgpack.zst"
    with pytest.raises(ValueError):
        shard_filename(digest[:16])


def test_shard_index_layout() -> None:
    shards = {"foo": shard_digest(build_shard(RECORDS)), "bar": b"\x01" * 32}
    data = build_shard_index("linux-64", shards, CREATED)
    index = decode(data)
    assert index == {
        "version": 1,
        "info": {
            "subdir": "linux-64",
            "base_url": "",
            "shards_base_url": "./shards/",
            "created_at": "2026-01-02T03:04:05Z",
        },
        "shards": shards,
    }
    assert isinstance(index["shards"]["foo"], bytes)
    assert list(index["shards"]) == ["bar", "foo"]  # sorted in the bytes
    assert build_shard_index("linux-64", dict(reversed(shards.items())), CREATED) == data


def test_packed_index_changes_give_the_bytes_of_a_full_repack() -> None:
    rng = random.Random(5)
    current = {f"name-{i}": hashlib.sha256(bytes([i % 256, i // 256])).digest() for i in range(300)}
    packed = PackedIndex(current)
    committed = packed.copy()
    for step in range(200):
        name = f"name-{rng.randrange(400)}"
        if rng.random() < 0.3:
            current.pop(name, None)
            packed.remove(name)
        else:
            current[name] = hashlib.sha256(f"{step}".encode()).digest()
            packed.set(name, current[name])
        assert len(packed) == len(current)
    expected = {"version": 1, "info": {"subdir": "linux-64", "base_url": "", "shards_base_url": "./shards/",
                                        "created_at": "2026-01-02T03:04:05Z"}, "shards": current}
    raw = zstandard.ZstdDecompressor().decompress(packed.build("linux-64", CREATED, level=1))
    assert raw == msgpack.packb({k: expected[k] for k in sorted(expected)} | {
        "info": dict(sorted(expected["info"].items())), "shards": dict(sorted(current.items()))})
    assert decode(committed.build("linux-64", CREATED))["shards"] == {
        f"name-{i}": hashlib.sha256(bytes([i % 256, i // 256])).digest() for i in range(300)}  # copy untouched
    with pytest.raises(ValueError, match="32 raw bytes"):
        packed.set("x", b"short")


def test_shard_index_validation() -> None:
    with pytest.raises(ValueError, match="32 raw bytes"):
        build_shard_index("noarch", {"foo": b"\x00" * 31}, CREATED)
    with pytest.raises(ValueError, match="32 raw bytes"):
        build_shard_index("noarch", {"foo": "00" * 32}, CREATED)  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="timezone-aware"):
        build_shard_index("noarch", {}, datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="end in '/'"):
        build_shard_index("noarch", {}, CREATED, base_url="https://x/noarch")


def test_rfc3339() -> None:
    assert rfc3339(CREATED) == "2026-01-02T03:04:05Z"
    assert rfc3339(CREATED.replace(microsecond=120)) == "2026-01-02T03:04:05.000120Z"
    plus_two = timezone(timedelta(hours=2))
    assert rfc3339(datetime(2026, 1, 2, 5, 4, 5, tzinfo=plus_two)) == "2026-01-02T03:04:05Z"


def test_shards_match_rattler_index(tmp_path: Path) -> None:
    """Our shard decodes to what rattler's indexer puts in its shard for the same files,
    except `indexed_timestamp` (rattler only) and rattler's rewritten match specs."""
    channel = tmp_path / "channel"
    paths = [
        build_package(channel / "noarch", "foo", "1.0", "0", depends=["python>=3.8"], run_exports={"weak": ["foo"]}),
        build_package(channel / "noarch", "foo", "1.1", "0", fmt=".tar.bz2"),
    ]
    records = {}
    for path in paths:
        md5 = hashlib.md5(path.read_bytes()).hexdigest()
        records[path.name] = make_record(
            read_package(path, path.name), md5=md5, sha256=sha256_of(path), size=path.stat().st_size
        )
    asyncio.run(index_fs(channel, write_zst=False, write_shards=True, force=True))
    their_index = decode_any(channel / "noarch" / "repodata_shards.msgpack.zst")
    assert {"subdir", "base_url", "shards_base_url", "created_at"} <= set(their_index["info"])
    theirs = decode_any(channel / "noarch" / "shards" / shard_filename(their_index["shards"]["foo"]))
    ours = decode(build_shard(records))
    for group in ("packages", "packages.conda"):
        assert set(ours[group]) == set(theirs[group])
        for fn, record in ours[group].items():
            other = dict(theirs[group][fn])
            other.pop("indexed_timestamp")
            other["depends"] = [s.replace(" ", "") for s in other["depends"]]
            assert other == {**record, "depends": [s.replace(" ", "") for s in record["depends"]]}


def decode_any(path: Path) -> dict:
    """rattler writes frames without a content size; stream-decompress those."""
    raw = zstandard.ZstdDecompressor().decompressobj().decompress(path.read_bytes())
    return msgpack.unpackb(raw, raw=False)


@pytest.fixture
def static_server(tmp_path: Path) -> Iterator[tuple[str, Path, list[str]]]:
    """A plain static HTTP server on loopback that records request paths."""
    root = tmp_path / "www"
    root.mkdir()
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            requests.append(f"{self.command} {self.path}")

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", root, requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_rattler_gateway_reads_our_shards(static_server: tuple[str, Path, list[str]], tmp_path: Path) -> None:
    """rattler's Gateway resolves a dependency tree from our index and shards alone
    (no repodata.json is served), including a v3 record."""
    url, root, requests = static_server
    subdir = root / "noarch"
    (subdir / "shards").mkdir(parents=True)
    by_name = {
        "app": {"app-1.0-0.conda": rec("app", depends=["lib >=1", "extra"])},
        "lib": {"lib-1.5-0.conda": rec("lib", "1.5", depends=[]), "lib-0.5-0.tar.bz2": rec("lib", "0.5", depends=[])},
        "extra": {"extra-2.0-0.conda": rec("extra", "2.0", depends=['lib[when="__unix"]'])},
        "unrelated": {"unrelated-1.0-0.conda": rec("unrelated")},
    }
    digests = {}
    for name, records in by_name.items():
        data = build_shard(records)
        digests[name] = shard_digest(data)
        (subdir / "shards" / shard_filename(digests[name])).write_bytes(data)
    (subdir / "repodata_shards.msgpack.zst").write_bytes(build_shard_index("noarch", digests, CREATED))

    async def query() -> list:
        gateway = rattler.Gateway(cache_dir=tmp_path / "cache")
        return await gateway.query([rattler.Channel(url)], ["noarch"], ["app"], recursive=True)

    (records,) = asyncio.run(query())
    found = {r.file_name: r for r in records}
    assert set(found) == {"app-1.0-0.conda", "lib-1.5-0.conda", "lib-0.5-0.tar.bz2", "extra-2.0-0.conda"}
    assert found["app-1.0-0.conda"].sha256.hex() == by_name["app"]["app-1.0-0.conda"]["sha256"]
    assert found["extra-2.0-0.conda"].depends == ['lib[when="__unix"]']
    assert "GET /noarch/repodata_shards.msgpack.zst" in requests
    assert f"GET /noarch/shards/{shard_filename(digests['unrelated'])}" not in requests
    assert not any("repodata.json" in r for r in requests)
