"""Mirror channels synchronised from a real upstream on loopback: a static channel indexed by
py-rattler's indexer behind a fault-injecting HTTP server (tests/fixtures/upstreams.py)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx2
import pytest
from sqlalchemy import select
from sqlmodel import col

from graphconda.db.models import Channel, PackageFile
from graphconda.services import channels, jobs
from graphconda.services.authz import SYSTEM
from graphconda.services.context import Services
from graphconda.services.mirroring import sync_mirror
from graphconda.services.publisher import wait_published
from tests.fixtures.upstreams import ForwardProxy, StaticChannel, StaticServer, place, rattler_index, serve_channel
from tests.helpers.jobs import run_to_end
from tests.helpers.packages import build_package, build_raw_package, file_member


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"mirror": {"upstream_timeout_seconds": 1.0, "backoff_seconds": 0.01, "retries": 2,
                       "circuit_failures": 1000, "concurrency": 4}}


@pytest.fixture
def packages(tmp_path: Path) -> list[Path]:
    built = tmp_path / "built"
    return [
        build_package(built, "alpha", "1.0", "0"),
        build_package(built, "alpha", "2.0", "0", fmt=".tar.bz2"),
        build_package(built, "numpydoc", "1.0", "0"),
        build_package(built, "numpy", "1.26.0", "h1_0", subdir="linux-64"),
        build_package(built, "numpy", "2.1.0", "h1_0", subdir="linux-64", fmt=".tar.bz2"),
    ]


@pytest.fixture
async def upstream(tmp_path: Path, packages: list[Path]) -> Any:
    async with serve_channel(tmp_path / "upstream", packages) as channel:
        yield channel


async def make_mirror(services: Services, url: str, name: str = "mir", **kwargs: Any) -> Any:
    return await channels.create_channel(services, SYSTEM, channels.ChannelSpec(
        name=name, mirror_mode="mirror", mirror_channel_url=url, **kwargs))


async def sync(services: Services, name: str = "mir", **kwargs: Any) -> Any:
    from graphconda.services.access import gate

    async with services.db.read() as session:
        channel, _ = await gate(session, SYSTEM, name)
    report = await sync_mirror(services, channel, **kwargs)
    await wait_published(services)
    return report


async def files(services: Services) -> dict[str, tuple[str, bool]]:
    async with services.db.read() as session:
        rows = await session.scalars(select(PackageFile))
        return {f"{r.subdir}/{r.filename}": (r.sha256, r.stored) for r in rows}


def upstream_files(upstream: StaticChannel) -> dict[str, str]:
    out = {}
    for subdir in ("noarch", "linux-64"):
        doc = json.loads((upstream.root / subdir / "repodata.json").read_bytes())
        for group in ("packages", "packages.conda"):
            for fn, record in doc[group].items():
                out[f"{subdir}/{fn}"] = record["sha256"]
    return out


async def test_first_sync_copies_everything_and_a_second_downloads_nothing(
    client: httpx2.AsyncClient, services: Services, upstream: StaticChannel, packages: list[Path]
) -> None:
    await make_mirror(services, upstream.url)
    report = await sync(services)
    assert report.failures == [] and report.downloaded == 5
    assert {k: v[0] for k, v in (await files(services)).items()} == upstream_files(upstream)
    for path in packages:
        subdir = "linux-64" if path.name.startswith("numpy-") else "noarch"
        got = await client.get(f"/get/mir/{subdir}/{path.name}")
        assert got.status_code == 200 and got.content == path.read_bytes()
    # Records as upstream declared them.
    ours = (await client.get("/get/mir/linux-64/repodata.json")).json()
    theirs = json.loads((upstream.root / "linux-64/repodata.json").read_bytes())
    for group in ("packages", "packages.conda"):
        for fn, record in theirs[group].items():
            assert {k: v for k, v in ours[group][fn].items()} == {k: v for k, v in record.items()}
    before = dict(upstream.requests)
    again = await sync(services)
    assert again.downloaded == 0 and set(again.unchanged) == {"noarch", "linux-64"}
    new = {p: n - before.get(p, 0) for p, n in upstream.requests.items() if n != before.get(p, 0)}
    assert all(not p.endswith((".conda", ".tar.bz2")) for p in new), new
    assert upstream.statuses("/noarch/repodata.json.zst")[-1] == 304


async def test_progress_reports_files_and_bytes_as_batches_commit(
        services: Services, upstream: StaticChannel, packages: list[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """What `mirror sync --wait` and a job's message show: subdirs done, and within one the files and
    bytes stored so far, growing batch by batch."""
    from graphconda.services import mirroring

    monkeypatch.setattr(mirroring, "BATCH", 1)
    reported: list[dict[str, Any]] = []
    await make_mirror(services, upstream.url)
    report = await sync(services, progress=lambda **kw: reported.append(kw))
    assert report.downloaded == 5
    line = re.compile(r"synchronising (\S+); so far (\d+) files \(([\d.]+) MB\) downloaded, 0 indexed")
    moved = [line.fullmatch(kw.get("message", "")) for kw in reported]
    counts = [(m[1], int(m[2]), float(m[3])) for m in moved if m]
    assert [(subdir, n) for subdir, n, _ in counts] == [("linux-64", 1), ("linux-64", 2),
                                                        ("noarch", 3), ("noarch", 4), ("noarch", 5)]
    assert [mb for *_, mb in counts] == sorted(mb for *_, mb in counts)
    assert counts[-1][2] == float(f"{sum(p.stat().st_size for p in packages) / 1e6:.1f}")
    assert [kw["done"] for kw in reported if "done" in kw] == [0, 1, 2] and reported[-1]["total"] == 2


async def test_added_and_removed_upstream(services: Services, upstream: StaticChannel, tmp_path: Path) -> None:
    await make_mirror(services, upstream.url)
    await sync(services)
    place(upstream.root, [build_package(tmp_path / "more", "gamma", "1.0", "0")])
    (upstream.root / "noarch/alpha-1.0-0.conda").unlink()
    await rattler_index(upstream.root, zst=True)
    report = await sync(services)
    assert report.downloaded == 1
    have = await files(services)
    assert "noarch/gamma-1.0-0.conda" in have
    assert "noarch/alpha-1.0-0.conda" in have  # no pruning: it stays
    await channels.update_channel(services, SYSTEM, "mir", channels.ChannelUpdate(mirror_prune=True))
    await rattler_index(upstream.root, zst=True)  # touch: a new index, so the sync reads it
    (upstream.root / "noarch/repodata.json.zst").write_bytes((upstream.root / "noarch/repodata.json.zst").read_bytes())
    from sqlalchemy import delete

    from graphconda.db.models import ProxyEntry
    async with services.db.write() as session:  # forget the validators: the index is read again
        await session.execute(delete(ProxyEntry))
    report = await sync(services)
    have = await files(services)
    assert "noarch/alpha-1.0-0.conda" not in have and report.removed == 1
    assert {k: v[0] for k, v in have.items()} == upstream_files(upstream)


@pytest.mark.parametrize("fault", ["corrupt", "stall", "reset", "truncate", "status"])
async def test_faults_are_recorded_nothing_corrupt_is_stored_and_the_next_run_converges(
    services: Services, upstream: StaticChannel, packages: list[Path], fault: str
) -> None:
    await make_mirror(services, upstream.url)
    target = "numpy-2.1.0-h1_0.tar.bz2"
    upstream.fail(target, fault, times=10, seconds=2.0, status=503)
    report = await sync(services)
    assert any(target in line for line in report.failures), report.failures
    have = await files(services)
    assert f"linux-64/{target}" not in have and len(have) == 4
    assert not [b async for b in services.storage.list("channels/mir/linux-64/") if b.key.endswith(target)]
    upstream.clear_faults()
    report = await sync(services)
    assert report.failures == [] and report.downloaded == 1
    assert {k: v[0] for k, v in (await files(services)).items()} == upstream_files(upstream)
    blob = [b async for b in services.storage.list("channels/mir/linux-64/") if b.key.endswith(target)]
    assert len(blob) == 1
    data = await services.storage.read(blob[0].key)
    assert hashlib.sha256(data).hexdigest() == upstream_files(upstream)[f"linux-64/{target}"]


async def test_upstream_is_reached_through_the_proxy_the_environment_names(
        services: Services, upstream: StaticChannel, monkeypatch: pytest.MonkeyPatch) -> None:
    """A network that reaches upstream only through its proxy: HTTP_PROXY (with its credentials) is
    used for every upstream request, and NO_PROXY sends the host's requests direct again."""
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY", "REQUEST_METHOD"):
        monkeypatch.delenv(name, raising=False)
    with ForwardProxy() as proxy:
        monkeypatch.setenv("http_proxy", proxy.url.replace("://", "://corp:s%40cret@"))
        await make_mirror(services, upstream.url)
        report = await sync(services)
        assert report.failures == [] and report.downloaded == 5
        through = {urlsplit(url).path for url, _ in proxy.forwarded}
        assert set(upstream_files(upstream)) <= {path.lstrip("/") for path in through}
        assert {auth for _, auth in proxy.forwarded} == {"Basic " + base64.b64encode(b"corp:s@cret").decode()}

        monkeypatch.setenv("no_proxy", "127.0.0.1")
        seen = len(proxy.forwarded)
        upstream.requests.clear()
        await channels.update_channel(services, SYSTEM, "mir", channels.ChannelUpdate(excludelist=["alpha"]))
        report = await sync(services)
        assert report.failures == [] and report.removed == 2
        assert len(proxy.forwarded) == seen and upstream.count("repodata.json.zst") >= 2  # direct


