"""Group limits, part 2: choosing the charged group, resolving requests, capacity."""

import pytest

from latticehub.limits import (
    GroupLimits,
    Holder,
    LimitError,
    check_capacity,
    choose_group,
    image_aliases,
    image_choices,
    permitted_images,
    resolve_request,
)

M = 1024**2
G = 1024**3
GL = GroupLimits
LIMITS = {"zeta": GL(max_servers=1), "alpha": GL(max_servers=2), "beta": GL(max_servers=3)}
UNLISTED = GL(max_servers=9)
NOGROUP = GL(max_servers=7)


def choose(groups, requested=None, unlisted=None, no_group=None, limits=LIMITS):
    return choose_group(
        user="ann",
        user_groups=groups,
        requested=requested,
        group_limits=limits,
        unlisted_limits=unlisted,
        no_group_limits=no_group,
        no_group_pool="nogroup",
    )


@pytest.mark.parametrize(
    ("groups", "requested", "unlisted", "no_group", "pool", "limits", "chargeable"),
    [
        (["alpha", "zeta"], None, None, None, "zeta", LIMITS["zeta"], ("zeta", "alpha")),
        (["beta", "alpha"], None, None, None, "alpha", LIMITS["alpha"], ("alpha", "beta")),
        (["alpha", "zeta"], "alpha", None, None, "alpha", LIMITS["alpha"], ("zeta", "alpha")),
        (["alpha", "zeta"], "", None, None, "zeta", LIMITS["zeta"], ("zeta", "alpha")),
        (["lab", "beta"], None, None, None, "beta", LIMITS["beta"], ("beta",)),
        (["lab", "beta"], "lab", UNLISTED, None, "lab", UNLISTED, ("beta", "lab")),
        (["lab", "aaa"], None, UNLISTED, None, "aaa", UNLISTED, ("aaa", "lab")),
        (["lab"], None, None, NOGROUP, "nogroup", NOGROUP, ()),
        ([], None, None, NOGROUP, "nogroup", NOGROUP, ()),
        (["zeta"], None, None, NOGROUP, "zeta", LIMITS["zeta"], ("zeta",)),
    ],
)
def test_choose_group(groups, requested, unlisted, no_group, pool, limits, chargeable):
    choice = choose(groups, requested, unlisted, no_group)
    assert (choice.pool, choice.limits, choice.chargeable) == (pool, limits, chargeable)


@pytest.mark.parametrize(
    ("groups", "requested", "unlisted", "no_group", "reason", "in_message"),
    [
        (["alpha"], "beta", None, None, "foreign_group", ["'beta'", "(alpha)"]),
        ([], "beta", None, NOGROUP, "foreign_group", ["ann", "(none)"]),
        (["alpha", "lab"], "lab", None, None, "group_not_chargeable", ["'lab'", "(alpha)"]),
        (["lab"], "lab", None, NOGROUP, "group_not_chargeable", ["group_limits"]),
        (["lab"], None, None, None, "no_group", ["ann", "group_limits"]),
        ([], None, UNLISTED, None, "no_group", ["ann"]),
    ],
)
def test_choose_group_refuses(groups, requested, unlisted, no_group, reason, in_message):
    with pytest.raises(LimitError) as info:
        choose(groups, requested, unlisted, no_group)
    assert (info.value.status_code, info.value.reason) == (403, reason)
    assert str(info.value) == info.value.message
    for text in in_message:
        assert text in info.value.message


# -- resolve_request --------------------------------------------------------------
CAPPED = GL(mem_limit=8 * G, cpu_limit=2.0, gpus=2, images=("img/a", "img/b", "img/c"))


def resolve(options, limits=CAPPED, default_image="img/a", allowed=None, mem=None, cpu=None):
    return resolve_request(
        group="lab",
        limits=limits,
        options=options,
        default_image=default_image,
        allowed_images=allowed,
        default_mem=mem,
        default_cpu=cpu,
    )


