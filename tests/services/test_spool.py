"""HashingWriter: a body written and hashed by a worker thread, fed chunk by chunk."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from graphconda.services import spool
from graphconda.services.spool import HashingWriter


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(2) as pool:
        yield pool


async def test_a_body_larger_than_the_backlog_is_written_and_hashed_whole(tmp_path: Path,
                                                                          executor: ThreadPoolExecutor) -> None:
    body = os.urandom(3 * spool.BACKLOG + 12345)  # the writer waits for room several times
    writer = HashingWriter(tmp_path / "f", executor, md5=True)
    for start in range(0, len(body), 65536):
        await writer.write(body[start:start + 65536])
    await writer.close()
    assert (tmp_path / "f").read_bytes() == body
    assert writer.size == len(body)
    assert writer.sha256.hexdigest() == hashlib.sha256(body).hexdigest()
    assert writer.md5.hexdigest() == hashlib.md5(body).hexdigest()


async def test_a_write_that_cannot_happen_is_raised(tmp_path: Path, executor: ThreadPoolExecutor) -> None:
    writer = HashingWriter(tmp_path / "missing" / "f", executor, md5=False)
    with pytest.raises(FileNotFoundError):
        for _ in range(100):
            await writer.write(b"x" * 65536)
        await writer.close()
    await writer.abort()


async def test_an_aborted_body_leaves_a_closed_file_the_caller_may_delete(tmp_path: Path,
                                                                          executor: ThreadPoolExecutor) -> None:
    writer = HashingWriter(tmp_path / "f", executor, md5=False, sha256=False)
    for _ in range(200):
        await writer.write(b"x" * 65536)
    await writer.abort()
    (tmp_path / "f").unlink()
    assert writer.sha256 is None and writer.md5 is None
