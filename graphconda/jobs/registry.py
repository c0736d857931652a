"""The registry of job kinds: one async function plus one `@job_kind(...)` registration each.

A kind declares whether it acts on a channel and which arguments it takes (name -> type and
default), so `services.jobs.run_job` can refuse a bad trigger before anything is queued.
The function receives a `JobContext`: the Services, the channel, the arguments, and a
progress reporter the runner stores (throttled) where every process can read it.

    @job_kind("reindex", channel=True)
    async def reindex(ctx: JobContext) -> None:
        ctx.progress(done=1, total=3, message="subdir linux-64")
        ctx.log("...")
        ctx.check_cancelled()
"""

from __future__ import annotations

import importlib
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from graphconda.db.models import Channel
from graphconda.errors import InvalidInputError
from graphconda.services.context import Services


class JobCancelled(Exception):
    """Raised by `check_cancelled` when someone asked to cancel the run."""


class JobInterrupted(Exception):
    """Raised by `check_cancelled` when this process is shutting down: the run is requeued."""


class TransientJobError(Exception):
    """A failure worth retrying later (upstream down, ...): the run is requeued with backoff."""


@dataclass(frozen=True)
class JobArg:
    """One declared argument: its type (bool, int, float or str) and default."""

    type: type
    default: Any = None
    help: str = ""


JobFunc = Callable[["JobContext"], Awaitable[None]]


@dataclass(frozen=True)
class JobKind:
    name: str
    func: JobFunc
    channel: bool  # True: needs a channel; False: server-wide
    args: Mapping[str, JobArg]
    description: str = ""
    # Kinds with the same group run one at a time per channel: a queued run waits while another
    # kind of its group runs there (e.g. a sync and a reindex both rewrite the records).
    group: str = ""


_KINDS: dict[str, JobKind] = {}
# Modules that register the built-in kinds; imported on first lookup (they import services).
_BUILTIN_MODULES = ("graphconda.jobs.kinds", "graphconda.jobs.mirror_kinds", "graphconda.jobs.metrics_kinds")
_loaded = False


def job_kind(name: str, *, channel: bool, args: Mapping[str, JobArg] | None = None,
             description: str = "", group: str = "") -> Callable[[JobFunc], JobFunc]:
    """Register the decorated function as job kind `name`."""

    def register(func: JobFunc) -> JobFunc:
        _KINDS[name] = JobKind(name, func, channel, dict(args or {}), description or (func.__doc__ or "").strip(),
                               group)
        return func

    return register


def _load_builtins() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for module in _BUILTIN_MODULES:
            importlib.import_module(module)


def load_modules(modules: Collection[str]) -> None:
    """Import the modules `jobs.modules` names, so the kinds they register exist in this process."""
    for module in modules:
        if module not in _imported:
            importlib.import_module(module)
            _imported.add(module)


_imported: set[str] = set()


def get_kind(name: str) -> JobKind | None:
    _load_builtins()
    return _KINDS.get(name)


def all_kinds() -> list[JobKind]:
    _load_builtins()
    return [_KINDS[name] for name in sorted(_KINDS)]


def _type_name(tp: type) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}.get(tp, tp.__name__)


def validate_args(kind: JobKind, args: Mapping[str, Any] | None) -> dict[str, Any]:
    """The run's arguments with defaults filled in; InvalidInputError naming the bad one otherwise."""
    given = dict(args or {})
    out: dict[str, Any] = {}
    for key in given:
        if key not in kind.args:
            known = ", ".join(sorted(kind.args)) or "none"
            raise InvalidInputError(f"job {kind.name} has no argument {key!r} (arguments: {known})",
                                    field=f"args.{key}")
    for key, spec in kind.args.items():
        if key not in given:
            out[key] = spec.default
            continue
        value = given[key]
        ok = isinstance(value, spec.type) and not (spec.type is not bool and isinstance(value, bool))
        if spec.type is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            raise InvalidInputError(f"argument {key!r} of job {kind.name} must be {_type_name(spec.type)}",
                                    field=f"args.{key}")
        out[key] = value
    return out


def parse_arg(kind: JobKind, key: str, raw: str) -> Any:
    """A command-line `KEY=VALUE` value as the declared type (the CLI uses it)."""
    spec = kind.args.get(key)
    if spec is None:
        return raw  # validate_args names the unknown argument
    if spec.type is bool:
        lowered = raw.strip().lower()
        if lowered in ("true", "yes", "1", "on"):
            return True
        if lowered in ("false", "no", "0", "off"):
            return False
        return raw
    if spec.type in (int, float):
        try:
            return spec.type(raw)
        except ValueError:
            return raw
    return raw


@dataclass
class JobContext:
    """What a job function gets: services, its channel and arguments, and the progress reporter.

    `progress` and `log` only record in memory; the runner writes them to the run's row at
    most once per heartbeat interval (and at the end), so a job may report as often as it likes.
    """

    services: Services
    job_id: int
    channel: Channel | None
    args: dict[str, Any]
    log_chars: int = 8000
    done: int = 0
    total: int | None = None
    message: str = ""
    lines: deque[str] = field(default_factory=deque)
    log_size: int = 0
    dirty: bool = False
    cancel_requested: bool = False
    stopping: bool = False  # this process is shutting down
    # Set by a job that found nothing to do: a scheduled run that succeeds so is not kept (a
    # sweep every 30 s would otherwise bury the runs people look for); a triggered one is.
    idle: bool = False

    def progress(self, *, done: int | None = None, total: int | None = None, message: str | None = None) -> None:
        if done is not None:
            self.done = done
        if total is not None:
            self.total = total
        if message is not None:
            self.message = message
        self.dirty = True

    def log(self, line: str) -> None:
        line = line.rstrip("\n")[-self.log_chars:] if self.log_chars else ""
        self.lines.append(line)
        self.log_size += len(line) + 1
        while self.lines and self.log_size > self.log_chars + 1:
            self.log_size -= len(self.lines.popleft()) + 1
        self.dirty = True

    @property
    def log_tail(self) -> str:
        return "\n".join(self.lines)

    def check_cancelled(self) -> None:
        """Raise JobCancelled if cancel was requested, JobInterrupted if this process is stopping."""
        if self.cancel_requested:
            raise JobCancelled("cancelled")
        if self.stopping:
            raise JobInterrupted("process stopping")
