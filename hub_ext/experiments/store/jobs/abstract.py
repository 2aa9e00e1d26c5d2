"""The job store interface: jobs, run events and job tokens.

Back ends implement every method (one transaction each, entities out, a coded
:class:`~hub_ext.experiments.store.errors.TrackingError` for a missing job).
"""

from __future__ import annotations

import abc
from typing import Any

from .entities import Job, JobToken, RunEvent


class AbstractJobStore(abc.ABC):
    """Storage of jobs, run events and job tokens."""

    @abc.abstractmethod
    def create_job(self, job: Job) -> Job:
        """Insert a new job."""

    @abc.abstractmethod
    def get_job(self, job_id: str) -> Job:
        """The job, or a NOT_FOUND error."""

    @abc.abstractmethod
    def update_job(self, job_id: str, **changes: Any) -> Job:
        """Change fields of a job; returns the new job."""

    @abc.abstractmethod
    def list_jobs(
        self,
        *,
        users: list[str] | None = None,
        groups: list[str] | None = None,
        states: list[str] | None = None,
        limit: int = 100,
        offset: int = 0,
        after: tuple[int, str] | None = None,
    ) -> list[Job]:
        """Jobs newest first (``created`` descending, then ``id``), filtered.

        Args:
            users: jobs of these users (either this or ``groups`` matches); None: no filter.
            groups: jobs of these groups; None: no filter.
            states: only jobs in these states (``JobState`` values).
            limit: at most this many jobs.
            offset: skip this many (deprecated: pages shift when jobs are added; use ``after``).
            after: a keyset position ``(created, id)``, the last job of the previous page: only
                jobs that sort after it. New jobs sort first, so later pages never shift.
        """

    @abc.abstractmethod
    def count_active(self, group: str) -> dict[str, int]:
        """Queued + running jobs of a group, per user."""

    @abc.abstractmethod
    def add_event(self, run_id: str, kind: str, message: str, time: int | None = None) -> None:
        """Append to a run's timeline."""

    @abc.abstractmethod
    def list_events(self, run_id: str) -> list[RunEvent]:
        """A run's timeline, oldest first."""

    @abc.abstractmethod
    def add_token(self, token: JobToken) -> None:
        """Remember a job token (by hash)."""

    @abc.abstractmethod
    def find_token(self, token_hash: str) -> JobToken | None:
        """The binding for a token hash, or None."""

    @abc.abstractmethod
    def revoke_tokens(self, job_id: str) -> list[JobToken]:
        """Mark a job's tokens revoked; return those that were live."""
