"""Baseline: the schema of latticehub 0.1; lifts databases written before Alembic.

Revision ID: 0001
Revises:
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

from hub_ext.experiments.store.migrations import release_0_1

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the 0.1 schema, or complete one an earlier release wrote (every row kept)."""
    release_0_1.create_or_lift(op.get_bind())


def downgrade() -> None:
    """Drop every table (the database is empty afterwards)."""
    release_0_1.metadata.drop_all(op.get_bind())
