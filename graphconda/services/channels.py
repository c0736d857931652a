"""Channels: create, find, list, update and delete, with visibility and rights decided by authz.

Deleting a channel removes its rows (members, packages, files, publishing state cascade
with it), then every blob under its storage prefix: package files and published repodata.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Select, delete, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from graphconda.conda.names import validate_channel_name
from graphconda.db.models import Channel, ChannelMember, ProxyEntry, SubdirState
from graphconda.errors import AlreadyExistsError, InvalidInputError, NotFoundError, StorageError
from graphconda.services import authz, channel_options, layout, mirroring, publishing, serving
from graphconda.services.access import find_channel
from graphconda.services.authz import Actor, ChannelAccess, Role
from graphconda.services.context import Services
from graphconda.services.locks import publish_lock

log = logging.getLogger("graphconda.channels")

MIRROR_MODES = ("proxy", "mirror")
MAX_DESCRIPTION = 10_000
MAX_LIST_ENTRIES = 1_000
MAX_LIST_ENTRY = 256
# Never the name: the channel may be private, and private names never appear in messages.
CHANNEL_TAKEN = "a channel of that name already exists"


@dataclass(frozen=True)
class ChannelSpec:
    name: str
    description: str = ""
    private: bool = False
    mirror_mode: str | None = None
    mirror_channel_url: str | None = None
    includelist: Sequence[str] = ()
    excludelist: Sequence[str] = ()
    proxylist: Sequence[str] = ()
    ttl: int | None = None  # proxy channels: seconds before upstream indexes are revalidated (None: server default)
    mirror_prune: bool = False
    sync_now: bool = True  # mirror channels: queue a first sync once created
    # Keep files an earlier channel of this name left in storage, to be indexed by a reindex
    # (Quetz's `actions: ["reindex"]` on create); only for server staff, otherwise they are purged.
    adopt_stored_files: bool = False
    # Publishing options (see services/channel_options.py); None: the server default.
    publish_bz2: bool = False
    publish_current_repodata: bool = False
    publish_shards: bool | None = None


@dataclass(frozen=True)
class ChannelUpdate:
    """Changes to a channel; None leaves a setting as it is."""

    description: str | None = None
    private: bool | None = None
    includelist: Sequence[str] | None = None
    excludelist: Sequence[str] | None = None
    proxylist: Sequence[str] | None = None
    mirror_channel_url: str | None = None
    ttl: int | None = None
    mirror_prune: bool | None = None
    publish_bz2: bool | None = None
    publish_current_repodata: bool | None = None
    publish_shards: bool | None = None

    @property
    def options(self) -> dict[str, bool]:
        return channel_options.check({"bz2": self.publish_bz2, "current_repodata": self.publish_current_repodata,
                                      "shards": self.publish_shards})

    @property
    def touches_mirroring(self) -> bool:
        return any(v is not None for v in (self.includelist, self.excludelist, self.proxylist, self.mirror_channel_url,
                                           self.ttl, self.mirror_prune))


def visible_channels(
    actor: Actor,
    *,
    name_contains: str | None = None,
    private: bool | None = None,
    mirror_mode: str | None = None,
    mirrored: bool | None = None,
) -> Select[Channel]:
    """SELECT of the channels `actor` may see, filtered (callers add ordering and paging)."""
    stmt = select(Channel).where(authz.visible_channels_clause(actor))
    if name_contains:
        stmt = stmt.where(Channel.name.contains(name_contains.lower(), autoescape=True))  # type: ignore[attr-defined]
    if private is not None:
        stmt = stmt.where(Channel.private.is_(private))  # type: ignore[attr-defined]
    if mirror_mode is not None:
        stmt = stmt.where(col(Channel.mirror_mode) == mirror_mode)
    if mirrored is False:
        stmt = stmt.where(Channel.mirror_mode.is_(None))  # type: ignore[union-attr]
    return stmt


def _check_mirror(mode: str | None, url: str | None) -> None:
    if mode is None:
        return
    if mode not in MIRROR_MODES:
        raise InvalidInputError(f"mirror mode must be one of {', '.join(MIRROR_MODES)}", field="mirrorMode")
    if not url or len(url) > 2048:
        raise InvalidInputError("a mirror channel needs an http(s) upstream URL", field="mirrorChannelUrl")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises for a port that is no number or out of range
    except ValueError:
        parts = None
    if (parts is None or parts.scheme not in ("http", "https") or not parts.hostname
            or any(c.isspace() or not c.isprintable() for c in url)):
        raise InvalidInputError("the upstream URL must be an http(s) URL with a host (and a valid port)",
                                field="mirrorChannelUrl")


def _check_ttl(ttl: int | None) -> int | None:
    if ttl is not None and not 0 <= ttl <= 366 * 86400:
        raise InvalidInputError("ttl is a number of seconds from 0 to a year", field="ttl")
    return ttl


def _check_lists(include: Sequence[str], exclude: Sequence[str]) -> None:
    if include and exclude:
        raise InvalidInputError("give an includelist or an excludelist, not both", field="excludelist")


def _check_description(description: str) -> str:
    if len(description) > MAX_DESCRIPTION:
        raise InvalidInputError(f"a description is at most {MAX_DESCRIPTION} characters", field="description")
    return description


def _check_list(values: Sequence[str], field: str) -> list[str]:
    cleaned = [v.strip() for v in values]
    if len(cleaned) > MAX_LIST_ENTRIES:
        raise InvalidInputError(f"{field} holds at most {MAX_LIST_ENTRIES} entries", field=field)
    for value in cleaned:
        if not value or len(value) > MAX_LIST_ENTRY or any(c in value for c in "\n\r\x00"):
            raise InvalidInputError(
                f"{field} entries are package names or match specs of 1-{MAX_LIST_ENTRY} characters", field=field
            )
        mirroring.list_spec(value, field)  # refused now, not at the next sync (which matches with it)
    return list(dict.fromkeys(cleaned))


async def _purge_storage(services: Services, name: str) -> None:
    """Delete every blob under the channel's prefix; raise StorageError naming how many failed."""
    failed = 0
    deleted: list[str] = []
    async for blob in services.storage.list(layout.channel_prefix(name)):
        try:
            await services.storage.delete(blob.key)
            deleted.append(blob.key)
        except StorageError:
            failed += 1
            log.exception("could not delete %s", blob.key)
    if deleted:
        serving.serving_cache(services).invalidate(deleted)
    if failed:
        raise StorageError(f"{failed} files of channel {name!r} could not be deleted from storage")