@pytest.mark.parametrize(
    ("options", "kwargs", "expected"),
    [
        ({}, {}, ("img/a", 8 * G, 2.0, 0)),
        ({"image": ""}, {}, ("img/a", 8 * G, 2.0, 0)),
        ({"image": "img/b"}, {"allowed": ["img/b", "img/z"]}, ("img/b", 8 * G, 2.0, 0)),
        # the default image, named, is the same as naming none (also outside allowed_images)
        ({"image": "img/a"}, {"allowed": ["img/b", "img/c"]}, ("img/a", 8 * G, 2.0, 0)),
        ({}, {"limits": GL(), "default_image": "any/thing"}, ("any/thing", None, None, 0)),
        ({"image": "img/a"}, {"limits": GL()}, ("img/a", None, None, 0)),
        ({"mem_limit": "64M", "cpu_limit": "10m"}, {}, ("img/a", 64 * M, 0.01, 0)),
        ({"mem": 64 * M, "cpu": 0.01}, {}, ("img/a", 64 * M, 0.01, 0)),
        ({}, {"mem": 64 * M, "cpu": 0.01}, ("img/a", 64 * M, 0.01, 0)),
        ({}, {"mem": 0, "cpu": 0}, ("img/a", 8 * G, 2.0, 0)),
        ({}, {"limits": GL(), "mem": G, "cpu": 0.5}, ("img/a", G, 0.5, 0)),
        ({}, {"mem": 2 * G, "cpu": 1.0}, ("img/a", 2 * G, 1.0, 0)),
        ({}, {"mem": 64 * G, "cpu": 16.0}, ("img/a", 8 * G, 2.0, 0)),
        ({"mem_limit": "4G", "cpu_limit": "500m"}, {"mem": G}, ("img/a", 4 * G, 0.5, 0)),
        ({"mem": "8G", "cpu": 2}, {}, ("img/a", 8 * G, 2.0, 0)),
        ({"mem_limit": "", "cpu_limit": ""}, {"mem": G}, ("img/a", G, 2.0, 0)),
        ({"gpus": "2"}, {}, ("img/a", 8 * G, 2.0, 2)),
        ({"gpus": 1}, {}, ("img/a", 8 * G, 2.0, 1)),
        ({"gpus": " 1 "}, {}, ("img/a", 8 * G, 2.0, 1)),
        ({"gpus": "0"}, {"limits": GL()}, ("img/a", None, None, 0)),
    ],
)
def test_resolve_request(options, kwargs, expected):
    req = resolve(options, **kwargs)
    assert (req.image, req.mem_limit, req.cpu_limit, req.gpus) == expected


@pytest.mark.parametrize(
    ("options", "kwargs", "status", "reason", "in_message"),
    [
        ({"image": "evil"}, {}, 403, "image", ["'evil'", "'lab'", "img/a, img/b, img/c"]),
        ({}, {"default_image": "img/z"}, 403, "image", ["'img/z'", "Allowed: img/a, img/b"]),
        (
            {"image": "img/d"},
            {"allowed": ["img/b", "img/c", "img/d"]},
            403,
            "image",
            ["Allowed: img/a, img/b, img/c."],
        ),
        (
            {"image": "img/d"},
            {"allowed": ["img/b", "img/d"]},
            403,
            "image",
            ["Allowed: img/a, img/b.", "Choose one of them in the 'image' field"],
        ),
        ({"image": "x"}, {"limits": GL(), "allowed": ["y"]}, 403, "image", ["Allowed: img/a."]),
        (
            {"image": "x"},
            {"limits": GL(images=()), "allowed": None},
            403,
            "image",
            ["Allowed: none."],
        ),
        ({"image": 5}, {}, 400, "bad_option", ["image=5"]),
        ({"image": ["img/a"]}, {}, 400, "bad_option", ["image=['img/a']"]),
        ({"mem_limit": "9G"}, {}, 400, "mem_limit", ["9G", "'lab'", "at most 8G"]),
        ({"mem": 8 * G + 1}, {}, 400, "mem_limit", ["8G per server"]),
        ({"mem_limit": "lots"}, {}, 400, "bad_option", ["mem_limit='lots'"]),
        ({"cpu_limit": "3"}, {}, 400, "cpu_limit", ["3 CPUs", "at most 2"]),
        ({"cpu": "2001m"}, {}, 400, "cpu_limit", ["'lab'"]),
        ({"cpu_limit": "x"}, {}, 400, "bad_option", ["cpu_limit='x'"]),
        ({"gpus": "3"}, {}, 400, "gpus", ["3 GPU(s)", "limit of 2", "at most 2"]),
        ({"gpus": 1}, {"limits": GL()}, 400, "gpus", ["limit of 0"]),
        ({"gpus": "1.5"}, {}, 400, "bad_option", ["gpus='1.5'"]),
        ({"gpus": 1.5}, {}, 400, "bad_option", ["gpus=1.5"]),
        ({"gpus": "x"}, {}, 400, "bad_option", ["whole number"]),
        ({"gpus": -1}, {}, 400, "bad_option", ["gpus=-1"]),
        ({"gpus": "-1"}, {}, 400, "bad_option", ["gpus='-1'"]),
        ({"gpus": True}, {}, 400, "bad_option", ["gpus=True"]),
        ({"gpus": [1]}, {}, 400, "bad_option", ["gpus=[1]"]),
    ],
)
def test_resolve_request_refuses(options, kwargs, status, reason, in_message):
    with pytest.raises(LimitError) as info:
        resolve(options, **kwargs)
    assert (info.value.status_code, info.value.reason) == (status, reason)
    for text in in_message:
        assert text in info.value.message


