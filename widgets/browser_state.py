"""The results browser's state (no ipywidgets): a project's runs, one page at a time.

:class:`BrowserState` keeps the filter, the sort, the page tokens, the selection and the
columns, and asks the client for one page at a time (``GET api/v1/runs``: filtering,
sorting and paging happen in the service), for the runs and metric histories to compare,
for every page as a DataFrame and for artifacts to download. Pure helpers
(:func:`order_clause`, :func:`cell`, :func:`default_columns`, :func:`differing_params`)
say how runs become columns. :mod:`widgets.browser` is its view.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from latticehub.client import TrackingClient, runs_dataframe

from .api import ServiceError, service_errors

#: Run attributes that are columns, with their order-by names in the search grammar.
ATTRIBUTES = {
    "name": "attributes.run_name",
    "status": "attributes.status",
    "user": "attributes.user_id",
    "start_time": "attributes.start_time",
    "end_time": "attributes.end_time",
}
#: Metrics shown first (when the runs have them).
PREFERRED_METRICS = ("loss", "ess", "acceptance", "final_ess", "final_acceptance")
#: Most params / metrics chosen as columns by default.
DEFAULT_PARAMS, DEFAULT_METRICS = 6, 6
PAGE_SIZES = (25, 50, 100, 200)
#: Params that differ between any two jobs without saying anything about the model (the
#: job's output folder, resuming): never picked as "the params that differ".
BOOKKEEPING_PARAMS = frozenset({"out", "resume"})
#: Runs remembered for comparisons before the memory is cleared (the selection is kept).
MAX_KNOWN = 5000
_KEY = re.compile(r"[A-Za-z0-9_.\-/]+")


def order_clause(column: str, descending: bool) -> str:
    """The ``order_by`` clause for a column (``"metrics.loss"`` -> ``"metrics.loss DESC"``)."""
    if column in ATTRIBUTES:
        clause = ATTRIBUTES[column]
    else:
        kind, _, key = column.partition(".")
        clause = f"{kind}.{key}" if _KEY.fullmatch(key) else f"{kind}.`{key}`"
    return f"{clause} {'DESC' if descending else 'ASC'}"


def cell(run: dict, column: str) -> str:
    """The text of a column for a run (metrics as 4 significant digits)."""
    if column.startswith("params."):
        return run["params"].get(column[7:], "")
    if column.startswith("metrics."):
        point = run["metrics"].get(column[8:])
        if point is None:
            return ""
        value = point["value"]
        return f"{value:.4g}" if isinstance(value, int | float) else str(value)
    if column in ("start_time", "end_time"):
        stamp = run.get(column)
        if not stamp:
            return ""
        return dt.datetime.fromtimestamp(stamp / 1000).strftime("%Y-%m-%d %H:%M")
    return str(run.get(column, ""))


def short(text: str, limit: int = 32) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def differing_params(runs: Sequence[dict]) -> list[str]:
    """Param keys whose values differ between the runs (bookkeeping params left out)."""
    keys = sorted({k for run in runs for k in run["params"]} - BOOKKEEPING_PARAMS)
    return [k for k in keys if len({run["params"].get(k) for run in runs}) > 1]


def default_columns(runs: Sequence[dict]) -> list[str]:
    """Name, status, user, start, the params that differ and the main metrics of ``runs``."""
    metrics = {k for run in runs for k in run["metrics"]}
    chosen = [k for k in PREFERRED_METRICS if k in metrics]
    chosen += [k for k in sorted(metrics) if k not in chosen]
    return (
        ["name", "status", "user", "start_time"]
        + [f"params.{k}" for k in differing_params(runs)[:DEFAULT_PARAMS]]
        + [f"metrics.{k}" for k in chosen[:DEFAULT_METRICS]]
    )


def metric_keys(runs: Sequence[dict]) -> list[str]:
    """The metrics of ``runs``, the preferred ones first."""
    keys = sorted({k for run in runs for k in run["metrics"]})
    return [k for k in PREFERRED_METRICS if k in keys] + [
        k for k in keys if k not in PREFERRED_METRICS
    ]


class BrowserState:
    """A project's runs as pages, with a selection and columns.

    Args:
        client: the service client.
        filter: an MLflow filter.
        sort: the column to sort by; ``descending``: its direction.
        page_size: runs per page.
        columns: the columns to show (default: :func:`default_columns` of the first page).

    Attributes:
        project: the project (after :meth:`open`).
        runs: the runs of the current page; ``page``: its number (0 = first);
            ``has_next``: whether another page follows.
        selected: ids of the selected runs (kept across pages).
        columns: the columns shown; ``column_names``: every column seen so far.
        compared: the runs of the last comparison.
    """

    def __init__(
        self,
        client: TrackingClient,
        *,
        filter: str = "",
        sort: str = "start_time",
        descending: bool = True,
        page_size: int = 50,
        columns: Sequence[str] | None = None,
    ):
        self.client = client
        self.project: dict[str, Any] | None = None
        self.filter, self.sort_column, self.descending = filter, sort, descending
        self.page_size = page_size
        self.runs: list[dict] = []
        self.page = 0
        self.has_next = False
        self.selected: list[str] = []
        self.columns: list[str] = list(columns) if columns else []
        self.column_names: list[str] = []
        self.compared: list[str] = []
        self.known: dict[str, dict] = {}  # run id -> run, from the pages seen
        self.tokens: list[str | None] = [None]

    # -- the project ---------------------------------------------------------------------
    def open(self, project: str | int) -> dict[str, Any]:
        """Find the project by id or exact name (never creates one) and load the first page.

        Raises:
            ServiceError: 404 when there is no such project you can see; any other failure.
        """
        client = self.client
        with service_errors(client):
            if isinstance(project, int) and not isinstance(project, bool):
                found: dict[str, Any] | None = client.get_project(project)
            else:
                found = client.find_project(project)
        if found is None:
            raise ServiceError(
                f"No project called {project!r} that you can see: check the name (or pass its id).",
                404,
                "RESOURCE_DOES_NOT_EXIST",
            )
        self.project = found
        self.load(None)
        return found

    # -- paging --------------------------------------------------------------------------
    def order_by(self) -> list[str]:
        """The ``order_by`` of the current sort."""
        return [order_clause(self.sort_column, self.descending)]

    def load(self, token: str | None, filter: str | None = None) -> None:
        """Fetch one page (``token``) with ``filter``; the old page stays on an error.

        Raises:
            ServiceError: the service refused (a bad filter) or could not be reached.
        """
        if self.project is None:
            return
        wanted = self.filter if filter is None else filter
        with service_errors(self.client):
            runs, nxt = self.client.search_runs_page(
                self.project["id"], filter=wanted, order_by=self.order_by(),
                max_results=self.page_size, page_token=token,
            )  # fmt: skip
        self.filter, self.runs, self.has_next = wanted, runs, bool(nxt)
        del self.tokens[self.page + 1 :]
        if nxt:
            self.tokens.append(nxt)
        if len(self.known) > MAX_KNOWN:  # memory stays bounded however far one pages
            self.known = {i: self.known[i] for i in self.selected if i in self.known}
        for run in runs:
            self.known[run["id"]] = run
        self.update_columns()

    def refresh(self) -> None:
        """Reload from the first page."""
        self.page, self.tokens = 0, [None]
        self.load(None)

    def next_page(self) -> None:
        """Go to the next page (if there is one); the page number stays on an error."""
        if not self.has_next:
            return
        self.page += 1
        try:
            self.load(self.tokens[self.page])
        except ServiceError:
            self.page -= 1
            raise

    def prev_page(self) -> None:
        """Go to the previous page."""
        if self.page == 0:
            return
        self.page -= 1
        try:
            self.load(self.tokens[self.page])
        except ServiceError:
            self.page += 1
            raise

    def set_filter(self, text: str) -> None:
        """Filter (MLflow grammar) from the first page; the old filter's page stays on an error."""
        page, tokens = self.page, self.tokens
        self.page, self.tokens = 0, [None]
        try:
            self.load(None, filter=text.strip())
        except ServiceError:
            self.page, self.tokens = page, tokens
            raise

    def sort(self, column: str, descending: bool | None = None) -> None:
        """Sort by a column and reload from the first page."""
        self.sort_column = column
        if descending is not None:
            self.descending = descending
        self.refresh()

    # -- columns and selection -----------------------------------------------------------
    def update_columns(self) -> None:
        """Add the page's params and metrics to :attr:`column_names` (and pick defaults)."""
        params = sorted({k for run in self.runs for k in run["params"]})
        metrics = sorted({k for run in self.runs for k in run["metrics"]})
        names = list(self.column_names) or list(ATTRIBUTES)
        for column in [f"params.{k}" for k in params] + [f"metrics.{k}" for k in metrics]:
            if column not in names:
                names.append(column)
        names += [c for c in self.columns if c not in names]
        self.column_names = names
        if not self.columns:
            self.columns = default_columns(self.runs)

    def select(self, run_ids: Sequence[str]) -> None:
        """Select runs (replacing the selection)."""
        self.selected = list(dict.fromkeys(run_ids))

    def pick_on_page(self, run_ids: Sequence[str]) -> None:
        """The runs picked on this page; those selected on other pages stay selected."""
        on_page = {run["id"] for run in self.runs}
        kept = [i for i in self.selected if i not in on_page]
        self.selected = kept + [i for i in run_ids if i not in kept]

    # -- comparing -----------------------------------------------------------------------
    def compare(self, run_ids: Sequence[str] | None = None) -> list[dict]:
        """The runs to compare (default: the selection), fetched if not seen on a page.

        Raises:
            ServiceError: a run cannot be read.
        """
        ids = list(dict.fromkeys(run_ids or self.selected))
        with service_errors(self.client):
            for run_id in ids:
                self.known[run_id] = self.known.get(run_id) or self.client.get_run(run_id)
        self.compared = ids
        return [self.known[run_id] for run_id in ids]

    def curves(self, key: str) -> dict[str, list[tuple[int, float]]]:
        """``label -> [(step, value)]`` of metric ``key`` for each compared run.

        Raises:
            ServiceError: a history cannot be read.
        """
        out = {}
        with service_errors(self.client):
            for run_id in self.compared:
                run = self.known[run_id]
                label = f"{short(run['name'] or run_id[:8], 24)} ({run_id[:8]})"
                history = self.client.metric_columns(run_id, key)  # one binary read
                out[label] = list(zip(history.steps.tolist(), history.values.tolist(), strict=True))
        return out

    # -- export --------------------------------------------------------------------------
    def dataframe(self) -> Any:
        """Every run matching the filter (all pages) as a pandas DataFrame.

        Raises:
            ServiceError: no project, or the service refused or could not be reached.
        """
        if self.project is None:
            raise ServiceError("No project.", None, "NO_PROJECT")
        with service_errors(self.client):
            return runs_dataframe(
                self.project["id"], filter=self.filter, order_by=self.order_by(),
                client=self.client,
            )  # fmt: skip

    def download(self, dest: str | Path, run_ids: Sequence[str] | None = None) -> list[Path]:
        """Download the artifacts of the selected runs (or ``run_ids``) to ``dest/<run id>/``.

        Raises:
            ServiceError: a run cannot be read or a download failed.
        """
        written: list[Path] = []
        with service_errors(self.client):
            for run_id in list(run_ids or self.selected):
                written += self.client.download_artifacts(run_id, Path(dest) / run_id)
        return written
