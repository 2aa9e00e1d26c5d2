"""Alembic environment of the tracking database (see :mod:`hub_ext.common.migrations`)."""

from alembic import context

from hub_ext.common.migrations import run_env
from hub_ext.experiments.store.migrations import TABLE_PREFIX
from hub_ext.experiments.store.schema import metadata

run_env(context, metadata, table_prefix=TABLE_PREFIX)
