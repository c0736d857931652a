"""Autogenerate an Alembic revision from graphconda/db/models.py.

Usage: python scripts/make_migration.py "what changed" NNNN
(runs against a scratch SQLite database migrated to head first)
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from alembic import command

from graphconda.db.migrate import alembic_config, upgrade_sync

with tempfile.TemporaryDirectory() as tmp:
    url = f"sqlite+aiosqlite:///{Path(tmp) / 'scratch.db'}"
    upgrade_sync(url)
    command.revision(alembic_config(url), message=sys.argv[1], autogenerate=True, rev_id=sys.argv[2])
