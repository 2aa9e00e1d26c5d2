"""lowering.py: a manager's changes checked against the ceiling; the form's fields."""

from __future__ import annotations

import pytest

from hub_ext.quotas.lowering import LoweringError, changes_from_form, form_fields, plan_lowering
from latticehub.limits import apply_properties, parse_group_limits

CEILING = parse_group_limits(
    {
        "max_servers": 3,
        "max_servers_per_user": 2,
        "mem_limit": "4G",
        "cpu_limit": 2.0,
        "gpus": 1,
        "images": ["a:1", "b:1"],
        "gpu_sharing": True,
    }
)
OPEN = parse_group_limits({})  # no ceilings at all (but GPUs stay at 0)


@pytest.mark.parametrize(
    ("ceiling", "changes", "words"),
    [
        (CEILING, {"max_servers": 4}, ["max_servers=4", "ceiling of 3", "at most 3", "'lqcd'"]),
        (CEILING, {"max_servers_per_user": 3}, ["ceiling of 2"]),
        (CEILING, {"mem_limit": "8G"}, ["mem_limit=8G", "ceiling of 4G", "at most 4G"]),
        (CEILING, {"mem_limit": 5 * 1024**3}, ["mem_limit=5G", "4G"]),
        (CEILING, {"cpu_limit": "2.5"}, ["cpu_limit=2.5", "ceiling of 2"]),
        (CEILING, {"cpu_limit": "3000m"}, ["cpu_limit=3", "ceiling of 2"]),
        (CEILING, {"gpus": 2}, ["gpus=2", "ceiling of 1"]),
        (OPEN, {"gpus": 1}, ["gpus=1", "ceiling of 0"]),
        (CEILING, {"images": ["a:1", "evil:1"]}, ["evil:1", "[a:1, b:1]"]),
        (parse_group_limits({"gpus": 1}), {"gpu_sharing": True}, ["gpu_sharing", "switched off"]),
        (
            parse_group_limits({"shared_readonly": True}),
            {"shared_readonly": False},
            ["shared_readonly=False", "switch it on"],
        ),
        (CEILING, {"max_servers": -1}, ["max_servers=-1", "whole number"]),
        (CEILING, {"max_servers": "2"}, ["whole number"]),
        (CEILING, {"max_servers": True}, ["whole number"]),
        (CEILING, {"mem_limit": "lots"}, ["mem_limit='lots'", "8G"]),
        (CEILING, {"images": "a:1"}, ["list of names"]),
        (CEILING, {"home": "/x"}, ["'home' is admin-only", "max_servers"]),
        (CEILING, {"run_as_user": False}, ["admin-only"]),
        (CEILING, {"colour": "red"}, ["'colour' is not a limit"]),
        (CEILING, {}, ["JSON object"]),
        (CEILING, ["max_servers", 1], ["JSON object"]),
        (CEILING, None, ["JSON object"]),
    ],
)
def test_refused_with_a_message_naming_the_ceiling(ceiling, changes, words):
    with pytest.raises(LoweringError) as info:
        plan_lowering(group="lqcd", ceiling=ceiling, properties={}, changes=changes)
    assert info.value.status_code == 400
    for word in words:
        assert word in info.value.message, info.value.message


@pytest.mark.parametrize(
    ("changes", "effective"),
    [
        ({"max_servers": 2}, {"max_servers": 2}),
        ({"max_servers": 3}, {"max_servers": 3}),  # equal to the ceiling is fine
        ({"max_servers": 0}, {"max_servers": 0}),  # a group may be frozen
        ({"mem_limit": "2G"}, {"mem_limit": 2 * 1024**3}),
        ({"cpu_limit": "500m"}, {"cpu_limit": 0.5}),
        ({"gpus": 0}, {"gpus": 0}),
        ({"images": ["b:1"]}, {"images": ("b:1",)}),
        ({"images": []}, {"images": ()}),
        ({"gpu_sharing": False}, {"gpu_sharing": False}),
        ({"shared_readonly": True}, {"shared_readonly": True}),
    ],
)
def test_accepted_values_are_what_the_spawner_applies(changes, effective):
    properties = plan_lowering(group="lqcd", ceiling=CEILING, properties={}, changes=changes)
    limits, warnings = apply_properties(CEILING, properties)
    assert warnings == []
    for key, value in effective.items():
        assert getattr(limits, key) == value


def test_no_ceiling_means_any_number_is_a_lowering():
    properties = plan_lowering(
        group="g", ceiling=OPEN, properties={}, changes={"max_servers": 50, "images": ["x"]}
    )
    assert properties == {"latticehub": {"max_servers": 50, "images": ["x"]}}


def test_merge_keeps_other_keys_and_null_removes():
    current = {"owner": "ann", "latticehub": {"mem_limit": "2G", "max_servers": 1, "extra": 1}}
    new = plan_lowering(
        group="lqcd", ceiling=CEILING, properties=current, changes={"max_servers": None, "gpus": 0}
    )
    assert new == {"owner": "ann", "latticehub": {"mem_limit": "2G", "extra": 1, "gpus": 0}}
    assert current["latticehub"]["max_servers"] == 1  # the input is not changed


def test_merge_replaces_a_non_dict_value():
    new = plan_lowering(
        group="lqcd", ceiling=CEILING, properties={"latticehub": "x"}, changes={"max_servers": 1}
    )
    assert new == {"latticehub": {"max_servers": 1}}


@pytest.mark.parametrize(
    ("ceiling", "fields"),
    [
        (
            CEILING,
            [
                "max_servers",
                "max_servers_per_user",
                "mem_limit",
                "cpu_limit",
                "gpus",
                "images",
                "gpu_sharing",
                "shared_readonly",
            ],
        ),
        (
            OPEN,
            ["max_servers", "max_servers_per_user", "mem_limit", "cpu_limit", "shared_readonly"],
        ),
        (
            parse_group_limits({"nodes": ["n1"], "shared_readonly": True}),
            ["max_servers", "max_servers_per_user", "mem_limit", "cpu_limit", "nodes"],
        ),
    ],
)
def test_form_fields_follow_the_ceiling(ceiling, fields):
    assert form_fields(ceiling) == fields


@pytest.mark.parametrize(
    ("form", "expected"),
    [
        (
            {},
            {
                "max_servers": None,
                "max_servers_per_user": None,
                "mem_limit": None,
                "cpu_limit": None,
                "gpus": None,
                "images": [],
                "gpu_sharing": False,
                "shared_readonly": None,
            },
        ),
        (
            {
                "max_servers": [" 2 "],
                "mem_limit": ["2G"],
                "cpu_limit": ["0.5"],
                "gpus": ["0"],
                "images": ["a:1", "b:1"],
                "gpu_sharing": ["1"],
                "shared_readonly": ["1"],
            },
            {
                "max_servers": 2,
                "max_servers_per_user": None,
                "mem_limit": "2G",
                "cpu_limit": "0.5",
                "gpus": 0,
                "images": None,
                "gpu_sharing": None,
                "shared_readonly": True,
            },
        ),
        ({"images": ["b:1", "zzz"]}, {"images": ["b:1"]}),
    ],
)
def test_changes_from_form(form, expected):
    changes = changes_from_form(CEILING, form)
    for key, value in expected.items():
        assert changes[key] == value, key


def test_form_count_must_be_a_whole_number():
    with pytest.raises(LoweringError) as info:
        changes_from_form(CEILING, {"max_servers": ["2.5"]})
    assert info.value.status_code == 400 and "whole number" in info.value.message