async def create_channel(services: Services, actor: Actor, spec: ChannelSpec) -> Channel:
    mirroring = spec.mirror_mode is not None or bool(spec.includelist or spec.excludelist or spec.proxylist)
    authz.require_create_channel(actor, mirror=mirroring or spec.ttl is not None or spec.mirror_prune)
    adopt = spec.adopt_stored_files and authz.can_adopt_stored_files(actor)
    name = validate_channel_name(spec.name)
    _check_mirror(spec.mirror_mode, spec.mirror_channel_url)
    lists: dict[str, Any] = {field: _check_list(getattr(spec, field), field)
                             for field in ("includelist", "excludelist", "proxylist")}
    _check_lists(lists["includelist"], lists["excludelist"])
    description = _check_description(spec.description)
    options = channel_options.check({"bz2": spec.publish_bz2, "current_repodata": spec.publish_current_repodata,
                                     "shards": spec.publish_shards})
    now = services.now()
    channel = Channel(
        name=name,
        description=description,
        private=spec.private,
        mirror_mode=spec.mirror_mode,
        mirror_channel_url=spec.mirror_channel_url if spec.mirror_mode else None,
        mirror_ttl=_check_ttl(spec.ttl),
        mirror_prune=spec.mirror_prune,
        options=options,
        **lists,
        created_at=now,
        updated_at=now,
    )
    try:
        async with services.db.write() as session:
            if await session.scalar(select(col(Channel.id)).where(col(Channel.name) == name)) is not None:
                raise AlreadyExistsError(CHANNEL_TAKEN)
            if not adopt:
                # Leftovers of an earlier channel of this name (a cleanup that failed) must never resurface.
                await _purge_storage(services, name)
            session.add(channel)
            await session.flush()
            if actor.user_id is not None:
                assert channel.id is not None
                session.add(ChannelMember(channel_id=channel.id, user_id=actor.user_id, role=Role.OWNER))
    except IntegrityError:
        raise AlreadyExistsError(CHANNEL_TAKEN) from None
    serving.forget_channel(services, name)  # this process may remember the name as absent
    if channel.mirror_mode == "mirror" and spec.sync_now:
        from graphconda.services.mirroring import start_sync

        await start_sync(services, actor, name)
    return channel


async def list_channels(services: Services, actor: Actor) -> Sequence[Channel]:
    async with services.db.read() as session:
        rows = await session.scalars(visible_channels(actor).order_by(Channel.name))
        return list(rows)