async def test_bodies_sent_gzip_encoded_are_stored_decoded(services: Services, upstream: StaticChannel) -> None:
    """An upstream that compresses on the wire (as CDNs do for an index without a .zst): what is
    checked and stored are the bytes of the file; upstream can tell graphconda's requests apart."""
    from graphconda import __version__

    for path in ("repodata.json.zst", ".conda", ".tar.bz2"):
        upstream.fail(path, "gzip", times=-1)
    await make_mirror(services, upstream.url)
    report = await sync(services)
    assert report.failures == [] and report.downloaded == 5
    assert await _every_row_has_its_verified_blob(services) == 5
    # The bytes really crossed the wire compressed: graphconda asked for it, and decoded them.
    assert {path.rsplit("/", 1)[-1] for path in upstream.gzipped} >= {"repodata.json.zst", *(
        f"{p.rsplit('/', 1)[-1]}" for p in upstream_files(upstream))}
    assert upstream.agents == {f"graphconda/{__version__}"}


@pytest.mark.parametrize("url", ["http://127.0.0.1:99999/c", "http://[::1/c", "http://"])
async def test_a_stored_upstream_url_no_request_can_use_fails_the_sync_clearly(
        services: Services, upstream: StaticChannel, url: str) -> None:
    """One stored before URLs were checked at creation: the sync fails saying so, not with a ValueError."""
    from sqlalchemy import update

    from graphconda.errors import UpstreamError

    await make_mirror(services, upstream.url)
    async with services.db.write() as session:
        await session.execute(update(Channel).where(col(Channel.name) == "mir").values(mirror_channel_url=url))
    with pytest.raises(UpstreamError, match=r"not a valid http\(s\) URL"):
        await sync(services)
    assert await files(services) == {}


