"""Alembic environment of the usage database (see :mod:`hub_ext.common.migrations`)."""

from alembic import context

from hub_ext.common.migrations import run_env
from hub_ext.quotas.accounting.migrations import TABLE_PREFIX
from hub_ext.quotas.accounting.schema import metadata

run_env(context, metadata, table_prefix=TABLE_PREFIX)
