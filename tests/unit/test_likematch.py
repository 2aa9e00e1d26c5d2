"""The linear-time LIKE matcher, the pattern limit, and where searches use them."""

from __future__ import annotations

import random
import time

import pytest

from hub_ext.experiments.handlers.mlflow_convert import parse_experiment_filter, select_experiments
from hub_ext.experiments.likematch import (
    MAX_LIKE_PATTERN,
    LikePatternError,
    check_like_pattern,
    like_match,
)
from hub_ext.experiments.search import SearchError, parse_filter
from hub_ext.experiments.store.entities import Project
from hub_ext.experiments.store.errors import TrackingError
from hub_ext.experiments.store.sqlquery import condition

#: a functional bound for "no backtracking": each case below does at most a few thousand
#: steps; the regex it replaces needed astronomically many for the adversarial ones
QUICK_S = 2.0


def reference(pattern: str, value: str) -> bool:
    """SQL LIKE by dynamic programming over (pattern prefix, value prefix)."""
    row = [True] + [False] * len(value)
    for ch in pattern:
        new = [ch == "%" and row[0]] + [False] * len(value)
        for j in range(1, len(value) + 1):
            if ch == "%":
                new[j] = row[j] or new[j - 1]
            else:
                new[j] = row[j - 1] and (ch == "_" or ch == value[j - 1])
        row = new
    return row[-1]


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("", "", True),
        ("", "a", False),
        ("%", "", True),
        ("%", "anything at all", True),
        ("%%", "", True),
        ("_", "", False),
        ("_", "x", True),
        ("_", "xy", False),
        ("abc", "abc", True),
        ("abc", "abcd", False),
        ("abc", "ab", False),
        ("a%", "abc", True),
        ("%c", "abc", True),
        ("%b%", "abc", True),
        ("%d%", "abc", False),
        ("a_c", "abc", True),
        ("a_c", "ac", False),
        ("a%c", "ac", True),
        ("a%c", "abcbc", True),
        ("a%c", "abcb", False),
        ("%a%b%c%", "xaybzc", True),
        ("%a%b%c%", "xczbya", False),
        ("%ab%ba%", "aba", False),  # the segments may not overlap
        ("%ab%ba%", "abba", True),
        ("%a_b%", "axxb aab", True),
        ("%a__b", "a_xb", True),
        ("phi4-%-L_", "phi4-flow-L8", True),
        ("phi4-%-L_", "phi4-flow-L16", False),
        ("100%", "1000", True),  # no escape character: % is always a wildcard
        ("100\\%", "100%", False),
        ("100\\%", "100\\ done", True),
        ("a.b", "axb", False),  # regex characters are plain text
        ("(.*)+", "(.*)+", True),
        ("[ab]", "a", False),
        ("\\%", "\\x", True),
        ("é_", "éa", True),
        ("%\n%", "line\nbreak", True),  # any character, newlines too
    ],
)
def test_like_table(pattern, value, expected):
    assert like_match(pattern, value) is expected
    assert reference(pattern, value) is expected


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("ABC", "abc", True),
        ("%Flow%", "realNVP-FLOW-l8", True),
        ("_B_", "aBc", True),
        ("ß", "SS", False),  # one character matches one character
        ("İ", "i̇", False),  # a lower-case form of two characters is not split
        ("K", "\u212a", True),  # KELVIN SIGN lower-cases to k
    ],
)
def test_ilike_table(pattern, value, expected):
    assert like_match(pattern, value, ignore_case=True) is expected


def test_like_agrees_with_the_reference_on_many_small_cases():
    rng = random.Random(20240613)
    for _ in range(20_000):
        pattern = "".join(rng.choice("ab%_") for _ in range(rng.randint(0, 9)))
        value = "".join(rng.choice("ab") for _ in range(rng.randint(0, 12)))
        assert like_match(pattern, value) is reference(pattern, value), (pattern, value)


#: patterns that make a backtracking matcher try every split of the value (values up to a
#: tag's 8000 characters), with and without a match
ADVERSARIAL = [
    ("%a" * 60 + "%b", "a" * 200, False),  # the reported attack: 122 characters
    ("%a" * 60 + "%b", "a" * 200 + "b", True),
    ("%a" * 127 + "%b", "a" * 8000, False),
    ("%" + "a" * 127 + "b%", "a" * 8000, False),
    ("%" + "a" * 127 + "b%", "a" * 8000 + "b", True),
    ("%" + "a_" * 63 + "b%", "a" * 8000, False),
    ("%" + "a_" * 63 + "b%", "a" * 8000 + "ab", True),
    ("%" + "_" * 254 + "b", "a" * 8000, False),
    (("%" + "a" * 20 + "_") * 11 + "%b", "a" * 8000, False),
    ("%" + "_a" * 127 + "%", "ab" * 4000, True),
    ("%" + "_a" * 127 + "%", "abb" * 2666, False),
    ("a%" * 127 + "b", "a" * 8000, False),
    ("a%" * 127 + "b", "a" * 8000 + "b", True),
]


