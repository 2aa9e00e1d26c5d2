"""Retention policy (pure) and the registry's name / alias / reference rules, as tables."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from hub_ext.experiments.retention import DAY_MS, RetentionRule, plan
from hub_ext.experiments.store.errors import TrackingError
from hub_ext.experiments.store.registry import (
    check_alias,
    check_artifact_name,
    parse_ref,
    parse_selector,
)

NOW = 1_000 * DAY_MS


@dataclass(frozen=True)
class V:
    project_id: int
    name: str
    version: int
    created: int
    aliases: tuple[str, ...] = ()


def versions(n: int, *, name: str = "flow", project: int = 1, age_days=None, aliases=None):
    """Versions 1..n of one name; version k is ``age_days(k)`` days old (default n - k)."""
    aliases = aliases or {}
    return [
        V(project, name, k, NOW - int((age_days(k) if age_days else n - k) * DAY_MS),
          tuple(aliases.get(k, ())))
        for k in range(1, n + 1)
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("n", "rule", "aliases", "age_days", "deleted"),
    [
        # keep the last N
        (3, RetentionRule(keep_last=10), {}, None, []),
        (12, RetentionRule(), {}, None, [1, 2]),
        (5, RetentionRule(keep_last=2), {}, None, [1, 2, 3]),
        (5, RetentionRule(keep_last=1), {}, None, [1, 2, 3, 4]),
        # aliased versions are kept besides the last N and do not count
        (5, RetentionRule(keep_last=2), {1: ["best"], 3: ["prod", "x"]}, None, [2]),
        (5, RetentionRule(keep_last=1), {5: ["best"]}, None, [1, 2, 3, 4]),
        # age: drops unaliased versions older than D even among the last N ...
        (5, RetentionRule(keep_last=10, max_age_days=2.5), {}, None, [1, 2]),
        (5, RetentionRule(keep_last=2, max_age_days=30), {}, None, [1, 2, 3]),
        (5, RetentionRule(keep_last=10, max_age_days=2.5), {2: ["best"]}, None, [1]),
        # ... but never the latest, however old
        (3, RetentionRule(keep_last=10, max_age_days=1), {}, lambda k: 100, [1, 2]),
        (1, RetentionRule(keep_last=1, max_age_days=1), {}, lambda k: 100, []),
        # exactly D days old stays (strictly older goes)
        (2, RetentionRule(keep_last=10, max_age_days=5), {}, lambda k: 5, []),
        # numbering gaps (deleted versions) do not matter: rank counts
        (0, RetentionRule(keep_last=2), {}, None, []),
    ],
)
def test_plan(n, rule, aliases, age_days, deleted):
    got = plan(versions(n, aliases=aliases, age_days=age_days), rule, NOW)
    assert [v.version for v in got] == deleted


def test_plan_ranks_by_version_not_by_position_or_gaps():
    vs = [V(1, "flow", k, NOW) for k in (9, 2, 40, 7)]
    assert [v.version for v in plan(vs, RetentionRule(keep_last=2), NOW)] == [2, 7]


def test_plan_keeps_names_and_projects_apart():
    vs = versions(3, name="a") + versions(3, name="b") + versions(3, name="a", project=2)
    got = plan(vs, RetentionRule(keep_last=2), NOW)
    assert [(v.project_id, v.name, v.version) for v in got] == [
        (1, "a", 1),
        (1, "b", 1),
        (2, "a", 1),
    ]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"keep_last": 0}, "at least 1"),
        ({"keep_last": -3}, "at least 1"),
        ({"keep_last": 2.5}, "integer"),
        ({"keep_last": True}, "integer"),
        ({"max_age_days": 0}, "positive"),
        ({"max_age_days": -1}, "positive"),
    ],
)
def test_bad_rules_say_what_to_use(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RetentionRule(**kwargs)


@pytest.mark.parametrize("name", ["flow-phi4-L8", "a", "A.b_c-9", "x" * 250, "v3", "..x"])
def test_good_names(name):
    assert check_artifact_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "x" * 251, "a b", "a/b", "a:b", ".", "..", "ü", None, 3, "a\n"]
)
def test_bad_names(name):
    with pytest.raises(TrackingError, match="letters, digits"):
        check_artifact_name(name)


@pytest.mark.parametrize("alias", ["best", "prod", "B-2", "release.1", "v2beta", "x" * 128])
def test_good_aliases(alias):
    assert check_alias(alias) == alias


@pytest.mark.parametrize(
    ("alias", "message"),
    [
        ("latest", "reserved"),
        ("aliases", "reserved"),
        ("v3", "version"),
        ("3", "letter"),
        ("-x", "letter"),
        ("a b", "letter"),
        ("x" * 129, "letter"),
        ("", "letter"),
        (None, "letter"),
    ],
)
def test_bad_aliases(alias, message):
    with pytest.raises(TrackingError, match=message):
        check_alias(alias)


@pytest.mark.parametrize(
    ("ref", "parsed"),
    [
        ("flow:v3", ("flow", 3)),
        ("flow:3", ("flow", 3)),
        ("flow:best", ("flow", "best")),
        ("flow:latest", ("flow", "latest")),
        ("flow", ("flow", "latest")),
        ("a.b-c:v12", ("a.b-c", 12)),
    ],
)
def test_refs(ref, parsed):
    assert parse_ref(ref) == parsed


@pytest.mark.parametrize(
    "ref",
    [
        "",
        ":v1",
        "flow:",
        "flow:v0",
        "flow:0",
        "flow:v2147483648",
        "flow:-1",
        "flow:a:b",
        "a b:v1",
        None,
        7,
    ],
)
def test_bad_refs(ref):
    with pytest.raises(TrackingError) as err:
        parse_ref(ref)
    assert err.value.http_status == 400
    assert "use" in err.value.message or "letters" in err.value.message


def test_selector_accepts_v_numbers_and_aliases():
    assert parse_selector("v7") == 7 and parse_selector("best") == "best"
    with pytest.raises(TrackingError, match="v3"):
        parse_selector("v2147483648")
