"""The usage store interface: server sessions opened, closed and read back by time window."""

from __future__ import annotations

import abc
from collections.abc import Iterable

from .entities import EXACT, Session


class UsageStore(abc.ABC):
    """Server sessions: opened at a start, closed at a stop, read back by time window."""

    @abc.abstractmethod
    def record_start(self, session: Session, *, source: str = EXACT) -> bool:
        """Open ``session`` unless its object already has an open one.

        An open session whose start was only *observed* takes an *exact* start time.
        Returns whether anything changed.
        """

    @abc.abstractmethod
    def record_end(self, object_id: str, end: float, *, source: str = EXACT) -> bool:
        """Close the object's open session at ``end`` (never before its start).

        A session closed as *observed* may be corrected once by an *exact* end. Returns
        whether anything changed.
        """

    @abc.abstractmethod
    def open_sessions(self) -> list[Session]:
        """Sessions with no end yet."""

    @abc.abstractmethod
    def sessions(
        self, *, since: float, until: float, groups: Iterable[str] | None = None
    ) -> list[Session]:
        """Sessions overlapping ``[since, until)``, of ``groups`` (``None``: all)."""

    @abc.abstractmethod
    def get_cursor(self, name: str) -> float | None:
        """A named position (e.g. the last engine event read), or ``None``."""

    @abc.abstractmethod
    def set_cursor(self, name: str, value: float) -> None:
        """Store a named position."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
