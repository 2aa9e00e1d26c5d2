"""``ResultsBrowser(project)``: a project's runs as a sortable, filterable, paged table.

The table shows one page at a time (``GET api/v1/runs?project=..&filter=..&order_by=..
&max_results=..&page_token=..``): sorting, filtering and paging happen in the service, so a
project with thousands of runs costs one page per click. Filters use MLflow's grammar
(``metrics.loss < 0.5 and params.L = '8'``). Selected runs can be compared (overlaid
metric curves from ``GET api/v1/runs/{id}/metrics/{key}``, a table of the params that
differ) and their artifacts downloaded. :attr:`ResultsBrowser.dataframe` is the whole
filtered result as a pandas DataFrame (all pages: only there).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import html
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import ipywidgets as w

from latticehub.client import TrackingAPIError, TrackingClient, runs_dataframe

from . import api
from .plots import compare_figure, show_figure

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


def _short(text: str, limit: int = 32) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class ResultsBrowser(w.VBox):
    """Browse, compare and export the runs of a project.

    Args:
        project: the project's name or id.
        client: the service client (default: from the notebook's environment).
        filter: an MLflow filter, e.g. ``"metrics.loss < 0.5 and params.L = '8'"``.
        sort: the column to sort by (``"start_time"``, ``"metrics.loss"``, ``"params.L"``).
        descending: sort direction.
        page_size: runs per page.
        columns: the columns to show (default: name, status, user, start, the params that
            differ on the first page and the main metrics).

    Attributes:
        runs: the runs of the current page (as ``GET api/v1/runs/{id}`` returns them).
        page: the current page (0 = first); ``has_next``: whether another page follows.
        selected: ids of the selected runs (kept across pages).
        compare_figure: the last comparison figure (matplotlib), if any.

    Example::

        from widgets import ResultsBrowser
        browser = ResultsBrowser("phi4-scan", filter="metrics.loss < 0.5")
        browser.dataframe.groupby("params.L")["metrics.acceptance"].max()
    """

    def __init__(
        self,
        project: str | int,
        client: TrackingClient | None = None,
        *,
        filter: str = "",
        sort: str = "start_time",
        descending: bool = True,
        page_size: int = 50,
        columns: Sequence[str] | None = None,
    ):
        super().__init__()
        self.add_class("lh-results")
        self.runs: list[dict] = []
        self.page = 0
        self.has_next = False
        self.selected: list[str] = []
        self.filter = filter
        self.sort_column, self.descending = sort, descending
        self.page_size = page_size
        self.error: api.ServiceError | None = None
        self.compare_figure: Any = None
        self.compared: list[str] = []
        self.project: dict | None = None
        self._tokens: list[str | None] = [None]
        self._known: dict[str, dict] = {}  # run id -> run, from the pages seen
        self._columns: list[str] = list(columns) if columns else []
        self._column_names: list[str] = []
        self._quiet = False
        self._build()
        try:
            self.client = api.make_client(client)
            self.project = api.find_project(self.client, project)
        except api.ServiceError as e:
            self._fail(e)
            self.children = (self.header, self.status_line)
            return
        self.header.value = (
            f"<b>Runs of project</b> <code>{html.escape(self.project['name'])}</code> "
            f"<span style='opacity:0.6'>(id {self.project['id']}, group "
            f"{html.escape(str(self.project.get('group') or '-'))})</span>"
        )
        self.filter_text.value = filter
        self._load(None)

    @property
    def project_id(self) -> int | None:
        """The project's id (None when it could not be found)."""
        return self.project["id"] if self.project else None

    # -- building ------------------------------------------------------------------------
    def _build(self) -> None:
        self.header = w.HTML()
        self.header.add_class("lh-results-header")
        self.filter_text = w.Text(
            placeholder="metrics.loss < 0.5 and params.L = '8'",
            description="filter",
            continuous_update=False,
            layout=w.Layout(width="40em"),
        )
        self.filter_text.add_class("lh-filter")
        self.filter_text.observe(lambda c: self.set_filter(c["new"]), names="value")
        apply = w.Button(description="Apply", icon="filter")
        apply.add_class("lh-filter-apply")
        apply.on_click(lambda _b: self.set_filter(self.filter_text.value, force=True))
        self.sort_by = w.Dropdown(description="sort by", options=[self.sort_column])
        self.sort_by.add_class("lh-sort")
        self.sort_by.observe(self._sort_changed, names="value")
        self.direction = w.ToggleButtons(
            options=[("↓ desc", True), ("↑ asc", False)], value=self.descending
        )
        self.direction.style.button_width = "5em"
        self.direction.add_class("lh-sort-direction")
        self.direction.observe(self._sort_changed, names="value")
        self.page_size_picker = w.Dropdown(
            options=sorted({*PAGE_SIZES, self.page_size}),
            value=self.page_size,
            description="per page",
            layout=w.Layout(width="12em"),
        )
        self.page_size_picker.observe(self._page_size_changed, names="value")
        self.prev_button = w.Button(description="Previous", icon="chevron-left", disabled=True)
        self.prev_button.add_class("lh-prev")
        self.prev_button.on_click(lambda _b: self.prev_page())
        self.next_button = w.Button(description="Next", icon="chevron-right", disabled=True)
        self.next_button.add_class("lh-next")
        self.next_button.on_click(lambda _b: self.next_page())
        self.page_label = w.HTML()
        self.page_label.add_class("lh-page")
        self.column_picker = w.SelectMultiple(description="columns", rows=8)
        self.column_picker.add_class("lh-columns")
        self.column_picker.observe(self._columns_picked, names="value")
        self.table = w.HTML()
        self.table.add_class("lh-results-table")
        self.run_picker = w.SelectMultiple(
            description="select", rows=8, layout=w.Layout(width="34em")
        )
        self.run_picker.add_class("lh-run-picker")
        self.run_picker.observe(self._runs_picked, names="value")
        self.compare_button = w.Button(description="Compare selected", icon="line-chart")
        self.compare_button.add_class("lh-compare")
        self.compare_button.on_click(lambda _b: self.compare())
        self.download_dir = w.Text(value="artifacts", description="to folder")
        self.download_button = w.Button(description="Download artifacts", icon="download")
        self.download_button.add_class("lh-download")
        self.download_button.on_click(lambda _b: self.download(self.download_dir.value))
        self.status_line = w.HTML()
        self.status_line.add_class("lh-status")
        self.compare_key = w.Dropdown(description="metric")
        self.compare_key.add_class("lh-compare-metric")
        self.compare_key.observe(self._compare_key_changed, names="value")
        self.compare_plot = w.Output()
        self.compare_plot.add_class("lh-compare-plot")
        self.compare_params = w.HTML()
        self.compare_params.add_class("lh-compare-params")
        self.compare_view = w.VBox([self.compare_key, self.compare_plot, self.compare_params])
        self.compare_view.add_class("lh-compare-view")
        self.compare_view.layout.display = "none"
        self.children = (
            self.header,
            w.HBox([self.filter_text, apply]),
            w.HBox([self.sort_by, self.direction, self.page_size_picker]),
            w.HBox([self.prev_button, self.page_label, self.next_button]),
            self.table,
            w.HBox([self.column_picker, self.run_picker]),
            w.HBox([self.compare_button, self.download_dir, self.download_button]),
            self.status_line,
            self.compare_view,
        )

    @contextlib.contextmanager
    def _programmatic(self) -> Iterator[None]:
        """Change widgets without their observers acting."""
        quiet, self._quiet = self._quiet, True
        try:
            yield
        finally:
            self._quiet = quiet

    # -- loading ---------------------------------------------------------------------------
    def _order_by(self) -> list[str]:
        return [order_clause(self.sort_column, self.descending)]

    def _load(self, token: str | None, filter: str | None = None) -> bool:
        """Fetch one page (``token``) with ``filter``; keep the old page on an error."""
        if self.project is None:
            return False
        wanted = self.filter if filter is None else filter
        try:
            runs, nxt = api.search_runs_page(
                self.client, self.project["id"], filter=wanted, order_by=self._order_by(),
                max_results=self.page_size, page_token=token,
            )  # fmt: skip
        except api.ServiceError as e:
            self._fail(e)
            return False
        self.filter, self.runs, self.has_next = wanted, runs, bool(nxt)
        del self._tokens[self.page + 1 :]
        if nxt:
            self._tokens.append(nxt)
        if len(self._known) > MAX_KNOWN:  # memory stays bounded however far one pages
            self._known = {i: self._known[i] for i in self.selected if i in self._known}
        for run in runs:
            self._known[run["id"]] = run
        self.error = None
        self._show("", "info")
        self._update_columns()
        self._render()
        return True

    def refresh(self) -> None:
        """Reload from the first page."""
        self.page, self._tokens = 0, [None]
        self._load(None)

    def next_page(self) -> None:
        """Show the next page (if there is one)."""
        if not self.has_next:
            return
        self.page += 1
        if not self._load(self._tokens[self.page]):
            self.page -= 1

    def prev_page(self) -> None:
        """Show the previous page."""
        if self.page == 0:
            return
        self.page -= 1
        if not self._load(self._tokens[self.page]):
            self.page += 1

    def set_filter(self, text: str, force: bool = False) -> None:
        """Filter the runs (MLflow grammar) and go back to the first page."""
        if self._quiet or (text == self.filter and not force):
            return
        page, tokens = self.page, self._tokens
        self.page, self._tokens = 0, [None]
        if not self._load(None, filter=text.strip()):
            self.page, self._tokens = page, tokens  # the old filter's page stays shown

    def sort(self, column: str, descending: bool | None = None) -> None:
        """Sort by a column (``"metrics.loss"``, ``"params.L"``, ``"start_time"``...)."""
        self.sort_column = column
        if descending is not None:
            self.descending = descending
        with self._programmatic():
            if column not in self.sort_by.options:
                self.sort_by.options = [*self.sort_by.options, column]
            self.sort_by.value = column
            self.direction.value = self.descending
        self.refresh()

    # -- columns ---------------------------------------------------------------------------
    @property
    def columns(self) -> list[str]:
        """The columns shown (besides the run id)."""
        return list(self._columns)

    @columns.setter
    def columns(self, chosen: Sequence[str]) -> None:
        self._columns = list(chosen)
        self._update_columns()
        self._render()

    def _update_columns(self) -> None:
        params: set[str] = set()
        metrics: set[str] = set()
        for run in self.runs:
            params.update(run["params"])
            metrics.update(run["metrics"])
        names = list(self._column_names) or list(ATTRIBUTES)
        for column in [f"params.{k}" for k in sorted(params)] + [
            f"metrics.{k}" for k in sorted(metrics)
        ]:
            if column not in names:
                names.append(column)
        for column in self._columns:
            if column not in names:
                names.append(column)
        self._column_names = names
        if not self._columns:
            self._columns = self._default_columns(params, metrics)
        with self._programmatic():
            self.column_picker.options = names
            self.column_picker.value = tuple(c for c in self._columns if c in names)
            sortable = list(dict.fromkeys([self.sort_column, *names]))
            if list(self.sort_by.options) != sortable:
                self.sort_by.options = sortable
            self.sort_by.value = self.sort_column

    def _default_columns(self, params: set[str], metrics: set[str]) -> list[str]:
        varying = [
            k
            for k in sorted(params - BOOKKEEPING_PARAMS)
            if len({run["params"].get(k) for run in self.runs}) > 1
        ][:DEFAULT_PARAMS]
        chosen_metrics = [k for k in PREFERRED_METRICS if k in metrics]
        chosen_metrics += [k for k in sorted(metrics) if k not in chosen_metrics]
        return (
            ["name", "status", "user", "start_time"]
            + [f"params.{k}" for k in varying]
            + [f"metrics.{k}" for k in chosen_metrics[:DEFAULT_METRICS]]
        )

    # -- rendering -------------------------------------------------------------------------
    def _render(self) -> None:
        columns = self._columns
        head = "".join(
            f'<th data-column="{html.escape(c)}">{html.escape(c)}'
            f"{(' ↓' if self.descending else ' ↑') if c == self.sort_column else ''}</th>"
            for c in columns
        )
        selected = set(self.selected)
        rows = []
        for run in self.runs:
            mark = "✓" if run["id"] in selected else ""
            style = ' style="background:#ddf4ff"' if mark else ""
            cells = "".join(
                f'<td title="{html.escape(value)}">{html.escape(_short(value))}</td>'
                for value in (cell(run, c) for c in columns)
            )
            rows.append(
                f'<tr data-run-id="{html.escape(run["id"])}"{style}><td>{mark}</td>'
                f"<td><code>{html.escape(run['id'][:8])}</code></td>{cells}</tr>"
            )
        body = "".join(rows) or (f'<tr><td colspan="{len(columns) + 2}">no runs match</td></tr>')
        self.table.value = (
            '<div style="max-height:28em;overflow:auto">'
            '<table class="lh-results-table-el" style="border-collapse:collapse;font-size:12px">'
            f"<thead><tr><th></th><th>run</th>{head}</tr></thead><tbody>{body}</tbody>"
            "</table></div>"
        )
        first = self.page * self.page_size
        shown = f"runs {first + 1}–{first + len(self.runs)}" if self.runs else "no runs"
        more = " · more follow" if self.has_next else ""
        self.page_label.value = f"page {self.page + 1} · {shown}{more}"
        self.prev_button.disabled = self.page == 0
        self.next_button.disabled = not self.has_next
        with self._programmatic():
            self.run_picker.options = [
                (f"{run['id'][:8]}  {_short(run['name'], 40)}  {run['status']}", run["id"])
                for run in self.runs
            ]
            self.run_picker.value = tuple(r["id"] for r in self.runs if r["id"] in selected)

    # -- selection and comparison ----------------------------------------------------------
    def select(self, run_ids: Sequence[str]) -> None:
        """Select runs (replacing the selection)."""
        self.selected = list(dict.fromkeys(run_ids))
        self._render()

    def compare(self, run_ids: Sequence[str] | None = None, key: str | None = None) -> None:
        """Show the selected runs (or ``run_ids``) side by side: curves of ``key``, params.

        Args:
            run_ids: runs to compare (default: the selection).
            key: the metric to overlay (default: ``loss`` if the runs have it).
        """
        ids = list(dict.fromkeys(run_ids or self.selected))
        if not ids:
            self._show("Select runs to compare first.", "warn")
            return
        try:
            runs = [self._known.get(i) or api.get_run(self.client, i) for i in ids]
        except api.ServiceError as e:
            self._fail(e)
            return
        for run in runs:
            self._known[run["id"]] = run
        keys = sorted({k for run in runs for k in run["metrics"]})
        keys = [k for k in PREFERRED_METRICS if k in keys] + [
            k for k in keys if k not in PREFERRED_METRICS
        ]
        key = key or (keys[0] if keys else None)
        self.compared = ids
        with self._programmatic():
            self.compare_key.options = keys
            if key in keys:
                self.compare_key.value = key
        self.compare_params.value = self._param_diff(runs)
        self.compare_view.layout.display = None
        self._plot_compare(key)

    def _plot_compare(self, key: str | None) -> None:
        if key is None:
            show_figure(self.compare_plot, None)
            self._show("The selected runs have no metrics to plot.", "warn")
            return
        curves = {}
        try:
            for run_id in self.compared:
                run = self._known[run_id]
                label = f"{_short(run['name'] or run_id[:8], 24)} ({run_id[:8]})"
                curves[label] = api.metric_points(self.client, run_id, key)
        except api.ServiceError as e:
            self._fail(e)
            return
        self.compare_figure = compare_figure(curves, key)
        show_figure(self.compare_plot, self.compare_figure, f"{key} of {len(curves)} runs")
        self._show(f"Comparing {len(curves)} runs on {key}.", "info")

    def _param_diff(self, runs: list[dict]) -> str:
        keys = sorted({k for run in runs for k in run["params"]} - BOOKKEEPING_PARAMS)
        differ = [k for k in keys if len({run["params"].get(k) for run in runs}) > 1]
        head = "".join(
            f"<th>{html.escape(_short(run['name'] or run['id'][:8], 24))}<br>"
            f"<code>{html.escape(run['id'][:8])}</code></th>"
            for run in runs
        )
        rows = "".join(
            f"<tr><th>{html.escape(k)}</th>"
            + "".join(f"<td>{html.escape(run['params'].get(k, '—'))}</td>" for run in runs)
            + "</tr>"
            for k in differ
        )
        if not differ:
            rows = f'<tr><td colspan="{len(runs) + 1}">all params are equal</td></tr>'
        return (
            '<table class="lh-param-diff" style="border-collapse:collapse;font-size:12px">'
            f"<thead><tr><th>param</th>{head}</tr></thead><tbody>{rows}</tbody></table>"
        )

    # -- export ----------------------------------------------------------------------------
    @property
    def dataframe(self) -> Any:
        """All runs matching the current filter (every page), as a pandas DataFrame.

        Raises:
            ServiceError: the service refused or could not be reached.
        """
        if self.project is None:
            raise self.error or api.ServiceError("no project")
        try:
            return runs_dataframe(
                self.project["id"], filter=self.filter, order_by=self._order_by(),
                client=self.client,
            )  # fmt: skip
        except (TrackingAPIError, OSError, ValueError) as e:
            error = api.describe(e, self.client.url)
            self._fail(error)
            raise error from None

    def download(self, dest: str | Path, run_ids: Sequence[str] | None = None) -> list[Path]:
        """Download the artifacts of the selected runs (or ``run_ids``) to ``dest/<run id>/``."""
        ids = list(run_ids or self.selected)
        if not ids:
            self._show("Select runs whose artifacts to download first.", "warn")
            return []
        written: list[Path] = []
        try:
            for run_id in ids:
                written += api.download_all(self.client, run_id, Path(dest) / run_id)
        except api.ServiceError as e:
            self._fail(e)
            return written
        self._show(f"Downloaded {len(written)} files of {len(ids)} runs to {dest}.", "ok")
        return written

    # -- events ----------------------------------------------------------------------------
    def _sort_changed(self, _change: Any) -> None:
        if self._quiet or self.project is None:
            return
        self.sort_column, self.descending = self.sort_by.value, self.direction.value
        self.refresh()

    def _page_size_changed(self, change: Any) -> None:
        if self._quiet or self.project is None:
            return
        self.page_size = change["new"]
        self.refresh()

    def _columns_picked(self, change: Any) -> None:
        if self._quiet:
            return
        picked = set(change["new"])
        self._columns = [c for c in self._column_names if c in picked]
        self._render()

    def _runs_picked(self, change: Any) -> None:
        if self._quiet:
            return
        on_page = {run["id"] for run in self.runs}
        kept = [i for i in self.selected if i not in on_page]
        self.selected = kept + [i for i in change["new"] if i not in kept]
        self._render()

    def _compare_key_changed(self, change: Any) -> None:
        if not self._quiet and change["new"]:
            self._plot_compare(change["new"])

    # -- messages ----------------------------------------------------------------------------
    def _fail(self, error: api.ServiceError) -> None:
        self.error = error
        self._show(error.message, "error")

    def _show(self, message: str, level: str) -> None:
        self.status_line.value = api.status_html(message, level)
