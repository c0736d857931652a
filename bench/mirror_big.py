"""Big-mirror benchmark: sync of a 200,000-record upstream subdir, everything on the proxylist.

    python bench/mirror_big.py [--records 200000] [--database-url URL]

The upstream is a static loopback server with one linux-64/repodata.json of --records
records (../shared/corpus/ replicated under new filenames, as bench/publish.py builds them),
and every package name on the mirror channel's proxylist, so no file moves: the sync reads,
filters and indexes records. Each measurement runs in its own child process (so the parent's
copy of the records does not count) and reports its peak RSS:
1. sync: `mirroring.sync_mirror` of that upstream into an empty mirror channel (its batches
   publish shards as they commit), then the rebuild of the subdir's monolithic files that the
   sync queued, run by the process's publisher as in a server (the sync is done when a client
   could read the new repodata.json; channeldata.json, rebuilt after it, counts in the peak
   RSS but not in the time);
2. full publish of the same records stored in the database: every shard, the shard index
   and the monolithic files (`republishing.republish_subdir`).
Targets: the sync's peak RSS < 256 MB and its time <= 2x the full publish.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import corpus
from bench.publish import machine, quiescent, store_records
from graphconda.db.migrate import upgrade_sync
from graphconda.db.models import Channel
from graphconda.services import channels, mirroring, republishing
from graphconda.services.authz import SYSTEM
from graphconda.services.context import open_services
from graphconda.settings import load_settings
from tests.fixtures.upstreams import StaticServer

SUBDIR = "linux-64"


def settings_for(work: Path, database_url: str = "") -> object:
    # On a shared database (--database-url) the two sides use different channel names.
    url = database_url or f"sqlite+aiosqlite:///{work / 'gc.db'}"
    return load_settings(environ={}, overrides={
        "server": {"data_dir": str(work / "data")}, "database": {"url": url},
        "auth": {"session_secret": "bench"}, "publish": {"debounce_seconds": 0.2},
        "mirror": {"max_index_bytes": 1 << 31}})


async def child_sync(work: Path, url: str, names: list[str], database_url: str = "") -> float:
    settings = settings_for(work, database_url)
    await asyncio.to_thread(upgrade_sync, settings.database_url)  # type: ignore[attr-defined]
    handle = await open_services(settings)  # type: ignore[arg-type]
    try:
        services = handle.services
        mirror = await channels.create_channel(services, SYSTEM, channels.ChannelSpec(
            name="mir", mirror_mode="mirror", mirror_channel_url=url, sync_now=False))
        assert mirror.id is not None
        # Every name on the proxylist: more entries than the API accepts (1,000), so set on the row.
        async with services.db.write() as session:
            row = await session.get(Channel, mirror.id)
            assert row is not None
            row.proxylist = names
            session.add(row)
        mirror.proxylist = names
        before = rss_mb()
        start = time.perf_counter()
        report = await mirroring.sync_mirror(services, mirror, verify_archives=False)
        synced = time.perf_counter() - start
        synced_rss = rss_mb()
        await quiescent(services, mirror.id)  # the publisher rebuilt repodata.json
        elapsed = time.perf_counter() - start
        print(f"  sync phase {synced:.2f} s (RSS {before:.0f} MB before it, {synced_rss:.0f} MB after it, peak "
              f"{peak_rss_mb():.0f} MB), "
              f"rebuild of the monolithic files {elapsed - synced:.2f} s", file=sys.stderr)
        await services.publisher.wait_idle()  # channeldata.json: not timed, but in the peak RSS
        assert not report.failures, report.summary()
        print(f"  sync report: {report.summary()}", file=sys.stderr)
        return elapsed
    finally:
        await handle.aclose()


async def child_publish(work: Path, records_count: int, database_url: str = "") -> float:
    settings = settings_for(work, database_url)
    await asyncio.to_thread(upgrade_sync, settings.database_url)  # type: ignore[attr-defined]
    handle = await open_services(settings)  # type: ignore[arg-type]
    try:
        services = handle.services
        channel = await channels.create_channel(services, SYSTEM, channels.ChannelSpec(name="big"))
        assert channel.id is not None
        await store_records(services, channel.id, list(corpus.records(records_count, SUBDIR)))
        start = time.perf_counter()
        await republishing.republish_subdir(services, channel.id, SUBDIR)
        return time.perf_counter() - start
    finally:
        await handle.aclose()


def child(args: argparse.Namespace) -> None:
    work = Path(args.work)
    if args.child == "sync":
        names = json.loads((work.parent / "names.json").read_text())
        elapsed = asyncio.run(child_sync(work, args.url, names, args.database_url))
    else:
        elapsed = asyncio.run(child_publish(work, args.records, args.database_url))
    print(json.dumps({"seconds": elapsed, "peak_rss_mb": peak_rss_mb()}))


def peak_rss_mb() -> float:
    """This process's peak RSS. Not ru_maxrss: Linux carries that across exec from the forked parent,
    so it would report the parent's RSS (which built the upstream index) when that is higher."""
    return _status_mb("VmHWM:") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    return _status_mb("VmRSS:")


