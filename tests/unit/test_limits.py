"""Group limits: validation, lowering by properties, group choice, requests, capacity."""

import itertools

import pytest

from spawner.limits import (
    LIMIT_KEYS,
    GroupLimits,
    apply_properties,
    parse_all_group_limits,
    parse_group_limits,
)

G = 1024**3
GL = GroupLimits


# -- parsing --------------------------------------------------------------------
def test_parse_group_limits_valid():
    raw = {
        "max_servers": 3,
        "max_servers_per_user": 1,
        "mem_limit": "8G",
        "cpu_limit": "500m",
        "gpus": 2,
        "gpu_sharing": True,
        "images": ["a", "b"],
        "nodes": ("n1",),
        "constraints": ["node.labels.ib==true"],
        "home": "home-{username}",
        "shared_dir": "/srv/{group}",
        "shared_readonly": True,
        "run_as_user": True,
        "idle_timeout": 3600,
        "idle_timeout_busy": 900,
        "max_age": 86400,
    }
    assert parse_group_limits(raw) == GL(
        max_servers=3,
        max_servers_per_user=1,
        mem_limit=8 * G,
        cpu_limit=0.5,
        gpus=2,
        gpu_sharing=True,
        images=("a", "b"),
        nodes=("n1",),
        constraints=("node.labels.ib==true",),
        home="home-{username}",
        shared_dir="/srv/{group}",
        shared_readonly=True,
        run_as_user=True,
        idle_timeout=3600,
        idle_timeout_busy=900,
        max_age=86400,
    )


def test_parse_group_limits_none_means_unset():
    assert parse_group_limits({"max_servers": None, "mem_limit": None}) == GL()


def test_parse_group_limits_unknown_key_lists_known_keys():
    with pytest.raises(ValueError) as info:
        parse_group_limits({"max_server": 3, "mem": "1G"}, where="group_limits['x']")
    message = str(info.value)
    assert message.startswith("group_limits['x'] has unknown key(s) max_server, mem;")
    for key in LIMIT_KEYS:
        assert key in message.split("known keys:")[1]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("max_servers", -1),
        ("max_servers", "3"),
        ("max_servers", True),
        ("max_servers", 1.5),
        ("max_servers_per_user", -2),
        ("gpus", -1),
        ("gpus", "1"),
        ("gpus", False),
        ("mem_limit", "8X"),
        ("mem_limit", -1),
        ("cpu_limit", 0),
        ("cpu_limit", "fast"),
        ("gpu_sharing", "yes"),
        ("gpu_sharing", 1),
        ("shared_readonly", "true"),
        ("run_as_user", 0),
        ("images", "ubuntu"),
        ("images", [""]),
        ("images", [1]),
        ("images", 5),
        ("nodes", "n1"),
        ("constraints", [None]),
        ("home", ""),
        ("home", 5),
        ("shared_dir", ["x"]),
        ("idle_timeout", 0),
        ("idle_timeout", -5),
        ("idle_timeout", "1h"),
        ("idle_timeout", 1.5),
        ("idle_timeout", True),
        ("idle_timeout_busy", 0),
        ("idle_timeout_busy", "900"),
        ("max_age", -1),
        ("max_age", "1d"),
        ("max_age", 2.5),
        ("max_age", False),
    ],
)
def test_parse_group_limits_bad_value_names_key(key, value):
    with pytest.raises(ValueError) as info:
        parse_group_limits({key: value}, where="group_limits['lab']")
    message = str(info.value)
    assert message.startswith("group_limits['lab']: ")
    assert f"{key}={value!r}" in message


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"idle_timeout": 60}, GL(idle_timeout=60)),
        ({"idle_timeout_busy": 60}, GL(idle_timeout_busy=60)),
        ({"idle_timeout": 60, "idle_timeout_busy": 60}, GL(idle_timeout=60, idle_timeout_busy=60)),
        ({"idle_timeout": 60, "idle_timeout_busy": 15}, GL(idle_timeout=60, idle_timeout_busy=15)),
        ({"max_age": 0}, GL()),
        ({"max_age": 7200}, GL(max_age=7200)),
    ],
)
def test_parse_group_limits_idle_keys(raw, expected):
    assert parse_group_limits(raw) == expected