async def test_retry_after_is_honoured(services: Services, upstream: StaticChannel) -> None:
    await make_mirror(services, upstream.url)
    upstream.fail("alpha-1.0-0.conda", "status", times=1, status=429, retry_after="0")
    report = await sync(services)
    assert report.failures == [] and report.downloaded == 5
    assert upstream.statuses("alpha-1.0-0.conda") == [429, 200]


async def test_lists_match_exact_names_and_specs(client: httpx2.AsyncClient, services: Services,
                                                 upstream: StaticChannel) -> None:
    await make_mirror(services, upstream.url, "inc", includelist=["numpy"])
    await sync(services, "inc")
    assert set(await files(services)) == {"linux-64/numpy-1.26.0-h1_0.conda", "linux-64/numpy-2.1.0-h1_0.tar.bz2"}
    await make_mirror(services, upstream.url, "spec", includelist=["numpy >=2"], proxylist=["numpy"])
    await sync(services, "spec")
    async with services.db.read() as session:
        rows = list(await session.scalars(select(PackageFile).where(PackageFile.channel_id == 2)))
    assert [(r.filename, r.stored) for r in rows] == [("numpy-2.1.0-h1_0.tar.bz2", False)]
    redirect = await client.get("/get/spec/linux-64/numpy-2.1.0-h1_0.tar.bz2")
    assert redirect.status_code == 302
    assert redirect.headers["location"] == f"{upstream.url}/linux-64/numpy-2.1.0-h1_0.tar.bz2"
    await make_mirror(services, upstream.url, "exc", excludelist=["numpy", "alpha <2"])
    await sync(services, "exc")
    async with services.db.read() as session:
        rows = list(await session.scalars(select(PackageFile.filename).where(PackageFile.channel_id == 3)))
    assert sorted(rows) == ["alpha-2.0-0.tar.bz2", "numpydoc-1.0-0.conda"]
    # Changing the lists takes effect at the next sync, though upstream has not changed (its
    # indexes answer 304 to the sync's conditional requests): excluded files leave.
    await channels.update_channel(services, SYSTEM, "exc", channels.ChannelUpdate(excludelist=["numpydoc"]))
    report = await sync(services, "exc")
    assert report.unchanged == [] and report.failures == []
    async with services.db.read() as session:
        rows = list(await session.scalars(select(PackageFile.filename).where(PackageFile.channel_id == 3)))
    assert "numpydoc-1.0-0.conda" not in rows and "numpy-2.1.0-h1_0.tar.bz2" in rows
    assert (await client.get("/get/exc/linux-64/numpydoc-1.0-0.conda")).status_code == 404
    unchanged = await sync(services, "exc")  # and then the conditional requests are back
    assert sorted(unchanged.unchanged) == sorted(unchanged.subdirs) and unchanged.downloaded == 0