async def update_channel(services: Services, actor: Actor, name: str, changes: ChannelUpdate) -> Channel:
    """Change a channel's settings: owners and maintainers; mirroring settings need server staff.

    A change of publishing options returns once the published files follow it (written or
    deleted, see services/channel_options.py).
    """
    values: dict[str, Any] = {}
    if changes.description is not None:
        values["description"] = _check_description(changes.description)
    if changes.private is not None:
        values["private"] = changes.private
    for field in ("includelist", "excludelist", "proxylist"):
        entries = getattr(changes, field)
        if entries is not None:
            values[field] = _check_list(entries, field)
    if changes.ttl is not None:
        values["mirror_ttl"] = _check_ttl(changes.ttl)
    if changes.mirror_prune is not None:
        values["mirror_prune"] = changes.mirror_prune
    options = changes.options
    change: channel_options.OptionChange | None = None
    if options:
        # Refused or found absent before any file is rebuilt; what must exist before the
        # change is visible (shard indexes) is built before it commits.
        async with services.db.read() as session:
            channel, access = _found(await find_channel(session, actor, name))
            authz.require_manage_channel(actor, access, mirror_config=changes.touches_mirroring)
        await channel_options.before_commit(services, channel,
                                            channel_options.change_of(services.settings, channel.options, options))
    async with services.db.write() as session:
        channel, access = _found(await find_channel(session, actor, name))
        authz.require_manage_channel(actor, access, mirror_config=changes.touches_mirroring)
        if changes.mirror_channel_url is not None:
            if channel.mirror_mode is None:
                raise InvalidInputError("only mirror and proxy channels have an upstream URL", field="mirrorChannelUrl")
            _check_mirror(channel.mirror_mode, changes.mirror_channel_url)
            values["mirror_channel_url"] = changes.mirror_channel_url
            if changes.mirror_channel_url != channel.mirror_channel_url:
                # What a proxy stored came from the old upstream: every index is fetched anew.
                await session.execute(delete(ProxyEntry).where(ProxyEntry.channel_id == channel.id))  # type: ignore[arg-type]
        _check_lists(values.get("includelist", channel.includelist), values.get("excludelist", channel.excludelist))
        kept = [key for key in ("includelist", "excludelist", "proxylist", "mirror_prune") if key in values]
        if channel.mirror_mode == "mirror" and any(values[key] != getattr(channel, key) for key in kept):
            # What the channel keeps changed: the next sync applies it even where upstream has not changed.
            assert channel.id is not None
            await mirroring.forget_upstream_state(session, channel.id)
        if options:
            change = channel_options.change_of(services.settings, channel.options, options)
            values["options"] = channel_options.merged(channel.options, options)
        for key, value in values.items():
            setattr(channel, key, value)
        if values:
            channel.updated_at = services.now()
    serving.forget_channel(services, channel.name)  # a channel made private hides at once
    if change is not None:
        await channel_options.after_commit(services, channel, change)
    return channel


def _found(found: tuple[Channel, ChannelAccess] | None) -> tuple[Channel, ChannelAccess]:
    # Invisible channels are refused by authz as "not found" too (require_manage_channel and co.).
    if found is None:
        raise NotFoundError("channel not found")
    return found


async def delete_channel(services: Services, actor: Actor, name: str) -> Channel:
    """Delete a channel with its packages, files and published repodata. Channel owners only."""
    async with services.db.write() as session:
        channel, access = _found(await find_channel(session, actor, name))
        authz.require_delete_channel(actor, access)
        subdirs = list(await session.scalars(select(col(SubdirState.subdir))
                                             .where(col(SubdirState.channel_id) == channel.id)))
        # Rows of members, packages, files, shards and jobs go with it (ON DELETE CASCADE).
        await session.execute(delete(Channel).where(Channel.id == channel.id))  # type: ignore[arg-type]
    assert channel.id is not None
    serving.forget_channel(services, channel.name)
    # A rebuild already running for this channel finishes before its files go, so none
    # writes after the purge (later ones find the channel gone and do nothing).
    for subdir in subdirs:
        async with publish_lock(services.db, f"subdir:{channel.id}:{subdir}"):
            publishing.forget_index(services, channel.id, subdir)
    async with publish_lock(services.db, f"channeldata:{channel.id}"):
        pass
    try:
        await _purge_storage(services, channel.name)
    except StorageError:
        # The channel is gone either way: its leftover blobs are unreachable, and purged
        # before a channel of the same name is created again.
        log.exception("channel %r deleted, but some of its files remain in storage", channel.name)
    return channel
