"""The per-round plan (pure): busy rule, per-group timeouts, reasons, charged groups."""

import pytest

from hub_ext.culling.plan import (
    GroupRule,
    ServerRef,
    charged_group,
    charged_servers,
    count_by_group,
    cull_reason,
    has_idle_settings,
    is_busy,
    plan_round,
    rule_for,
)
from latticehub.limits import GroupLimits as GL
from latticehub.policy import parse_policy


@pytest.mark.parametrize(
    ("running", "max_servers", "fraction", "busy"),
    [
        (0, 5, 0.8, False),
        (3, 5, 0.8, False),
        (4, 5, 0.8, True),
        (5, 5, 0.8, True),
        (7, 5, 0.8, True),  # over the limit (lowered by a manager meanwhile)
        (1, 1, 0.8, True),
        (0, 1, 0.8, False),
        (2, 3, 0.8, False),  # 2 < 2.4
        (3, 3, 0.8, True),
        (4, 5, 1.0, False),
        (5, 5, 1.0, True),
        (1, 10, 0.1, True),
        (0, 0, 0.8, False),
        (1, 0, 0.8, True),  # max_servers=0: any server makes it busy
        (100, None, 0.8, False),  # no max_servers: never busy
    ],
)
def test_is_busy(running, max_servers, fraction, busy):
    assert is_busy(running, max_servers, fraction) is busy


@pytest.mark.parametrize(
    ("limits", "running", "expected"),
    [
        # no idle keys: never culled
        (GL(max_servers=3), 3, None),
        (GL(), 0, None),
        # plain idle timeout, busy or not
        (GL(idle_timeout=600), 0, GroupRule("g", 600, None)),
        (
            GL(max_servers=2, idle_timeout=600),
            2,
            GroupRule("g", 600, None, busy=True, running=2, max_servers=2),
        ),
        # busy timeout used only while busy
        (
            GL(max_servers=5, idle_timeout=3600, idle_timeout_busy=900),
            3,
            GroupRule("g", 3600, None, busy=False, running=3, max_servers=5),
        ),
        (
            GL(max_servers=5, idle_timeout=3600, idle_timeout_busy=900),
            4,
            GroupRule("g", 900, None, True, 4, 5, timeout_key="idle_timeout_busy"),
        ),
        # busy timeout alone: culled only while busy
        (GL(max_servers=2, idle_timeout_busy=300), 1, None),
        (
            GL(max_servers=2, idle_timeout_busy=300),
            2,
            GroupRule("g", 300, None, True, 2, 2, timeout_key="idle_timeout_busy"),
        ),
        # busy timeout without max_servers never applies
        (GL(idle_timeout=600, idle_timeout_busy=60), 50, GroupRule("g", 600, None, running=50)),
        # max_age alone, and with timeouts
        (GL(max_age=86400), 1, GroupRule("g", None, 86400, running=1)),
        (
            GL(max_servers=1, idle_timeout=600, idle_timeout_busy=60, max_age=7200),
            1,
            GroupRule("g", 60, 7200, True, 1, 1, timeout_key="idle_timeout_busy"),
        ),
    ],
)
def test_rule_for_table(limits, running, expected):
    assert rule_for("g", limits, running, busy_fraction=0.8) == expected


def test_plan_round_keeps_order_and_leaves_out_unculled_groups():
    limits = {
        "zeta": GL(max_servers=2, idle_timeout=600, idle_timeout_busy=60),
        "plain": GL(max_servers=3),
        "alpha": GL(max_servers=4, idle_timeout=1200),
    }
    rules = plan_round(limits, {"zeta": 2, "plain": 3, "other": 9})
    assert list(rules) == ["zeta", "alpha"]
    assert (rules["zeta"].timeout, rules["zeta"].busy) == (60, True)
    assert (rules["alpha"].timeout, rules["alpha"].running) == (1200, 0)


def test_plan_round_follows_the_load_between_rounds():
    limits = {"lqcd": GL(max_servers=5, idle_timeout=3600, idle_timeout_busy=900)}
    timeouts = [plan_round(limits, {"lqcd": n})["lqcd"].timeout for n in range(6)]
    assert timeouts == [3600, 3600, 3600, 3600, 900, 900]


