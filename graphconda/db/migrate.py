"""Running Alembic migrations from code (no alembic.ini needed)."""

from __future__ import annotations

from pathlib import Path

import anyio
from alembic import command
from alembic.config import Config

from graphconda.db.engine import _one_line, redact
from graphconda.errors import DatabaseError

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["database_url"] = url
    return config


def upgrade_sync(url: str, revision: str = "head") -> None:
    """Upgrade the database at `url`; raises DatabaseError with a one-line reason."""
    try:
        command.upgrade(alembic_config(url), revision)
    except Exception as exc:
        raise DatabaseError(f"cannot migrate database {redact(url)}: {_one_line(exc)}") from exc


async def upgrade(url: str, revision: str = "head") -> None:
    # Alembic's env runs its own event loop, so it gets a thread of its own.
    await anyio.to_thread.run_sync(upgrade_sync, url, revision)
