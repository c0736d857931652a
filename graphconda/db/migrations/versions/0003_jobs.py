"""jobs: job run claiming/progress columns, job_schedules table

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 14:22:15.483881
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import graphconda.db.types

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('job_schedules',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('channel_id', sa.Integer(), nullable=True),
    sa.Column('interval_seconds', sa.Integer(), nullable=True),
    sa.Column('cron', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('created_at', graphconda.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', graphconda.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['channel_id'], ['channels.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('kind', 'channel_id')
    )
    with op.batch_alter_table('job_schedules', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_job_schedules_channel_id'), ['channel_id'], unique=False)

    with op.batch_alter_table('job_runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('args', sa.JSON(), nullable=False, server_default=sa.text("'{}'")))
        batch_op.add_column(sa.Column('active_key', sqlmodel.sql.sqltypes.AutoString(length=96), nullable=True))
        batch_op.add_column(sa.Column('attempt', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('holder', sqlmodel.sql.sqltypes.AutoString(length=256), nullable=True))
        batch_op.add_column(sa.Column('heartbeat_at', graphconda.db.types.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('run_after', graphconda.db.types.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('cancel_requested', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('error', sa.Text(), nullable=False, server_default=''))
        batch_op.create_index(batch_op.f('ix_job_runs_active_key'), ['active_key'], unique=True)
    # Runs from before: 'pending' is now 'queued'; unfinished ones get their active key.
    op.execute("UPDATE job_runs SET status = 'queued' WHERE status = 'pending'")
    op.execute("UPDATE job_runs SET active_key = kind || ':' || COALESCE(CAST(channel_id AS VARCHAR(16)), '') "
               "WHERE status IN ('queued', 'running') AND id IN (SELECT MAX(id) FROM job_runs "
               "WHERE status IN ('queued', 'running') GROUP BY kind, channel_id)")
    op.execute("UPDATE job_runs SET status = 'cancelled' WHERE status IN ('queued', 'running') "
               "AND active_key IS NULL")



def downgrade() -> None:
    op.execute("UPDATE job_runs SET status = 'pending' WHERE status = 'queued'")
    with op.batch_alter_table('job_runs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_job_runs_active_key'))
        batch_op.drop_column('error')
        batch_op.drop_column('cancel_requested')
        batch_op.drop_column('run_after')
        batch_op.drop_column('heartbeat_at')
        batch_op.drop_column('holder')
        batch_op.drop_column('attempt')
        batch_op.drop_column('active_key')
        batch_op.drop_column('args')

    with op.batch_alter_table('job_schedules', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_job_schedules_channel_id'))

    op.drop_table('job_schedules')
