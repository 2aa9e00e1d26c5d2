"""Where the usage store lived before the entities / ABC / SQL split (kept for imports).

:mod:`.entities` (sessions), :mod:`.abstract` (:class:`UsageStore`), :mod:`.sql`
(:class:`SqlUsageStore`), :mod:`.schema` (tables) and :mod:`.migrations` now hold it.
"""

from .abstract import UsageStore
from .schema import cursors_table, metadata, sessions_table
from .sql import SqlUsageStore, _session

__all__ = ["SqlUsageStore", "UsageStore", "_session", "cursors_table", "metadata", "sessions_table"]
