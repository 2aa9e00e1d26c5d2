"""Usage accounting: server sessions recorded from the engine, summed per group and user.

See :mod:`.sessions` (pure sums), :mod:`.recorder` (engine events and listings) and
:mod:`.plot` (the page's chart). The store has the layout of every latticehub store:
:mod:`.entities`, :mod:`.abstract` (the ABC), :mod:`.sql` (SQLite / PostgreSQL, tables in
:mod:`.schema`, Alembic revisions in :mod:`.migrations`), opened by :func:`open_usage_store`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .abstract import UsageStore


def open_usage_store(url: str) -> UsageStore:
    """The usage store for a database URL, chosen by scheme, its schema upgraded.

    Args:
        url: ``sqlite:////srv/latticehub/usage.sqlite`` or ``postgresql://user:pw@host/db``.

    Raises:
        ValueError: for a scheme no back end handles, naming the ones that work.
    """
    from .sql import SqlUsageStore  # SQLAlchemy only for whoever opens a store

    return SqlUsageStore(url)