async def test_a_list_entry_that_is_no_match_spec_is_refused_at_once(services: Services,
                                                                     upstream: StaticChannel) -> None:
    from graphconda.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="includelist entry 'numpy >=' is not a package name or match spec"):
        await make_mirror(services, upstream.url, "bad", includelist=["numpy >="])
    await make_mirror(services, upstream.url, "good", proxylist=["numpy"])
    with pytest.raises(InvalidInputError, match=r"proxylist entry .* is not a package name or match spec"):
        await channels.update_channel(services, SYSTEM, "good", channels.ChannelUpdate(proxylist=[">=<< numpy ]]"]))
    async with services.db.read() as session:
        names = list(await session.scalars(select(Channel.name)))
        proxylist = await session.scalar(select(Channel.proxylist).where(Channel.name == "good"))
    assert names == ["good"] and proxylist == ["numpy"]  # nothing half-made or half-changed


async def test_sync_runs_as_a_job(services: Services, upstream: StaticChannel) -> None:
    # No first sync queued by the creation: this job's report must count every file (a sync running
    # beside it would store some of them first, and this one would rightly skip those).
    await make_mirror(services, upstream.url, sync_now=False)
    run = await jobs.run_job(services, SYSTEM, "synchronize_repodata", channel="mir")
    assert run.id is not None
    done = await run_to_end(services, run.id, seconds=30)
    assert done.status == "succeeded", (done.error, done.log_tail)
    assert "5 files" in done.message
    assert len(await files(services)) == 5


