"""Storage of the tracking database: one layout for each of its stores.

Each store is entities (plain dataclasses), an ``abc.ABC``, and a SQL back end:

=========== ======================= ======================== ======================
store       entities                interface                SQL back end
=========== ======================= ======================== ======================
tracking    :mod:`.entities`        :mod:`.abstract`         :mod:`.sql`
registry    :mod:`.registry.entities` :mod:`.registry.abstract` :mod:`.registry.sql`
jobs        :mod:`.jobs.entities`   :mod:`.jobs.abstract`    :mod:`.jobs.sql`
=========== ======================= ======================== ======================

All three live on one database (tables in :mod:`.schema`, migrations in :mod:`.migrations`),
opened together by :func:`open_backend`, which picks the back end by URL scheme.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...common.migrations import require_sql_url
from .abstract import AbstractStore
from .entities import (
    Artifact,
    JobState,
    LogLine,
    Metric,
    Page,
    Param,
    Project,
    Run,
    RunStatus,
    Tag,
    Viewer,
)
from .errors import TrackingError
from .jobs import AbstractJobStore
from .registry import AbstractArtifactRegistry
from .sql import SqlStore

__all__ = [
    "AbstractArtifactRegistry",
    "AbstractJobStore",
    "AbstractStore",
    "Artifact",
    "Backend",
    "JobState",
    "LogLine",
    "Metric",
    "Page",
    "Param",
    "Project",
    "Run",
    "RunStatus",
    "SqlStore",
    "Tag",
    "TrackingError",
    "Viewer",
    "open_backend",
    "open_store",
]


@dataclass(frozen=True)
class Backend:
    """The stores of one tracking database.

    Attributes:
        tracking: projects, runs, metrics, logs, artifacts.
        registry: artifact versions, aliases and lineage.
        jobs: jobs, run events and job tokens.
    """

    tracking: AbstractStore
    registry: AbstractArtifactRegistry
    jobs: AbstractJobStore

    def close(self) -> None:
        """Release the database connections."""
        self.tracking.close()


def open_backend(url: str) -> Backend:
    """The stores of the database at ``url``, its schema upgraded to this release's.

    Args:
        url: ``sqlite:////srv/latticehub/tracking.sqlite`` (one host) or
            ``postgresql://user:pw@host/db`` (``postgresql+psycopg://`` etc. too).

    Raises:
        ValueError: for a scheme no back end handles, naming the ones that work.
        hub_ext.common.migrations.SchemaTooNew: for a database a newer latticehub wrote.
    """
    tracking = SqlStore(require_sql_url(url, "tracking store"))
    return Backend(
        tracking=tracking, registry=tracking.artifact_registry(), jobs=tracking.job_store()
    )


def open_store(uri: str) -> AbstractStore:
    """The tracking store for a database URL (:func:`open_backend`'s ``tracking``).

    Raises:
        ValueError: for a scheme no back end handles.
    """
    return open_backend(uri).tracking