@pytest.mark.parametrize(("pattern", "value", "expected"), ADVERSARIAL)
@pytest.mark.parametrize("ignore_case", [False, True])
def test_adversarial_patterns_answer_at_once(pattern, value, expected, ignore_case):
    assert len(pattern) <= MAX_LIKE_PATTERN
    start = time.perf_counter()
    assert like_match(pattern, value, ignore_case=ignore_case) is expected
    assert time.perf_counter() - start < QUICK_S


@pytest.mark.parametrize(("pattern", "value", "expected"), ADVERSARIAL[:2])
def test_adversarial_expectations_agree_with_the_reference(pattern, value, expected):
    assert reference(pattern, value) is expected


def test_the_pattern_limit():
    assert check_like_pattern("a" * MAX_LIKE_PATTERN) == "a" * MAX_LIKE_PATTERN
    with pytest.raises(
        LikePatternError, match=f"257 characters long; the limit is {MAX_LIKE_PATTERN}"
    ):
        check_like_pattern("a" * (MAX_LIKE_PATTERN + 1))


# -- where the searches use them ------------------------------------------------------------
def project(name: str, tags: dict[str, str] | None = None) -> Project:
    return Project(
        id=1, name=name, owner="ann", group="lqcd", artifact_location="mlflow-artifacts:/1",
        tags=tags or {}, creation_time=1, last_update_time=1,
    )  # fmt: skip


def test_experiment_search_uses_the_linear_matcher():
    start = time.perf_counter()
    chosen = select_experiments(
        [project("a" * 200)], view="ACTIVE_ONLY", filter_text="name LIKE '" + "%a" * 60 + "%b'",
        order_by=[],
    )  # fmt: skip
    assert chosen == [] and time.perf_counter() - start < QUICK_S
    hits = select_experiments(
        [project("Phi4-L8", {"model": "RealNVP"})], view="ACTIVE_ONLY",
        filter_text="name ILIKE 'phi4-%' AND tags.model LIKE '%NVP'", order_by=[],
    )  # fmt: skip
    assert [p.name for p in hits] == ["Phi4-L8"]


@pytest.mark.parametrize("op", ["LIKE", "ILIKE"])
@pytest.mark.parametrize("subject", ["name", "tags.model"])
def test_experiment_filters_refuse_long_patterns(op, subject):
    parse_experiment_filter(f"{subject} {op} '{'%' * MAX_LIKE_PATTERN}'")
    with pytest.raises(TrackingError, match=f"the limit is {MAX_LIKE_PATTERN}"):
        parse_experiment_filter(f"{subject} {op} '{'%' * (MAX_LIKE_PATTERN + 1)}'")


def test_experiment_filters_are_bounded_in_length_and_comparisons():
    with pytest.raises(TrackingError, match="the limit is 10000"):
        parse_experiment_filter("name = '" + "a" * 10_000 + "'")
    with pytest.raises(TrackingError, match="more than 100 comparisons"):
        parse_experiment_filter(" AND ".join(["name = 'a'"] * 101))
    assert len(parse_experiment_filter(" AND ".join(["name = 'a'"] * 100))) == 100


@pytest.mark.parametrize("op", ["LIKE", "ILIKE"])
def test_run_filters_refuse_long_patterns(op):
    assert parse_filter(f"tags.x {op} '{'a' * MAX_LIKE_PATTERN}'")[0].op == op
    with pytest.raises(SearchError, match=f"the limit is {MAX_LIKE_PATTERN}"):
        parse_filter(f"tags.x {op} '{'a' * (MAX_LIKE_PATTERN + 1)}'")
    # other comparisons keep the filter's own limit
    assert parse_filter(f"tags.x = '{'a' * 1000}'")[0].value == "a" * 1000


def test_the_sql_translation_refuses_long_patterns_too():
    from hub_ext.experiments.search import Comparison

    condition(Comparison("tag", "x", "LIKE", "%" * MAX_LIKE_PATTERN))
    with pytest.raises(TrackingError, match=f"the limit is {MAX_LIKE_PATTERN}"):
        condition(Comparison("tag", "x", "ILIKE", "%" * (MAX_LIKE_PATTERN + 1)))
