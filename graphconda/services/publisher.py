"""The per-process publisher: coalesces requests to rebuild monolithic files into few rebuilds.

Changers call `request_publish(services, channel_id, subdir)` after they commit. The
publisher waits `publish.debounce_seconds` (a burst of uploads lands in one rebuild),
rebuilds every requested subdir, then the channels' channeldata.json. Subdirs a process
left unpublished (it died between commit and rebuild) are picked up by `catch_up`, which
the `publish_sweep` job runs once per deployment every `publish.sweep_interval_seconds`;
superseded shards are expired by the `cleanup` job. A rebuild that fails (storage full,
database down) is retried on its own, after 1 s and then twice as long each time up to
`publish.sweep_interval_seconds`; until it succeeds, `failures` says what is behind and
why, and /readyz reports the server not ready. Closing it (with the services) finishes
pending work first.
"""

from __future__ import annotations

import asyncio
import logging
import time

from graphconda.errors import DatabaseUnavailableError, StorageFullError
from graphconda.services import ops_metrics, publishing
from graphconda.services.context import Services

log = logging.getLogger("graphconda.publishing")
_FIRST_RETRY_SECONDS = 1.0
_CHANNELDATA = ""  # in place of a subdir: the channel's channeldata.json


class Publisher:
    def __init__(self, services: Services) -> None:
        self.services = services
        self._pending: set[tuple[int, str]] = set()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        # (channel id, subdir or _CHANNELDATA) whose last rebuild failed, and why.
        self.failures: dict[tuple[int, str], str] = {}
        self._retry_in = _FIRST_RETRY_SECONDS
        self._retry_timer: asyncio.TimerHandle | None = None

    def request(self, channel_id: int, subdir: str) -> None:
        self._pending.add((channel_id, subdir))
        self._idle.clear()
        self._wake.set()
        self._ensure_task()

    def _ensure_task(self) -> None:
        if self._task is None and not self._closing:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="graphconda-publisher")

    async def catch_up(self) -> int:
        """Rebuild what any process left unpublished (the publish_sweep job); how many subdirs were found."""
        found = await publishing.unpublished_subdirs(self.services)
        self._pending.update(found)
        if self._pending:
            self._idle.clear()
        await self._publish_pending()
        return len(found)

    async def wait_idle(self) -> None:
        """Return once every requested rebuild has run (tests and the CLI use it)."""
        await self._idle.wait()

    async def _run(self) -> None:
        debounce = self.services.settings.publish.debounce_seconds
        while True:
            if not self._pending and not self._closing:
                await self._wake.wait()
            self._wake.clear()
            if self._pending and debounce and not self._closing:
                await asyncio.sleep(debounce)
            await self._publish_pending()
            if self._closing and not self._pending:
                return

    async def _publish_pending(self) -> None:
        batch, self._pending = self._pending, set()
        channels = {channel_id for channel_id, subdir in batch if subdir == _CHANNELDATA}
        for channel_id, subdir in sorted(batch):
            if subdir == _CHANNELDATA:
                continue
            try:
                started = time.perf_counter()
                if await publishing.publish_subdir(self.services, channel_id, subdir):
                    ops_metrics.observe_publish("repodata", time.perf_counter() - started)
                    channels.add(channel_id)
                self.failures.pop((channel_id, subdir), None)
            except Exception as exc:
                self._failed((channel_id, subdir), exc)
        for channel_id in sorted(channels):
            try:
                started = time.perf_counter()
                await publishing.publish_channeldata(self.services, channel_id)
                ops_metrics.observe_publish("channeldata", time.perf_counter() - started)
                self.failures.pop((channel_id, _CHANNELDATA), None)
            except Exception as exc:
                self._failed((channel_id, _CHANNELDATA), exc)
        if not self.failures:
            self._retry_in = _FIRST_RETRY_SECONDS
        if not self._pending:
            self._idle.set()

    def _failed(self, what: tuple[int, str], exc: Exception) -> None:
        channel_id, subdir = what
        name = f"channel {channel_id} " + (f"subdir {subdir}" if subdir else "channeldata.json")
        self.failures[what] = f"{name}: {exc}" if str(exc) else f"{name}: {type(exc).__name__}"
        if isinstance(exc, StorageFullError | DatabaseUnavailableError):  # expected: one line, no traceback
            log.warning("publishing %s failed: %s; retrying in %g s", name, exc, self._retry_in)
        else:
            log.exception("publishing %s failed; retrying in %g s", name, self._retry_in)
        if self._retry_timer is None and not self._closing:
            self._retry_timer = asyncio.get_running_loop().call_later(self._retry_in, self._retry)
            self._retry_in = min(self._retry_in * 2, self.services.settings.publish.sweep_interval_seconds)

    def _retry(self) -> None:
        self._retry_timer = None
        if self._closing:
            return
        for channel_id, subdir in list(self.failures):
            self.request(channel_id, subdir)

    async def aclose(self) -> None:
        """Finish what is pending, then stop."""
        self._closing = True
        if self._retry_timer is not None:
            self._retry_timer.cancel()
            self._retry_timer = None
        if self._task is None:
            return
        self._wake.set()
        try:
            await self._task
        except Exception:
            log.exception("publisher stopped with an error")
        finally:
            self._task = None


def publisher(services: Services) -> Publisher:
    """This process's publisher."""
    return services.publisher


def request_publish(services: Services, channel_id: int, subdir: str) -> None:
    publisher(services).request(channel_id, subdir)


def publishing_failures(services: Services) -> list[str]:
    """What this process failed to publish and is retrying (empty when all is published)."""
    return sorted(publisher(services).failures.values())


async def wait_published(services: Services) -> None:
    """Wait until the monolithic files reflect every change this process made."""
    await publisher(services).wait_idle()
