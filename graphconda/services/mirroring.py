"""Mirror channels: a full local copy of an upstream channel, kept current by sync runs.

`sync_mirror` reads the upstream subdirs (from `channeldata.json`, else by probing the
known subdirs), and for each one fetches its repodata (a conditional request: an unchanged
subdir costs one request and nothing else), filters the records by the channel's include /
exclude lists (exact package names or match specs, never prefixes), diffs them against the
channel by filename and sha256, downloads what is missing or changed with bounded
concurrency (`mirror.concurrency`; retries and per-request timeouts come from the upstream
client), verifies size and sha256 (md5 where that is all there is) before a file is
stored, and commits in batches: one transaction and one shard-index write per batch, not
per file. Records keep the upstream's declared strings (patched records as upstream
serves them). Proxylisted packages are indexed without their file: downloads redirect
upstream. With `synchronize` (not `synchronize_repodata`) each archive is also opened and
its `info/index.json` checked against the record, as an upload would be.

One failed file does not stop the run: it is listed in the report (and the job's log) and
retried by the next run. Files gone upstream leave only with the channel's prune option
on, and never after a failed or partial upstream read; files the lists now exclude leave
at once. Upstream indexes are streamed to disk and parsed incrementally (ijson) and diffed
against the channel a chunk at a time, so memory does not grow with the upstream subdir
(beyond 8 bytes per filename when pruning).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import ijson
import zstandard
from rattler import BuildString, IndexJson, MatchSpec, PackageRecord
from sqlalchemy import ARRAY, String, any_, bindparam, delete, select, text, update
from sqlmodel import col
from starlette.concurrency import run_in_threadpool

from graphconda.conda.archive import read_package
from graphconda.conda.names import KNOWN_SUBDIRS, parse_filename, validate_subdir
from graphconda.conda.records import dumps_record, is_v3
from graphconda.db.bulk import insert_rows
from graphconda.db.models import Channel, PackageFile, ProxyEntry
from graphconda.errors import GraphcondaError, InvalidInputError, UpstreamError
from graphconda.services import authz, layout
from graphconda.services.context import Services
from graphconda.services.locks import insert_ignore, insert_ignore_many
from graphconda.services.packages import BatchChanges, commit_batch, locked_packages
from graphconda.services.proxy import _temp_path
from graphconda.services.publisher import request_publish
from graphconda.services.staging import read_limits
from graphconda.services.upstream import join, redact, upstream_client

log = logging.getLogger("graphconda.mirroring")

BATCH = 100  # files per commit (one transaction, one shard-index write)
INDEX_BATCH = 2000  # records per commit when they need no download (proxylisted)
PUBLISH_SECONDS = 30.0  # a running sync queues a rebuild of repodata.json at most this often
_DROPPED = ("fn", "url", "channel")  # per-file fields some indexes add; never in our records


@dataclass
class SyncReport:
    subdirs: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)  # subdirs whose upstream index had not changed
    downloaded: int = 0
    bytes: int = 0
    indexed_only: int = 0  # proxylisted records indexed without their file
    removed: int = 0
    failures: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"{len(self.subdirs)} subdirs ({len(self.unchanged)} unchanged), {self.downloaded} files "
                f"({self.bytes} bytes) downloaded, {self.indexed_only} proxylisted, {self.removed} removed, "
                f"{len(self.failures)} failed")


class Filter:
    """The channel's include / exclude / proxy lists, by exact name or match spec.

    Specs are grouped by their (exact, normalised) package name, so a record is matched only
    against the specs of its own name: a proxylist of thousands of names costs one lookup per
    record, not thousands of matches.
    """

    def __init__(self, includelist: Iterable[str], excludelist: Iterable[str], proxylist: Iterable[str]) -> None:
        self.include = _by_name(list_spec(s, "includelist") for s in includelist)
        self.exclude = _by_name(list_spec(s, "excludelist") for s in excludelist)
        self.proxy = _by_name(list_spec(s, "proxylist") for s in proxylist)

    @staticmethod
    def _any(specs: dict[str, list[MatchSpec] | None], record: Mapping[str, Any], subdir: str) -> bool:
        name = str(record.get("name") or "").lower()
        candidates = specs.get(name)
        if not candidates:
            return candidates is None and name in specs  # None: a bare name, which matches every record of it
        rattler_record = _rattler_record(record, subdir)
        return rattler_record is not None and any(spec.matches(rattler_record) for spec in candidates)

    def wanted(self, record: Mapping[str, Any], subdir: str) -> bool:
        if self.include:
            return self._any(self.include, record, subdir)
        return not self.exclude or not self._any(self.exclude, record, subdir)

    def proxied(self, record: Mapping[str, Any], subdir: str) -> bool:
        return bool(self.proxy) and self._any(self.proxy, record, subdir)


def _by_name(specs: Iterable[MatchSpec]) -> dict[str, list[MatchSpec] | None]:
    """{normalised name: its specs}, or None for a name with a bare-name entry: that matches every
    record of the name, without building a rattler record for each (most lists are bare names)."""
    grouped: dict[str, list[MatchSpec] | None] = {}
    for spec in specs:
        name = str(spec.name.normalized)
        current = grouped.get(name, [])
        if current is not None:  # else a bare name already matches every record
            grouped[name] = None if str(spec) == name else [*current, spec]
    return grouped


def list_spec(text: str, field_name: str) -> MatchSpec:
    """An include/exclude/proxy list entry as a match spec; InvalidInputError naming the list if it is none."""
    try:
        return MatchSpec(text)
    except Exception as exc:
        raise InvalidInputError(f"{field_name} entry {text!r} is not a package name or match spec",
                                field=field_name) from exc


def _rattler_record(record: Mapping[str, Any], subdir: str) -> PackageRecord | None:
    try:
        return PackageRecord(record["name"], record["version"], BuildString(record["build"]),
                             int(record.get("build_number") or 0), subdir)
    except Exception:
        return None  # unparsable: matches no spec


@dataclass
class _Fetched:
    path: Path | None  # None: proxylisted (no file)
    filename: str
    record: dict[str, Any]
    sha256: str
    md5: str
    size: int
    record_json: str = ""  # records.dumps_record(record), once computed


async def sync_mirror(services: Services, channel: Channel, *, verify_archives: bool = True,
                      progress: Callable[..., None] | None = None, log_line: Callable[[str], None] | None = None,
                      check_cancelled: Callable[[], None] | None = None) -> SyncReport:
    """Bring the mirror channel up to date with its upstream; see the module docstring."""
    if channel.mirror_mode != "mirror" or not channel.mirror_channel_url:
        raise InvalidInputError("only mirror channels are synchronised", field="channel")
    assert channel.id is not None
    say = log_line or (lambda line: None)
    report = SyncReport()
    lists = Filter(channel.includelist or (), channel.excludelist or (), channel.proxylist or ())
    subdirs = await _upstream_subdirs(services, channel.mirror_channel_url)
    for index, subdir in enumerate(subdirs):
        if check_cancelled is not None:
            check_cancelled()
        def moved(subdir: str = subdir) -> None:
            """After each commit: files and bytes so far (the bar of `mirror sync --wait`, a job's message)."""
            if progress is not None:
                progress(message=f"synchronising {subdir}; so far {report.downloaded} files "
                                 f"({report.bytes / 1e6:.1f} MB) downloaded, {report.indexed_only} indexed")

        if progress is not None:
            progress(done=index, total=len(subdirs), message=f"synchronising {subdir}")
        try:
            await _sync_subdir(services, channel, subdir, lists, verify_archives, report, say, check_cancelled,
                               moved)
        except UpstreamError as exc:
            report.failures.append(f"{subdir}: {exc}")
            say(f"{subdir}: upstream index unreadable ({exc}); nothing removed")
    if progress is not None:
        progress(done=len(subdirs), total=len(subdirs), message=report.summary())
    async with services.db.write() as session:
        await session.execute(update(Channel).where(Channel.id == channel.id)  # type: ignore[arg-type]
                              .values(updated_at=services.now()))
    say(report.summary())
    return report


async def _upstream_subdirs(services: Services, upstream: str) -> list[str]:
    """The subdirs upstream has: channeldata.json says, else probe the known ones (noarch always)."""
    client = upstream_client(services)
    got = await client.fetch(join(upstream, layout.CHANNELDATA))
    found: set[str] = set()
    if got.status == 200:
        try:
            listed = json.loads(got.body).get("subdirs") or []
            found = {validate_subdir(s) for s in listed if isinstance(s, str)}
        except (ValueError, AttributeError, GraphcondaError):
            found = set()
    if not found:  # `mirror.concurrency` at a time: one by one, ~20 requests took longer than the index after them
        known = sorted(KNOWN_SUBDIRS)
        slots = asyncio.Semaphore(services.settings.mirror.concurrency)

        async def probe(subdir: str) -> bool:
            async with slots:
                return await client.exists(join(upstream, f"{subdir}/{layout.REPODATA}"))

        there = await asyncio.gather(*(probe(subdir) for subdir in known), return_exceptions=True)
        for answer in there:
            if isinstance(answer, BaseException):
                raise answer
        found = {subdir for subdir, exists in zip(known, there, strict=True) if exists is True}
        if not found:  # every conda channel has noarch/repodata.json, empty or not
            raise UpstreamError(f"upstream {redact(upstream)} is not a conda channel: it has no channeldata.json "
                                f"and no <subdir>/repodata.json")
    found.add("noarch")
    return sorted(found)


async def _upstream_repodata(services: Services, channel: Channel, subdir: str,
                             entry: ProxyEntry | None) -> tuple[Path | None, dict[str, Any]]:
    """(a local file holding upstream's repodata.json, or None when unchanged; the validators to remember).

    The index is streamed to disk (and decompressed there), never held in memory. Raises
    UpstreamError; the caller deletes the file.
    """
    client = upstream_client(services)
    base = join(channel.mirror_channel_url or "", f"{subdir}/")
    for source in (layout.REPODATA_ZST, layout.REPODATA):
        same = entry is not None and entry.source == source
        path: Path | None = await run_in_threadpool(_temp_path, services)
        assert path is not None
        try:
            got = await client.fetch_to_file(join(base, source), path, etag=entry.etag if same and entry else "",
                                             last_modified=entry.last_modified if same and entry else "")
            if got.status == 304:
                return None, {}
            if got.status == 200:
                if source == layout.REPODATA_ZST:
                    plain = await run_in_threadpool(_temp_path, services)
                    try:
                        await run_in_threadpool(_decompress, path, plain, services.settings.mirror.max_index_bytes)
                    except BaseException:
                        await run_in_threadpool(plain.unlink, True)
                        raise
                    await run_in_threadpool(path.unlink, True)
                    path = plain
                info = await run_in_threadpool(_info, path, f"{redact(base)}{source}")
                result, path = path, None  # handed to the caller
                return result, {"etag": got.etag, "last_modified": got.last_modified, "source": source,
                                "base_url": str(info.get("base_url") or "")}
        finally:
            if path is not None:
                with anyio.CancelScope(shield=True):
                    await run_in_threadpool(path.unlink, True)
    empty = await run_in_threadpool(_temp_path, services)
    await run_in_threadpool(empty.write_bytes, b'{"packages": {}, "packages.conda": {}}')
    return empty, {"etag": "", "last_modified": "", "source": "", "base_url": ""}


def _decompress(source: Path, dest: Path, limit: int) -> None:
    with open(source, "rb") as src, open(dest, "wb") as out:
        reader = zstandard.ZstdDecompressor().stream_reader(src)
        total = 0
        try:
            while chunk := reader.read(1 << 20):
                total += len(chunk)
                if total > limit:
                    raise UpstreamError(f"an upstream index is larger than {limit} bytes")
                out.write(chunk)
        except zstandard.ZstdError as exc:
            raise UpstreamError("an upstream repodata.json.zst is not zstd") from exc


def _info(path: Path, what: str) -> dict[str, Any]:
    """The `info` object of a repodata file (parsing stops there); UpstreamError if it is no JSON object."""
    try:
        with open(path, "rb") as f:
            for prefix, event, _ in ijson.parse(f):
                if prefix == "" and event != "start_map":
                    raise ValueError("not an object")
                break
            f.seek(0)
            for info in ijson.items(f, "info"):
                return info if isinstance(info, dict) else {}
    except (ValueError, ijson.JSONError) as exc:
        raise UpstreamError(f"upstream {what} is not a conda repodata file") from exc
    return {}


_GROUPS = ("packages", "packages.conda", "v3.conda", "v3.tar.bz2")


# How a top-level "v3" key can be spelled in JSON (each character plain or \u-escaped).
_V3_KEYS = (b'"v3"', b'"\\u00763"', b'"v\\u0033"', b'"\\u0076\\u0033"')


def _mentions_v3(path: Path) -> bool:
    """Whether the file could have a `v3` key: if not, its two v3 groups need no pass of their own (each
    pass tokenises the whole document: ~1 s of the GIL for 100 MB). A cheap byte search, not a parse."""
    tail = b""
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            data = tail + block
            if any(key in data for key in _V3_KEYS):
                return True
            tail = data[-16:]
    return False


def _record_chunks(path: Path, what: str, size: int = 1000) -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """Upstream records (filename, record) in chunks, parsed incrementally: memory stays bounded."""
    try:
        for group in _GROUPS if _mentions_v3(path) else _GROUPS[:2]:
            with open(path, "rb") as f:
                chunk: list[tuple[str, dict[str, Any]]] = []
                for filename, record in ijson.kvitems(f, group, use_float=True):
                    if isinstance(record, dict) and isinstance(filename, str):
                        chunk.append((filename, {k: v for k, v in record.items() if k not in _DROPPED}))
                        if len(chunk) >= size:
                            yield chunk
                            chunk = []
                if chunk:
                    yield chunk
    except (ValueError, ijson.JSONError) as exc:
        raise UpstreamError(f"upstream {what} is not a valid repodata file ({exc})") from exc


_SYNC_STATE = "sync:"  # ProxyEntry paths holding what a mirror's last sync heard from upstream, per subdir


async def forget_upstream_state(session: Any, channel_id: int) -> None:
    """Make the next sync read every upstream index in full, even unchanged ones (a conditional request
    would answer 304): for a change of what the channel keeps (its lists, pruning)."""
    await session.execute(delete(ProxyEntry).where(col(ProxyEntry.channel_id) == channel_id,
                                                   col(ProxyEntry.path).startswith(_SYNC_STATE)))


async def _sync_subdir(services: Services, channel: Channel, subdir: str, lists: Filter, verify: bool,
                       report: SyncReport, say: Callable[[str], None],
                       check_cancelled: Callable[[], None] | None, moved: Callable[[], None]) -> None:
    assert channel.id is not None
    path_key = f"{_SYNC_STATE}{subdir}"
    async with services.db.read() as session:
        entry = await session.get(ProxyEntry, (channel.id, path_key))
    index, validators = await _upstream_repodata(services, channel, subdir, entry)
    report.subdirs.append(subdir)
    if index is None:
        report.unchanged.append(subdir)
        return
    failures_before = len(report.failures)
    base = str(validators.get("base_url") or "") or join(channel.mirror_channel_url or "", f"{subdir}/")
    # What pruning needs, without a set of every upstream filename: the stored files the lists
    # now exclude, and (pruning on) hashes of every filename the lists keep (8 bytes, not ~100).
    unwanted: list[str] = []
    wanted: set[int] | None = set() if channel.mirror_prune else None
    flow = _Flow(services, channel, subdir, base, verify, report, say, check_cancelled, moved)
    try:
        chunks = _record_chunks(index, f"{redact(base)}repodata")
        while (chunk := await run_in_threadpool(next, chunks, None)) is not None:
            local = await _local_rows(services, channel.id, subdir, [filename for filename, _ in chunk])
            for filename, record in chunk:
                if not lists.wanted(record, subdir):
                    if filename in local:
                        unwanted.append(filename)
                    continue
                if wanted is not None:
                    wanted.add(hash(filename))
                proxied = lists.proxied(record, subdir)
                have = local.get(filename)
                sha = str(record.get("sha256") or "").lower()
                if have is None or (sha and have[0] != sha) or proxied == have[1]:
                    await flow.add(filename, record, proxied)
        await flow.finish()
    finally:
        with anyio.CancelScope(shield=True):
            await flow.close()
            await run_in_threadpool(index.unlink, True)
    request_publish(services, channel.id, subdir)
    # Only after the whole index was read: excluded by the lists leave now; gone upstream, with pruning.
    gone = unwanted
    if wanted is not None:  # pruning: also every stored file upstream no longer lists
        async with services.db.read() as session:
            stored = (await session.scalars(select(col(PackageFile.filename)).where(
                col(PackageFile.channel_id) == channel.id, col(PackageFile.subdir) == subdir))).all()
        gone = [fn for fn in stored if hash(fn) not in wanted]
    if gone:
        await _commit(services, channel, subdir, [], gone)
        report.removed += len(gone)
    if len(report.failures) == failures_before:  # remember the index only once everything in it is here
        async with services.db.write() as session:
            values = {"channel_id": channel.id, "path": path_key, "status": 200, "checked_at": services.now(),
                      **validators}
            await session.execute(insert_ignore(session, ProxyEntry, values, ["channel_id", "path"]))
            row = await session.get(ProxyEntry, (channel.id, path_key))
            assert row is not None
            for key, value in values.items():
                setattr(row, key, value)
    else:
        async with services.db.write() as session:  # the next run reads the whole index again
            await session.execute(delete(ProxyEntry).where(ProxyEntry.channel_id == channel.id,  # type: ignore[arg-type]
                                                           col(ProxyEntry.path) == path_key))


async def _local_rows(services: Services, channel_id: int, subdir: str,
                      filenames: list[str]) -> dict[str, tuple[str, bool]]:
    """{filename: (sha256, stored)} of those of `filenames` the channel has (one chunk's worth)."""
    async with services.db.read() as session:
        rows = await _stored(session, channel_id, subdir, filenames)
    return {filename: (sha, bool(stored)) for _, filename, sha, stored in rows}


async def _stored(session: Any, channel_id: int, subdir: str, filenames: list[str]) -> list[Any]:
    """(id, filename, sha256, stored) of the rows of those of `filenames` the channel has."""
    if not filenames:
        return []
    column = col(PackageFile.filename)
    if session.bind.dialect.name == "postgresql":  # one array parameter, not thousands
        match = column == any_(bindparam("filenames", filenames, type_=ARRAY(String)))
    else:
        match = column.in_(filenames)
    return list((await session.execute(
        select(col(PackageFile.id), column, col(PackageFile.sha256), col(PackageFile.stored))
        .where(col(PackageFile.channel_id) == channel_id, col(PackageFile.subdir) == subdir, match))).all())


async def _refresh_statistics(services: Services) -> None:
    """PostgreSQL: ANALYZE package_files once a sync has committed its first batch.

    Statistics gathered while the channel's subdir was empty (or small) make the planner look up
    a chunk's filenames through the (channel, subdir, name) index, filtering every row of the
    subdir (0.3-0.8 s a lookup at 50,000 rows, growing with the subdir) instead of through the
    (channel, subdir, filename) key (4 ms). Autovacuum catches up only later.
    """
    if services.db.backend == "postgresql":
        async with services.db.write() as session:
            await session.execute(text("ANALYZE package_files"))


class _Flow:
    """One subdir's downloads flowing into commits.

    At most `mirror.concurrency` downloads run at once, across batch boundaries (no batch
    waits for its slowest file); each file is verified into a temporary file. One commit at a
    time, running while the downloads go on, stores BATCH verified files (one flush for all:
    `put_many`) and then writes their rows (blob before row: a crash leaves at most blobs
    that no row names); once the last record is queued, it takes whatever has arrived, so
    that only the last few files are left when the last download ends. Few commits: each
    also rewrites the subdir's shard index. Index-only (proxylisted) records cost no
    download: they go with the files, INDEX_BATCH at a time, or at the end.
    """

    def __init__(self, services: Services, channel: Channel, subdir: str, base: str, verify: bool,
                 report: SyncReport, say: Callable[[str], None],
                 check_cancelled: Callable[[], None] | None, moved: Callable[[], None]) -> None:
        self.services, self.channel, self.subdir, self.base, self.verify = services, channel, subdir, base, verify
        self.report, self.say, self.check_cancelled, self.moved = report, say, check_cancelled, moved
        self.slots = asyncio.Semaphore(services.settings.mirror.concurrency)
        self.running: set[asyncio.Task[None]] = set()
        self.ready: list[_Fetched] = []  # verified downloads (and index-only records) awaiting their commit
        self.ready_files = 0  # how many of them are downloads (counted, not summed on each check)
        self.changed = asyncio.Condition()
        self.closed = False  # every record is queued
        self.stopping = False  # close(): no further batch starts
        self.error: BaseException | None = None  # a download task's unexpected failure (storage, a bug)
        self.published_at = time.monotonic()
        self.commits = 0
        self.committer: asyncio.Task[None] = asyncio.ensure_future(self._commit_loop())

    def _failed(self, line: str) -> None:
        self.report.failures.append(line)
        self.say(line)

    def _check(self) -> None:
        """Raise what stops the run: a download task's failure, or a failed commit."""
        if self.error is not None:
            raise self.error
        if self.committer.done() and not self.committer.cancelled():
            failure = self.committer.exception()
            if failure is not None:
                raise failure

    def _stopped(self) -> bool:
        return self.error is not None or self.committer.done()

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def add(self, filename: str, record: dict[str, Any], proxied: bool) -> None:
        self._check()
        try:
            record_json = dumps_record(record)
        except ValueError as exc:  # NaN or infinity: no JSON
            problem: str | None = f"conda clients cannot read its record: {str(exc)[:200]}"
        else:
            problem = _unreadable(filename, record, record_json)
        if problem is not None:
            self._failed(f"{self.subdir}/{filename}: {problem}; not mirrored")
            return
        # Room in the queue: a lagging database holds the downloads back. Index-only records queue
        # one batch beside the one being committed, not two: each batch's records, while in flight,
        # raise the process's peak memory (a 200,000-record sync peaked at 260 MB with two, 250 with one).
        async with self.changed:
            await self.changed.wait_for(lambda: self._stopped() or (
                self.ready_files < 2 * BATCH and len(self.ready) < INDEX_BATCH))
        self._check()
        if proxied:
            sha, md5 = str(record.get("sha256") or ""), str(record.get("md5") or "")
            if len(sha) != 64:
                self._failed(f"{self.subdir}/{filename}: proxylisted record has no sha256")
                return
            self.ready.append(_Fetched(None, filename, record, sha.lower(), md5.lower(), int(record.get("size") or 0),
                                       record_json))
            if len(self.ready) >= INDEX_BATCH:
                await self._notify()
            return
        await self.slots.acquire()
        try:
            if self.check_cancelled is not None:
                self.check_cancelled()
            self._check()
        except BaseException:
            self.slots.release()
            raise
        task = asyncio.ensure_future(self._fetch(filename, record, record_json))
        self.running.add(task)
        task.add_done_callback(self.running.discard)  # also when cancelled before it ran

    async def _fetch(self, filename: str, record: dict[str, Any], record_json: str) -> None:
        try:
            try:
                item = await _download(self.services, self.channel, self.subdir, filename, record, self.base,
                                       self.verify)
            finally:
                self.slots.release()
            if isinstance(item, str):
                self._failed(item)
            else:
                item.record_json = record_json
                self.ready.append(item)
                self.ready_files += 1
        except asyncio.CancelledError:
            pass  # close(): the run is stopping (_download removed its file)
        except BaseException as exc:  # a bug: the run stops
            self.error = self.error or exc
        finally:
            self.running.discard(asyncio.current_task())
            await self._notify()

    def _publish_due(self) -> bool:
        """Whether this batch also queues a rebuild of the monolithic repodata.json: at most once per
        PUBLISH_SECONDS. Each batch's shards are current when it commits; a rebuild reads the whole
        subdir (a big one's takes far longer than a batch), so one per batch would cost a long sync
        more than its downloads. The sync queues one more when the subdir is done; batches of
        index-only (proxylisted) records queue none (a big proxylisted subdir would rebuild its
        whole repodata.json mid-sync for records that are in their shards already)."""
        now = time.monotonic()
        if now - self.published_at < PUBLISH_SECONDS:
            return False
        self.published_at = now
        return True

    def _due(self) -> bool:
        return bool(self.ready) and (self.ready_files >= BATCH or len(self.ready) >= INDEX_BATCH or self.closed)

    def _done(self) -> bool:
        return self.closed and not self.running and not self.ready

    async def _commit_loop(self) -> None:
        try:
            while True:
                async with self.changed:
                    await self.changed.wait_for(lambda: self._due() or self._done() or self.stopping)
                if not self.ready or self.stopping:
                    return
                batch: list[_Fetched] = []
                files = 0
                for item in self.ready:
                    if files >= BATCH or len(batch) >= INDEX_BATCH:
                        break
                    batch.append(item)
                    files += item.path is not None
                del self.ready[:len(batch)]
                self.ready_files -= files
                await self._notify()  # room for more downloads
                try:
                    with anyio.CancelScope(shield=True):  # a batch begun is committed whole or not at all
                        await _commit(self.services, self.channel, self.subdir, batch, [],
                                      publish=bool(files) and self._publish_due())
                except BaseException:
                    await _discard(batch)  # what was not stored
                    raise
                self.report.downloaded += files
                self.report.bytes += sum(item.size for item in batch if item.path is not None)
                self.report.indexed_only += len(batch) - files
                self.moved()
                self.commits += 1
                if self.commits == 1:
                    await _refresh_statistics(self.services)
        finally:
            with anyio.CancelScope(shield=True):
                await self._notify()

    async def finish(self) -> None:
        """Every record is queued: wait for the downloads and commits; raise what stopped the run, if anything."""
        self.closed = True
        await self._notify()
        async with self.changed:
            await self.changed.wait_for(self._stopped)
        self._check()

    async def close(self) -> None:
        """After `finish`, or on a failure: cancel the downloads still running, let the batch being
        committed finish (the rest is fetched again by the next run), remove the temporary files."""
        self.stopping = True
        for task in list(self.running):
            task.cancel()
        await asyncio.gather(*self.running, return_exceptions=True)
        self.running.clear()
        await self._notify()
        await asyncio.gather(self.committer, return_exceptions=True)
        await _discard(self.ready)
        self.ready.clear()
        self.ready_files = 0


async def _discard(items: list[_Fetched]) -> None:
    """Remove the temporary files of downloads that were not stored."""
    for item in items:
        if item.path is not None:
            with anyio.CancelScope(shield=True):
                await run_in_threadpool(item.path.unlink, True)


def _unreadable(filename: str, record: dict[str, Any], record_json: str) -> str | None:
    """Why conda clients could not read the record (rattler refuses a whole index over one bad record), or None."""
    try:
        if parse_filename(filename).name != record.get("name"):
            return f"the record names package {record.get('name')!r}"
        IndexJson.from_str(record_json)
    except GraphcondaError as exc:
        return str(exc)
    except Exception as exc:  # rattler's parse errors
        return f"conda clients cannot read its record: {str(exc)[:200]}"
    return None


async def _download(services: Services, channel: Channel, subdir: str, filename: str, record: dict[str, Any],
                    base: str, verify: bool) -> _Fetched | str:
    """The verified file in a temporary path, or a line saying why not (nothing stored)."""
    sha = str(record.get("sha256") or "").lower() or None
    md5 = str(record.get("md5") or "").lower() or None
    size = record.get("size") if isinstance(record.get("size"), int) else None
    if sha is None and md5 is None:
        return f"{subdir}/{filename}: the upstream record has no checksum; not mirrored"
    path = await run_in_threadpool(_temp_path, services)
    try:
        done = await upstream_client(services).download(join(base, filename), path, size=size, sha256=sha, md5=md5)
        if done is None:
            raise UpstreamError(f"upstream has no {filename} although its index lists it")
        if verify:
            limits = read_limits(services.settings, channel.name)  # the same bounds as an upload
            meta = await run_in_threadpool(read_package, path, filename, limits)
            for key in ("name", "version", "build", "build_number"):
                if meta.index.get(key) != record.get(key):
                    raise UpstreamError(f"{filename}: info/index.json says {key}={meta.index.get(key)!r}, "
                                        f"the upstream record {record.get(key)!r}")
            if meta.subdir != subdir:
                raise UpstreamError(f"{filename}: info/index.json says subdir {meta.subdir}")
        return _Fetched(path, filename, record, done.sha256, done.md5, done.size)
    except (GraphcondaError, OSError) as exc:
        await run_in_threadpool(path.unlink, True)
        return f"{subdir}/{filename}: {exc}"
    except BaseException:
        with anyio.CancelScope(shield=True):
            await run_in_threadpool(path.unlink, True)
        raise


async def _commit(services: Services, channel: Channel, subdir: str, items: list[_Fetched],
                  gone: list[str], *, publish: bool = True) -> None:
    """Store a batch's files (one flush for all), then write their rows and one shard-index update in
    one transaction: a crash in between leaves blobs that no row names, never a row without its blob."""
    assert channel.id is not None
    if not items and not gone:
        return
    files = {layout.package_key(channel.name, subdir, item.sha256, item.filename): item.path
             for item in items if item.path is not None}
    if files:
        await services.storage.put_many(files)  # consumed: moved into place, or uploaded and removed
    keys = list(files)
    now = services.now()

    async def write(session: Any) -> BatchChanges:
        names: set[str] = set()
        old_keys: list[str] = []
        for filename in gone:
            row = await session.scalar(select(PackageFile).where(
                col(PackageFile.channel_id) == channel.id, col(PackageFile.subdir) == subdir,
                col(PackageFile.filename) == filename))
            if row is not None:
                names.add(row.name)
                if row.stored:
                    old_keys.append(layout.package_key(channel.name, subdir, row.sha256, filename))
                await session.delete(row)
        if items:
            old_keys += await _write_rows(session, channel, subdir, items, now)
            names.update(str(item.record["name"]) for item in items)
        return BatchChanges({subdir: names}, old_keys)

    await commit_batch(services, channel, [subdir], write, new_keys=keys, publish=publish)


# --- triggering and status -------------------------------------------------------------

SYNC_KINDS = ("synchronize", "synchronize_repodata")


async def start_sync(services: Services, actor: authz.Actor, channel_name: str, *,
                     repodata_only: bool = False) -> Any:
    """Queue a sync run of a mirror channel (or return the one queued or running): its JobRun.

    NotFoundError for an invisible channel, ConflictError for a channel that is no mirror,
    PermissionDeniedError unless the actor may run the channel's jobs.
    """
    from graphconda.services import jobs
    from graphconda.services.access import ChannelKind, gate

    async with services.db.read() as session:
        await gate(session, actor, channel_name, allow={ChannelKind.MIRROR}, action="synchronisation")
    return await jobs.run_job(services, actor, SYNC_KINDS[1] if repodata_only else SYNC_KINDS[0],
                              channel=channel_name)


@dataclass(frozen=True)
class MirrorState:
    last_job: Any  # the newest sync JobRun, or None
    last_sync_at: Any  # datetime | None: when the newest finished sync ended
    last_success_at: Any
    last_error: str
    files: int  # package files stored here
    bytes: int


async def mirror_state(services: Services, channel_id: int) -> MirrorState:
    """What the mirror's sync runs and stored files say (visibility is the caller's business)."""
    from sqlalchemy import func

    from graphconda.db.models import JobRun

    async with services.db.read() as session:
        runs = (select(JobRun).where(col(JobRun.channel_id) == channel_id, col(JobRun.kind).in_(SYNC_KINDS))
                .order_by(col(JobRun.id).desc()))
        last = await session.scalar(runs.limit(1))
        finished = await session.scalar(runs.where(col(JobRun.finished_at).is_not(None)).limit(1))
        success = await session.scalar(runs.where(col(JobRun.status) == "succeeded").limit(1))
        count, size = (await session.execute(
            select(func.count(), func.coalesce(func.sum(PackageFile.size), 0))
            .where(col(PackageFile.channel_id) == channel_id, col(PackageFile.stored).is_(True)))).one()
    return MirrorState(last, finished.finished_at if finished else None, success.finished_at if success else None,
                       finished.error if finished is not None and finished.status == "failed" else "",
                       int(count), int(size))


async def _write_rows(session: Any, channel: Channel, subdir: str, items: list[_Fetched], now: Any) -> list[str]:
    """A batch's Package and PackageFile rows in a few statements (not several per file, as an upload
    writes them); the blob keys of files they replace."""

    from graphconda.conda import repodata as rd
    from graphconda.conda.shards import pack_record
    from graphconda.db.models import Package

    assert channel.id is not None
    names = sorted({str(item.record["name"]) for item in items})
    # Insert only the names not there yet (a sync's batches mostly repeat names), then lock them all in order.
    known = set((await session.scalars(select(col(Package.name)).where(
        col(Package.channel_id) == channel.id, col(Package.name).in_(names)))).all())
    if missing := [name for name in names if name not in known]:
        await session.execute(insert_ignore_many(session, Package, ["channel_id", "name"]), [
            {"channel_id": channel.id, "name": name, "summary": "", "description": "", "license": "", "home": "",
             "dev_url": "", "doc_url": "", "latest_version": "", "about": {}, "created_at": now, "updated_at": now}
            for name in missing])
    packages = {p.name: p for p in await session.scalars(locked_packages(channel.id, names))}
    ids = [row[0] for row in await _stored(session, channel.id, subdir, [item.filename for item in items])]
    existing = {row.filename: row for row in (await session.scalars(
        select(PackageFile).where(col(PackageFile.id).in_(ids))) if ids else ())}
    old_keys: list[str] = []
    delta = 0
    new_rows = []
    newest: dict[str, dict[str, Any]] = {}  # per name, the record of the newest version in the batch
    shared = {"channel_id": channel.id, "subdir": subdir, "traits": [], "uploader_id": None, "uploaded_at": now}
    for item in items:
        record = item.record
        record_json = item.record_json or dumps_record(record)
        package = packages[str(record["name"])]
        best = newest.get(package.name)
        if best is None or rd.version_key(str(record["version"])) > rd.version_key(str(best["version"])):
            newest[package.name] = record
        timestamp = record.get("timestamp")
        values = {
            "package_id": package.id, "filename": item.filename,
            "name": package.name, "version": str(record["version"]), "build": str(record["build"]),
            "build_number": int(record.get("build_number") or 0), "size": item.size,
            "md5": item.md5 or str(record.get("md5") or ""), "sha256": item.sha256, "record": record_json,
            "packed": pack_record(item.filename, record_json), "v3": is_v3(record),
            "timestamp": int(timestamp) if isinstance(timestamp, int | float) else None,
            "stored": item.path is not None,
        }
        delta += item.size if item.path is not None else 0
        row = existing.get(item.filename)
        if row is None:
            new_rows.append(values)
            continue
        if row.stored:
            delta -= row.size
            if row.sha256 != item.sha256:
                old_keys.append(layout.package_key(channel.name, subdir, row.sha256, item.filename))
        for key, value in {**values, **shared}.items():
            setattr(row, key, value)
    # Not the ORM's bulk insert (three times slower), nor Core's executemany (its per-row parameter work
    # took more of the event loop than the database took).
    await insert_rows(session, PackageFile.__table__, new_rows, shared)  # type: ignore[attr-defined]
    for name, package in packages.items():  # newest version and its license, as uploads keep them
        best = newest[name]
        if not package.latest_version or \
                rd.version_key(str(best["version"])) >= rd.version_key(package.latest_version):
            package.latest_version = str(best["version"])
            package.license = str(best.get("license") or "")[:256]
        package.updated_at = now
    await session.execute(update(Channel).where(Channel.id == channel.id)  # type: ignore[arg-type]
                          .values(size=Channel.size + delta, updated_at=now))
    await session.flush()
    return old_keys

