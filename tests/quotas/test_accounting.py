"""accounting/sessions.py and plot.py: sums per period, group and user; CSV; the chart (pure)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import pytest

from hub_ext.quotas.accounting import plot
from hub_ext.quotas.accounting.sessions import (
    GIB,
    Session,
    aggregate,
    default_window,
    parse_day,
    period_start,
    session_from_labels,
    split,
    to_csv,
    totals,
)
from latticehub import labels as L

H = 3600.0


def t(text: str) -> float:
    """``2026-11-28T10:00`` (UTC) as epoch seconds."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


DAY0 = t("2026-11-28T00:00")


@pytest.mark.parametrize(
    "start, end, period, pieces",
    [
        ("2026-11-28T10:00", "2026-11-28T12:30", "day", [("2026-11-28", 2.5 * H)]),
        (
            "2026-11-28T23:00",
            "2026-11-30T01:00",
            "day",
            [("2026-11-28", H), ("2026-11-29", 24 * H), ("2026-11-30", H)],
        ),
        ("2026-11-30T23:00", "2026-12-01T00:30", "month", [("2026-11", H), ("2026-12", 0.5 * H)]),
        ("2026-12-31T23:00", "2027-01-01T01:00", "month", [("2026-12", H), ("2027-01", H)]),
        ("2026-11-28T10:00", "2026-11-28T10:00", "day", []),
    ],
)
def test_split_cuts_at_utc_boundaries(start, end, period, pieces):
    assert split(t(start), t(end), period) == pieces


@pytest.mark.parametrize(
    "labels, expected",
    [
        (
            {L.GROUP: "lqcd", L.USER: "ann", L.GPUS: "0,1", L.CPU: "2", L.MEM: str(4 * GIB)},
            ("lqcd", "ann", 2, 2.0, 4 * GIB),
        ),
        (
            {L.GROUP: "lqcd", L.USER: "ann", L.CPU: "x", L.MEM: "lots"},
            ("lqcd", "ann", 0, None, None),
        ),
        ({L.GROUP: "lqcd"}, None),  # no user: not a server of the spawner
        ({L.USER: "ann"}, None),
        ({}, None),
    ],
)
def test_session_from_labels(labels, expected):
    s = session_from_labels("c1", labels, start=5.0)
    if expected is None:
        assert s is None
    else:
        assert (s.group, s.user, s.gpus, s.cpus, s.mem_bytes) == expected


def _sessions() -> list[Session]:
    return [
        # ann: 2 h with 2 GPUs, 1 CPU, 2 GiB on the 28th
        Session(
            "a1",
            "lqcd",
            "ann",
            gpus=2,
            cpus=1.0,
            mem_bytes=2 * GIB,
            start=DAY0 + 10 * H,
            end=DAY0 + 12 * H,
        ),  # fmt: skip
        # ben: from 22:00 on the 28th to 02:00 on the 29th, no GPU
        Session("b1", "lqcd", "ben", start=DAY0 + 22 * H, end=DAY0 + 26 * H),
        # dan (other group): still running since 01:00 on the 29th, 1 GPU
        Session("d1", "nuclear", "dan", gpus=1, start=DAY0 + 25 * H),
    ]


@pytest.mark.parametrize(
    "by, period, expected",
    [
        (
            "group",
            "day",
            {
                ("2026-11-28", "lqcd", ""): (2, 4.0, 4.0, 2.0, 4.0),
                ("2026-11-29", "lqcd", ""): (1, 2.0, 0.0, 0.0, 0.0),
                ("2026-11-29", "nuclear", ""): (1, 5.0, 5.0, 0.0, 0.0),
            },
        ),
        (
            "user",
            "day",
            {
                ("2026-11-28", "lqcd", "ann"): (1, 2.0, 4.0, 2.0, 4.0),
                ("2026-11-28", "lqcd", "ben"): (1, 2.0, 0.0, 0.0, 0.0),
                ("2026-11-29", "lqcd", "ben"): (1, 2.0, 0.0, 0.0, 0.0),
                ("2026-11-29", "nuclear", "dan"): (1, 5.0, 5.0, 0.0, 0.0),
            },
        ),
        (
            "group",
            "month",
            {
                ("2026-11", "lqcd", ""): (2, 6.0, 4.0, 2.0, 4.0),
                ("2026-11", "nuclear", ""): (1, 5.0, 5.0, 0.0, 0.0),
            },
        ),
    ],
)
def test_aggregate_sums_hours(by, period, expected):
    now = DAY0 + 30 * H  # dan's running session counts up to now: 5 h
    rows = aggregate(_sessions(), since=DAY0, until=DAY0 + 2 * 86400, now=now, period=period, by=by)
    got = {
        (r.period, r.group, r.user): (
            r.sessions,
            pytest.approx(r.container_hours),
            pytest.approx(r.gpu_hours),
            pytest.approx(r.cpu_hours),
            pytest.approx(r.mem_gib_hours),
        )
        for r in rows
    }
    assert got == expected
    assert [(r.period, r.group, r.user) for r in rows] == sorted(expected)