async def test_an_upstream_that_is_no_conda_channel_fails_the_sync(services: Services, upstream: StaticChannel,
                                                                   tmp_path: Path) -> None:
    from tests.fixtures.upstreams import StaticServer

    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "index.html").write_text("<html>a web site</html>")
    with StaticServer(tmp_path / "site") as site:  # answers, but has no channel index anywhere
        for url in (site.url, f"{upstream.url}/nosuch"):
            name = f"m{len(url)}"
            await make_mirror(services, url, name, sync_now=False)
            run = await jobs.run_job(services, SYSTEM, "synchronize_repodata", channel=name)
            assert run.id is not None
            done = await run_to_end(services, run.id, seconds=30)
            assert done.status == "failed"
            assert f"upstream {url} is not a conda channel: it has no channeldata.json" in done.error
            assert await files(services) == {}


async def test_mirror_channels_refuse_uploads_and_deletes(services: Services, upstream: StaticChannel) -> None:
    from graphconda.errors import ConflictError
    from graphconda.services import packages as package_service

    await make_mirror(services, upstream.url)
    await sync(services)
    with pytest.raises(ConflictError, match="mirror channel"):
        await package_service.delete_package_file(services, SYSTEM, "mir", "noarch", "alpha-1.0-0.conda")


async def test_every_mirror_syncs_on_the_default_schedule_unless_its_own_says_otherwise(
    services: Services, upstream: StaticChannel
) -> None:
    from graphconda.jobs.scheduler import schedule_specs

    await make_mirror(services, upstream.url, "m1", sync_now=False)
    await make_mirror(services, upstream.url, "m2", sync_now=False)
    specs = {s.key: s for s in await schedule_specs(services)}
    interval = services.settings.jobs.mirror_sync_interval_seconds
    assert specs["synchronize:m1"].interval_seconds == interval and specs["synchronize:m2"].interval_seconds == interval
    await jobs.set_schedule(services, SYSTEM, "synchronize", channel="m1", interval_seconds=600, cron=None,
                            enabled=True)
    await jobs.set_schedule(services, SYSTEM, "synchronize", channel="m2", interval_seconds=600, cron=None,
                            enabled=False)
    specs = {s.key: s for s in await schedule_specs(services)}
    assert specs["synchronize:m1"].interval_seconds == 600 and "synchronize:m2" not in specs


async def test_creating_a_mirror_queues_a_first_sync(services: Services, upstream: StaticChannel) -> None:
    from graphconda.db.models import JobRun

    await make_mirror(services, upstream.url, "now")
    await make_mirror(services, upstream.url, "later", sync_now=False)
    async with services.db.read() as session:
        runs = [(r.kind, r.channel_id, r.status) for r in await session.scalars(select(JobRun))]
    assert runs == [("synchronize", 1, "queued")]


async def test_a_failed_index_read_removes_nothing(services: Services, upstream: StaticChannel) -> None:
    await make_mirror(services, upstream.url, mirror_prune=True)
    await sync(services)
    before = await files(services)
    # A truncated index (every attempt), then one that is not JSON: the run fails for that subdir only.
    upstream.fail("/linux-64/repodata.json.zst", "truncate", times=100)
    upstream.fail("/linux-64/repodata.json", "truncate", times=100)
    from sqlalchemy import delete

    from graphconda.db.models import ProxyEntry
    async with services.db.write() as session:
        await session.execute(delete(ProxyEntry))
    report = await sync(services)
    assert any(line.startswith("linux-64:") for line in report.failures) and report.removed == 0
    upstream.clear_faults()
    (upstream.root / "linux-64/repodata.json.zst").unlink()
    (upstream.root / "linux-64/repodata.json").write_text('{"packages": {"x-1-0.tar.bz2": {"name": ')
    report = await sync(services)
    assert any("repodata file" in line for line in report.failures) and report.removed == 0
    assert await files(services) == before


