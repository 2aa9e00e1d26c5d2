"""``ResultsBrowser(project)``: a project's runs as a sortable, filterable, paged table.

The table shows one page at a time (``GET api/v1/runs?project=..&filter=..&order_by=..
&max_results=..&page_token=..``): sorting, filtering and paging happen in the service, so a
project with thousands of runs costs one page per click. Filters use MLflow's grammar
(``metrics.loss < 0.5 and params.L = '8'``). Selected runs can be compared (overlaid
metric curves, one binary read of ``GET api/v1/runs/{id}/history/{key}`` each; a table of
the params that differ) and their artifacts downloaded. :attr:`ResultsBrowser.dataframe` is
the whole filtered result as a pandas DataFrame (all pages: only there). The pages, selection and
columns live in :class:`~widgets.browser_state.BrowserState`; this module is the view.
"""

from __future__ import annotations

import contextlib
import html
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import ipywidgets as w

from latticehub.client import TrackingClient

from . import api
from .browser_state import (  # noqa: F401 - re-exported: their old home
    ATTRIBUTES,
    BOOKKEEPING_PARAMS,
    DEFAULT_METRICS,
    DEFAULT_PARAMS,
    MAX_KNOWN,
    PAGE_SIZES,
    PREFERRED_METRICS,
    BrowserState,
    cell,
    differing_params,
    metric_keys,
    order_clause,
    short,
)
from .plots import compare_figure, show_figure


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
        state: the :class:`~widgets.browser_state.BrowserState` (pages, selection, columns).
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
        self.error: api.ServiceError | None = None
        self.compare_figure: Any = None
        self._quiet = False
        self._sort_column, self._descending, self._page_size = sort, descending, page_size
        self._build()
        try:
            self.client = api.make_client(client)
        except api.ServiceError as e:
            self.state = BrowserState(None, filter=filter)  # type: ignore[arg-type]
            self._fail(e)
            self.children = (self.header, self.status_line)
            return
        self.state = BrowserState(
            self.client, filter=filter, sort=sort, descending=descending,
            page_size=page_size, columns=columns,
        )  # fmt: skip
        error = None
        try:
            self.state.open(project)
        except api.ServiceError as e:  # no such project, or its first page failed
            error = e
        found = self.state.project
        if found is None:
            self._fail(error or api.ServiceError("No project."))
            self.children = (self.header, self.status_line)
            return
        self.header.value = (
            f"<b>Runs of project</b> <code>{html.escape(found['name'])}</code> "
            f"<span style='opacity:0.6'>(id {found['id']}, group "
            f"{html.escape(str(found.get('group') or '-'))})</span>"
        )
        with self._programmatic():
            self.filter_text.value = filter
        self._shown()
        if error is not None:  # e.g. a bad filter: the (empty) table and the reason
            self._fail(error)

    # -- the state's attributes ----------------------------------------------------------
    @property
    def project(self) -> dict | None:
        """The project (``None`` when it could not be found)."""
        return self.state.project

    @property
    def project_id(self) -> int | None:
        """The project's id (None when it could not be found)."""
        return self.state.project["id"] if self.state.project else None

    runs = property(lambda self: self.state.runs, doc="The runs of the current page.")
    page = property(lambda self: self.state.page, doc="The current page (0 = first).")
    has_next = property(lambda self: self.state.has_next, doc="Whether another page follows.")
    filter = property(lambda self: self.state.filter, doc="The filter of the shown runs.")
    sort_column = property(lambda self: self.state.sort_column, doc="The sort column.")
    descending = property(lambda self: self.state.descending, doc="The sort direction.")
    page_size = property(lambda self: self.state.page_size, doc="Runs per page.")
    compared = property(lambda self: self.state.compared, doc="The runs last compared.")

    @property
    def selected(self) -> list[str]:
        """Ids of the selected runs (kept across pages)."""
        return self.state.selected

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
        self.sort_by = w.Dropdown(description="sort by", options=[self._sort_column])
        self.sort_by.add_class("lh-sort")
        self.sort_by.observe(self._sort_changed, names="value")
        self.direction = w.ToggleButtons(
            options=[("↓ desc", True), ("↑ asc", False)], value=self._descending
        )
        self.direction.style.button_width = "5em"
        self.direction.add_class("lh-sort-direction")
        self.direction.observe(self._sort_changed, names="value")
        self.page_size_picker = w.Dropdown(
            options=sorted({*PAGE_SIZES, self._page_size}),
            value=self._page_size,
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
    def _act(self, action: Callable[[], Any]) -> bool:
        """Run a state action; show the page after it, or its error (the old page stays)."""
        if self.state.project is None:
            return False
        try:
            action()
        except api.ServiceError as e:
            self._fail(e)
            return False
        self._shown()
        return True

    def _shown(self) -> None:
        self.error = None
        self._show("", "info")
        self._update_columns()
        self._render()

    def refresh(self) -> None:
        """Reload from the first page."""
        self._act(self.state.refresh)

    def next_page(self) -> None:
        """Show the next page (if there is one)."""
        self._act(self.state.next_page)

    def prev_page(self) -> None:
        """Show the previous page."""
        self._act(self.state.prev_page)

    def set_filter(self, text: str, force: bool = False) -> None:
        """Filter the runs (MLflow grammar) and go back to the first page."""
        if self._quiet or (text == self.state.filter and not force):
            return
        self._act(lambda: self.state.set_filter(text))

    def sort(self, column: str, descending: bool | None = None) -> None:
        """Sort by a column (``"metrics.loss"``, ``"params.L"``, ``"start_time"``...)."""
        self.state.sort_column = column
        if descending is not None:
            self.state.descending = descending
        with self._programmatic():
            if column not in self.sort_by.options:
                self.sort_by.options = [*self.sort_by.options, column]
            self.sort_by.value = column
            self.direction.value = self.state.descending
        self.refresh()

    # -- columns ---------------------------------------------------------------------------
    @property
    def columns(self) -> list[str]:
        """The columns shown (besides the run id)."""
        return list(self.state.columns)

    @columns.setter
    def columns(self, chosen: Sequence[str]) -> None:
        self.state.columns = list(chosen)
        self.state.update_columns()
        self._update_columns()
        self._render()

    def _update_columns(self) -> None:
        names = self.state.column_names
        with self._programmatic():
            self.column_picker.options = names
            self.column_picker.value = tuple(c for c in self.state.columns if c in names)
            sortable = list(dict.fromkeys([self.state.sort_column, *names]))
            if list(self.sort_by.options) != sortable:
                self.sort_by.options = sortable
            self.sort_by.value = self.state.sort_column

    # -- rendering -------------------------------------------------------------------------
    def _render(self) -> None:
        columns = self.state.columns
        arrow = " ↓" if self.state.descending else " ↑"
        head = "".join(
            f'<th data-column="{html.escape(c)}">{html.escape(c)}'
            f"{arrow if c == self.state.sort_column else ''}</th>"
            for c in columns
        )
        selected = set(self.selected)
        rows = []
        for run in self.runs:
            mark = "✓" if run["id"] in selected else ""
            style = ' style="background:#ddf4ff"' if mark else ""
            cells = "".join(
                f'<td title="{html.escape(value)}">{html.escape(short(value))}</td>'
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
        first = self.page * self.state.page_size
        shown = f"runs {first + 1}–{first + len(self.runs)}" if self.runs else "no runs"
        more = " · more follow" if self.has_next else ""
        self.page_label.value = f"page {self.page + 1} · {shown}{more}"
        self.prev_button.disabled = self.page == 0
        self.next_button.disabled = not self.has_next
        with self._programmatic():
            self.run_picker.options = [
                (f"{run['id'][:8]}  {short(run['name'], 40)}  {run['status']}", run["id"])
                for run in self.runs
            ]
            self.run_picker.value = tuple(r["id"] for r in self.runs if r["id"] in selected)

    # -- selection and comparison ----------------------------------------------------------
    def select(self, run_ids: Sequence[str]) -> None:
        """Select runs (replacing the selection)."""
        self.state.select(run_ids)
        self._render()

    def compare(self, run_ids: Sequence[str] | None = None, key: str | None = None) -> None:
        """Show the selected runs (or ``run_ids``) side by side: curves of ``key``, params.

        Args:
            run_ids: runs to compare (default: the selection).
            key: the metric to overlay (default: ``loss`` if the runs have it).
        """
        if not (run_ids or self.state.selected):
            self._show("Select runs to compare first.", "warn")
            return
        try:
            runs = self.state.compare(run_ids)
        except api.ServiceError as e:
            self._fail(e)
            return
        keys = metric_keys(runs)
        key = key or (keys[0] if keys else None)
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
        try:
            curves = self.state.curves(key)
        except api.ServiceError as e:
            self._fail(e)
            return
        self.compare_figure = compare_figure(curves, key)
        show_figure(self.compare_plot, self.compare_figure, f"{key} of {len(curves)} runs")
        self._show(f"Comparing {len(curves)} runs on {key}.", "info")

    def _param_diff(self, runs: list[dict]) -> str:
        differ = differing_params(runs)
        head = "".join(
            f"<th>{html.escape(short(run['name'] or run['id'][:8], 24))}<br>"
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
        if self.state.project is None:
            raise self.error or api.ServiceError("no project")
        try:
            return self.state.dataframe()
        except api.ServiceError as e:
            self._fail(e)
            raise

    def download(self, dest: str | Path, run_ids: Sequence[str] | None = None) -> list[Path]:
        """Download the artifacts of the selected runs (or ``run_ids``) to ``dest/<run id>/``."""
        ids = list(run_ids or self.state.selected)
        if not ids:
            self._show("Select runs whose artifacts to download first.", "warn")
            return []
        try:
            written = self.state.download(dest, ids)
        except api.ServiceError as e:
            self._fail(e)
            return []
        self._show(f"Downloaded {len(written)} files of {len(ids)} runs to {dest}.", "ok")
        return written

    # -- events ----------------------------------------------------------------------------
    def _sort_changed(self, _change: Any) -> None:
        if self._quiet or self.state.project is None:
            return
        self.state.sort_column, self.state.descending = self.sort_by.value, self.direction.value
        self.refresh()

    def _page_size_changed(self, change: Any) -> None:
        if self._quiet or self.state.project is None:
            return
        self.state.page_size = change["new"]
        self.refresh()

    def _columns_picked(self, change: Any) -> None:
        if self._quiet:
            return
        picked = set(change["new"])
        self.state.columns = [c for c in self.state.column_names if c in picked]
        self._render()

    def _runs_picked(self, change: Any) -> None:
        if self._quiet:
            return
        self.state.pick_on_page(change["new"])
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
