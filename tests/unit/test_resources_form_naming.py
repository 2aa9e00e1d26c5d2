"""Docker/Swarm resource settings, Docker-safe names and the spawn options form."""

import itertools
import re

import pytest

from latticehub.limits import GroupLimits
from latticehub.naming import safe_name
from spawner.form import GroupOffer, options_from_form, render_options_form
from spawner.resources import docker_resources, hardening, swarm_constraints, swarm_resources

G = 1024**3


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"mem_limit": None, "cpu_limit": None}, {}),
        ({"mem_limit": G, "cpu_limit": None}, {"mem_limit": G, "memswap_limit": G}),
        ({"mem_limit": None, "cpu_limit": 1.5}, {"cpu_period": 100_000, "cpu_quota": 150_000}),
        ({"mem_limit": None, "cpu_limit": 0.29}, {"cpu_period": 100_000, "cpu_quota": 29_000}),
        (
            {"mem_limit": None, "cpu_limit": 0.5, "cpu_period": 50_000},
            {"cpu_period": 50_000, "cpu_quota": 25_000},
        ),
        (
            {"mem_limit": None, "cpu_limit": 4, "cpu_period": 10_000},
            {"cpu_period": 10_000, "cpu_quota": 40_000},
        ),
        ({"mem_limit": None, "cpu_limit": None, "pids_limit": 512}, {"pids_limit": 512}),
        ({"mem_limit": None, "cpu_limit": None, "pids_limit": -1}, {}),
        (
            {"mem_limit": 2 * G, "cpu_limit": 0.001, "pids_limit": 0},
            {"mem_limit": 2 * G, "memswap_limit": 2 * G, "cpu_period": 100_000, "cpu_quota": 100},
        ),
    ],
)
def test_docker_resources(kwargs, expected):
    assert docker_resources(**kwargs) == expected


def test_cpu_quota_is_cpu_times_period():
    for cpu, period in itertools.product((0.1, 0.25, 0.3, 0.7, 1.1, 2.5, 3.3, 7), (1000, 100_000)):
        config = docker_resources(mem_limit=None, cpu_limit=cpu, cpu_period=period)
        assert isinstance(config["cpu_quota"], int)
        assert config["cpu_quota"] == round(cpu * period)
        assert abs(config["cpu_quota"] - cpu * period) < 1e-6


def test_hardening():
    config = hardening()
    assert config["privileged"] is False
    assert config["cap_drop"] == ["ALL"]
    assert "cap_add" not in config
    assert "no-new-privileges" in config["security_opt"]
    config["cap_drop"].clear()
    config["privileged"] = True
    assert hardening()["cap_drop"] == ["ALL"] and hardening()["privileged"] is False


@pytest.mark.parametrize(
    ("mem", "cpu", "expected"),
    [
        (None, None, {}),
        (G, None, {"mem_limit": G, "mem_reservation": G}),
        (None, 0.5, {"cpu_limit": 500_000_000, "cpu_reservation": 500_000_000}),
        (None, 1.5, {"cpu_limit": 1_500_000_000, "cpu_reservation": 1_500_000_000}),
        (None, 0.3, {"cpu_limit": 300_000_000, "cpu_reservation": 300_000_000}),
        (
            2 * G,
            8,
            {
                "mem_limit": 2 * G,
                "mem_reservation": 2 * G,
                "cpu_limit": 8 * 10**9,
                "cpu_reservation": 8 * 10**9,
            },
        ),
    ],
)
def test_swarm_resources(mem, cpu, expected):
    config = swarm_resources(mem_limit=mem, cpu_limit=cpu)
    assert config == expected
    assert all(type(v) is int for v in config.values())


@pytest.mark.parametrize(
    ("node", "extra", "expected"),
    [
        ("", (), []),
        ("gpu01", (), ["node.hostname==gpu01"]),
        ("", ("node.labels.ib==true",), ["node.labels.ib==true"]),
        ("n", ["a==1", "b==2"], ["node.hostname==n", "a==1", "b==2"]),
        ("n", ("node.hostname==n", "a==1"), ["node.hostname==n", "a==1"]),
    ],
)
def test_swarm_constraints(node, extra, expected):
    assert swarm_constraints(node, extra) == expected


SAFE = re.compile(r"^[a-z0-9_.-]+$")


@pytest.mark.parametrize("name", ["alice", "bob-2", "a.b_c", "123", "x", "lab.ml-gpu_01"])
def test_safe_names_are_kept(name):
    assert safe_name(name) == name
    assert safe_name(safe_name(name)) == name


