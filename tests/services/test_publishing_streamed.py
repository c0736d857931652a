"""Publishing a big subdir streams its rows (services/publishing.py stream_subdir_files,
conda/repodata_files.py): the documents are exactly those the in-memory builders make, in
memory bounded by a batch of rows, on SQLite and PostgreSQL (whose collation must not
reorder filenames)."""

from __future__ import annotations

import gzip
import json
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
import zstandard
from sqlalchemy import insert, select

from graphconda.conda import repodata as rd
from graphconda.conda import repodata_files
from graphconda.conda.records import dumps_record
from graphconda.conda.repodata_files import SubdirFiles
from graphconda.conda.shards import pack_record
from graphconda.db.models import Package, PackageFile, SubdirState
from graphconda.services import layout, publishing
from graphconda.services.context import Services
from graphconda.services.temp_files import TEMP_DIR
from tests.helpers.channels import make_channel, read_blob

SUBDIR = "linux-64"
# Orders that differ between byte order and a natural-language collation (en_US ignores punctuation).
NAMES = ["a-b", "a_b", "ab", "a.b", "a0", "zlib", "x"]


def record(name: str, version: str, build: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "version": version, "build": build, "build_number": 0, "subdir": SUBDIR,
            "depends": ["python >=3.9"], "license": "MIT", "md5": "0" * 32, "sha256": "1" * 64, "size": 10,
            "timestamp": 1_700_000_000_000, **extra}


def rows_of(count: int) -> list[tuple[str, dict[str, Any], bool]]:
    """(filename, record, v3): both extensions, non-ASCII text, run_exports, a few v3 records,
    and one name with more files than a fetch holds (its channeldata entry spans fetches)."""
    out = []
    for i in range(count):
        name = "big" if i % 2 else NAMES[i % len(NAMES)]
        ext = ".conda" if i % 3 else ".tar.bz2"
        extra: dict[str, Any] = {"summary": "café ✓"} if i % 5 == 0 else {}
        if i % 7 == 0:
            extra["run_exports"] = {"weak": [f"{name} >=1.{i}"]}
        v3 = i % 997 == 0
        if v3:
            extra["depends"] = ['gamma[when="__unix"]']
        out.append((f"{name}-1.{i}-h{i}_0{ext}", record(name, f"1.{i}", f"h{i}_0", **extra), v3))
    return out


async def store(services: Services, channel_id: int, rows: list[tuple[str, dict[str, Any], bool]],
                removed: list[str]) -> None:
    now = services.now()
    async with services.db.write() as session:
        names = sorted({r["name"] for _, r, _ in rows})
        await session.execute(insert(Package), [{"channel_id": channel_id, "name": n, "created_at": now,
                                                 "updated_at": now, "about": {}} for n in names])
        ids = dict((await session.execute(select(Package.name, Package.id))).all())
        await session.execute(insert(PackageFile), [{
            "channel_id": channel_id, "package_id": ids[r["name"]], "subdir": SUBDIR, "filename": fn,
            "name": r["name"], "version": r["version"], "build": r["build"], "size": 10, "md5": r["md5"],
            "sha256": r["sha256"], "record": dumps_record(r), "packed": pack_record(fn, r), "v3": v3,
            "timestamp": r["timestamp"], "traits": [], "uploaded_at": now} for fn, r, v3 in rows])
        await session.execute(insert(SubdirState), [{"channel_id": channel_id, "subdir": SUBDIR, "generation": 1,
                                                     "published_generation": 0, "removed": removed,
                                                     "updated_at": now}])


