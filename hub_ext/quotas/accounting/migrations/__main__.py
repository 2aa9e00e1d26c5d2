"""``python -m hub_ext.quotas.accounting.migrations current|upgrade|downgrade REV|check``."""

import sys

from ....common.migrations import command_main
from ..schema import metadata
from . import TABLE_PREFIX, USAGE

sys.exit(
    command_main(
        USAGE,
        metadata,
        TABLE_PREFIX,
        prog="python -m hub_ext.quotas.accounting.migrations",
        url_env="LATTICEHUB_USAGE_DB",
    )
)
