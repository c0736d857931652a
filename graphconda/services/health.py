"""Readiness: whether this process can serve channels and accept uploads right now, and if not, why.

Each check is bounded in time (a database that accepts connections and never answers must
not hang the probe). The details name infrastructure (database URL, storage path), so the
HTTP probe shows them only to whom authz allows (http/health.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass

from graphconda.errors import GraphcondaError
from graphconda.services.context import Services
from graphconda.services.publisher import publishing_failures

CHECK_SECONDS = 5.0


@dataclass(frozen=True)
class Check:
    name: str  # "database", "storage", "publishing"
    ok: bool
    detail: str = ""  # why not (names infrastructure: staff only)


@dataclass(frozen=True)
class Readiness:
    checks: tuple[Check, ...]

    @property
    def ready(self) -> bool:
        return all(check.ok for check in self.checks)

    @property
    def reason(self) -> str:
        return "; ".join(f"{check.name}: {check.detail}" for check in self.checks if not check.ok)


async def _check(name: str, probe: Awaitable[None], seconds: float) -> Check:
    try:
        await asyncio.wait_for(probe, seconds)
    except TimeoutError:
        return Check(name, False, f"no answer within {seconds:g} s")
    except GraphcondaError as exc:
        return Check(name, False, str(exc))
    return Check(name, True)


def _publishing(services: Services) -> Check:
    behind = publishing_failures(services)
    if not behind:
        return Check("publishing", True)
    more = f" (and {len(behind) - 1} more)" if len(behind) > 1 else ""
    return Check("publishing", False, f"index files lag behind acknowledged uploads, retrying: {behind[0]}{more}")


async def readiness(services: Services) -> Readiness:
    """Check the database and the storage (concurrently, each within a few seconds), and whether
    this process's publisher is behind (an index rebuild failed and is being retried)."""
    timeout = CHECK_SECONDS
    checks = await asyncio.gather(
        _check("database", services.db.check(), timeout),
        _check("storage", services.storage.check(), timeout),
    )
    return Readiness((*checks, _publishing(services)))
