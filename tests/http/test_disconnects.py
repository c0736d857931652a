"""Clients that go away mid-request: an ordinary event, logged as one INFO line, leaving nothing behind."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from graphconda.services.context import Services
from tests.fixtures.server import LiveServer
from tests.helpers.channels import leftover_temp_files, owner_key_for_main, package_files
from tests.helpers.packages import build_package


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if not any(seen is record for seen in self.records):  # one record may reach two of our loggers
            self.records.append(record)


@pytest.fixture
def server_logs() -> Iterator[Records]:
    """Everything the server logs, uvicorn's own loggers included (they do not propagate to the root)."""
    handler = Records()
    loggers = [logging.getLogger(), logging.getLogger("uvicorn"), logging.getLogger("uvicorn.error"),
               logging.getLogger("graphconda")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
    logging.getLogger("graphconda").setLevel(logging.INFO)
    try:
        yield handler
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)


def _abandon(url: str, head: str, body: bytes) -> None:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(head.encode() + body)


@pytest.mark.parametrize("route", ["raw", "multipart"])
async def test_disconnect_mid_upload_is_one_info_line(live_server: LiveServer, services: Services, tmp_path: Path,
                                                      server_logs: Records, route: str) -> None:
    key = await owner_key_for_main(services)
    package = build_package(tmp_path, "alpha").read_bytes()
    if route == "raw":
        head = (f"POST /api/channels/main/upload/alpha-1.0-0.conda HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"X-API-Key: {key}\r\nContent-Length: {len(package) + 100_000}\r\n\r\n")
        body = package
    else:
        boundary = "b0undary"
        body = (f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="alpha-1.0-0.conda"\r\n'
                f"Content-Type: application/octet-stream\r\n\r\n").encode() + package
        head = (f"POST /api/channels/main/files HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {key}\r\n"
                f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
                f"Content-Length: {len(body) + 100_000}\r\n\r\n")
    await asyncio.to_thread(_abandon, live_server.url, head, body)
    for _ in range(200):  # the server notices the closed connection on its next read
        if any("disconnect" in r.getMessage().lower() for r in server_logs.records):
            break
        await asyncio.sleep(0.05)
    noisy = [r for r in server_logs.records if r.levelno >= logging.WARNING or r.exc_info]
    assert noisy == [], [r.getMessage() for r in noisy]
    said = [r for r in server_logs.records if "disconnect" in r.getMessage().lower()]
    assert len(said) == 1 and said[0].levelno == logging.INFO
    assert "\n" not in said[0].getMessage() and "/api/channels/main/" in said[0].getMessage()
    assert leftover_temp_files(services) == []
    assert await package_files(services) == []
