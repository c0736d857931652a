"""proxy channels: per-channel TTL and prune option, proxy_entries table

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 14:45:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import graphconda.db.types

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('channels', schema=None) as batch_op:
        batch_op.add_column(sa.Column('mirror_ttl', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('mirror_prune', sa.Boolean(), nullable=False, server_default=sa.false()))

    op.create_table('proxy_entries',
    sa.Column('channel_id', sa.Integer(), nullable=False),
    sa.Column('path', sqlmodel.sql.sqltypes.AutoString(length=512), nullable=False),
    sa.Column('status', sa.Integer(), nullable=False),
    sa.Column('source', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('etag', sqlmodel.sql.sqltypes.AutoString(length=512), nullable=False),
    sa.Column('last_modified', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('base_url', sqlmodel.sql.sqltypes.AutoString(length=2048), nullable=False),
    sa.Column('checked_at', graphconda.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['channel_id'], ['channels.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('channel_id', 'path')
    )


def downgrade() -> None:
    op.drop_table('proxy_entries')
    with op.batch_alter_table('channels', schema=None) as batch_op:
        batch_op.drop_column('mirror_prune')
        batch_op.drop_column('mirror_ttl')
