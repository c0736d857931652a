"""hardening: 64-bit build numbers, revocable sessions

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 14:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import graphconda.db.types

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('package_files', schema=None) as batch_op:
        batch_op.alter_column('build_number', existing_type=sa.Integer(), type_=sa.BigInteger(), existing_nullable=False)

    op.create_table('user_sessions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('created_at', graphconda.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', graphconda.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', graphconda.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('user_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_user_sessions_token_hash'), ['token_hash'], unique=True)
        batch_op.create_index(batch_op.f('ix_user_sessions_user_id'), ['user_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('user_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_user_sessions_user_id'))
        batch_op.drop_index(batch_op.f('ix_user_sessions_token_hash'))
    op.drop_table('user_sessions')
    with op.batch_alter_table('package_files', schema=None) as batch_op:
        batch_op.alter_column('build_number', existing_type=sa.BigInteger(), type_=sa.Integer(), existing_nullable=False)