def test_aggregate_clips_to_the_window():
    # only the 29th: ben's 2 h after midnight, dan's 5 h; ann's session is outside
    rows = aggregate(_sessions(), since=DAY0 + 86400, until=DAY0 + 2 * 86400, now=DAY0 + 30 * H)
    assert {(r.group, round(r.container_hours, 6)) for r in rows} == {
        ("lqcd", 2.0),
        ("nuclear", 5.0),
    }
    # a window that ends before now stops a running session at the window's end
    rows = aggregate(
        _sessions(), since=DAY0, until=DAY0 + 27 * H, now=DAY0 + 30 * H, period="month"
    )
    assert {r.group: round(r.container_hours, 6) for r in rows} == {"lqcd": 6.0, "nuclear": 2.0}
    assert totals(rows) == {
        "lqcd": {"container_hours": pytest.approx(6.0), "gpu_hours": pytest.approx(4.0)},
        "nuclear": {"container_hours": pytest.approx(2.0), "gpu_hours": pytest.approx(2.0)},
    }


@pytest.mark.parametrize(
    "kwargs, words",
    [({"period": "week"}, "period='week'"), ({"by": "node"}, "by='node'")],
)
def test_aggregate_refuses_unknown_period_or_grouping(kwargs, words):
    with pytest.raises(ValueError, match=words):
        aggregate([], since=0, until=1, now=1, **kwargs)


def test_csv_has_a_header_and_neutralises_formulas():
    sessions = [Session("x", "=HYPERLINK(1)", "+ann", start=DAY0, end=DAY0 + 1800)]
    rows = aggregate(sessions, since=DAY0, until=DAY0 + 86400, now=DAY0 + 86400, by="user")
    table = list(csv.reader(io.StringIO(to_csv(rows))))
    assert table[0][:4] == ["period", "group", "user", "sessions"]
    assert table[1][:5] == ["2026-11-28", "'=HYPERLINK(1)", "'+ann", "1", "0.5"]


@pytest.mark.parametrize(
    "text, expected",
    [("2026-11-28", DAY0), ("2026-11", t("2026-11-01T00:00"))],
)
def test_parse_day(text, expected):
    assert parse_day(text, what="since") == expected


@pytest.mark.parametrize("text", ["28.11.2026", "2026-13-01", "", "yesterday"])
def test_parse_day_names_the_parameter_and_the_form(text):
    with pytest.raises(ValueError, match=r"since=.*YYYY-MM-DD"):
        parse_day(text, what="since")


def test_default_windows_end_with_the_current_period():
    now = DAY0 + 5 * H
    since, until = default_window(now, "day")
    assert (until - since) / 86400 == 30 and until == DAY0 + 86400
    since, until = default_window(now, "month")
    assert period_start(since, "month").isoformat().startswith("2025-12-01")
    assert until == t("2026-12-01T00:00")


def test_chart_escapes_names_and_scales_to_the_tallest_bar():
    sessions = [
        Session("x", "<script>alert(1)</script>", "u", gpus=1, start=DAY0, end=DAY0 + 7 * H),
        Session("y", "lqcd", "u", start=DAY0 + 86400, end=DAY0 + 86400 + 3 * H),
    ]
    rows = aggregate(sessions, since=DAY0, until=DAY0 + 2 * 86400, now=DAY0 + 3 * 86400)
    svg = plot.stacked_bars(rows, field="container_hours", title="Container-hours")
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
    assert ">10<" in svg or ">10.0<" in svg  # the y axis tops out at nice_ceiling(7) = 10
    assert "2026-11-28" in svg and "2026-11-29" in svg
    heights = {
        r.split('data-period="')[1][:10]: float(r.split('height="')[1].split('"')[0])
        for r in svg.split("<rect")[1:]
        if "data-period" in r
    }
    assert heights["2026-11-28"] == pytest.approx(heights["2026-11-29"] * 7 / 3, rel=0.02)
    assert "no usage in this window" in plot.stacked_bars([], title="GPU-hours")