async def test_records_conda_clients_cannot_read_are_not_mirrored(services: Services, upstream: StaticChannel,
                                                                   client: httpx2.AsyncClient) -> None:
    # Upstream's index declares a float timestamp for one record: rattler would refuse our whole index.
    doc = json.loads((upstream.root / "noarch/repodata.json").read_bytes())
    doc["packages.conda"]["alpha-1.0-0.conda"]["timestamp"] = 1.5
    (upstream.root / "noarch/repodata.json").write_text(json.dumps(doc))
    (upstream.root / "noarch/repodata.json.zst").unlink()
    await make_mirror(services, upstream.url)
    report = await sync(services)
    assert [line.split(":")[0] for line in report.failures] == ["noarch/alpha-1.0-0.conda"]
    assert "noarch/alpha-1.0-0.conda" not in await files(services) and len(await files(services)) == 4
    served = (await client.get("/get/mir/noarch/repodata.json")).json()
    assert set(served["packages"]) == {"alpha-2.0-0.tar.bz2"}


async def test_reindex_after_the_database_was_wiped_then_sync_fetches_only_what_storage_lacks(
    services: Services, upstream: StaticChannel
) -> None:
    from sqlalchemy import delete

    from graphconda.db.models import Package, ProxyEntry
    from graphconda.services.reindexing import reindex_channel

    await make_mirror(services, upstream.url)
    await sync(services)
    everything = await files(services)
    async with services.db.write() as session:  # the rows are lost, the files stay
        await session.execute(delete(PackageFile))
        await session.execute(delete(Package))
        await session.execute(delete(ProxyEntry))
    lost = [b.key async for b in services.storage.list("channels/mir/noarch/") if b.key.endswith("alpha-1.0-0.conda")]
    await services.storage.delete(lost[0])
    upstream.requests.clear()
    result = await reindex_channel(services, SYSTEM, "mir")
    assert result.added == 4 and sum(upstream.requests.values()) == 0  # no upstream contact
    report = await sync(services)
    assert report.downloaded == 1 and report.failures == []
    assert await files(services) == everything


