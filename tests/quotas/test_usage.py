"""usage.py: per-group and per-node usage from Hub JSON, labels, ceilings and properties."""

from __future__ import annotations

import pytest

from hub_ext.quotas.usage import (
    LISTED,
    NO_GROUP,
    ORPHAN,
    RUNNING,
    STARTING,
    STOPPING,
    UNCONFIGURED,
    UNLISTED,
    EngineObject,
    NodeCapacity,
    compute_usage,
    group_json,
    node_json,
    parse_time,
)
from latticehub import labels as L
from latticehub.policy import parse_policy
from tests.quotas.fakes import container, server

GIB = 1024**3
POLICY = parse_policy(
    {
        "group_limits": {
            "lqcd": {"max_servers": 3, "max_servers_per_user": 1, "mem_limit": "4G", "gpus": 1},
            "nuclear": {"max_servers": 1, "mem_limit": "2G"},
        },
        "hub_id": "h1",
        "gpu_devices": {"local": ["0", "1"]},
    }
)
GROUPS = [
    {"name": "lqcd", "users": ["ann", "ben", "cat"], "properties": {}},
    {"name": "nuclear", "users": ["ann", "dan"], "properties": {}},
]


def user(name, groups, **servers):
    return {"name": name, "groups": groups, "servers": servers}


def usage(*, users=(), objects=(), groups=GROUPS, queued=None, policy=POLICY, nodes=()):
    return compute_usage(
        policy=policy,
        hub_groups=groups,
        hub_users=list(users),
        objects=list(objects),
        nodes=nodes,
        queued=queued,
        now=2000.0,
    )


# (what, users, objects, queued, {group: (used, limit, containers, pending, queued)})
CASES = [
    ("nothing runs", [], [], {}, {"lqcd": (0, 3, 0, 0, 0), "nuclear": (0, 1, 0, 0, 0)}),
    (
        "containers count where their label says",
        [
            user("ann", ["lqcd", "nuclear"], **{"": server()}),
            user("ben", ["lqcd"], **{"": server()}),
        ],
        [container("nuclear", "ann"), container("lqcd", "ben")],
        {},
        {"lqcd": (1, 3, 1, 0, 0), "nuclear": (1, 1, 1, 0, 0)},
    ),
    (
        "a pending spawn without container holds a slot; the default group is the first listed",
        [user("cat", ["nuclear", "lqcd"], **{"": server("spawn")})],
        [],
        {},
        {"lqcd": (1, 3, 0, 1, 0), "nuclear": (0, 1, 0, 0, 0)},
    ),
    (
        "user_options['group'] picks the group of a pending spawn",
        [
            user(
                "ann",
                ["lqcd", "nuclear"],
                **{"": server("spawn", user_options={"group": "nuclear"})},
            )
        ],
        [],
        {},
        {"lqcd": (0, 3, 0, 0, 0), "nuclear": (1, 1, 0, 1, 0)},
    ),
    (
        "queued spawns hold no slot",
        [user(u, ["nuclear"], **{"": server("spawn")}) for u in ("dan", "eve")]
        + [user("ann", ["nuclear"], **{"": server()})],
        [container("nuclear", "ann")],
        {"nuclear": 2},
        {"nuclear": (1, 1, 1, 2, 2)},
    ),
    (
        "the queue gauge never exceeds the pending spawns",
        [user("dan", ["nuclear"], **{"": server("spawn")})],
        [],
        {"nuclear": 5},
        {"nuclear": (0, 1, 0, 1, 1)},
    ),
    (
        "an unknown queue is None and counts pending spawns as held",
        [user("dan", ["nuclear"], **{"": server("spawn")})],
        [],
        None,
        {"nuclear": (1, 1, 0, 1, None)},
    ),
    (
        "a starting server whose container exists counts once",
        [user("ben", ["lqcd"], **{"": server("spawn")})],
        [container("lqcd", "ben")],
        {},
        {"lqcd": (1, 3, 1, 0, 0)},
    ),
    (
        "an orphan container (no Hub server) still counts",
        [],
        [container("lqcd", "ghost")],
        {},
        {"lqcd": (1, 3, 1, 0, 0)},
    ),
    (
        "named servers count separately",
        [user("ben", ["lqcd"], **{"": server(), "gpu": server(name="gpu")})],
        [container("lqcd", "ben"), container("lqcd", "ben", "gpu")],
        {},
        {"lqcd": (2, 3, 2, 0, 0)},
    ),
    (
        "a spawn the spawner refuses (not a member) is not charged",
        [user("dan", ["nuclear"], **{"": server("spawn", user_options={"group": "lqcd"})})],
        [],
        {},
        {"lqcd": (0, 3, 0, 0, 0), "nuclear": (0, 1, 0, 0, 0)},
    ),
    (
        "containers without labels are not ours",
        [],
        [EngineObject(id="x", labels={L.HUB: "h1"})],
        {},
        {"lqcd": (0, 3, 0, 0, 0)},
    ),
]


@pytest.mark.parametrize(
    ("what", "users", "objects", "queued", "expected"), CASES, ids=[c[0] for c in CASES]
)
def test_group_counts(what, users, objects, queued, expected):
    result = usage(users=users, objects=objects, queued=queued)
    for name, (used, limit, containers, pending, waiting) in expected.items():
        g = result.group(name)
        assert (g.used, g.limit, g.containers, g.pending, g.queued) == (
            used,
            limit,
            containers,
            pending,
            waiting,
        ), what


@pytest.mark.parametrize(
    ("hub_server", "state"),
    [(server(), RUNNING), (server("spawn"), STARTING), (server("stop"), STOPPING), (None, ORPHAN)],
)
def test_server_state_from_the_hub(hub_server, state):
    users = [user("ben", ["lqcd"], **{"": hub_server})] if hub_server else []
    (s,) = usage(users=users, objects=[container("lqcd", "ben")]).group("lqcd").servers
    assert s.state == state


