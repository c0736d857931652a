"""Counting package downloads: events are buffered in memory and written in batches.

Serving a package file must not wait for a database write, so `record_download` only
appends to a per-process buffer; a background task inserts the buffered `DownloadEvent`
rows about once a second (and when the services close). The metrics job folds events
into `DownloadCount` rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime

from sqlalchemy import insert

from graphconda.db.models import DownloadEvent
from graphconda.services.context import Services

log = logging.getLogger("graphconda.downloads")
FLUSH_SECONDS = 1.0
MAX_BUFFER = 50_000  # beyond this (database down for long) the oldest events are dropped


class DownloadCounter:
    def __init__(self, services: Services) -> None:
        self.services = services
        self._buffer: list[tuple[int, datetime]] = []
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._stop = asyncio.Event()

    def add(self, package_file_id: int) -> None:
        self._buffer.append((package_file_id, self.services.now()))
        if len(self._buffer) > MAX_BUFFER:
            del self._buffer[: len(self._buffer) - MAX_BUFFER]
        if self._task is None and not self._closing:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="graphconda-downloads")

    async def _run(self) -> None:
        while self._buffer and not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), FLUSH_SECONDS)
            await self.flush()
        self._task = None

    async def flush(self) -> None:
        batch, self._buffer = self._buffer, []
        if not batch:
            return
        try:
            async with self.services.db.write() as session:
                await session.execute(
                    insert(DownloadEvent), [{"package_file_id": fid, "at": at} for fid, at in batch]
                )
        except Exception:
            # A file deleted meanwhile (foreign key) or a database hiccup: keep what can be kept.
            log.warning("could not record %d downloads; retrying one by one", len(batch), exc_info=True)
            await self._flush_each(batch)

    async def _flush_each(self, batch: list[tuple[int, datetime]]) -> None:
        for fid, at in batch:
            try:
                async with self.services.db.write() as session:
                    await session.execute(insert(DownloadEvent), [{"package_file_id": fid, "at": at}])
            except Exception:
                log.debug("dropped a download event of file %d", fid, exc_info=True)

    async def aclose(self) -> None:
        self._closing = True
        self._stop.set()
        if self._task is not None:
            await self._task
        await self.flush()


def download_counter(services: Services) -> DownloadCounter:
    return services.downloads


def record_download(services: Services, package_file_id: int) -> None:
    """Count one full download of a package file (not HEAD, not a range read)."""
    download_counter(services).add(package_file_id)


async def flush_downloads(services: Services) -> None:
    await download_counter(services).flush()
