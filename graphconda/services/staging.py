"""Staging an upload: every check a package file must pass before it is stored.

The body is streamed to a temporary file while sha256 and md5 are computed (stopping at
the size limit), then only the archive's info/ members are read. Nothing is stored and no
row is written here; services.packages commits what passed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import anyio
from starlette.concurrency import run_in_threadpool

from graphconda.conda.archive import PackageMetadata, read_package
from graphconda.conda.listing import ReadLimits
from graphconda.conda.names import parse_filename
from graphconda.conda.records import dumps_record, is_v3, make_record
from graphconda.db.models import Channel
from graphconda.errors import (
    ChecksumMismatchError,
    InvalidInputError,
    InvalidPackageError,
    TooLargeError,
)
from graphconda.services import authz, temp_files
from graphconda.services.access import UPLOADS, ChannelKind, gate
from graphconda.services.authz import Actor, ChannelAccess
from graphconda.services.context import Services
from graphconda.settings import Settings

log = logging.getLogger("graphconda.staging")
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_WRITE_BATCH = 1024 * 1024


@dataclass
class StagedPackage:
    """An upload that passed every check and waits in a temporary file to be committed."""

    channel: Channel
    access: ChannelAccess
    path: Path
    meta: PackageMetadata
    sha256: str
    md5: str
    size: int
    record_json: str
    v3: bool

    @property
    def filename(self) -> str:
        return self.meta.filename

    @property
    def subdir(self) -> str:
        return self.meta.subdir

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


async def precheck_upload(services: Services, actor: Actor, channel_name: str,
                         *, allow: frozenset[ChannelKind] = UPLOADS) -> None:
    """The checks an upload can pass or fail before its body is read (multipart bodies are spooled
    to disk first, so these run before that): channel visible, of a kind in `allow`, caller logged in."""
    async with services.db.read() as session:
        _, access = await gate(session, actor, channel_name, allow=allow, action="uploads")
    authz.require_upload_intent(actor, access)


async def stage_package(
    services: Services,
    actor: Actor,
    channel_name: str,
    filename: str,
    body: AsyncIterator[bytes],
    *,
    expected_sha256: str | None = None,
    expected_size: int | None = None,
    allow: frozenset[ChannelKind] = UPLOADS,
    gated: tuple[Channel, ChannelAccess] | None = None,
) -> StagedPackage:
    """Every check an upload must pass, up to (not including) storing it.

    `gated`: the channel and the actor's channel-level roles, looked up once for a multi-file
    request; used when they already allow the upload (and a forced one), else the
    package-level roles are looked up as usual.
    """
    parsed = parse_filename(filename)
    if expected_sha256 is not None and not _SHA256.fullmatch(expected_sha256):
        raise InvalidInputError("sha256 must be 64 hexadecimal digits", field="sha256")
    limit = services.settings.limits.max_upload_bytes
    if expected_size is not None and expected_size > limit:
        raise TooLargeError(f"{filename} is {expected_size} bytes; the upload limit is {limit} bytes")
    if gated is not None and gated[0].name == channel_name and authz.can_upload(actor, gated[1], parsed.name,
                                                                                force=True):
        channel, access = gated
    else:
        async with services.db.read() as session:
            channel, access = await gate(session, actor, channel_name, allow=allow, action="uploads",
                                         package_name=parsed.name)
    authz.require_upload(actor, access, parsed.name)

    path = await run_in_threadpool(_temp_path, services)
    try:
        sha256, md5, size = await _spool(body, path, filename, limit, expected_size)
        if expected_size is not None and size != expected_size:
            raise InvalidPackageError(f"{filename}: received {size} bytes but {expected_size} were announced",
                                      field="file")
        if expected_sha256 is not None and expected_sha256.lower() != sha256:
            raise ChecksumMismatchError(
                f"sha256 mismatch for {filename}: the uploaded file has {sha256}, expected {expected_sha256.lower()}",
                field="sha256",
            )
        meta = await run_in_threadpool(read_package, path, filename, read_limits(services.settings, channel.name))
        record = make_record(meta, md5=md5, sha256=sha256, size=size)
        return StagedPackage(channel, access, path, meta, sha256, md5, size, dumps_record(record), is_v3(record))
    except BaseException:
        with anyio.CancelScope(shield=True):
            await run_in_threadpool(path.unlink, True)
        raise


def read_limits(settings: Settings, channel_name: str) -> ReadLimits:
    """How much reading one package for `channel_name` may cost, and whether unsafe paths pass."""
    limits = settings.limits
    return ReadLimits(
        max_unpacked_bytes=limits.max_unpacked_bytes,
        max_expansion_ratio=limits.max_expansion_ratio,
        max_package_members=limits.max_package_members,
        min_bytes_per_member=limits.min_bytes_per_member,
        allow_unsafe_paths=channel_name in limits.allow_unsafe_paths_channels,
    )


def _temp_path(services: Services) -> Path:
    fd, path = temp_files.temp_file(services.settings.data_dir / temp_files.TEMP_DIR, "upload")
    os.close(fd)
    return path


async def remove_stale_upload_files(services: Services, *, dry_run: bool = False) -> list[Path]:
    """Delete the temporary upload files (under <data_dir>/tmp) of processes that are gone.

    Run at every process start and by the cleanup job; files of live processes (several
    may share the data directory) are never touched. Returns the paths removed (with
    `dry_run`, those that would be, deleting nothing).
    """
    directory = services.settings.data_dir / temp_files.TEMP_DIR
    if dry_run:
        return await run_in_threadpool(temp_files.stale_files, directory)
    removed = await run_in_threadpool(temp_files.remove_stale_files, directory)
    if removed:
        log.info("removed %d temporary file(s) left by processes that are gone: %s", len(removed),
                 ", ".join(p.name for p in removed[:10]) + (" ..." if len(removed) > 10 else ""))
    return removed


async def _spool(
    body: AsyncIterator[bytes], path: Path, filename: str, limit: int, expected_size: int | None
) -> tuple[str, str, int]:
    """Write the body to `path` while hashing it; stop reading as soon as it is too big."""
    sha256, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    f = await run_in_threadpool(open, path, "wb")

    def write(data: bytearray) -> None:
        sha256.update(data)
        md5.update(data)
        f.write(data)

    size = 0
    buffer = bytearray()
    try:
        async for chunk in body:
            size += len(chunk)
            if size > limit:
                raise TooLargeError(f"{filename} is larger than the upload limit of {limit} bytes")
            if expected_size is not None and size > expected_size:
                raise InvalidPackageError(f"{filename}: more bytes arrived than the {expected_size} announced",
                                          field="file")
            buffer += chunk
            if len(buffer) >= _WRITE_BATCH:
                await run_in_threadpool(write, buffer)
                buffer.clear()
        if buffer:
            await run_in_threadpool(write, buffer)
    finally:
        await run_in_threadpool(f.close)
    return sha256.hexdigest(), md5.hexdigest(), size