UNSAFE = [
    "Alice",
    "alice ",
    " alice",
    "A b",
    "a b",
    "a  b",
    "A-B",
    "a@b",
    "a/b",
    "a\\b",
    "a:b",
    "a$b",
    "ä",
    "ö",
    "Ä",
    "",
    "-",
    ".",
    "-alice",
    "alice.",
    "..",
    "a b.",
    "日本",
    "alice@example.com",
    "Alice@Example.com",
    "a\x00b",
    "a\nb",
    "${USER}",
    "../etc",
    "<script>",
    "A" * 300,
]


def test_unsafe_names_are_made_safe_and_never_collide():
    results = {name: safe_name(name) for name in UNSAFE}
    for name, result in results.items():
        assert SAFE.match(result), (name, result)
        assert result != name
        assert result[0] not in "-." and result[-1] not in "-."
    assert len(set(results.values())) == len(UNSAFE)
    assert set(results.values()).isdisjoint(UNSAFE)


def test_safe_name_example():
    assert safe_name("Alice Smith") == "alice-smith-8ae10d"


@pytest.mark.parametrize("name", ["alice@example.com", "Alice Smith"])
def test_safe_name_of_unsafe_name_cannot_be_claimed_by_another_name(name):
    impostor = safe_name(name)
    assert safe_name(impostor) != safe_name(name)


# -- the form ---------------------------------------------------------------------
HOSTILE = "<script>alert(1)</script>"


def offer(name, images=("img/a",), in_use=0, **limits):
    return GroupOffer(name=name, limits=GroupLimits(**limits), in_use=in_use, images=images)


def test_form_escapes_hostile_names():
    bad_image = '"><img src=x onerror=alert(2)>'
    html = render_options_form(
        [offer(HOSTILE, images=(bad_image, "img/a")), offer('q" onfocus="x', images=("img/a",))],
        default_image="img/a",
    )
    for raw in (HOSTILE, bad_image, "<img", 'onfocus="x', "<script"):
        assert raw not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&quot;&gt;&lt;img src=x onerror=alert(2)&gt;" in html
    assert 'value="q&quot; onfocus=&quot;x"' in html


def test_form_selects_first_group_and_default_image():
    html = render_options_form(
        [
            offer(
                "zeta",
                images=("img/a", "img/b"),
                in_use=1,
                max_servers=3,
                mem_limit=8 * G,
                cpu_limit=2.0,
            ),
            offer("alpha", images=("img/b", "img/c")),
        ],
        default_image="img/b",
    )
    groups = re.findall(r'<option value="(\w+)"( selected)?>', html)
    assert groups == [("zeta", " selected"), ("alpha", "")]
    images = re.findall(r'<option value="(img/\w)"( selected)?>([^<]*)<', html)
    assert [(v, s) for v, s, _ in images] == [("img/a", ""), ("img/b", " selected"), ("img/c", "")]
    assert "(groups: zeta, alpha)" in images[1][2]
    assert "1/3 servers, up to 8G memory and 2 CPUs per server" in html
    assert "0/unlimited servers, up to unlimited memory and unlimited CPUs" in html
    assert 'name="gpus"' not in html


def test_form_gpu_field_uses_largest_cap():
    html = render_options_form([offer("a", gpus=1), offer("b", gpus=4)], "img/a")
    assert re.search(r'name="gpus" type="number" min="0" max="4"', html)


def test_form_names_the_floors():
    html = render_options_form([offer("a")], "img/a")
    assert "Memory (at least 64M, e.g. 2G;" in html
    assert "CPUs (at least 0.01, e.g. 1.5;" in html


def test_form_without_offers_is_empty():
    assert render_options_form([], "img/a") == ""


@pytest.mark.parametrize(
    ("formdata", "expected"),
    [
        ({}, {}),
        ({"group": [" lab "], "image": ["img/a"]}, {"group": "lab", "image": "img/a"}),
        ({"mem_limit": [""], "cpu_limit": ["  "], "gpus": []}, {}),
        (
            {"mem_limit": ["2G", "64G"], "cpu_limit": ["\t1.5\n"]},
            {"mem_limit": "2G", "cpu_limit": "1.5"},
        ),
        ({"gpus": ["1"], "evil": ["x"], "home": ["/"]}, {"gpus": "1"}),
        ({"group": None, "image": [""]}, {}),
    ],
)
def test_options_from_form(formdata, expected):
    assert options_from_form(formdata) == expected