async def test_a_big_subdir_publishes_the_documents_the_in_memory_builders_make(
        services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    finished: list[bool] = []  # repodata.json.zst made while writing (the size read up front was right)
    real_finish = repodata_files._Zstd.finish
    monkeypatch.setattr(repodata_files._Zstd, "finish", lambda self: finished.append(real_finish(self)) or finished[-1])
    channel = await make_channel(services, "main", options={"bz2": True, "current_repodata": True})
    assert channel.id is not None
    rows = rows_of(5000)  # more than two fetches of rows
    removed = ["old-1.0-0.conda", "a-b-0.1-0.tar.bz2"]
    await store(services, channel.id, rows, removed)
    assert await publishing.publish_subdir(services, channel.id, SUBDIR)
    entries = [(fn, dumps_record(r), v3) for fn, r, v3 in rows]
    expected = rd.build_repodata(SUBDIR, entries, removed)

    async def blob(name: str) -> bytes | None:
        return await read_blob(services, layout.subdir_file_key("main", SUBDIR, name))

    assert await blob(layout.REPODATA) == expected
    assert await blob(layout.REPODATA_ZST) == rd.compress_zst(expected, services.settings.publish.zstd_level)
    assert finished == [True]
    assert await blob(layout.REPODATA_GZ) == rd.compress_gzip(expected)
    assert await blob(layout.REPODATA_BZ2) == rd.compress_bz2(expected)
    assert await blob(layout.RUN_EXPORTS) == rd.build_run_exports(SUBDIR, [(fn, r) for fn, r, v3 in entries if not v3])
    assert await blob(layout.CURRENT_REPODATA) == rd.build_current_repodata(SUBDIR, entries, removed)
    doc = json.loads(expected)
    assert len(doc["packages"]) + len(doc["packages.conda"]) == 4994 and doc["v3"]["conda"]
    zst = await blob(layout.REPODATA_ZST)
    assert zst is not None and zstandard.get_frame_parameters(zst).content_size == len(expected)
    assert gzip.decompress(await blob(layout.REPODATA_GZ) or b"") == expected
    # The temporary files are gone, and the rebuild is recorded.
    assert list((services.settings.data_dir / TEMP_DIR).glob("publish-*")) == []
    async with services.db.read() as session:
        state = await session.get(SubdirState, (channel.id, SUBDIR))
    assert state is not None and state.published_generation == 1

    await publishing.publish_channeldata(services, channel.id)
    packages = [rd.ChannelPackage.from_record(r) for _, r, _ in rows]
    assert await read_blob(services, layout.channel_file_key("main", layout.CHANNELDATA)) == \
        rd.build_channeldata("main", packages, subdirs=["noarch"])


def _write(directory: Path, count: int) -> tuple[int, int]:
    """(peak Python memory while writing `count` records in batches of 1,000, repodata.json's size)."""
    rows = sorted((fn, dumps_record(r)) for fn, r, _ in rows_of(count))
    directory.mkdir()
    tracemalloc.start()
    try:
        writer = SubdirFiles(SUBDIR, lambda name: directory / name, removed=["x-1-0.conda"])
        for start in range(0, len(rows), 1000):
            writer.add(rows[start:start + 1000])
        files = writer.finish(3)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert files["repodata.json"].read_bytes() == rd.build_repodata(SUBDIR, [(fn, r, False) for fn, r in rows],
                                                                    ["x-1-0.conda"])
    return peak, files["repodata.json"].stat().st_size


def test_streamed_files_take_memory_bounded_by_a_batch(tmp_path: Path) -> None:
    """Memory while writing does not grow with the document: 4x the records, the same peak
    (one batch and gzip's tables), a fraction of the document."""
    small_peak, small_size = _write(tmp_path / "small", 5_000)
    peak, size = _write(tmp_path / "big", 20_000)
    assert size > 3.5 * small_size
    assert peak < 1.2 * small_peak, (peak, small_peak)
    assert peak < size / 2, (peak, size)


def test_records_out_of_order_are_refused(tmp_path: Path) -> None:
    writer = SubdirFiles(SUBDIR, lambda name: tmp_path / name)
    writer.add([("b-1-0.conda", "{}")])
    with pytest.raises(ValueError, match="sorted"):
        writer.add([("a-1-0.conda", "{}")])
    writer.close()


@pytest.mark.parametrize("count", [50, 6000])  # one zstd frame single-threaded, and one of several jobs
def test_zstd_made_while_writing_is_the_one_made_after(tmp_path: Path, count: int) -> None:
    """Given the records' kinds and lengths up front, repodata.json.zst is compressed as the document
    is written: the bytes compress_zst makes of the finished document. A size announced wrong (rows
    that changed between the reads) falls back to compressing the finished file: the same bytes."""
    rows = sorted((fn, dumps_record(r)) for fn, r, v3 in rows_of(count) if not v3)
    v3 = [(fn, dumps_record(r), True) for fn, r, is_v3 in rows_of(count) if is_v3]
    conda = sum(fn.endswith(".conda") for fn, _ in rows)
    content = sum(len(fn.encode()) + len(r.encode()) for fn, r in rows)
    for wrong, directory in ((0, tmp_path / "right"), (1, tmp_path / "wrong")):
        directory.mkdir()
        writer = SubdirFiles(SUBDIR, lambda name, d=directory: d / name, removed=["x-1-0.conda"], v3=v3)
        writer.compress_while_writing(len(rows) - conda, conda, content + wrong, 3)
        for start in range(0, len(rows), 1000):
            writer.add(rows[start:start + 1000])
        files = writer.finish(3)
        assert writer.zstd is not None and writer.zstd.failed == bool(wrong)
        expected = rd.build_repodata(SUBDIR, [*((fn, r, False) for fn, r in rows), *v3], ["x-1-0.conda"])
        assert files["repodata.json"].read_bytes() == expected
        assert files["repodata.json.zst"].read_bytes() == rd.compress_zst(expected, 3)
        assert files["repodata.json.zst"] == writer.zstd.path