def _status_mb(field: str) -> float:
    try:
        status = Path("/proc/self/status").read_text()
        return next(int(line.split()[1]) for line in status.splitlines() if line.startswith(field)) / 1024
    except (OSError, StopIteration):
        return 0.0


def run_child(kind: str, work: Path, records: int, url: str = "", database_url: str = "") -> dict[str, float]:
    work.mkdir(parents=True)
    out = subprocess.run([sys.executable, __file__, "--child", kind, "--work", str(work), "--url", url,
                          "--records", str(records), "--database-url", database_url], capture_output=True, text=True)
    sys.stderr.write(out.stderr[-3000:])
    out.check_returncode()
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="gc-bench-mirror-big-"))
    try:
        run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, work: Path) -> None:
    print(f"machine: {machine()}")
    root = work / "upstream"
    (root / SUBDIR).mkdir(parents=True)
    (root / "noarch").mkdir()
    doc: dict[str, object] = {"info": {"subdir": SUBDIR}, "packages": {}, "packages.conda": {}, "repodata_version": 1}
    names: set[str] = set()
    for filename, record in corpus.records(args.records, SUBDIR):
        doc["packages.conda" if filename.endswith(".conda") else "packages"][filename] = record  # type: ignore[index]
        names.add(record["name"])
    (root / SUBDIR / "repodata.json").write_text(json.dumps(doc))
    (root / "noarch" / "repodata.json").write_text(json.dumps({"info": {"subdir": "noarch"}, "packages": {},
                                                               "packages.conda": {}}))
    del doc
    (work / "names.json").write_text(json.dumps(sorted(names)))
    size = (root / SUBDIR / "repodata.json").stat().st_size
    print(f"upstream: {args.records} records {corpus.source()}, {len(names)} names (all proxylisted), "
          f"repodata.json {size / 1e6:.1f} MB")
    if args.side in ("", "sync"):
        with StaticServer(root) as upstream:
            synced = run_child("sync", work / "sync", args.records, upstream.url, args.database_url)
        print(f"1. sync (to the published repodata.json): {synced['seconds']:.2f} s, peak RSS "
              f"{synced['peak_rss_mb']:.0f} MB (target < 256 MB)")
    if args.side in ("", "publish"):
        published = run_child("publish", work / "publish", args.records, "", args.database_url)
        print(f"2. full publish of the same records: {published['seconds']:.2f} s (peak RSS "
              f"{published['peak_rss_mb']:.0f} MB)")
    if not args.side:
        print(f"sync / publish: {synced['seconds'] / published['seconds']:.2f}x (target <= 2x)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--child", default="")
    parser.add_argument("--work", default="")
    parser.add_argument("--url", default="")
    parser.add_argument("--side", choices=("sync", "publish"), default="", help="run one side only (no ratio)")
    parser.add_argument("--database-url", default="", help="an empty database; default: SQLite per side")
    arguments = parser.parse_args()
    if arguments.child:
        child(arguments)
    else:
        main(arguments)
