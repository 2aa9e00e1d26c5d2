"""Tracking storage: entities, the abstract interface and the SQL back end."""

from .abstract import AbstractStore
from .entities import Artifact, LogLine, Metric, Page, Param, Project, Run, RunStatus, Tag, Viewer
from .errors import TrackingError
from .sql import SqlStore

__all__ = [
    "AbstractStore",
    "Artifact",
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
    "open_store",
]


def open_store(uri: str) -> AbstractStore:
    """The store for a database URI, chosen by scheme (``sqlite:``, ``postgresql:``).

    Raises:
        ValueError: for a scheme no back end handles.
    """
    scheme = uri.split(":", 1)[0].split("+", 1)[0]
    if scheme in ("sqlite", "postgresql"):
        return SqlStore(uri)
    raise ValueError(
        f"tracking store URI {uri!r}: use sqlite:////path/tracking.sqlite or "
        "postgresql://user:pw@host/db"
    )
