"""BrowserState and RunArtifacts without ipywidgets: pages, filter, columns, compare, export."""

from __future__ import annotations

import math
import sys
from array import array

import pytest

from latticehub.client import Page, TrackingAPIError
from latticehub.columnar import MetricColumns
from tests.widgets.conftest import fake_client
from widgets.api import ServiceError
from widgets.artifacts import RunArtifacts
from widgets.browser_state import (
    BrowserState,
    cell,
    default_columns,
    differing_params,
    metric_keys,
    order_clause,
)


def run(i: int, **params) -> dict:
    return {"id": f"{i:032x}", "name": f"r{i}", "status": "FINISHED", "user": "ann",
            "start_time": 0, "params": {"out": f"/o/{i}", **params},
            "metrics": {"loss": {"value": 1.0 / (i + 1)}}}  # fmt: skip


PAGES = {None: Page([run(0, L="8"), run(1, L="16")], "t2"), "t2": Page([run(2, L="8")], None)}


@pytest.fixture
def client():
    c = fake_client(get_project={"id": 7, "name": "scan"})
    c.search_runs_page.side_effect = lambda project, **kw: PAGES[kw["page_token"]]
    return c


def test_opens_by_id_or_exact_name_and_pages_by_token(client):
    state = BrowserState(client, page_size=2)
    state.open(7)
    client.get_project.assert_called_once_with(7)
    assert [r["name"] for r in state.runs] == ["r0", "r1"] and state.has_next
    state.next_page()
    assert state.page == 1 and [r["name"] for r in state.runs] == ["r2"] and not state.has_next
    state.next_page()  # no further page: nothing asked
    assert client.search_runs_page.call_count == 2
    state.prev_page()
    assert state.page == 0 and state.runs[0]["name"] == "r0"
    _, kwargs = client.search_runs_page.call_args
    assert kwargs == {"filter": "", "order_by": ["attributes.start_time DESC"],
                      "max_results": 2, "page_token": None}  # fmt: skip
    client.find_project.return_value = None
    with pytest.raises(ServiceError, match="No project called 'nope'") as caught:
        BrowserState(client).open("nope")
    assert caught.value.status == 404


def test_a_bad_filter_keeps_the_old_page(client):
    state = BrowserState(client)
    state.open(7)
    state.next_page()
    client.search_runs_page.side_effect = TrackingAPIError(400, "INVALID", "bad filter")
    with pytest.raises(ServiceError, match="bad filter"):
        state.set_filter("metrics.loss <<< 1")
    assert state.page == 1 and state.filter == "" and state.runs[0]["name"] == "r2"
    with pytest.raises(ServiceError):
        state.prev_page()
    assert state.page == 1  # still on the page shown


def test_columns_selection_and_comparison(client):
    client.metric_columns.return_value = MetricColumns(
        "loss", array("q", [1, 2]), array("q", [0, 0]), array("d", [0.5, math.nan])
    )
    state = BrowserState(client)
    state.open(7)
    assert state.columns == ["name", "status", "user", "start_time", "params.L", "metrics.loss"]
    assert "params.out" in state.column_names  # choosable, never a default
    state.select([state.runs[0]["id"]])
    state.pick_on_page([state.runs[1]["id"]])  # a pick on this page replaces this page's picks
    assert state.selected == [state.runs[1]["id"]]
    state.select(["0" * 31 + "0", "f" * 32])
    client.get_run.return_value = run(15, L="32")
    runs = state.compare()
    assert [r["name"] for r in runs] == ["r0", "r15"]
    client.get_run.assert_called_once_with("f" * 32)  # only the run not seen on a page
    curves = state.curves("loss")
    assert list(curves) == ["r0 (00000000)", "r15 (ffffffff)"]
    assert curves["r0 (00000000)"][0] == (1, 0.5)
    assert math.isnan(curves["r0 (00000000)"][1][1])
    client.metric_columns.assert_called_with("f" * 32, "loss")  # one binary read per run


def test_download_of_the_selection(client, tmp_path):
    client.download_artifacts.return_value = [tmp_path / "a"]
    state = BrowserState(client)
    state.open(7)
    state.select(["x1", "x2"])
    assert len(state.download(tmp_path)) == 2
    client.download_artifacts.assert_called_with("x2", tmp_path / "x2")
    client.download_artifacts.side_effect = ConnectionRefusedError(111, "refused")
    with pytest.raises(ServiceError, match="Cannot reach"):
        state.download(tmp_path)


@pytest.mark.parametrize(
    ("column", "descending", "clause"),
    [
        ("start_time", True, "attributes.start_time DESC"),
        ("name", False, "attributes.run_name ASC"),
        ("metrics.loss", False, "metrics.loss ASC"),
        ("params.my key", True, "params.`my key` DESC"),
    ],
)
def test_order_clause(column, descending, clause):
    assert order_clause(column, descending) == clause


@pytest.mark.parametrize(
    ("column", "text"),
    [("params.L", "8"), ("params.none", ""), ("metrics.loss", "1"), ("metrics.none", ""),
     ("name", "r0"), ("end_time", "")],
)  # fmt: skip
def test_cell(column, text):
    assert cell({**run(0, L="8"), "end_time": None}, column) == text


def test_default_columns_and_keys():
    runs = [run(0, L="8", lr="0.1"), run(1, L="16", lr="0.1")]
    runs[0]["metrics"]["ess"] = {"value": 0.3}
    assert differing_params(runs) == ["L"]  # out differs too, but is bookkeeping
    assert default_columns(runs)[-3:] == ["params.L", "metrics.loss", "metrics.ess"]
    assert metric_keys(runs) == ["loss", "ess"]


def test_run_artifacts(tmp_path):
    files = [{"path": "model/checkpoint.pt", "size": 10}, {"path": "summary.json", "size": 2}]
    client = fake_client(list_artifacts=files, download_artifact=tmp_path / "c.pt")
    artifacts = RunArtifacts("r1", client)
    assert artifacts.refresh("") == files and artifacts.total_size == 12
    assert artifacts.has("summary.json") and not artifacts.has("x")
    assert artifacts.fetch("model/checkpoint.pt", tmp_path / "c.pt") == tmp_path / "c.pt"
    client.download_artifact.assert_called_once_with("r1", "model/checkpoint.pt", tmp_path / "c.pt")
    client.list_artifacts.side_effect = TrackingAPIError(404, "RESOURCE_DOES_NOT_EXIST", "Run r1")
    with pytest.raises(ServiceError, match="Not found"):
        artifacts.refresh()


def test_the_state_modules_import_without_ipywidgets():
    import subprocess

    code = (
        "import sys; sys.modules['ipywidgets'] = None\n"
        "import widgets, widgets.launcher_state, widgets.monitor_state, widgets.browser_state\n"
        "import widgets.artifacts, widgets.api\n"
        "from widgets import ServiceError, load_model\n"
        "try:\n    widgets.TrainingLauncher\n"
        "except ImportError:\n    print('views need ipywidgets')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "views need ipywidgets", out.stderr
