"""job groups: job_runs.running_key, held while a run of a grouped kind runs on a channel

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 20:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('job_runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('running_key', sqlmodel.sql.sqltypes.AutoString(length=96), nullable=True))
        batch_op.create_index(batch_op.f('ix_job_runs_running_key'), ['running_key'], unique=True)


def downgrade() -> None:
    with op.batch_alter_table('job_runs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_job_runs_running_key'))
        batch_op.drop_column('running_key')