# -- floors: the user's options ---------------------------------------------------------
@pytest.mark.parametrize(
    ("options", "reason", "in_message"),
    [
        ({"cpu_limit": 0.001}, "cpu_limit", ["CPUs 0.001", "floor of 0.01 CPU", "e.g. 0.5"]),
        ({"cpu_limit": "0.001"}, "cpu_limit", ["CPUs '0.001'", "at least 0.01"]),
        ({"cpu_limit": "1m"}, "cpu_limit", ["CPUs '1m'", "at least 0.01"]),
        ({"cpu_limit": "9m"}, "cpu_limit", ["'9m'"]),
        ({"cpu": 0.0099}, "cpu_limit", ["0.0099"]),
        ({"cpu_limit": 1e-9}, "cpu_limit", ["floor of 0.01 CPU"]),
        ({"mem_limit": "32M"}, "mem_limit", ["Memory '32M'", "floor of 64M", "e.g. '2G'"]),
        ({"mem_limit": "63M"}, "mem_limit", ["'63M'", "at least 64M"]),
        ({"mem_limit": 64 * M - 1}, "mem_limit", ["at least 64M"]),
        ({"mem_limit": 64}, "mem_limit", ["Memory 64 ", "at least 64M"]),
        ({"mem_limit": "6M"}, "mem_limit", ["'6M'"]),
        ({"mem": "1K"}, "mem_limit", ["'1K'"]),
        ({"mem_limit": "0"}, "mem_limit", ["'0'"]),
        ({"mem_limit": 0}, "mem_limit", ["Memory 0 "]),
    ],
)
@pytest.mark.parametrize("limits", [CAPPED, GL()])
def test_requests_below_the_floor_are_refused(options, reason, in_message, limits):
    with pytest.raises(LimitError) as info:
        resolve(options, limits=limits)
    assert (info.value.status_code, info.value.reason) == (400, reason)
    assert "leave the field empty for the group's default" in info.value.message
    for text in in_message:
        assert text in info.value.message


@pytest.mark.parametrize(
    ("kwargs", "in_message"),
    [
        ({"mem": 32 * M}, ["default mem_limit=32M", "at least 64M", "or to 0"]),
        ({"mem": 1}, ["default mem_limit=1 ", "floor of 64M"]),
        ({"cpu": 0.001}, ["default cpu_limit=0.001", "at least 0.01"]),
    ],
)
def test_spawner_defaults_below_the_floor_are_a_config_error(kwargs, in_message):
    # the admin's own default (the spawner's mem_limit / cpu_limit) is an entry too: it is
    # refused even where an option would replace it, so the mistake shows at once
    for options in ({}, {"mem_limit": "1G", "cpu_limit": 1}):
        with pytest.raises(LimitError) as info:
            resolve(options, **kwargs)
        assert (info.value.status_code, info.value.reason) == (500, "config")
        for text in in_message:
            assert text in info.value.message


# -- images: deny by default, aliases resolved before the check ----------------------------
DEFAULT = "lab/nb:1"
LISTED = GL(images=(DEFAULT, "lab/gpu:1"))
ALIASES = {
    "stable": DEFAULT,
    "gpu": "lab/gpu:1",
    "sneaky": "busybox:latest",
    "lab/gpu:1": "busybox:latest",  # an alias that spells a listed image
    "lab/nb:2": "lab/nb:2",
}