async def test_batches_commit_while_the_next_downloads(services: Services, upstream: StaticChannel,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from graphconda.services import mirroring

    monkeypatch.setattr(mirroring, "BATCH", 1)  # every file its own batch: commits overlap downloads
    await make_mirror(services, upstream.url)
    upstream.fail("alpha-2.0-0.tar.bz2", "corrupt", times=10)
    report = await sync(services)
    assert report.downloaded == 4 and len(report.failures) == 1
    upstream.clear_faults()
    report = await sync(services)
    assert report.downloaded == 1 and report.failures == []
    assert {k: v[0] for k, v in (await files(services)).items()} == upstream_files(upstream)
    leftovers = list((services.settings.data_dir / "tmp").glob("*.part"))
    assert leftovers == []


async def test_synchronize_applies_the_upload_limits_to_archives(services: Services, tmp_path: Path) -> None:
    """`synchronize` opens each archive as an upload to the same channel would: a member escaping the
    prefix is refused, unless the operator allowed such paths for this channel."""
    root = tmp_path / "hostile-upstream"
    evil = build_raw_package(tmp_path / "evil", "evil", [file_member("../../../../tmp/pwned")])
    place(root, [build_package(tmp_path / "ok", "fine", "1.0", "0")])
    shutil.copy(evil, root / "noarch" / evil.name)  # place() reads archives with the default limits
    await rattler_index(root, zst=True)
    with StaticServer(root) as upstream:
        for name in ("strict", "lenient"):
            await make_mirror(services, upstream.url, name=name, sync_now=False)
        services.settings.limits.allow_unsafe_paths_channels = ["lenient"]
        strict = await sync(services, "strict", verify_archives=True)
        lenient = await sync(services, "lenient", verify_archives=True)
    assert len(strict.failures) == 1 and "../../../../tmp/pwned" in strict.failures[0], strict.failures
    assert lenient.failures == []
    async with services.db.read() as session:
        rows = (await session.execute(select(Channel.name, PackageFile.filename).join(
            Channel, col(Channel.id) == col(PackageFile.channel_id)))).all()
    assert sorted(rows) == [("lenient", "evil-1.0-0.conda"), ("lenient", "fine-1.0-0.conda"),
                            ("strict", "fine-1.0-0.conda")]


async def _every_row_has_its_verified_blob(services: Services) -> int:
    """Each PackageFile row that says stored names a blob holding exactly its bytes; how many rows."""
    from graphconda.services import layout

    async with services.db.read() as session:
        rows = list(await session.scalars(select(PackageFile)))
    channel_names = {}
    async with services.db.read() as session:
        for channel in await session.scalars(select(Channel)):
            channel_names[channel.id] = channel.name
    for row in rows:
        assert row.stored
        blob = await services.storage.read(layout.package_key(channel_names[row.channel_id], row.subdir, row.sha256,
                                                              row.filename))
        assert len(blob) == row.size and hashlib.sha256(blob).hexdigest() == row.sha256, row.filename
    return len(rows)


def _temp_files(services: Services) -> list[Path]:
    """The sync's downloads left behind (the publisher's own temp files come and go meanwhile)."""
    return list((services.settings.data_dir / "tmp").glob("upstream-*.part"))


async def test_a_commit_that_fails_midway_leaves_no_row_without_its_blob(
        services: Services, upstream: StaticChannel, monkeypatch: pytest.MonkeyPatch) -> None:
    """The database goes away after the first batch: the run stops, every row it wrote names a complete,
    verified blob (files are stored before their rows), no temporary file is left, the next run converges."""
    from graphconda.services import mirroring

    monkeypatch.setattr(mirroring, "BATCH", 1)
    real, commits = mirroring._commit, []

    async def failing(*args: Any, **kwargs: Any) -> None:
        commits.append(1)
        if len(commits) > 1:
            raise RuntimeError("database connection lost")
        await real(*args, **kwargs)

    monkeypatch.setattr(mirroring, "_commit", failing)
    await make_mirror(services, upstream.url)
    with pytest.raises(RuntimeError, match="database connection lost"):
        await sync(services)
    assert await _every_row_has_its_verified_blob(services) == 1
    assert _temp_files(services) == []
    monkeypatch.setattr(mirroring, "_commit", real)
    report = await sync(services)
    assert report.failures == [] and await _every_row_has_its_verified_blob(services) == 5
    assert {k: v[0] for k, v in (await files(services)).items()} == upstream_files(upstream)


async def test_a_cancelled_sync_stops_and_leaves_only_complete_files(
        services: Services, upstream: StaticChannel, monkeypatch: pytest.MonkeyPatch) -> None:
    """Cancelled while files download: the run stops, what it stored gets its rows or none, each
    row's blob is complete, nothing temporary is left, and the next run fetches only the rest."""
    from graphconda.jobs.registry import JobCancelled
    from graphconda.services import mirroring

    monkeypatch.setattr(mirroring, "BATCH", 1)
    upstream.fail("numpy-2.1.0-h1_0.tar.bz2", "slow", seconds=0.3)  # still downloading when the run stops
    asked = []

    def check_cancelled() -> None:
        asked.append(1)
        if len(asked) > 3:
            raise JobCancelled("cancelled")

    await make_mirror(services, upstream.url)
    with pytest.raises(JobCancelled):
        await sync(services, check_cancelled=check_cancelled)
    kept = await _every_row_has_its_verified_blob(services)
    assert kept < 5 and _temp_files(services) == []
    upstream.clear_faults()
    report = await sync(services)
    assert report.failures == [] and report.downloaded == 5 - kept
    assert await _every_row_has_its_verified_blob(services) == 5


async def test_a_storage_failure_stops_the_run_instead_of_failing_each_file(
        services: Services, upstream: StaticChannel, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full store is no fault of one file: the run stops at the first batch it cannot store, every
    row written names its blob, and no temporary file is left."""
    from graphconda.errors import StorageFullError
    from graphconda.services import mirroring

    monkeypatch.setattr(mirroring, "BATCH", 1)
    real, stores = services.storage.put_many, []

    async def full(items: Any) -> Any:
        if any(isinstance(value, Path) for value in items.values()):  # package files, not shards
            stores.append(list(items))
            if len(stores) > 1:
                raise StorageFullError("no space left on the storage filesystem")
        return await real(items)

    monkeypatch.setattr(services.storage, "put_many", full)
    await make_mirror(services, upstream.url)
    with pytest.raises(StorageFullError):
        await sync(services)
    assert len(stores) == 2  # not every later batch tried in turn, each failing the same way
    assert await _every_row_has_its_verified_blob(services) == 1 and _temp_files(services) == []


async def test_a_sync_rebuilds_repodata_json_once_per_subdir_not_per_batch(
        client: httpx2.AsyncClient, services: Services, upstream: StaticChannel,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Each batch's shards are current when it commits; the whole repodata.json is rebuilt when the
    subdir is done (and at most every PUBLISH_SECONDS during a long one), not once per batch."""
    from graphconda.services import mirroring, publishing

    monkeypatch.setattr(mirroring, "BATCH", 1)
    monkeypatch.setattr(mirroring, "PUBLISH_SECONDS", 3600.0)
    real, rebuilt = publishing.publish_subdir, []

    async def counting(services: Services, channel_id: int, subdir: str) -> Any:
        rebuilt.append(subdir)
        return await real(services, channel_id, subdir)

    monkeypatch.setattr(publishing, "publish_subdir", counting)
    await make_mirror(services, upstream.url, sync_now=False)
    report = await sync(services)
    assert report.downloaded == 5
    assert sorted(rebuilt) == ["linux-64", "noarch"]
    listed = (await client.get("/get/mir/linux-64/repodata.json")).json()
    assert sorted([*listed["packages"], *listed["packages.conda"]]) == [
        "numpy-1.26.0-h1_0.conda", "numpy-2.1.0-h1_0.tar.bz2"]


def test_lists_match_bare_names_and_specs_by_exact_name() -> None:
    from graphconda.services.mirroring import Filter

    lists = Filter([], ["scipy 1.*"], ["numpy", "numpy >=2", "python 3.12.*", "python >=3.14"])

    def rec(name: str, version: str) -> dict[str, Any]:
        return {"name": name, "version": version, "build": "0", "build_number": 0}

    assert lists.proxied(rec("numpy", "1.0"), "linux-64") and lists.proxied(rec("numpy", "2.1"), "linux-64")
    assert not lists.proxied(rec("numpydoc", "1.0"), "linux-64")
    assert lists.proxied(rec("python", "3.12.1"), "linux-64") and lists.proxied(rec("python", "3.14.0"), "linux-64")
    assert not lists.proxied(rec("python", "3.13.0"), "linux-64")
    assert not lists.wanted(rec("scipy", "1.9"), "linux-64") and lists.wanted(rec("scipy", "2.0"), "linux-64")
    assert lists.wanted(rec("scipy-stubs", "1.0"), "linux-64")


def test_upstream_v3_records_are_read_however_the_key_is_spelled(tmp_path: Path) -> None:
    """The v3 groups are read only when the index can have a `v3` key: written plainly or \\u-escaped."""
    from graphconda.services.mirroring import _record_chunks

    record = {"name": "a", "version": "1", "build": "0"}
    legacy = {"packages": {"a-1-0.tar.bz2": record}, "packages.conda": {"a-1-1.conda": record}}
    for key in ("v3", "\\u0076\\u0033", "v\\u0033"):
        path = tmp_path / "repodata.json"
        body = json.dumps({**legacy, "v3": {"conda": {"a-2-0": record}}}).replace('"v3"', f'"{key}"', 1)
        path.write_text(body)
        got = [filename for chunk in _record_chunks(path, "test") for filename, _ in chunk]
        assert got == ["a-1-0.tar.bz2", "a-1-1.conda", "a-2-0"], key
    path.write_text(json.dumps(legacy))
    assert [filename for chunk in _record_chunks(path, "test") for filename, _ in chunk] == \
        ["a-1-0.tar.bz2", "a-1-1.conda"]
