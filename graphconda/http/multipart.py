"""Streaming multipart/form-data into temporary files, with a size limit per file enforced as bytes arrive.

Starlette's `request.form()` spools file parts without a size limit and only returns once
the whole body is in; uploads need to stop reading the moment one file is too big.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from graphconda.errors import InvalidInputError, TooLargeError
from graphconda.services.temp_files import temp_file

MAX_FILES = 100
MAX_FIELD_BYTES = 64 * 1024
_WRITE_BATCH = 1024 * 1024


@dataclass
class Part:
    name: str = ""
    filename: str | None = None  # None: a plain form field
    size: int = 0
    value: bytearray = field(default_factory=bytearray)  # field value, or file bytes not yet written
    path: Path | None = None
    file: BinaryIO | None = None
    done: bool = False
    headers: dict[str, str] = field(default_factory=dict)  # the part's own headers, lowercased names


class MultipartSpool:
    """Feed it request chunks; file parts land in temporary files under `directory`."""

    def __init__(self, content_type: str, directory: Path, file_limit: int) -> None:
        kind, options = parse_options_header(content_type)
        boundary = options.get(b"boundary")
        if kind != b"multipart/form-data" or not boundary:
            raise InvalidInputError("expected a multipart/form-data body with a boundary", field="files")
        self.directory = directory
        self.file_limit = file_limit
        self.parts: list[Part] = []
        self._header = [b"", b""]
        self._disposition = b""
        self._parser = MultipartParser(boundary, {
            "on_part_begin": self._begin,
            "on_header_field": lambda data, start, end: self._add_header(0, data[start:end]),
            "on_header_value": lambda data, start, end: self._add_header(1, data[start:end]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._data,
            "on_part_end": self._end,
        })

    # Parser callbacks: bookkeeping only, no I/O (they run on the event loop).

    def _begin(self) -> None:
        self.parts.append(Part())
        self._disposition = b""

    def _add_header(self, which: int, data: bytes) -> None:
        self._header[which] += data

    def _header_end(self) -> None:
        name = self._header[0].lower()
        if name == b"content-disposition":
            self._disposition = self._header[1]
        part = self.parts[-1]
        if len(part.headers) < 32 and len(name) + len(self._header[1]) < 1024:  # bounded: hostile bodies
            part.headers[name.decode("latin-1")] = self._header[1].decode("latin-1").strip()
        self._header = [b"", b""]

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        part = self.parts[-1]
        part.name = options.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" in options:
            part.filename = options[b"filename"].decode("utf-8", "replace")

    def _data(self, data: bytes, start: int, end: int) -> None:
        part = self.parts[-1]
        part.value += data[start:end]
        part.size += end - start

    def _end(self) -> None:
        self.parts[-1].done = True

    # The async side: checks and file writes after every chunk.

    async def feed(self, chunk: bytes) -> None:
        try:
            self._parser.write(chunk)
        except FormParserError as exc:
            raise InvalidInputError(f"malformed multipart body: {exc}", field="files") from None
        await self._flush()

    async def finish(self) -> None:
        try:
            self._parser.finalize()
        except FormParserError as exc:
            raise InvalidInputError(f"malformed multipart body: {exc}", field="files") from None
        if self.parts and not self.parts[-1].done:
            raise InvalidInputError("malformed multipart body: it ends in the middle of a part", field="files")
        await self._flush()

    async def _flush(self) -> None:
        files = [p for p in self.parts if p.filename is not None]
        if len(files) > MAX_FILES:
            raise InvalidInputError(f"at most {MAX_FILES} files per request", field="files")
        for part in self.parts:
            if part.filename is None:
                if part.size > MAX_FIELD_BYTES:
                    raise InvalidInputError(f"form field {part.name!r} is too long", field=part.name or "form")
                continue
            if part.size > self.file_limit:
                raise TooLargeError(f"{part.filename} is larger than the upload limit of {self.file_limit} bytes")
            if part.value and (part.done or len(part.value) >= _WRITE_BATCH):
                if part.file is None:
                    part.path, part.file = await run_in_threadpool(self._open)
                file = part.file
                assert file is not None
                await run_in_threadpool(file.write, part.value)
                part.value.clear()
            if part.done and part.file is not None and not part.file.closed:
                await run_in_threadpool(part.file.close)

    def _open(self) -> tuple[Path, BinaryIO]:
        fd, path = temp_file(self.directory, "multipart")  # named after this process: see services.temp_files
        return path, os.fdopen(fd, "wb")

    def fields(self) -> dict[str, str]:
        return {p.name: p.value.decode("utf-8", "replace") for p in self.parts if p.filename is None}

    def files(self, *names: str) -> list[tuple[str, Path | None]]:
        """(filename, temporary path) of the file parts under `names`; path None for an empty file."""
        return [(p.filename, p.path) for p in self.parts if p.filename is not None and p.name in names]

    def file_parts(self, *names: str) -> list[Part]:
        """The file parts under `names` (path None for an empty file), with their own headers."""
        return [p for p in self.parts if p.filename is not None and p.name in names]

    def cleanup(self) -> None:
        for part in self.parts:
            if part.file is not None:
                part.file.close()
            if part.path is not None:
                part.path.unlink(missing_ok=True)


async def spool_multipart(request: Request, directory: Path, file_limit: int) -> MultipartSpool:
    """Read the whole multipart body of `request` into a MultipartSpool (cleaned up on failure)."""
    spool = MultipartSpool(request.headers.get("content-type", ""), directory, file_limit)
    try:
        async for chunk in request.stream():
            await spool.feed(chunk)
        await spool.finish()
    except BaseException:
        await run_in_threadpool(spool.cleanup)
        raise
    return spool