def test_server_details_age_activity_image_resources():
    users = [
        user(
            "ben",
            ["lqcd"],
            **{"": server(started="1970-01-01T00:16:40Z", last_activity="1970-01-01T00:30:00Z")},
        )
    ]
    obj = container("lqcd", "ben", mem=2 * GIB, cpu=1.5, labels={L.GPUS: "1"})
    (s,) = usage(users=users, objects=[obj]).group("lqcd").servers
    assert (s.user, s.server, s.image, s.node) == ("ben", "", "img:1", "local")
    assert (s.mem_bytes, s.cpus, s.gpus) == (2 * GIB, 1.5, ("1",))
    assert s.age_s == 1000.0 and s.idle_s == 200.0
    g = usage(users=users, objects=[obj]).group("lqcd")
    assert (g.mem_bytes, g.cpus, g.gpus, g.per_user()) == (2 * GIB, 1.5, 1, {"ben": 1})


def test_orphan_age_from_the_container():
    (s,) = usage(objects=[container("lqcd", "ghost")]).group("lqcd").servers
    assert s.state == ORPHAN and s.age_s == 1000.0 and s.idle_s is None


@pytest.mark.parametrize(
    ("properties", "limit", "over", "warnings"),
    [
        ({}, 3, False, 0),
        ({"latticehub": {"max_servers": 1}}, 1, True, 0),
        ({"latticehub": {"max_servers": 9}}, 3, False, 0),  # never above the ceiling
        ({"latticehub": {"max_servers": "two"}}, 3, False, 1),
        ({"latticehub": {"home": "/x"}}, 3, False, 1),
        ({"latticehub": "nonsense"}, 3, False, 1),
        ({"other": {"max_servers": 1}}, 3, False, 0),
    ],
)
def test_properties_lower_the_effective_limit(properties, limit, over, warnings):
    groups = [{"name": "lqcd", "users": [], "properties": properties}]
    objects = [container("lqcd", "ann"), container("lqcd", "ben")]
    g = usage(groups=groups, objects=objects).group("lqcd")
    assert (g.limit, g.over, len(g.warnings)) == (limit, over, warnings)
    assert g.ceiling.max_servers == 3


def test_group_kinds_and_order():
    policy = parse_policy(
        {
            "group_limits": {"b": {"max_servers": 1}, "a": {}},
            "unlisted_group_limits": {"max_servers": 2},
            "no_group_limits": {"max_servers": 1},
            "no_group_pool": "pool",
        }
    )
    groups = [{"name": n, "users": [], "properties": {}} for n in ("a", "b", "z", "c")]
    objects = [container("gone", "ann", hub="h1")]
    result = usage(policy=policy, groups=groups, objects=objects)
    kinds = [(g.name, g.kind) for g in result.groups]
    assert kinds == [
        ("b", LISTED),
        ("a", LISTED),
        ("c", UNLISTED),
        ("z", UNLISTED),
        ("pool", NO_GROUP),
        ("gone", UNCONFIGURED),
    ]
    assert result.group("c").limit == 2 and result.group("c").lowerable
    assert not result.group("pool").lowerable and result.group("pool").limit == 1
    assert result.group("gone").ceiling is None and result.group("gone").containers == 1


def test_listed_group_missing_in_the_hub_is_not_lowerable():
    g = usage(groups=[]).group("lqcd")
    assert not g.exists and not g.lowerable and g.members is None


def test_per_node_usage_and_capacity():
    users = [user("ben", ["lqcd"], **{"": server()})]
    objects = [
        container("lqcd", "ben", mem=GIB, cpu=0.5, labels={L.GPUS: "1", L.NODE: "local"}),
        container("nuclear", "dan", mem=2 * GIB, cpu=1.0),
        container("lqcd", "cat", mem=GIB, cpu=0.5, node="gpu02"),
    ]
    result = usage(
        users=users, objects=objects, nodes=[NodeCapacity("local", 16.0, 64 * GIB, "box")]
    )
    nodes = {n.name: n for n in result.nodes}
    local = nodes["local"]
    assert (local.servers, local.cpus, local.mem_bytes) == (2, 1.5, 3 * GIB)
    assert (local.gpus_used, local.gpus_total) == (("1",), ("0", "1"))
    assert local.groups == {"lqcd": 1, "nuclear": 1}
    assert (local.cpus_total, local.mem_total, local.hostname) == (16.0, 64 * GIB, "box")
    assert nodes["gpu02"].servers == 1 and nodes["gpu02"].cpus_total is None
    assert set(local.allowed) == {"lqcd", "nuclear"}
    # a manager of lqcd sees the totals but only lqcd in the split
    shown = node_json(local, lambda g: g == "lqcd")
    assert shown["groups"] == {"lqcd": 1} and shown["reserved"]["servers"] == 2


def test_group_json_shape():
    users = [user("ben", ["lqcd"], **{"": server()})]
    data = group_json(usage(users=users, objects=[container("lqcd", "ben")]).group("lqcd"))
    assert data["usage"]["used"] == 1 and data["usage"]["limit"] == 3
    assert data["ceiling"]["mem_limit"] == 4 * GIB and data["ceiling"]["images"] is None
    assert data["servers"][0]["user"] == "ben" and data["servers"][0]["age_s"] == 1000.0
    assert "servers" not in group_json(usage().group("lqcd"), servers=False)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1970-01-01T00:00:10Z", 10.0),
        ("1970-01-01T00:00:10.5+00:00", 10.5),
        (None, None),
        ("", None),
        ("yesterday", None),
    ],
)
def test_parse_time(text, expected):
    assert parse_time(text) == expected
