"""ResultsBrowser: server-side paging, filtering, sorting; columns; compare; DataFrame."""

from __future__ import annotations

import pytest

from hub_ext.experiments.store.entities import Metric, Param, RunStatus
from latticehub.client import TrackingClient
from tests.widgets.conftest import client_for, unreachable_client
from widgets import ResultsBrowser
from widgets.browser import order_clause

N_RUNS = 120


class CountingClient(TrackingClient):
    """Records the query of every ``GET /runs``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.searches: list[dict] = []

    def request(self, method, path, body=None, params=None):
        if method == "GET" and path == "/runs":
            self.searches.append(dict(params or {}))
        return super().request(method, path, body, params)


@pytest.fixture(scope="module")
def scan(service):
    """120 finished runs of ann's project "scan": L cycles 4/8/12, loss = i / 120."""
    store = service.store
    project = store.create_project("scan", owner="ann", group="lqcd")
    runs = []
    for i in range(N_RUNS):
        name = "<script>alert(1)</script>" if i == 7 else f"run-{i:03d}"
        run = store.create_run(project.id, user="ann", name=name, status=RunStatus.FINISHED,
                               start_time=1_700_000_000_000 + i * 1000)  # fmt: skip
        L = (4, 8, 12)[i % 3]  # noqa: N806
        history = [Metric("loss", i / N_RUNS + (5 - s) * 0.1, 0, s) for s in range(1, 6)]
        store.log_batch(
            run.id,
            metrics=history + [Metric("ess", 1 - i / N_RUNS, 0, 5)],
            params=[Param("L", str(L)), Param("lr", "0.001")],
        )
        runs.append((run.id, i, L))
    return project, runs


@pytest.fixture
def counting(service):
    return CountingClient(service.url, "tok-ann")


def test_pages_of_fifty_one_request_each(scan, counting):
    browser = ResultsBrowser("scan", client=counting, page_size=50)
    assert len(browser.runs) == 50 and browser.has_next and browser.prev_button.disabled
    assert len(counting.searches) == 1 and counting.searches[0]["max_results"] == 50
    assert "lh-results-table" in browser.table._dom_classes
    assert browser.table.value.count("<tr data-run-id=") == 50
    first = [r["id"] for r in browser.runs]
    assert [r["name"] for r in browser.runs[:2]] == ["run-119", "run-118"]  # newest first
    browser.next_button.click()
    second = [r["id"] for r in browser.runs]
    assert browser.page == 1 and len(second) == 50 and browser.has_next
    browser.next_button.click()
    third = [r["id"] for r in browser.runs]
    assert browser.page == 2 and len(third) == N_RUNS - 100
    assert not browser.has_next and browser.next_button.disabled
    assert "page 3 · runs 101–120" in browser.page_label.value
    assert len(set(first + second + third)) == N_RUNS
    assert len(counting.searches) == 3  # never more than the pages looked at
    browser.prev_button.click()
    assert [r["id"] for r in browser.runs] == second


def test_filter_sort_and_a_bad_filter(scan, ann):
    browser = ResultsBrowser("scan", client=ann, page_size=50)
    browser.filter_text.value = "metrics.loss < 0.5"
    assert all(r["metrics"]["loss"]["value"] < 0.5 for r in browser.runs)
    assert len(browser.runs) == 50 and browser.has_next
    browser.next_page()
    assert len(browser.runs) == 10 and not browser.has_next  # 60 match
    browser.filter_text.value = "metrics.loss < 0.5 and params.L = '8'"
    assert len(browser.runs) == 20 and {r["params"]["L"] for r in browser.runs} == {"8"}
    assert browser.page == 0
    kept = list(browser.runs)
    browser.filter_text.value = "metrics.loss <<< 'x"
    assert "Invalid filter" in browser.status_line.value and browser.runs == kept
    assert browser.filter == "metrics.loss < 0.5 and params.L = '8'"
    browser.filter_text.value = ""
    browser.sort_by.value = "metrics.loss"
    browser.direction.value = False  # ascending
    assert browser.runs[0]["name"] == "run-000"
    assert "metrics.loss ↑" in browser.table.value
    browser.sort("metrics.loss", descending=True)
    assert browser.runs[0]["name"] == "run-119"
    browser.sort("params.L", descending=False)
    assert browser.runs[0]["params"]["L"] == "12"  # params sort as strings
    browser.sort("name", descending=False)
    assert browser.runs[0]["name"] == "<script>alert(1)</script>"


