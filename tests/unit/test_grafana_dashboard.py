"""The sample Grafana dashboard (docs/grafana/latticehub.json) matches the exported metrics.

Every PromQL expression may name only series that ``/hub/metrics`` really serves: the
spawner's metrics (``spawner.metrics``) and JupyterHub's (``jupyterhub.metrics``), with the
sample suffixes prometheus_client adds (``_total`` of counters, ``_bucket``/``_sum``/
``_count`` of histograms), and label matchers may name only the metric's labels.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import jupyterhub.metrics
import pytest
from prometheus_client.metrics import MetricWrapperBase

import spawner.metrics

DOCS = Path(__file__).resolve().parents[2] / "docs"
DASHBOARD = DOCS / "grafana" / "latticehub.json"

#: labels Prometheus adds to every scraped series
TARGET_LABELS = {"job", "instance"}
#: PromQL words that look like identifiers but are not metric names
KEYWORDS = {
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "offset",
    "bool",
    "inf",
    "nan",
}


def exported(*modules: ModuleType) -> dict[str, set[str]]:
    """``{sample name: label names}`` of every metric the modules define."""
    names: dict[str, set[str]] = {}
    for module in modules:
        for obj in vars(module).values():
            if not isinstance(obj, MetricWrapperBase):
                continue
            base = obj._name
            labels = set(obj._labelnames)
            kind = obj._type
            if kind == "counter":
                samples = {f"{base}_total": labels, f"{base}_created": labels}
            elif kind == "histogram":
                samples = {
                    f"{base}_bucket": labels | {"le"},
                    f"{base}_sum": labels,
                    f"{base}_count": labels,
                    f"{base}_created": labels,
                }
            elif kind == "summary":
                samples = {
                    base: labels | {"quantile"},
                    f"{base}_sum": labels,
                    f"{base}_count": labels,
                    f"{base}_created": labels,
                }
            else:
                samples = {base: labels}
            names.update(samples)
    return names


METRICS = exported(spawner.metrics, jupyterhub.metrics)
LATTICEHUB = {n for n in METRICS if n.startswith("latticehub_") and not n.endswith("_created")}

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_RANGE = re.compile(r"\[[^\]]*\]")
_SELECTOR = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)?\s*\{([^}]*)\}")
_IDENT = re.compile(r"(?<![\w$.])([A-Za-z_:][A-Za-z0-9_:]*)(?![\w(])(?!\s*\()")
_MATCHER = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(\"(?:[^\"\\]|\\.)*\")\s*")


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (functions, keywords, labels left out)."""
    text = _SELECTOR.sub(lambda m: f" {m.group(1) or ''} ", expr)
    text = _STRING.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    text = _RANGE.sub(" ", text)
    return {name for name in _IDENT.findall(text) if name.lower() not in KEYWORDS}


def selectors(expr: str) -> Iterator[tuple[str, dict[str, tuple[str, str]]]]:
    """``(metric name, {label: (operator, quoted value)})`` of each ``name{...}``."""
    for m in _SELECTOR.finditer(expr):
        name, body = m.group(1), m.group(2)
        matchers = {}
        for part in filter(None, (p.strip() for p in body.split(","))):
            found = _MATCHER.fullmatch(part)
            assert found, f"cannot parse label matcher {part!r} in {expr!r}"
            matchers[found.group(1)] = (found.group(2), found.group(3))
        yield name or "", matchers


def grouping_labels(expr: str) -> set[str]:
    """Label names in ``by (...)``, ``without (...)``, ``on (...)``, ``ignoring (...)``."""
    out = set()
    for clause in re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", expr):
        out |= {label.strip() for label in clause.split(",") if label.strip()}
    return out


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def all_panels(dashboard: dict) -> list[dict]:
    """Panels, with those nested in collapsed rows."""
    out = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def exprs(dashboard: dict) -> list[tuple[str, str]]:
    """``(panel title, expr)`` of every query target."""
    return [
        (panel["title"], target["expr"])
        for panel in all_panels(dashboard)
        for target in panel.get("targets", [])
    ]


# -- the parser itself -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('latticehub_group_servers{group=~"$group"}', {"latticehub_group_servers"}),
        (
            'histogram_quantile(0.9, sum by (le) (rate(x_bucket{a="b"}[$__rate_interval])))',
            {"x_bucket"},
        ),
        ("100 * a / on (group) (b > 0)", {"a", "b"}),
        ("sum without (instance) (increase(c_total[5m] offset 1h))", {"c_total"}),
        ('{__name__="raw"}', set()),
        ("up == bool 1 and ignoring(job) down", {"up", "down"}),
    ],
)
def test_metric_names_parser(expr, names):
    assert metric_names(expr) == names


