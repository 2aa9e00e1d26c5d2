"""The tracking store interface: a small abstract core and conveniences on top.

Back ends implement the abstract methods (one transaction each, entities out, coded
:class:`~.errors.TrackingError` on refusal). Access policy is not the store's business:
the service decides who may see what and passes the visible project ids in.
"""

from __future__ import annotations

import abc
import base64
import json
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from latticehub.columnar import MetricColumns

from .entities import Artifact, LogLine, Metric, Page, Param, Project, Run, RunStatus, Tag
from .errors import invalid

if TYPE_CHECKING:
    from .jobs.abstract import AbstractJobStore
    from .registry.abstract import AbstractArtifactRegistry

MAX_PAGE_SIZE = 50_000
#: Rows a page of the run table may hold (it costs a few lists, not an entity per run).
MAX_TABLE_ROWS = 100_000


def now_ms() -> int:
    """Milliseconds since the epoch (the seam tests replace)."""
    return int(time.time() * 1000)


def encode_token(offset: int) -> str:
    """An opaque page token for an offset."""
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def decode_token(token: str | None) -> int:
    """The offset in a page token (0 for none).

    Raises:
        TrackingError: for a token this store did not make.
    """
    if not token:
        return 0
    try:
        offset = json.loads(base64.urlsafe_b64decode(token.encode()))["offset"]
        if isinstance(offset, int) and offset >= 0:
            return offset
    except (ValueError, KeyError, TypeError):
        pass
    raise invalid(f"Invalid page token {token[:40]!r}: pass the next_page_token you were given")


