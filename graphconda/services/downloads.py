"""Counting package downloads in each process: in memory, written to the database in batches.

Serving a package file must not wait for a database write, so `record_download` only adds
one to an in-memory counter keyed by (channel, subdir, filename, UTC hour). A background task
writes the counters as `DownloadEvent` rows every `metrics.flush_seconds` (one row per key, not
per download), and `aclose` (open_services' exit stack, at shutdown) writes what is left. A
process killed without shutting down therefore loses at most the counts of the last
`flush_seconds`. The `aggregate_metrics` job (services/metrics.py) folds the events into the
hour/day/month/year figures.

What counts as a download is decided by the HTTP layer (http/conda.py `_deliver`): a GET of a
package file answered with its whole body (200, or 206 of byte 0 to the last byte) or with a
redirect to it (presigned storage URL, upstream file of a proxylisted package).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from datetime import datetime
from typing import Any

from sqlalchemy import insert

from graphconda.db.models import DownloadEvent
from graphconda.services.context import Services

log = logging.getLogger("graphconda.downloads")
MAX_KEYS = 100_000  # distinct (file, hour) keys held while the database is unreachable; beyond, new ones drop

Key = tuple[int, str, str, datetime]  # channel id, subdir, filename, start of the UTC hour


class DownloadCounter:
    """This process's unwritten download counts (a typed component on Services)."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.flush_seconds = services.settings.metrics.flush_seconds
        self._counts: Counter[Key] = Counter()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._stop = asyncio.Event()
        self._lock = asyncio.Lock()  # one flush at a time: the periodic one and an explicit one

    @property
    def pending(self) -> int:
        """Downloads counted here and not yet written."""
        return sum(self._counts.values())

    def add(self, channel_id: int, subdir: str, filename: str) -> None:
        hour = self.services.now().replace(minute=0, second=0, microsecond=0)
        key = (channel_id, subdir, filename, hour)
        if key in self._counts or len(self._counts) < MAX_KEYS:
            self._counts[key] += 1
        if self._task is None and not self._closing:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="graphconda-downloads")

    async def _run(self) -> None:
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.flush_seconds)
            if self._closing:
                break
            try:
                await self.flush()
            except Exception:  # never let the loop die: the next interval tries again
                log.warning("could not write download counts", exc_info=True)

    async def flush(self) -> None:
        """Write the counts held in memory as DownloadEvent rows (one transaction)."""
        async with self._lock:
            batch, self._counts = self._counts, Counter()
            if not batch:
                return
            rows: list[dict[str, Any]] = [{"channel_id": c, "subdir": s, "filename": f, "at": at, "count": n}
                    for (c, s, f, at), n in batch.items()]
            try:
                async with self.services.db.write() as session:
                    await session.execute(insert(DownloadEvent), rows)
                return
            except Exception:
                log.warning("could not write %d download counts in one batch; trying one by one", len(rows),
                            exc_info=True)
            for key, row in zip(batch, rows, strict=True):
                try:
                    async with self.services.db.write() as session:
                        await session.execute(insert(DownloadEvent), [row])
                except Exception as exc:
                    if _is_gone(exc):
                        log.debug("dropped downloads of a deleted channel: %s", row)
                    else:  # the database is unreachable: keep the count for the next flush
                        self._counts[key] += row["count"]

    async def aclose(self) -> None:
        self._closing = True
        self._stop.set()
        if self._task is not None:
            await self._task
            self._task = None
        await self.flush()


def _is_gone(exc: Exception) -> bool:
    from sqlalchemy.exc import IntegrityError

    return isinstance(exc, IntegrityError)


def record_download(services: Services, channel_id: int, subdir: str, filename: str) -> None:
    """Count one download of a package file (the caller decided that it is one)."""
    services.downloads.add(channel_id, subdir, filename)


async def flush_downloads(services: Services) -> None:
    await services.downloads.flush()
