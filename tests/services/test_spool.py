"""The spooler: bodies written and hashed by its worker threads, fed chunk by chunk."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from graphconda.services import spool
from graphconda.services.spool import Spooler


@pytest.fixture
def spooler() -> Iterator[Spooler]:
    spooler = Spooler()
    yield spooler
    spooler.close()


async def test_bodies_larger_than_the_backlog_are_written_and_hashed_whole(tmp_path: Path, spooler: Spooler) -> None:
    bodies = [os.urandom(3 * spool.BACKLOG + n) for n in (12345, 1, 0)]  # each waits for room several times

    async def one(n: int, body: bytes) -> None:
        writer = spooler.writer(tmp_path / str(n), md5=True, writeback=True)
        for start in range(0, len(body), 65536):
            await writer.write(body[start:start + 65536])
        await writer.close()
        assert (tmp_path / str(n)).read_bytes() == body
        assert writer.size == len(body)
        assert writer.sha256.hexdigest() == hashlib.sha256(body).hexdigest()
        assert writer.md5.hexdigest() == hashlib.md5(body).hexdigest()

    await asyncio.gather(*(one(n, body) for n, body in enumerate(bodies)))


async def test_an_empty_body_is_an_empty_file(tmp_path: Path, spooler: Spooler) -> None:
    writer = spooler.writer(tmp_path / "f", md5=False)
    await writer.close()
    assert (tmp_path / "f").read_bytes() == b""
    assert writer.sha256.hexdigest() == hashlib.sha256(b"").hexdigest()


async def test_a_write_that_cannot_happen_is_raised(tmp_path: Path, spooler: Spooler) -> None:
    writer = spooler.writer(tmp_path / "missing" / "f", md5=False)
    with pytest.raises(FileNotFoundError):
        for _ in range(200):
            await writer.write(b"x" * 65536)
        await writer.close()
    await writer.abort()


async def test_an_aborted_body_leaves_a_closed_file_the_caller_may_delete(tmp_path: Path, spooler: Spooler) -> None:
    writer = spooler.writer(tmp_path / "f", md5=False, sha256=False)
    for _ in range(200):
        await writer.write(b"x" * 65536)
    await writer.abort()
    (tmp_path / "f").unlink()
    assert writer.sha256 is None and writer.md5 is None
