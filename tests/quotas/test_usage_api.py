"""``api/usage`` and the ``usage`` page in-process: who sees what, bad input, CSV, the chart."""

from __future__ import annotations

import csv
import io
import logging
from html.parser import HTMLParser

import pytest
import pytest_asyncio
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port

from hub_ext.common.hub_client import HubSource
from hub_ext.quotas.accounting.recorder import UsageRecorder
from hub_ext.quotas.accounting.store import SqlUsageStore
from hub_ext.quotas.app import make_app
from tests.quotas.fakes import PREFIX, Clock, FakeHub, ScriptedEngine, TokenHubAuth
from tests.quotas.test_app import MODELS, POLICY
from tests.quotas.test_usage_record import T0, H

DAY = "2026-11-18"  # the day of T0 (UTC)


@pytest_asyncio.fixture(loop_scope="function")
async def usage_service(tmp_path):
    engine, clock = ScriptedEngine(), Clock(T0 + 5 * H)
    engine.start("c-ann", T0, "lqcd", "ann", **{"org.latticehub.gpus": "0"})
    engine.stop("c-ann", T0 + 2 * H)
    engine.start("c-ben", T0 + H, "lqcd", "ben")
    engine.start("c-dan", T0 + 3 * H, "nuclear", "dan")
    engine.start("c-x", T0 + 4 * H, "<i>x</i>", "=cmd|' /C calc'!A0")
    store = SqlUsageStore(f"sqlite:///{tmp_path / 'usage.sqlite'}")
    recorder = UsageRecorder(store, engine, clock=clock, lookback=24 * H)
    hub = FakeHub({"lqcd": {"users": ["ann", "ben"], "properties": {}}}, [])
    app = make_app(
        policy=POLICY,
        hub=HubSource("http://hub/hub/api", "t", fetch=hub.fetch),
        engine=engine,
        hub_auth=TokenHubAuth(MODELS),
        prefix=PREFIX,
        log=logging.getLogger("test-usage"),
        usage_store=store,
        recorder=recorder,
    )
    sock, port = bind_unused_port()
    server = HTTPServer(app)
    server.add_sockets([sock])

    async def get(path, user):
        request = HTTPRequest(
            f"http://127.0.0.1:{port}{PREFIX}{path}",
            headers={"Authorization": f"token {user}"},
            follow_redirects=False,
        )
        response = await AsyncHTTPClient().fetch(request, raise_error=False)
        return response.code, response.body.decode(), response

    get.engine, get.clock, get.store = engine, clock, store
    yield get
    server.stop()
    store.close()


def _json(body):
    import json

    return json.loads(body)


async def test_admin_sees_every_group_and_the_hours_are_the_scripted_ones(usage_service):
    code, body, _ = await usage_service(f"api/usage?since={DAY}&until=2026-11-19", "boss")
    assert code == 200, body
    data = _json(body)
    got = {r["group"]: (r["sessions"], r["container_hours"], r["gpu_hours"]) for r in data["items"]}
    # ann 2 h (1 GPU) + ben 4 h (still running at +5 h); dan 2 h; x 1 h
    assert got == {"lqcd": (2, 6.0, 2.0), "nuclear": (1, 2.0, 0.0), "<i>x</i>": (1, 1.0, 0.0)}
    assert data["totals"]["lqcd"] == {"container_hours": 6.0, "gpu_hours": 2.0}
    assert (data["period"], data["by"], data["since"], data["until"]) == (
        "day",
        "group",
        DAY,
        "2026-11-19",
    )


async def test_a_request_counts_a_stop_that_happened_just_before_it(usage_service):
    usage_service.engine.stop("c-ben", T0 + 5 * H - 1800)
    code, body, _ = await usage_service(f"api/usage?since={DAY}&by=user&group=lqcd", "boss")
    assert code == 200
    got = {r["user"]: r["container_hours"] for r in _json(body)["items"]}
    assert got == {"ann": 2.0, "ben": 3.5}


