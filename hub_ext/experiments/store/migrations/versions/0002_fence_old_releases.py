"""Alembic owns the schema: releases before it refuse to open the database.

Those releases read ``lh_schema_version`` and refuse a number above their own (4) with
"upgrade latticehub", rather than write to a schema they do not know. ``downgrade 0001``
hands the database back to latticehub 0.1.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_version = sa.table("lh_schema_version", sa.column("version", sa.Integer))


def upgrade() -> None:
    """Set the old releases' version number to 5."""
    op.execute(_version.update().values(version=5))


def downgrade() -> None:
    """Set it back to 0.1's 4."""
    op.execute(_version.update().values(version=4))