@pytest.mark.parametrize(
    ("limits", "allowed", "requested", "image"),
    [
        # no images list: the admin's default image only, whatever the spawner allows
        (GL(), None, None, DEFAULT),
        (GL(), None, "", DEFAULT),
        (GL(), None, DEFAULT, DEFAULT),
        (GL(), "*", DEFAULT, DEFAULT),
        (GL(), ["lab/nb:2"], DEFAULT, DEFAULT),
        (GL(), ALIASES, "stable", DEFAULT),
        (GL(), ALIASES, DEFAULT, DEFAULT),
        # a list: its images, by name or through an alias that resolves into it
        (LISTED, None, "lab/gpu:1", "lab/gpu:1"),
        (LISTED, "*", "lab/gpu:1", "lab/gpu:1"),
        (LISTED, {}, "lab/gpu:1", "lab/gpu:1"),
        (LISTED, ALIASES, "stable", DEFAULT),
        (LISTED, ALIASES, "gpu", "lab/gpu:1"),
        (LISTED, ALIASES, None, DEFAULT),
        (LISTED, ["lab/gpu:1"], "lab/gpu:1", "lab/gpu:1"),
    ],
)
def test_image_allowed(limits, allowed, requested, image):
    req = resolve({"image": requested}, limits=limits, default_image=DEFAULT, allowed=allowed)
    assert req.image == image


@pytest.mark.parametrize(
    ("limits", "allowed", "requested", "in_message"),
    [
        # deny by default: a group without images gets the default image only
        (GL(), None, "busybox:latest", ["'busybox:latest'", "Allowed: lab/nb:1."]),
        (GL(), "*", "busybox:latest", ["Allowed: lab/nb:1."]),
        (GL(), ["lab/nb:2"], "lab/nb:2", ["'lab/nb:2'", "Allowed: lab/nb:1."]),
        (GL(), ALIASES, "gpu", ["'gpu' (an alias of 'lab/gpu:1')", "Allowed: lab/nb:1, stable."]),
        (GL(), ALIASES, "lab/nb:2", ["'lab/nb:2'"]),
        # an alias of an unlisted image is refused, naming the image it stands for
        (LISTED, ALIASES, "sneaky", ["'sneaky' (an alias of 'busybox:latest')", "'lab'"]),
        (LISTED, ALIASES, "lab/gpu:1", ["'lab/gpu:1' (an alias of 'busybox:latest')"]),
        (LISTED, ALIASES, "busybox:latest", ["'busybox:latest'"]),
        (LISTED, ALIASES, "lab/nb:2", ["Allowed: lab/nb:1, stable, gpu."]),
        # with a spawner list, only its aliases (and the default) can be named
        (LISTED, {"stable": DEFAULT}, "lab/gpu:1", ["Allowed: lab/nb:1, stable."]),
        (LISTED, None, "busybox:latest", ["Allowed: lab/nb:1, lab/gpu:1."]),
        (GL(images=()), ALIASES, "stable", ["Allowed: none."]),
        (GL(images=()), None, None, ["default image 'lab/nb:1'", "Allowed: none."]),
        (GL(images=("lab/gpu:1",)), None, None, ["default image 'lab/nb:1'"]),
    ],
)
def test_image_refused(limits, allowed, requested, in_message):
    with pytest.raises(LimitError) as info:
        resolve({"image": requested}, limits=limits, default_image=DEFAULT, allowed=allowed)
    assert (info.value.status_code, info.value.reason) == (403, "image")
    assert "not allowed for group 'lab'" in info.value.message
    for text in in_message:
        assert text in info.value.message


def test_no_alias_ever_runs_an_image_outside_the_group_list():
    for limits in (GL(), LISTED, GL(images=("lab/gpu:1",)), GL(images=())):
        listed = limits.images if limits.images is not None else (DEFAULT,)
        for requested in [None, DEFAULT, "busybox:latest", *ALIASES, *ALIASES.values()]:
            try:
                req = resolve(
                    {"image": requested}, limits=limits, default_image=DEFAULT, allowed=ALIASES
                )
            except LimitError as e:
                assert e.status_code == 403
            else:
                assert req.image in listed, (limits, requested, req.image)