def test_columns_default_and_chooser_and_escaping(scan, ann):
    browser = ResultsBrowser("scan", client=ann, page_size=25)
    assert {"name", "status", "params.L", "metrics.loss", "metrics.ess"} <= set(browser.columns)
    assert "params.lr" not in browser.columns  # the same in every run
    assert "params.lr" in browser.column_picker.options
    browser.column_picker.value = ("name", "metrics.loss")
    assert browser.columns == ["name", "metrics.loss"]
    assert 'data-column="metrics.loss"' in browser.table.value
    assert 'data-column="params.L"' not in browser.table.value
    browser.columns = ["name", "params.lr"]
    assert ">0.001<" in browser.table.value
    browser.filter_text.value = "attributes.run_name LIKE '%script%'"
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in browser.table.value
    assert "<script>" not in browser.table.value


def test_select_and_compare_two_runs(scan, ann):
    _, runs = scan
    (a, _, l_a), (b, _, l_b) = runs[0], runs[1]
    browser = ResultsBrowser("scan", client=ann, filter="metrics.loss < 0.05")
    browser.run_picker.value = (a, b)
    assert browser.selected == [a, b] or browser.selected == [b, a]
    assert "✓" in browser.table.value
    assert "lh-compare" in browser.compare_button._dom_classes
    browser.compare_button.click()
    figure = browser.compare_figure
    lines = figure.axes[0].get_lines()
    assert len(lines) == 2 and all(len(line.get_xdata()) == 5 for line in lines)
    assert browser.compare_plot.outputs[0]["data"]["image/png"]
    assert browser.compare_view.layout.display is None
    diff = browser.compare_params.value
    assert "<th>L</th>" in diff and f"<td>{l_a}</td>" in diff and f"<td>{l_b}</td>" in diff
    assert "<th>lr</th>" not in diff  # equal params are not listed
    browser.compare_key.value = "ess"
    assert browser.compare_figure.axes[0].get_title() == "ess"


def test_dataframe_has_every_matching_run(scan, ann):
    browser = ResultsBrowser("scan", client=ann, page_size=25, filter="metrics.loss < 0.5")
    frame = browser.dataframe
    _, runs = scan
    expected = {run_id for run_id, i, _ in runs if i / N_RUNS < 0.5}
    assert len(frame) == len(expected) == 60 and set(frame["run_id"]) == expected
    assert (frame["metrics.loss"] < 0.5).all() and "params.L" in frame


def test_download_selected_artifacts(service, scan, ann, tmp_path):
    _, runs = scan
    run_id = runs[3][0]
    blob = tmp_path / "notes.txt"
    blob.write_text("hello")
    service.call("PUT", f"/runs/{run_id}/artifacts/notes/a.txt", token="tok-adm",
                 data=blob.read_bytes())  # fmt: skip
    browser = ResultsBrowser("scan", client=ann)
    browser.select([run_id])
    browser.download_dir.value = str(tmp_path / "dl")
    browser.download_button.click()
    written = sorted((tmp_path / "dl").rglob("*.txt"))
    assert [p.read_text() for p in written] == ["hello"]
    assert (tmp_path / "dl" / run_id / "notes" / "a.txt").exists()
    assert "Downloaded 1 files" in browser.status_line.value


def test_errors_are_messages(service, scan, monkeypatch):
    missing = ResultsBrowser("no-such-project", client=client_for(service))
    assert missing.project is None and "No project called" in missing.status_line.value
    hidden = ResultsBrowser("scan", client=client_for(service, "tok-bob"))
    assert hidden.project is None  # another group's project does not exist for bob
    expired = ResultsBrowser("scan", client=client_for(service, "tok-expired"))
    assert "token was refused" in expired.status_line.value
    down = ResultsBrowser("scan", client=unreachable_client())
    assert "Cannot reach" in down.status_line.value
    # the notebook's environment, as TrackingClient finds it
    monkeypatch.setenv("LATTICEHUB_TRACKING_URL", service.url)
    monkeypatch.setenv("LATTICEHUB_TOKEN", "tok-ann")
    assert len(ResultsBrowser("scan").runs) == 50


@pytest.mark.parametrize(
    ("column", "descending", "clause"),
    [
        ("start_time", True, "attributes.start_time DESC"),
        ("name", False, "attributes.run_name ASC"),
        ("user", False, "attributes.user_id ASC"),
        ("metrics.loss", False, "metrics.loss ASC"),
        ("params.model.hidden", True, "params.model.hidden DESC"),
        ("params.odd key", True, "params.`odd key` DESC"),
    ],
)
def test_order_clauses(column, descending, clause):
    assert order_clause(column, descending) == clause
