"""Helpers for tests of uploads and publishing: users, channels, reading what a channel publishes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgpack
import zstandard
from sqlalchemy import select, update

from graphconda.db.models import Channel, ChannelMember, PackageFile
from graphconda.errors import BlobNotFoundError
from graphconda.services import api_keys, channels, users
from graphconda.services.authz import SYSTEM, Actor, Role
from graphconda.services.context import Services
from graphconda.services.publisher import wait_published


async def make_user(services: Services, name: str, role: Role | None = None) -> Actor:
    return users.actor_for(await users.create_user(services, SYSTEM, name, server_role=role))


async def owner_key_for_main(services: Services) -> str:
    """A server owner's API key, with a public channel `main` to upload to."""
    owner = await make_user(services, "owner", Role.OWNER)
    _, secret = await api_keys.create_api_key(services, owner)
    await make_channel(services, "main")
    return secret


async def make_channel(services: Services, name: str, *, private: bool = False, mirror: bool = False,
                       options: dict[str, Any] | None = None) -> Channel:
    spec = channels.ChannelSpec(name=name, private=private, mirror_mode="mirror" if mirror else None,
                                mirror_channel_url="https://conda.example.org/upstream" if mirror else None,
                                sync_now=False)
    channel = await channels.create_channel(services, SYSTEM, spec)
    if options:
        await set_options(services, name, options)
    return channel


async def set_options(services: Services, name: str, options: dict[str, Any]) -> None:
    async with services.db.write() as session:
        await session.execute(update(Channel).where(Channel.name == name).values(options=options))


async def add_member(services: Services, channel: str, actor: Actor, role: Role) -> None:
    async with services.db.write() as session:
        found = await session.scalar(select(Channel).where(Channel.name == channel))
        assert found is not None
        session.add(ChannelMember(channel_id=found.id, user_id=actor.user_id, role=role.value))


async def chunks(path: Path, size: int = 65536) -> AsyncIterator[bytes]:
    """A file as the async byte stream an upload route hands to ingest."""
    with open(path, "rb") as f:  # noqa: ASYNC230 - small test files
        while chunk := f.read(size):
            yield chunk


async def storage_keys(services: Services, prefix: str = "") -> set[str]:
    return {blob.key async for blob in services.storage.list(prefix)}


async def read_blob(services: Services, key: str) -> bytes | None:
    try:
        return await services.storage.read(key)
    except BlobNotFoundError:
        return None


async def repodata(services: Services, channel: str, subdir: str) -> dict[str, Any] | None:
    """The published repodata.json after the publisher caught up (None if never published)."""
    await wait_published(services)
    data = await read_blob(services, f"channels/{channel}/{subdir}/repodata.json")
    return None if data is None else json.loads(data)


def unzst(data: bytes) -> bytes:
    return zstandard.ZstdDecompressor().decompress(data)


async def shard_index(services: Services, channel: str, subdir: str) -> dict[str, Any] | None:
    data = await read_blob(services, f"channels/{channel}/{subdir}/repodata_shards.msgpack.zst")
    return None if data is None else msgpack.unpackb(unzst(data))


async def shard(services: Services, channel: str, subdir: str, digest: bytes) -> dict[str, Any]:
    data = await services.storage.read(f"channels/{channel}/{subdir}/shards/{digest.hex()}.msgpack.zst")
    return msgpack.unpackb(unzst(data))


async def package_files(services: Services) -> list[PackageFile]:
    async with services.db.read() as session:
        return list(await session.scalars(select(PackageFile).order_by(PackageFile.filename)))


async def snapshot(services: Services) -> tuple[set[str], list[tuple[str, str]], dict[str, bytes]]:
    """Everything an upload could change (once published): blob keys, file rows, published files' content."""
    await wait_published(services)
    keys = await storage_keys(services)
    rows = [(f.filename, f.sha256) for f in await package_files(services)]
    published = {key: await services.storage.read(key) for key in keys
                 if key.rsplit("/", 1)[-1].startswith(("repodata", "run_exports", "channeldata", "current_"))}
    return keys, rows, published


def leftover_temp_files(services: Services) -> list[Path]:
    """Temporary upload files still on disk (there must be none once a request is over)."""
    directory = services.settings.data_dir / "tmp"
    return list(directory.iterdir()) if directory.exists() else []
