"""Group limits: validation, lowering by properties, group choice, requests, capacity."""

import itertools

import pytest

from latticehub.limits import (
    LIMIT_KEYS,
    MIN_CPU,
    MIN_MEMORY,
    GroupLimits,
    apply_properties,
    parse_all_group_limits,
    parse_group_limits,
)

M = 1024**2
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
        ("mem_limit", 0),
        ("mem_limit", "32M"),
        ("cpu_limit", 0),
        ("cpu_limit", 0.001),
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


# -- floors: wherever a value enters, memory >= 64M and CPUs >= 0.01 per server ------
def test_floors_are_64m_and_a_hundredth_of_a_cpu():
    assert (MIN_MEMORY, MIN_CPU) == (64 * M, 0.01)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("mem_limit", 0),
        ("mem_limit", "0"),
        ("mem_limit", "0G"),
        ("mem_limit", 1),
        ("mem_limit", 64),  # bytes, meant as megabytes
        ("mem_limit", "6M"),
        ("mem_limit", "63M"),
        ("mem_limit", 64 * M - 1),
        ("mem_limit", "0.06G"),
        ("cpu_limit", 0.001),
        ("cpu_limit", 0.0099),
        ("cpu_limit", "1m"),
        ("cpu_limit", "9m"),
        ("cpu_limit", "0.005"),
        ("cpu_limit", 1e-9),
    ],
)
def test_group_limits_below_the_floor_name_key_floor_and_fix(key, value):
    with pytest.raises(ValueError) as info:
        parse_all_group_limits({"ok": {}, "lqcd": {key: value}})
    message = str(info.value)
    floor = "64M" if key == "mem_limit" else "0.01 CPU"
    assert message.startswith(f"group_limits['lqcd']: {key}={value!r} is below the floor of ")
    assert f"floor of {floor} per server" in message
    assert "docs/limits.md" in message and "e.g. " + key in message


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"mem_limit": "64M"}, GL(mem_limit=64 * M)),
        ({"mem_limit": 64 * M}, GL(mem_limit=64 * M)),
        ({"mem_limit": "0.0625G"}, GL(mem_limit=64 * M)),
        ({"cpu_limit": 0.01}, GL(cpu_limit=0.01)),
        ({"cpu_limit": "10m"}, GL(cpu_limit=0.01)),
        ({"cpu_limit": "0.01"}, GL(cpu_limit=0.01)),
        ({"mem_limit": None, "cpu_limit": None}, GL()),
    ],
)
def test_group_limits_at_the_floor_are_accepted(raw, expected):
    assert parse_group_limits(raw) == expected


CEIL_FLOORS = GL(mem_limit=G, cpu_limit=1.0)


@pytest.mark.parametrize(
    "lowered",
    [
        {"mem_limit": 0},
        {"mem_limit": "0"},
        {"mem_limit": "1M"},
        {"mem_limit": "63M"},
        {"cpu_limit": 0.001},
        {"cpu_limit": "5m"},
        {"cpu_limit": 0.0099},
    ],
)
@pytest.mark.parametrize("ceiling", [CEIL_FLOORS, GL()])
def test_property_below_the_floor_is_ignored_with_a_warning(lowered, ceiling):
    effective, warnings = apply_properties(ceiling, {"latticehub": lowered})
    assert effective == ceiling
    ((key, value),) = lowered.items()
    (warning,) = warnings
    assert warning.startswith(f"{key}={value!r} is below the floor of ")
    assert warning.endswith("; ignored")


def test_property_at_the_floor_lowers():
    effective, warnings = apply_properties(
        CEIL_FLOORS, {"latticehub": {"mem_limit": "64M", "cpu_limit": "10m"}}
    )
    assert (effective.mem_limit, effective.cpu_limit, warnings) == (64 * M, 0.01, [])


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
        (GL(), props(nodes=["n9"]), {"nodes": ("n9",)}),
        (GL(images=("x",)), props(images=[]), {"images": ()}),
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
        ({"cpu_limit": 0.001}, "cpu_limit"),
        ({"mem_limit": 0}, "mem_limit"),
        ({"mem_limit": "16M"}, "mem_limit"),
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
    "mem_limit": [None, MIN_MEMORY, G, 8 * G, 1000 * G],
    "cpu_limit": [None, MIN_CPU, 0.25, 1.0, 2.5, 64.0],
}


BELOW_FLOOR = {"mem_limit": [0, "0", 1, "6M", MIN_MEMORY - 1], "cpu_limit": [1e-6, "1m", 0.009]}


@pytest.mark.parametrize("key", sorted(BELOW_FLOOR))
def test_property_never_lowers_a_number_below_the_floor(key):
    floor = MIN_MEMORY if key == "mem_limit" else MIN_CPU
    for ceiling, wanted in itertools.product(NUMBERS[key], NUMBERS[key][1:] + BELOW_FLOOR[key]):
        effective, _ = apply_properties(GL(**{key: ceiling}), props(**{key: wanted}))
        got = getattr(effective, key)
        assert got == ceiling or got >= floor


@pytest.mark.parametrize("key", sorted(NUMBERS))
def test_property_never_raises_a_number_above_the_ceiling(key):
    for ceiling, wanted in itertools.product(NUMBERS[key], NUMBERS[key]):
        if wanted is None:
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
        if key == "images" and ceiling is None:
            assert got is None  # the default image only: nothing to pick (next test)
            continue
        assert set(got) <= set(wanted)
        assert ceiling is None or set(got) <= set(ceiling)
    for ceiling, wanted in itertools.product((False, True), repeat=2):
        eff, _ = apply_properties(
            GL(gpu_sharing=ceiling, shared_readonly=ceiling),
            props(gpu_sharing=wanted, shared_readonly=wanted),
        )
        assert eff.gpu_sharing <= ceiling  # may only turn off
        assert eff.shared_readonly >= ceiling  # may only turn on


@pytest.mark.parametrize("wanted", [["busybox:latest"], ["img/a", "evil"], []])
def test_images_property_cannot_name_images_for_a_group_without_images(wanted):
    # no images list means the admin's default image only (deny by default); a manager
    # naming images there would otherwise widen it to any image
    effective, warnings = apply_properties(GL(max_servers=2), props(images=wanted))
    assert effective == GL(max_servers=2)
    assert warnings == [
        "'images' cannot be set for a group without an images list in group_limits (it "
        "runs the spawner's default image only); ignored"
    ]


@pytest.mark.parametrize("ceiling", [GL(gpus=0), GL(gpus=1), GL(gpus=4)])
def test_gpus_property_with_a_set_ceiling_only_lowers(ceiling):
    for wanted in (0, 1, 2, 8):
        effective, _ = apply_properties(ceiling, props(gpus=wanted))
        assert effective.gpus == min(ceiling.gpus, wanted)


@pytest.mark.parametrize("wanted", [1, 4])
def test_gpus_property_cannot_grant_gpus_when_ceiling_unset(wanted):
    effective, _ = apply_properties(GL(), props(gpus=wanted))
    assert (effective.gpus or 0) == 0