async def test_a_manager_sees_only_their_groups(usage_service):
    code, body, _ = await usage_service(f"api/usage?since={DAY}", "ann")
    assert code == 200
    assert {r["group"] for r in _json(body)["items"]} == {"lqcd"}
    code, body, _ = await usage_service(f"api/usage?since={DAY}&group=nuclear", "ann")
    assert code == 403 and "not a manager of group 'nuclear'" in _json(body)["message"]


@pytest.mark.parametrize(
    "user, query, status, words",
    [
        ("ben", "", 403, "manage"),  # manages no group
        ("cat", "", 403, "access:services"),  # may not reach the service
        ("boss", "period=week", 400, "period='week': use one of day, month"),
        ("boss", "by=node", 400, "by='node'"),
        ("boss", "since=yesterday", 400, "since='yesterday': use a UTC date YYYY-MM-DD"),
        ("boss", "since=2026-11-20&until=2026-11-19", 400, "until must be after since"),
        ("boss", "since=2020-01-01&until=2026-01-01", 400, "narrow since/until"),
        ("boss", "format=xml", 400, "format='xml': use json or csv"),
    ],
)
async def test_refusals_name_the_problem(usage_service, user, query, status, words):
    code, body, _ = await usage_service(f"api/usage?{query}", user)
    assert code == status, body
    assert words in _json(body)["message"]


async def test_csv_export_is_an_attachment_with_safe_cells(usage_service):
    code, body, response = await usage_service(
        f"api/usage?format=csv&by=user&since={DAY}&until=2026-11-19", "boss"
    )
    assert code == 200
    assert response.headers["Content-Type"].startswith("text/csv")
    assert response.headers["Content-Disposition"] == (
        f'attachment; filename="latticehub-usage-day-{DAY}-2026-11-19.csv"'
    )
    table = list(csv.reader(io.StringIO(body)))
    assert table[0][:3] == ["period", "group", "user"]
    rows = {(r[1], r[2]): float(r[4]) for r in table[1:]}
    assert rows[("lqcd", "ben")] == 4.0
    assert rows[("<i>x</i>", "'=cmd|' /C calc'!A0")] == 1.0  # no formula left for a spreadsheet


async def test_engine_down_answers_from_the_record_with_a_warning(usage_service):
    await usage_service(f"api/usage?since={DAY}", "boss")  # records once
    usage_service.engine.fail = True
    code, body, _ = await usage_service(f"api/usage?since={DAY}", "boss")
    assert code == 200
    data = _json(body)
    assert "could not list events" in data["warning"]
    assert {r["group"] for r in data["items"]} == {"lqcd", "nuclear", "<i>x</i>"}


class _Tables(HTMLParser):
    """Cells of the tables by id, and the CSV link."""

    def __init__(self):
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.table = None
        self.csv = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self.table = self.tables.setdefault(attrs.get("id", ""), [])
        elif tag == "tr" and self.table is not None:
            self.table.append([])
        elif tag == "a" and attrs.get("id") == "csv":
            self.csv = attrs["href"]

    def handle_endtag(self, tag):
        if tag == "table":
            self.table = None

    def handle_data(self, data):
        if self.table is not None and self.table and data.strip():
            self.table[-1].append(data.strip())


async def test_page_shows_charts_tables_and_a_csv_link_escaped(usage_service):
    code, body, _ = await usage_service(f"usage?since={DAY}&until=2026-11-19", "boss")
    assert code == 200, body
    assert body.count('<svg xmlns="http://www.w3.org/2000/svg" class="usage-chart"') == 2
    assert "<i>x</i>" not in body and "&lt;i&gt;x&lt;/i&gt;" in body
    page = _Tables()
    page.feed(body)
    totals = {r[0]: r[1:] for r in page.tables["usage-totals"][1:]}
    assert totals["lqcd"] == ["6.00", "2.00"] and totals["nuclear"] == ["2.00", "0.00"]
    assert page.csv == (
        f"{PREFIX}api/usage?format=csv&period=day&by=group&since={DAY}&until=2026-11-19"
    )
    code, body, _ = await usage_service("usage?period=fortnight", "boss")
    assert code == 400 and "period=&#x27;fortnight&#x27;" in body
    code, body, _ = await usage_service("usage", "ben")
    assert code == 403