class AbstractStore(abc.ABC):
    """What every tracking back end provides."""

    # -- projects --------------------------------------------------------------------
    @abc.abstractmethod
    def create_project(
        self,
        name: str,
        *,
        owner: str,
        group: str | None,
        artifact_location: str | None = None,
        tags: dict[str, str] | None = None,
        description: str = "",
    ) -> Project:
        """Create a project; RESOURCE_ALREADY_EXISTS if the name is taken where it would go.

        Names are unique per group, and per owner among private projects (``group=None``).
        """

    @abc.abstractmethod
    def get_project(self, project_id: int) -> Project:
        """A project by id (deleted ones too); RESOURCE_DOES_NOT_EXIST if unknown."""

    @abc.abstractmethod
    def projects_named(self, name: str) -> list[Project]:
        """Every project called ``name``, in any group (deleted ones too), oldest first.

        Which of them a caller means is the service's decision
        (:func:`hub_ext.experiments.access.find_project_by_name`).
        """

    @abc.abstractmethod
    def _search_projects(
        self,
        *,
        ids: Sequence[int] | None,
        name_like: str | None,
        include_deleted: bool,
        offset: int,
        limit: int,
    ) -> tuple[list[Project], int | None]:
        """Projects (restricted to ``ids`` if given) and the next offset."""

    @abc.abstractmethod
    def update_project(self, project_id: int, **changes: Any) -> Project:
        """Change ``name``, ``description``, ``lifecycle_stage`` or ``owner``."""

    @abc.abstractmethod
    def set_project_tag(self, project_id: int, tag: Tag) -> None:
        """Set a project tag."""

    @abc.abstractmethod
    def delete_project_tag(self, project_id: int, key: str) -> None:
        """Remove a project tag (``RESOURCE_DOES_NOT_EXIST`` when it is not set)."""

    @abc.abstractmethod
    def share_project(self, project_id: int, group: str, share: bool = True) -> Project:
        """Share a project with another group (or stop sharing)."""

    @abc.abstractmethod
    def visible_project_ids(
        self, *, user: str, groups: Sequence[str], admin: bool
    ) -> list[int] | None:
        """Ids of projects a user may read (``None``: all, for admins).

        The user's private projects, the groups' projects and those shared with one of the
        groups; owning a group's project grants nothing once the owner left the group.
        """

    # -- runs ----------------------------------------------------------------------------
    @abc.abstractmethod
    def create_run(
        self,
        project_id: int,
        *,
        user: str,
        name: str = "",
        start_time: int | None = None,
        status: RunStatus = RunStatus.RUNNING,
        tags: Sequence[Tag] = (),
    ) -> Run:
        """Create a run in an active project."""

    @abc.abstractmethod
    def get_run(self, run_id: str, *, data: bool = True) -> Run:
        """A run with params, tags and latest metrics; RESOURCE_DOES_NOT_EXIST if unknown.

        With ``data=False`` only the run's own row is read (params, tags and metrics come
        back empty): enough to check access before a write, at a fraction of the cost.
        """

    def get_run_and_project(self, run_id: str, *, data: bool = True) -> tuple[Run, Project]:
        """The run (as :meth:`get_run` gives it) and its project: what an access check needs.

        Stores that can should read both at once (every request about a run asks).
        """
        run = self.get_run(run_id, data=data)
        return run, self.get_project(run.project_id)

    @abc.abstractmethod
    def update_run(self, run_id: str, **changes: Any) -> Run:
        """Change status, end_time, name, heartbeat, lifecycle_stage or the records.

        The records are ``code``, ``environment``, ``failure`` (JSON) and ``status_reason``.
        """

    @abc.abstractmethod
    def _search_runs(
        self,
        *,
        project_ids: Sequence[int] | None,
        filters: Sequence[Any],
        order_by: Sequence[Any],
        include_deleted: bool,
        offset: int,
        limit: int,
    ) -> tuple[list[Run], int | None]:
        """Runs matching parsed filters (``search.Comparison``), ordered, and the next offset."""

    @abc.abstractmethod
    def log_batch(
        self,
        run_id: str,
        *,
        metrics: Sequence[Metric] = (),
        params: Sequence[Param] = (),
        tags: Sequence[Tag] = (),
        columns: Sequence[MetricColumns] = (),
    ) -> None:
        """Write metrics, params (write-once) and tags in one transaction; safe to retry.

        ``columns``: more metric points, as columns per key (no object per point).
        """

    @abc.abstractmethod
    def delete_tag(self, run_id: str, key: str) -> None:
        """Remove a run tag; RESOURCE_DOES_NOT_EXIST if it is not set."""

    @abc.abstractmethod
    def get_metric_history(
        self, run_id: str, key: str, *, offset: int = 0, limit: int = MAX_PAGE_SIZE
    ) -> list[Metric]:
        """A metric's points ordered by step, then timestamp."""

    @abc.abstractmethod
    def log_metric_columns(self, run_id: str, columns: Sequence[MetricColumns]) -> int:
        """Write points given as columns (the compact batch) in one transaction; safe to retry.

        Returns:
            The number of points sent (those already stored count too).
        """

    @abc.abstractmethod
    def metric_history_columns(self, run_id: str, key: str) -> MetricColumns:
        """A metric's whole history as columns, ordered by step, timestamp, value."""

    # -- logs -------------------------------------------------------------------------
    @abc.abstractmethod
    def append_logs(
        self, run_id: str, stream: str, offset: int, lines: Sequence[str], timestamp: int
    ) -> int:
        """Append lines starting at ``offset``; lines already stored are skipped (retry).

        Returns:
            The next offset of the stream (the number of lines stored).
        """

    @abc.abstractmethod
    def read_logs(
        self, run_id: str, stream: str, *, offset: int = 0, limit: int = 1000
    ) -> list[LogLine]:
        """Lines ``offset`` .. ``offset + limit`` of a stream."""

    @abc.abstractmethod
    def log_count(self, run_id: str, stream: str) -> int:
        """How many lines a stream holds (the offset its next line gets)."""

    # -- liveness ---------------------------------------------------------------------
    @abc.abstractmethod
    def expire_heartbeats(self, before: int, now: int, timeout_s: float) -> list[Run]:
        """Mark LOST every RUNNING run whose last heartbeat is older than ``before`` (ms).

        Only runs that have sent a heartbeat are considered (clients that never send one,
        such as the MLflow client, are never expired). The change is conditional on the
        heartbeat still being old, so a heartbeat that arrives meanwhile keeps its run.

        Returns:
            The runs that were marked LOST.
        """

    # -- artifacts ----------------------------------------------------------------------
    @abc.abstractmethod
    def add_artifact(self, run_id: str, path: str, sha256: str, size: int) -> Artifact:
        """Record (or replace) the file at ``path`` of a run."""

    @abc.abstractmethod
    def list_artifacts(self, run_id: str, prefix: str = "") -> list[Artifact]:
        """Files of a run under ``prefix``."""

    @abc.abstractmethod
    def get_artifact(self, run_id: str, path: str) -> Artifact:
        """One file's record; RESOURCE_DOES_NOT_EXIST if missing."""

    @abc.abstractmethod
    def delete_artifacts(self, run_id: str, path: str) -> list[Artifact]:
        """Forget the file at ``path`` of a run, or every file under the directory ``path``.

        The blobs stay until garbage collection finds them unreferenced. Returns the
        records removed; RESOURCE_DOES_NOT_EXIST when there is none.
        """

    # -- artifact storage per group (hub_ext.experiments.storage) ----------------------
    @abc.abstractmethod
    def bucket_bytes(self, group: str | None, owner: str | None = None) -> int:
        """Bytes of the distinct blobs of ``group``'s projects.

        Counted: runs' artifacts and registered versions; ``group=None`` counts ``owner``'s
        private projects instead.
        """

    @abc.abstractmethod
    def bucket_holds(self, group: str | None, owner: str | None, sha256: str) -> bool:
        """Whether that bucket already counts the blob ``sha256``."""

    @abc.abstractmethod
    def groups_with_projects(self) -> list[str]:
        """Every group that has a project, sorted."""

    # -- the stores kept beside this one, on the same database --------------------------
    def job_store(self) -> AbstractJobStore | None:
        """The jobs, run events and job tokens kept with these runs (None: none kept).

        How the service reaches them without knowing the back end (no peeking at an engine).
        """
        return None

    def artifact_registry(self) -> AbstractArtifactRegistry | None:
        """The artifact registry kept with these runs (None: this back end keeps none)."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections (nothing to release by default)."""

    # -- conveniences -----------------------------------------------------------------
    def get_project_by_name(self, name: str) -> Project | None:
        """The project a name picks without a caller: for service-internal use only.

        ``group/name`` (``~/name`` is not meaningful without a caller) picks the project
        called ``name`` in ``group``; a plain name the one project of that name, and
        ``None`` when no project or several (in different groups) use it. A request made
        for a user resolves names among what that user may read instead:
        :func:`hub_ext.experiments.access.find_project_by_name`.
        """
        head, sep, rest = name.partition("/")
        if sep and head and rest:
            for project in self.projects_named(rest):
                if project.group == head:
                    return project
        found = self.projects_named(name)
        return found[0] if len(found) == 1 else None

    def search_projects(
        self,
        *,
        ids: Sequence[int] | None = None,
        name_like: str | None = None,
        include_deleted: bool = False,
        page_token: str | None = None,
        max_results: int = 1000,
    ) -> Page:
        """A page of projects."""
        limit = _page_size(max_results)
        items, nxt = self._search_projects(
            ids=ids,
            name_like=name_like,
            include_deleted=include_deleted,
            offset=decode_token(page_token),
            limit=limit,
        )
        return Page(items, encode_token(nxt) if nxt is not None else None)

    def search_runs(
        self,
        *,
        project_ids: Sequence[int] | None,
        filters: Sequence[Any] = (),
        order_by: Sequence[Any] = (),
        include_deleted: bool = False,
        page_token: str | None = None,
        max_results: int = 1000,
    ) -> Page:
        """A page of runs of the given projects."""
        limit = _page_size(max_results)
        items, nxt = self._search_runs(
            project_ids=project_ids,
            filters=filters,
            order_by=order_by,
            include_deleted=include_deleted,
            offset=decode_token(page_token),
            limit=limit,
        )
        return Page(items, encode_token(nxt) if nxt is not None else None)

    @abc.abstractmethod
    def run_table(
        self,
        *,
        project_ids: Sequence[int] | None,
        filters: Sequence[Any] = (),
        order_by: Sequence[Any] = (),
        page_token: str | None = None,
        max_results: int = MAX_TABLE_ROWS,
    ) -> tuple[dict[str, list[Any]], str | None]:
        """A page of a run search as columns, and the next page's token.

        Columns: ``run_id``, ``name``, ``user``, ``status``, ``start_time``, ``end_time``,
        then ``params.<key>``, ``tags.<key>`` and ``metrics.<key>`` (latest values), each
        as long as the page, ``None`` where a run has no such value.
        """

    def log_metric(self, run_id: str, metric: Metric) -> None:
        """Log one metric point."""
        self.log_batch(run_id, metrics=[metric])

    def log_param(self, run_id: str, param: Param) -> None:
        """Log one parameter (write-once)."""
        self.log_batch(run_id, params=[param])

    def set_tag(self, run_id: str, tag: Tag) -> None:
        """Set one run tag."""
        self.log_batch(run_id, tags=[tag])


def _page_size(max_results: int) -> int:
    if isinstance(max_results, bool) or not isinstance(max_results, int):
        raise invalid(f"max_results={max_results!r} must be an integer")
    if not 1 <= max_results <= MAX_PAGE_SIZE:
        raise invalid(
            f"Invalid value {max_results} for parameter 'max_results' supplied. It must be at "
            f"most {MAX_PAGE_SIZE}, and at least 1."
        )
    return max_results
