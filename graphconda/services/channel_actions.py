"""Channel actions by name (Quetz's `PUT /channels/{c}/actions`, `actions` on create): which job each runs.

An action names a job kind, the channel kinds it applies to and its arguments:

    synchronize           mirror channels: sync, reading every new archive (job synchronize)
    synchronize_repodata  mirror channels: sync from the upstream index alone (job synchronize_repodata)
    reindex               local and mirror channels: rebuild records and indexes from storage (job reindex)
    generate_indexes      the same job: graphconda's reindex also republishes every index
    cleanup               server-wide job cleanup (server owners and maintainers), cleanup_dry_run with dry_run
    synchronize_metrics   any channel: pull its registered mirrors' download figures (job synchronize_metrics)

`validate_packages` is a Quetz action graphconda does not run (yet): it is refused as invalid
input, like unknown names. Every check runs before anything is queued, so a refused list of
actions leaves nothing behind.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from graphconda.db.models import JobRun
from graphconda.errors import ChannelKindError, InvalidInputError
from graphconda.services import authz, jobs
from graphconda.services.access import ANY_KIND, ChannelKind, gate
from graphconda.services.authz import Actor
from graphconda.services.context import Services

_STORED = frozenset({ChannelKind.LOCAL, ChannelKind.MIRROR})


@dataclass(frozen=True)
class Action:
    job: str
    kinds: frozenset[ChannelKind] = ANY_KIND
    server_wide: bool = False  # the job takes no channel (runs for the whole server)
    args: Mapping[str, Any] = field(default_factory=dict)


ACTIONS: dict[str, Action] = {
    "synchronize": Action("synchronize", frozenset({ChannelKind.MIRROR})),
    "synchronize_repodata": Action("synchronize_repodata", frozenset({ChannelKind.MIRROR})),
    "reindex": Action("reindex", _STORED),
    "generate_indexes": Action("reindex", _STORED),
    "cleanup": Action("cleanup", server_wide=True, args={"dry_run": False}),
    "cleanup_dry_run": Action("cleanup", server_wide=True, args={"dry_run": True}),
    "synchronize_metrics": Action("synchronize_metrics"),
}
NOT_SUPPORTED = ("validate_packages",)


def action_of(name: object, kind: ChannelKind) -> Action:
    """The action called `name` for a channel of `kind`: InvalidInputError or ChannelKindError otherwise."""
    action = ACTIONS.get(name) if isinstance(name, str) else None
    if action is None:
        if name in NOT_SUPPORTED:
            raise InvalidInputError(f"action {name} is not supported by this server", field="action")
        raise InvalidInputError(f"unknown action (actions: {', '.join(ACTIONS)})", field="action")
    if kind not in action.kinds:
        raise ChannelKindError(f"action {name} is not allowed for a {kind} channel")
    return action


def check_actions(actor: Actor, kind: ChannelKind, names: Sequence[object]) -> list[Action]:
    """Validate actions for a channel about to be created by `actor` (its owner then)."""
    actions = [action_of(name, kind) for name in names]
    if any(a.server_wide for a in actions):
        authz.require_run_job(actor, None)
    return actions


def _check_repeat(seconds: object) -> int | None:
    if seconds is None:
        return None
    if isinstance(seconds, bool) or not isinstance(seconds, int) or not 0 < seconds <= 366 * 86400:
        raise InvalidInputError("repeat_every_seconds is a number of seconds from 1 to a year",
                                field="repeat_every_seconds")
    return seconds


async def run_action(services: Services, actor: Actor, channel: str, name: object, *,
                     start_at: datetime | None = None, repeat_every_seconds: object = None,
                     kinds: Collection[ChannelKind] | None = None) -> JobRun:
    """Queue the job of action `name` on `channel` (or return the one already queued or running).

    `start_at` delays the run; `repeat_every_seconds` also stores a schedule of the job.
    """
    repeat = _check_repeat(repeat_every_seconds)
    async with services.db.read() as session:
        found, _ = await gate(session, actor, channel)
    action = action_of(name, ChannelKind.of(found))
    target = None if action.server_wide else found.name
    if repeat is not None and action.args:
        # Schedules carry no arguments: a repeated cleanup_dry_run would run as a real cleanup.
        raise InvalidInputError(f"action {name} cannot be repeated", field="repeat_every_seconds")
    # Who may run it is decided by run_job / set_schedule (authz.require_run_job) before anything is stored.
    if repeat is not None:
        await jobs.set_schedule(services, actor, action.job, channel=target, interval_seconds=repeat, cron=None,
                                enabled=True)
    return await jobs.run_job(services, actor, action.job, channel=target, args=action.args, run_after=start_at)