def test_exported_metrics_are_known():
    # the public names (README, docs/monitoring.md): the spawner really exports them
    assert LATTICEHUB == {
        "latticehub_group_servers",
        "latticehub_group_server_limit",
        "latticehub_group_spawns_queued",
        "latticehub_spawn_rejections_total",
        "latticehub_orphaned_servers",
    }
    assert "jupyterhub_server_spawn_duration_seconds_bucket" in METRICS
    assert "jupyterhub_running_servers" in METRICS


# -- the dashboard ----------------------------------------------------------------------
def test_dashboard_is_grafana_json(dashboard):
    assert dashboard["title"] and dashboard["uid"]
    assert 36 <= dashboard["schemaVersion"] <= 41
    assert dashboard.get("id") is None, "an exported dashboard carries no database id"
    ids = [p["id"] for p in all_panels(dashboard)]
    assert len(ids) == len(set(ids)), f"duplicate panel ids: {sorted(ids)}"
    for panel in all_panels(dashboard):
        pos = panel["gridPos"]
        assert 0 <= pos["x"] and pos["x"] + pos["w"] <= 24, panel["title"]
        assert pos["h"] > 0, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
        assert panel["targets"], panel["title"]
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"], panel["title"]
            assert target["expr"].strip(), panel["title"]


def test_datasource_and_group_variables(dashboard):
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    ds = variables["DS_PROMETHEUS"]
    assert ds["type"] == "datasource" and ds["query"] == "prometheus"
    group = variables["group"]
    assert group["type"] == "query"
    assert group["datasource"]["uid"] == "${DS_PROMETHEUS}"
    query = group["query"]["query"] if isinstance(group["query"], dict) else group["query"]
    m = re.fullmatch(r"label_values\((\w+),\s*group\)", query)
    assert m, query
    assert m.group(1) in LATTICEHUB and "group" in METRICS[m.group(1)]
    assert group["includeAll"] and group["multi"] and group["allValue"] == ".*"


def test_every_expr_names_exported_metrics_and_labels(dashboard):
    for title, expr in exprs(dashboard):
        names = metric_names(expr)
        assert names, f"{title}: no metric in {expr!r}"
        unknown = names - set(METRICS)
        assert not unknown, f"{title}: {sorted(unknown)} not exported (in {expr!r})"
        for name, matchers in selectors(expr):
            assert name, f"{title}: a selector without a metric name in {expr!r}"
            allowed = METRICS[name] | TARGET_LABELS
            assert set(matchers) <= allowed, f"{title}: {name} has labels {sorted(allowed)}"
        # labels in grouping clauses exist on at least one selected metric
        labels = set().union(*(METRICS[n] for n in names)) | TARGET_LABELS
        assert grouping_labels(expr) <= labels, f"{title}: {expr!r}"


def test_every_latticehub_metric_has_a_panel(dashboard):
    used = set().union(*(metric_names(expr) for _, expr in exprs(dashboard)))
    assert LATTICEHUB <= used, f"no panel for {sorted(LATTICEHUB - used)}"
    for name in (
        "jupyterhub_running_servers",
        "jupyterhub_server_spawn_duration_seconds_bucket",
    ):
        assert name in used


def test_group_variable_filters_every_per_group_series(dashboard):
    for title, expr in exprs(dashboard):
        for name, matchers in selectors(expr):
            if name in LATTICEHUB and "group" in METRICS[name]:
                assert matchers.get("group") == ("=~", '"$group"'), f"{title}: {expr!r}"
        for name in metric_names(expr):
            if name in LATTICEHUB and "group" in METRICS[name]:
                assert re.search(rf'{name}\{{[^}}]*group=~"\$group"', expr), f"{title}: {expr!r}"


def doc_queries() -> list[str]:
    """PromQL expressions of the ``promql`` blocks in docs/monitoring.md (blank-separated)."""
    text = (DOCS / "monitoring.md").read_text()
    out = []
    for block in re.findall(r"```promql\n(.*?)```", text, re.S):
        lines = [line for line in block.splitlines() if not line.lstrip().startswith("#")]
        out += [q.strip() for q in "\n".join(lines).split("\n\n") if q.strip()]
    return out


def test_documented_queries_name_exported_metrics():
    queries = doc_queries()
    assert queries
    for expr in queries:
        names = metric_names(expr)
        assert names and names <= set(METRICS), expr
        for name, matchers in selectors(expr):
            assert set(matchers) <= METRICS[name] | TARGET_LABELS, expr
