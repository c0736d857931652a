"""download metrics: events by file and hour, counts by file, bucket and source; mirror errors

download_events and download_counts change key (a file's channel, subdir and filename instead
of its row, so deleting a file keeps its history). Nothing read or wrote download_counts
before, so it is recreated; buffered events are carried over, one per old row.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 15:07:05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import graphconda.db.types

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _event_columns() -> list[sa.Column]:  # type: ignore[type-arg]
    return [
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('channel_id', sa.Integer(), nullable=False),
        sa.Column('subdir', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column('filename', sqlmodel.sql.sqltypes.AutoString(length=211), nullable=False),
        sa.Column('at', graphconda.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column('count', sa.BigInteger(), nullable=False),
    ]


def upgrade() -> None:
    op.create_table('download_events_0005', *_event_columns(), sa.PrimaryKeyConstraint('id'))
    op.execute(
        "INSERT INTO download_events_0005 (channel_id, subdir, filename, at, count) "
        "SELECT f.channel_id, f.subdir, f.filename, e.at, 1 FROM download_events e "
        "JOIN package_files f ON f.id = e.package_file_id"
    )
    with op.batch_alter_table('download_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_download_events_package_file_id'))
    op.drop_table('download_events')
    op.create_table('download_events', *_event_columns(),
    sa.ForeignKeyConstraint(['channel_id'], ['channels.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('download_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_download_events_channel_id'), ['channel_id'], unique=False)
    op.execute(
        "INSERT INTO download_events (channel_id, subdir, filename, at, count) "
        "SELECT channel_id, subdir, filename, at, count FROM download_events_0005"
    )
    op.drop_table('download_events_0005')

    with op.batch_alter_table('download_counts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_download_counts_package_file_id'))
        batch_op.drop_index(batch_op.f('ix_download_counts_channel_id'))
    op.drop_table('download_counts')
    op.create_table('download_counts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('channel_id', sa.Integer(), nullable=False),
    sa.Column('source', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('package_name', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('subdir', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('filename', sqlmodel.sql.sqltypes.AutoString(length=211), nullable=False),
    sa.Column('period', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('bucket', graphconda.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('count', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['channel_id'], ['channels.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('channel_id', 'subdir', 'filename', 'period', 'bucket', 'source',
                        name='uq_download_counts_file_bucket')
    )
    with op.batch_alter_table('download_counts', schema=None) as batch_op:
        batch_op.create_index('ix_download_counts_channel', ['channel_id', 'period', 'bucket'], unique=False)
        batch_op.create_index('ix_download_counts_package', ['channel_id', 'package_name', 'period', 'bucket'],
                              unique=False)

    with op.batch_alter_table('registered_mirrors', schema=None) as batch_op:
        batch_op.add_column(sa.Column('last_error', sa.Text(), nullable=False, server_default=''))


def downgrade() -> None:
    with op.batch_alter_table('registered_mirrors', schema=None) as batch_op:
        batch_op.drop_column('last_error')
    with op.batch_alter_table('download_counts', schema=None) as batch_op:
        batch_op.drop_index('ix_download_counts_package')
        batch_op.drop_index('ix_download_counts_channel')
    op.drop_table('download_counts')
    op.create_table('download_counts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('package_file_id', sa.Integer(), nullable=False),
    sa.Column('channel_id', sa.Integer(), nullable=False),
    sa.Column('period', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('bucket', graphconda.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('count', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['channel_id'], ['channels.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['package_file_id'], ['package_files.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('package_file_id', 'period', 'bucket')
    )
    with op.batch_alter_table('download_counts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_download_counts_channel_id'), ['channel_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_download_counts_package_file_id'), ['package_file_id'], unique=False)
    # Buffered events of the new form cannot all be matched to a file row again: they are dropped.
    with op.batch_alter_table('download_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_download_events_channel_id'))
    op.drop_table('download_events')
    op.create_table('download_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('package_file_id', sa.Integer(), nullable=False),
    sa.Column('at', graphconda.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['package_file_id'], ['package_files.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('download_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_download_events_package_file_id'), ['package_file_id'], unique=False)