def test_parse_group_limits_busy_timeout_above_idle_timeout_says_fix():
    with pytest.raises(ValueError) as info:
        parse_group_limits({"idle_timeout": 600, "idle_timeout_busy": 900}, where="g['lab']")
    assert str(info.value) == (
        "g['lab']: idle_timeout_busy=900 must be <= idle_timeout=600 (it is the shorter "
        "timeout of a busy group), e.g. idle_timeout_busy=150"
    )


@pytest.mark.parametrize("key", ["idle_timeout", "idle_timeout_busy", "max_age"])
def test_idle_keys_are_admin_only(key):
    effective, warnings = apply_properties(GL(**{key: 600}), props(**{key: 60}))
    assert getattr(effective, key) == 600
    assert warnings == [f"{key!r} cannot be set through group properties; ignored"]


@pytest.mark.parametrize("raw", [None, [], "max_servers=3", 3])
def test_parse_group_limits_not_a_dict(raw):
    with pytest.raises(ValueError, match="must be a dict"):
        parse_group_limits(raw)


def test_parse_all_group_limits_keeps_order_and_names_bad_group():
    parsed = parse_all_group_limits({"zeta": {"max_servers": 1}, "alpha": {}})
    assert list(parsed) == ["zeta", "alpha"]
    assert parsed == {"zeta": GL(max_servers=1), "alpha": GL()}
    with pytest.raises(ValueError, match=r"^group_limits\['lab'\]: gpus=-1"):
        parse_all_group_limits({"ok": {}, "lab": {"gpus": -1}})
    with pytest.raises(ValueError, match="group name -> limits dict"):
        parse_all_group_limits([("lab", {})])


# -- apply_properties -----------------------------------------------------------
def props(**values):
    return {"latticehub": values}


CEIL = GL(
    max_servers=4,
    max_servers_per_user=2,
    mem_limit=8 * G,
    cpu_limit=4.0,
    gpus=2,
    gpu_sharing=True,
    images=("a", "b", "c"),
    nodes=("n1", "n2"),
    home="h-{username}",
)


@pytest.mark.parametrize(
    ("ceiling", "properties", "changes"),
    [
        (CEIL, props(max_servers=2), {"max_servers": 2}),
        (CEIL, props(max_servers=10), {}),
        (CEIL, props(max_servers=0), {"max_servers": 0}),
        (CEIL, props(max_servers_per_user=5, mem_limit="2G"), {"mem_limit": 2 * G}),
        (CEIL, props(mem_limit="16G"), {}),
        (CEIL, props(cpu_limit="500m"), {"cpu_limit": 0.5}),
        (CEIL, props(cpu_limit=64), {}),
        (CEIL, props(gpus=1), {"gpus": 1}),
        (CEIL, props(gpus=8), {}),
        (
            GL(),
            props(max_servers=3, mem_limit="4G", cpu_limit=2),
            {"max_servers": 3, "mem_limit": 4 * G, "cpu_limit": 2.0},
        ),
        (CEIL, props(images=["b", "z"]), {"images": ("b",)}),
        (CEIL, props(images=["z"]), {"images": ()}),
        (CEIL, props(nodes=["n2", "n3"]), {"nodes": ("n2",)}),
        (GL(), props(images=["x", "y"], nodes=["n9"]), {"images": ("x", "y"), "nodes": ("n9",)}),
        (CEIL, props(gpu_sharing=False), {"gpu_sharing": False}),
        (GL(gpu_sharing=False), props(gpu_sharing=True), {}),
        (GL(), props(shared_readonly=True), {"shared_readonly": True}),
        (GL(shared_readonly=True), props(shared_readonly=False), {}),
        (CEIL, props(max_servers=None), {}),
        (CEIL, {"other": {"max_servers": 1}}, {}),
        (CEIL, None, {}),
        (CEIL, {}, {}),
        (CEIL, {"latticehub": None}, {}),
    ],
)
def test_apply_properties_table(ceiling, properties, changes):
    effective, warnings = apply_properties(ceiling, properties)
    assert warnings == []
    expected = {f: getattr(ceiling, f) for f in LIMIT_KEYS} | changes
    assert {f: getattr(effective, f) for f in LIMIT_KEYS} == expected


