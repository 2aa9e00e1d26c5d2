"""The dashboard's pure helpers: columns, sort toggles, paging links, safe JSON."""

from __future__ import annotations

import json
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import pytest

from hub_ext.experiments.dashboard import query
from hub_ext.experiments.dashboard.query import Column
from hub_ext.experiments.store.abstract import decode_token, encode_token
from hub_ext.experiments.store.errors import TrackingError


def run(params=(), metrics=()):
    return SimpleNamespace(params=dict.fromkeys(params, "1"), metrics=dict.fromkeys(metrics, 0))


@pytest.mark.parametrize(
    ("kind", "key", "expr"),
    [
        ("metric", "loss", "metrics.loss"),
        ("param", "n_layers", "params.n_layers"),
        ("param", "opt.lr", "params.opt.lr"),
        ("metric", "train/loss", "metrics.train/loss"),
        ("param", "my key", "params.`my key`"),
        ("tag", "9lives", "tags.`9lives`"),
        ("param", "a`b c", "params.`a``b c`"),
    ],
)
def test_column_expressions_round_trip_through_the_search_grammar(kind, key, expr):
    assert query.column_expr(kind, key) == expr
    assert query.parse_column(expr) == Column(kind, key)


@pytest.mark.parametrize(
    "text", ["", "loss", "attributes.status", "metrics.", "x y", "metrics.a DESC"]
)
def test_bad_or_attribute_columns_are_ignored(text):
    assert query.parse_column(text) is None


def test_default_columns_are_the_keys_seen_on_the_page_capped_per_kind():
    runs = [run(params=[f"p{i}" for i in range(8)], metrics=["loss"]), run(metrics=["ess"])]
    shown, available = query.choose_columns(None, runs)
    assert [c.expr for c in shown] == [f"params.p{i}" for i in range(6)] + [
        "metrics.ess",
        "metrics.loss",
    ]
    assert len(available) == 10


def test_chosen_columns_keep_their_order_and_may_be_unseen_or_none():
    runs = [run(params=["L", "lr"], metrics=["loss"])]
    chosen = ["metrics.loss", "params.L", "metrics.loss", "", "bogus", "metrics.acceptance"]
    shown, available = query.choose_columns(chosen, runs)
    assert [c.expr for c in shown] == ["metrics.loss", "params.L", "metrics.acceptance"]
    assert [c.expr for c in available] == [
        "params.L", "params.lr", "metrics.acceptance", "metrics.loss",
    ]  # fmt: skip
    assert query.choose_columns([""], runs)[0] == []


@pytest.mark.parametrize(
    ("order_by", "expr", "state", "toggled"),
    [
        ("", "metrics.loss", None, "metrics.loss ASC"),
        ("metrics.loss", "metrics.loss", "asc", "metrics.loss DESC"),
        ("metrics.loss ASC", "metrics.loss", "asc", "metrics.loss DESC"),
        ("metrics.loss desc", "metrics.loss", "desc", "metrics.loss ASC"),
        ("metrics.`loss`", "metrics.loss", "asc", "metrics.loss DESC"),
        ("params.loss", "metrics.loss", None, "metrics.loss ASC"),
        ("attributes.start_time DESC", "attributes.start_time", "desc",
         "attributes.start_time ASC"),
        ("metrics.loss ==", "metrics.loss", None, "metrics.loss ASC"),
    ],
)  # fmt: skip
def test_sort_state_and_toggle(order_by, expr, state, toggled):
    assert query.sort_state(order_by, expr) == state
    assert query.toggle_order(order_by, expr) == toggled


def test_url_with_keeps_repeated_arguments_and_applies_changes():
    args = {"filter": ["params.L = '8'"], "col": ["params.L", "metrics.loss"], "page_token": ["x"]}
    url = query.url_with("/p/1", args, order_by="metrics.loss DESC", page_token=None)
    path, qs = url.split("?")
    assert path == "/p/1"
    assert parse_qs(qs) == {
        "filter": ["params.L = '8'"],
        "col": ["params.L", "metrics.loss"],
        "order_by": ["metrics.loss DESC"],
    }
    assert query.url_with("/p/1", {}, page_token="") == "/p/1"
    assert query.url_with("/p/1", {"size": ["50"]}, size=100) == "/p/1?size=100"
    # an explicit empty column choice survives (it means "no extra columns")
    assert parse_qs(
        urlsplit(query.url_with("/p", {"col": [""]})).query, keep_blank_values=True
    ) == {"col": [""]}
    # values are encoded, not pasted
    assert "%3Cscript%3E" in query.url_with("/p", {}, filter="<script>")


@pytest.mark.parametrize(
    ("raw", "size"), [(None, 50), ("", 50), ("100", 100), ("7", 50), ("x", 50), ("500", 500)]
)
def test_page_size(raw, size):
    assert query.page_size(raw) == size


def test_page_window_numbers_runs_and_steps_back():
    assert query.page_window(None, 50, 50) == (1, 50, None)
    assert query.page_window(None, 50, 0) == (0, 0, None)
    first, last, previous = query.page_window(encode_token(50), 50, 50)
    assert (first, last, previous) == (51, 100, "")  # '' = the first page (no token)
    first, last, previous = query.page_window(encode_token(120), 50, 7)
    assert (first, last) == (121, 127) and decode_token(previous) == 70
    with pytest.raises(TrackingError):
        query.page_window("garbage!", 50, 0)


def test_script_json_cannot_close_the_script_element():
    text = query.script_json({"name": "</script><script>alert(1)</script>", "x": "a&b\u2028"})
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == {"name": "</script><script>alert(1)</script>", "x": "a&b\u2028"}


@pytest.mark.parametrize(
    ("start", "end", "text"),
    [(0, 12_345, "12.3s"), (0, 185_000, "3m 05s"), (0, 3_725_000, "1h 02m"), (0, None, "")],
)
def test_format_duration(start, end, text):
    assert query.format_duration(start, end) == text


def test_format_time_and_value():
    assert query.format_time(0) == "1970-01-01 00:00:00 UTC"
    assert query.format_time(None) == ""
    assert query.format_value(0.123456789) == "0.123457"
    assert query.format_value(1e-9) == "1e-09"


def test_param_rows_mark_differences_and_missing_values():
    a = SimpleNamespace(params={"L": "8", "lr": "0.001"})
    b = SimpleNamespace(params={"L": "8", "lr": "0.003", "seed": "1"})
    assert query.param_rows([a, b]) == [
        ("L", ["8", "8"], False),
        ("lr", ["0.001", "0.003"], True),
        ("seed", [None, "1"], True),
    ]


def test_record_rows_fold_lists_and_objects():
    rows = query.record_rows(
        {"python": "3.11", "packages": ["a==1", "b==2"], "slurm": {}, "x": None}
    )
    assert rows == [
        ("packages", "a==1\nb==2", True),
        ("python", "3.11", False),
        ("slurm", "", False),
        ("x", "", False),
    ]


def test_quote_path():
    assert query.quote_path("model/flow v1#2.pt") == "model/flow%20v1%232.pt"


def test_dashboard_routes_come_after_the_api_and_import():
    from tornado.util import import_object

    from hub_ext.experiments.handlers import default_handlers

    paths = [path for path, _ in default_handlers]
    first_page = paths.index("/")
    assert all(not p.startswith("/api/") for p in paths[first_page:])
    for _, target in default_handlers[first_page:]:
        assert import_object(target).__module__ == "hub_ext.experiments.dashboard.pages"
