"""Alembic migrations of the tracking database (run on open by :class:`~..sql.SqlStore`).

Every table of the database is here: tracking, the artifact registry, jobs, run events and
job tokens. ``versions/0001`` is latticehub 0.1's schema (it also lifts databases written
before Alembic, see :mod:`.release_0_1`); ``0002`` fences those releases out.

A schema change is a change to :mod:`..schema` plus a new revision in ``versions/`` (copy
``script.py.mako``; ``down_revision`` is the newest one; on SQLite alter tables with
``op.batch_alter_table``). ``tests/store/test_migrations.py`` fails until the two agree.
Admins need no step (opening upgrades), but can look first::

    latticehub db current --db-url URL     # or python -m hub_ext.experiments db current
    latticehub db upgrade --db-url URL     # what opening does anyway
    latticehub db downgrade 0001 --db-url URL   # hand the database back to latticehub 0.1
    latticehub db check --db-url URL       # exit 1 if the schema differs from the models
"""

from __future__ import annotations

from ....common.migrations import Migrations

#: the tracking database's migration scripts (this package)
TRACKING = Migrations(
    package=__name__, version_table="lh_alembic_version", what="tracking database"
)

#: every table of the tracking database starts with this
TABLE_PREFIX = "lh_"