@pytest.mark.parametrize(
    ("lowered", "warned_key"),
    [
        ({"home": "/tmp/{username}"}, "home"),
        ({"run_as_user": True}, "run_as_user"),
        ({"shared_dir": "/"}, "shared_dir"),
        ({"constraints": ["node.role==manager"]}, "constraints"),
        ({"bogus": 1}, "bogus"),
        ({"max_servers": "many"}, "max_servers"),
        ({"max_servers": -1}, "max_servers"),
        ({"mem_limit": "8X"}, "mem_limit"),
        ({"cpu_limit": 0}, "cpu_limit"),
        ({"gpu_sharing": "no"}, "gpu_sharing"),
        ({"images": "evil"}, "images"),
    ],
)
def test_apply_properties_ignores_with_warning(lowered, warned_key):
    effective, warnings = apply_properties(CEIL, {"latticehub": lowered})
    assert effective == CEIL
    assert len(warnings) == 1
    assert warned_key in warnings[0] and "ignored" in warnings[0]


def test_apply_properties_keeps_valid_keys_next_to_ignored_ones():
    effective, warnings = apply_properties(CEIL, props(home="/x", max_servers=1, gpus="z"))
    assert effective == GL(**{**CEIL.__dict__, "max_servers": 1})
    assert len(warnings) == 2


@pytest.mark.parametrize("value", ["x", 5, ["max_servers"], True])
def test_apply_properties_non_dict_value(value):
    effective, warnings = apply_properties(CEIL, {"latticehub": value})
    assert effective == CEIL
    assert warnings == ["properties['latticehub'] is not a dict; ignored"]


NUMBERS = {
    "max_servers": [None, 0, 1, 3, 50],
    "max_servers_per_user": [None, 0, 1, 2],
    "mem_limit": [None, 0, G, 8 * G, 1000 * G],
    "cpu_limit": [None, 0.25, 1.0, 2.5, 64.0],
}


@pytest.mark.parametrize("key", sorted(NUMBERS))
def test_property_never_raises_a_number_above_the_ceiling(key):
    for ceiling, wanted in itertools.product(NUMBERS[key], NUMBERS[key]):
        if wanted is None or (key == "cpu_limit" and wanted == 0):
            continue
        effective, _ = apply_properties(GL(**{key: ceiling}), props(**{key: wanted}))
        got = getattr(effective, key)
        assert got is not None
        assert got == (wanted if ceiling is None else min(ceiling, wanted))
        assert ceiling is None or got <= ceiling


def test_property_never_widens_names_or_flags():
    pools = [None, (), ("a",), ("a", "b"), ("b", "c")]
    for key, ceiling, wanted in itertools.product(("images", "nodes"), pools, pools[1:]):
        effective, _ = apply_properties(GL(**{key: ceiling}), props(**{key: list(wanted)}))
        got = getattr(effective, key)
        assert set(got) <= set(wanted)
        assert ceiling is None or set(got) <= set(ceiling)
    for ceiling, wanted in itertools.product((False, True), repeat=2):
        eff, _ = apply_properties(
            GL(gpu_sharing=ceiling, shared_readonly=ceiling),
            props(gpu_sharing=wanted, shared_readonly=wanted),
        )
        assert eff.gpu_sharing <= ceiling  # may only turn off
        assert eff.shared_readonly >= ceiling  # may only turn on


@pytest.mark.parametrize("ceiling", [GL(gpus=0), GL(gpus=1), GL(gpus=4)])
def test_gpus_property_with_a_set_ceiling_only_lowers(ceiling):
    for wanted in (0, 1, 2, 8):
        effective, _ = apply_properties(ceiling, props(gpus=wanted))
        assert effective.gpus == min(ceiling.gpus, wanted)


@pytest.mark.parametrize("wanted", [1, 4])
def test_gpus_property_cannot_grant_gpus_when_ceiling_unset(wanted):
    effective, _ = apply_properties(GL(), props(gpus=wanted))
    assert (effective.gpus or 0) == 0