@pytest.mark.parametrize("fraction", [0, -0.5, 1.01, 2])
def test_plan_round_rejects_a_bad_busy_fraction(fraction):
    with pytest.raises(ValueError, match=r"busy_fraction=.* must be in \(0, 1\], e.g. 0.8"):
        plan_round({}, {}, busy_fraction=fraction)


RULE = GroupRule("g", 600, 3600)
BUSY = GroupRule("g", 60, None, True, 2, 2, timeout_key="idle_timeout_busy")


@pytest.mark.parametrize(
    ("rule", "inactive", "age", "reason"),
    [
        (RULE, 10, 20, None),
        (RULE, 599.4, 1000, None),
        (RULE, 600, 1000, "idle 600s >= idle_timeout 600s"),
        (RULE, 10, 3600, "age 3600s >= max_age 3600s"),
        (RULE, 700, 4000, "idle 700s >= idle_timeout 600s"),  # idle is named first
        (RULE, None, None, None),
        (RULE, None, 5000, "age 5000s >= max_age 3600s"),
        (GroupRule("g", None, None), 10**6, 10**6, None),
        (
            BUSY,
            61,
            61,
            "idle 61s >= idle_timeout_busy (group busy: 2/2 servers) 60s",
        ),
        (BUSY, 59, 10**6, None),
    ],
)
def test_cull_reason_table(rule, inactive, age, reason):
    assert cull_reason(rule, inactive_s=inactive, age_s=age) == reason


POLICY = parse_policy(
    {
        "group_limits": {
            "lqcd": {"max_servers": 3, "idle_timeout": 600},
            "nuclear": {"max_servers": 1},
        },
        "unlisted_group_limits": None,
        "no_group_limits": None,
    }
)


@pytest.mark.parametrize(
    ("groups", "options", "group"),
    [
        (["lqcd"], {}, "lqcd"),
        (["nuclear", "lqcd"], {}, "lqcd"),  # the admin's order of group_limits
        (["lqcd", "nuclear"], {"group": "nuclear"}, "nuclear"),
        (["lqcd", "nuclear"], {"group": ""}, "lqcd"),
        (["lqcd"], {"group": "nuclear"}, None),  # not a member: the spawn was refused
        (["other"], {}, None),  # no group with a share
        ([], {}, None),
        (["lqcd"], {"group": 5}, None),
        (["lqcd"], None, "lqcd"),
    ],
)
def test_charged_group_follows_the_spawner(groups, options, group):
    user = {"name": "ann", "groups": groups}
    assert charged_group(POLICY, user, {"user_options": options}) == group


def test_charged_servers_and_counts():
    users = [
        {
            "name": "ann",
            "groups": ["lqcd", "nuclear"],
            "servers": {
                "": {"url": "/user/ann/", "user_options": {"group": "nuclear"}},
                "gpu": {"url": "/user/ann/gpu/", "user_options": {}},
            },
        },
        {"name": "ben", "groups": ["lqcd"], "servers": {"": {"url": "/user/ben/"}}},
        {"name": "cat", "groups": ["other"], "servers": {"": {"url": "/user/cat/"}}},
        {"name": "dan", "groups": ["lqcd"], "servers": {}},
    ]
    servers = charged_servers(POLICY, users)
    assert servers == [
        ServerRef("ann", "", "nuclear", "/user/ann/"),
        ServerRef("ann", "gpu", "lqcd", "/user/ann/gpu/"),
        ServerRef("ben", "", "lqcd", "/user/ben/"),
    ]
    assert count_by_group(servers) == {"nuclear": 1, "lqcd": 2}


@pytest.mark.parametrize(
    ("limits", "expected"),
    [
        (None, False),
        (GL(), False),
        (GL(max_servers=3, mem_limit=10**9), False),
        (GL(idle_timeout=1), True),
        (GL(idle_timeout_busy=1), True),
        (GL(max_age=1), True),
    ],
)
def test_has_idle_settings(limits, expected):
    assert has_idle_settings(limits) is expected


def test_describe():
    assert BUSY.describe() == "g: idle 60s (busy 2/2), max age none"
    assert GroupRule("x", None, 7200).describe() == "x: idle none (not busy 0/-), max age 7200s"
