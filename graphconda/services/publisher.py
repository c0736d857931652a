"""The per-process publisher: coalesces requests to rebuild monolithic files into few rebuilds.

Changers call `request_publish(services, channel_id, subdir)` after they commit. The
publisher waits `publish.debounce_seconds` (a burst of uploads lands in one rebuild),
rebuilds every requested subdir, then the channels' channeldata.json. Subdirs a process
left unpublished (it died between commit and rebuild) are picked up by `catch_up`, which
the `publish_sweep` job runs once per deployment every `publish.sweep_interval_seconds`;
superseded shards are expired by the `cleanup` job. Closing it (with the services)
finishes pending work first.
"""

from __future__ import annotations

import asyncio
import logging

from graphconda.services import publishing
from graphconda.services.context import Services

log = logging.getLogger("graphconda.publishing")


class Publisher:
    def __init__(self, services: Services) -> None:
        self.services = services
        self._pending: set[tuple[int, str]] = set()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        self._task: asyncio.Task[None] | None = None

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
        channels: set[int] = set()
        for channel_id, subdir in sorted(batch):
            try:
                if await publishing.publish_subdir(self.services, channel_id, subdir):
                    channels.add(channel_id)
            except Exception:
                log.exception("publishing channel %d subdir %s failed; the next sweep retries", channel_id, subdir)
        for channel_id in sorted(channels):
            try:
                await publishing.publish_channeldata(self.services, channel_id)
            except Exception:
                log.exception("publishing channeldata of channel %d failed", channel_id)
        if not self._pending:
            self._idle.set()

    async def aclose(self) -> None:
        """Finish what is pending, then stop."""
        self._closing = True
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


async def wait_published(services: Services) -> None:
    """Wait until the monolithic files reflect every change this process made."""
    await publisher(services).wait_idle()
