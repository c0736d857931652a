"""A channel's publishing options (repodata.json.bz2, current_repodata.json, shards): checking and applying them.

The options live in `Channel.options` ({"bz2": bool, "current_repodata": bool, "shards":
bool}; a missing "shards" means the server default `publish.shards`) and are read by the
publisher (`publishing.options_of`) and by serving. `services.channels` stores them; this
module makes the published files follow a change:

- bz2 / current_repodata: every subdir's monolithic files are rebuilt after the change is
  committed, which writes the files switched on and deletes those switched off.
- shards on: every subdir's shards and shard index are rebuilt (`republish_subdir`)
  *before* the change is committed, so no client is ever pointed at a missing index (a
  missing index would be answered with the empty placeholder of a fresh subdir).
- shards off: after the change, each subdir's shard index is deleted under the subdir
  lock; serving answers 404 for it (short Cache-Control) and clients use repodata.json.zst.
  Uploads keep shard rows and blobs current meanwhile (and may write the index again,
  which serving withholds), so turning shards back on never builds from stale data.
- proxy channels: nothing is rebuilt (their index files are upstream's); serving follows
  the options at once (services/proxy.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from graphconda.db.models import Channel
from graphconda.errors import InvalidInputError
from graphconda.services import layout, publishing, republishing
from graphconda.services.context import Services
from graphconda.services.locks import lock_subdir
from graphconda.settings import Settings

# Option key in Channel.options -> the GraphQL input field named in errors.
FIELDS = {"bz2": "publishBz2", "current_repodata": "publishCurrentRepodata", "shards": "publishShards"}


@dataclass(frozen=True)
class OptionChange:
    """What an update does to the published files (old and new effective options)."""

    old: publishing.PublishOptions
    new: publishing.PublishOptions

    @property
    def shards_on(self) -> bool:
        return self.new.shards and not self.old.shards

    @property
    def shards_off(self) -> bool:
        return self.old.shards and not self.new.shards

    @property
    def monolithic(self) -> bool:
        return (self.old.bz2, self.old.current_repodata) != (self.new.bz2, self.new.current_repodata)


def check(values: Mapping[str, Any]) -> dict[str, bool]:
    """The given options (None: not given) as stored values; InvalidInputError for anything but a bool."""
    checked: dict[str, bool] = {}
    for key, value in values.items():
        if value is None:
            continue
        if key not in FIELDS:
            raise InvalidInputError(f"unknown publishing option {key!r}", field="options")
        if not isinstance(value, bool):
            raise InvalidInputError(f"{FIELDS[key]} must be true or false", field=FIELDS[key])
        checked[key] = value
    return checked


def merged(current: Mapping[str, Any] | None, changes: Mapping[str, bool]) -> dict[str, Any]:
    """The channel's stored options with `changes` applied (a new dict: JSON columns track assignment)."""
    return {**(current or {}), **changes}


def change_of(settings: Settings, current: Mapping[str, Any] | None, changes: Mapping[str, bool]) -> OptionChange:
    return OptionChange(publishing.options_of(settings, current), publishing.options_of(settings, merged(current,
                                                                                                         changes)))


async def before_commit(services: Services, channel: Channel, change: OptionChange) -> None:
    """Build what must exist before clients are told about the change (the shard index of every subdir)."""
    if not change.shards_on or channel.mirror_mode == "proxy":
        return
    assert channel.id is not None
    for subdir in await publishing.channel_subdirs(services, channel.id):
        await republishing.republish_subdir(services, channel.id, subdir)


async def after_commit(services: Services, channel: Channel, change: OptionChange) -> None:
    """Make the published files follow a committed change: write what is on, delete what is off."""
    assert channel.id is not None
    if channel.mirror_mode == "proxy":
        # Its index files are upstream's, as stored by services/proxy.py, which applies the
        # options when serving: a rebuild here would write empty ones over them.
        return
    subdirs = await publishing.channel_subdirs(services, channel.id)
    if change.shards_off:
        for subdir in subdirs:
            key = layout.subdir_file_key(channel.name, subdir, layout.SHARD_INDEX)
            async with services.db.write() as session:
                # Under the subdir lock: an upload writing the index right now finishes first.
                await lock_subdir(session, channel.id, subdir, services.now(), bump=False)
                await services.storage.delete(key)
            publishing.notify_written(services, [key])
    if change.monolithic:
        for subdir in subdirs:
            # A new generation makes the publisher rebuild the subdir's monolithic files with
            # the committed options (publish_subdir skips subdirs already published).
            async with services.db.write() as session:
                await lock_subdir(session, channel.id, subdir, services.now(), bump=True)
            await publishing.publish_subdir(services, channel.id, subdir)