@pytest.mark.parametrize(
    ("limits", "allowed", "choices"),
    [
        (GL(), None, {DEFAULT: DEFAULT}),
        (GL(), "*", {DEFAULT: DEFAULT}),
        (GL(), ALIASES, {DEFAULT: DEFAULT, "stable": DEFAULT}),
        (LISTED, None, {DEFAULT: DEFAULT, "lab/gpu:1": "lab/gpu:1"}),
        (LISTED, ALIASES, {DEFAULT: DEFAULT, "stable": DEFAULT, "gpu": "lab/gpu:1"}),
        (GL(images=("lab/gpu:1", DEFAULT)), None, {DEFAULT: DEFAULT, "lab/gpu:1": "lab/gpu:1"}),
        (GL(images=()), ALIASES, {}),
        (GL(images=("lab/gpu:1",)), {DEFAULT: DEFAULT}, {}),
    ],
)
def test_image_choices_and_form_offer(limits, allowed, choices):
    assert image_choices(limits, allowed, DEFAULT) == choices
    assert list(image_choices(limits, allowed, DEFAULT)) == list(choices)  # default first
    assert permitted_images(limits, allowed, DEFAULT) == list(choices)


@pytest.mark.parametrize(
    ("allowed", "expected"),
    [
        (None, None),
        ("*", None),
        ([], None),
        ({}, None),
        (["a", "b"], {"a": "a", "b": "b"}),
        (("a",), {"a": "a"}),
        ({"x": "a"}, {"x": "a"}),
    ],
)
def test_image_aliases(allowed, expected):
    assert image_aliases(allowed) == expected


@pytest.mark.parametrize("allowed", ["ubuntu", 5, {"x": ""}, {"": "a"}, {"x": 1}, [None]])
def test_image_aliases_bad_value_says_the_accepted_forms(allowed):
    with pytest.raises(ValueError, match="allowed_images"):
        image_aliases(allowed)


@pytest.mark.parametrize("mem", ["0", 0, "0.4", "0G"])
def test_resolve_request_zero_memory_does_not_escape_the_cap(mem):
    try:
        req = resolve({"mem_limit": mem})
    except LimitError as e:
        assert e.status_code == 400
    else:
        assert req.mem_limit is not None and 0 < req.mem_limit <= CAPPED.mem_limit


# -- check_capacity ---------------------------------------------------------------
HOLDERS = [Holder("alice", ""), Holder("bob", "lab"), Holder("ann", "x")]


@pytest.mark.parametrize(
    ("limits", "holders"),
    [
        (GL(), HOLDERS * 100),
        (GL(max_servers=4), HOLDERS),
        (GL(max_servers_per_user=2), HOLDERS + [Holder("bob", "")]),
        (GL(max_servers=1), []),
        (GL(max_servers_per_user=1), [Holder("bob", "")]),
    ],
)
def test_check_capacity_room(limits, holders):
    assert check_capacity(pool="lab", user="ann", limits=limits, holders=holders) is None


def test_check_capacity_group_full_names_group_limit_and_holders():
    with pytest.raises(LimitError) as info:
        check_capacity(pool="lqcd", user="ann", limits=GL(max_servers=2), holders=HOLDERS[:2])
    e = info.value
    assert (e.status_code, e.reason) == (429, "group_full")
    assert "'lqcd'" in e.message and "limit of 2 server(s)" in e.message
    assert "running: alice/, bob/lab." in e.message


def test_check_capacity_zero_servers_lists_none():
    with pytest.raises(LimitError, match="running: none") as info:
        check_capacity(pool="lab", user="ann", limits=GL(max_servers=0), holders=[])
    assert info.value.reason == "group_full"


def test_check_capacity_user_full_lists_only_own_servers():
    holders = HOLDERS + [Holder("ann", "")]
    with pytest.raises(LimitError) as info:
        check_capacity(pool="lab", user="ann", limits=GL(max_servers_per_user=2), holders=holders)
    e = info.value
    assert (e.status_code, e.reason) == (429, "user_full")
    assert "max_servers_per_user=2): ann/x, ann/." in e.message
    assert "alice" not in e.message and "bob" not in e.message


def test_holder_str():
    assert [str(h) for h in HOLDERS] == ["alice/", "bob/lab", "ann/x"]
