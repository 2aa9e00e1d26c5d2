"""``python -m hub_ext.experiments.store.migrations current|upgrade|downgrade REV|check``."""

import sys

from ....common.migrations import command_main
from ..schema import metadata
from . import TABLE_PREFIX, TRACKING

sys.exit(
    command_main(
        TRACKING,
        metadata,
        TABLE_PREFIX,
        prog="python -m hub_ext.experiments.store.migrations",
        url_env="LATTICEHUB_TRACKING_DB",
    )
)
