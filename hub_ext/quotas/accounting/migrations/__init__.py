"""Alembic migrations of the usage database (run on open by :class:`~..sql.SqlUsageStore`).

``versions/0001`` is latticehub 0.1's schema; it adopts a database that release wrote (it
had no versioning: its tables are kept with their rows). A schema change is a new revision
next to it.
"""

from __future__ import annotations

from ....common.migrations import Migrations

#: the usage database's migration scripts (this package)
USAGE = Migrations(package=__name__, version_table="usage_alembic_version", what="usage database")

#: every table of the usage database starts with this
TABLE_PREFIX = "usage_"
