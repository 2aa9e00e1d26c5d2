"""Attacks on the spawner's floors and image lists, as ordinary users against the real stack.

Each attack goes through the Hub's REST API with the attacker's own token (the default
``self`` scope lets a user start their own server), or through the spawn page, and must be
refused with a 4xx and a message that says what to send instead, before any container
exists:

- a CPU limit below 0.01 or a memory limit below 64M (as options, form fields, or lowered by
  a group manager through the group's properties, where Docker would read 0 as "unlimited");
- an image that a group without an ``images`` list names (deny by default: the admin's
  default image only), also when a manager lists it in the group's properties;
- an ``allowed_images`` alias of an image that the group does not list.
"""

from __future__ import annotations

import contextlib
import html
import re
import secrets
from collections.abc import Iterator

import docker
import pytest
import requests

from latticehub import labels
from tests.docker.conftest import IMAGE
from tests.security.conftest import Stack, start_stack

GIB = 1024**3

#: lqcd lists the single-user image; nuclear has no images list (the default image only).
LIMITS = f"""
c.GroupLimitDockerSpawner.group_limits = {{
    "lqcd": {{"max_servers": 3, "mem_limit": "4G", "cpu_limit": 2.0, "images": [{IMAGE!r}]}},
    "nuclear": {{"max_servers": 2, "mem_limit": "2G", "cpu_limit": 1.0}},
}}
"""


def spawn_as(stack: Stack, user: str, options: dict) -> requests.Response:
    """POST /hub/api/users/{user}/server with the user's own ordinary token."""
    return requests.post(
        f"{stack.hub.api}/users/{user}/server",
        headers={"Authorization": f"token {stack.tokens[user]}"},
        json=options,
        timeout=60,
    )


def assert_refused(stack: Stack, user: str, options: dict, status: int, words: list[str]) -> None:
    """The spawn is refused with ``status``, a message holding ``words``, and no server."""
    r = spawn_as(stack, user, options)
    assert r.status_code == status, f"{options}: {r.status_code} {r.text}\n{stack.hub.tail()}"
    message = r.json()["message"]
    for word in words:
        assert word in message, (options, message)
    assert stack.hub.server(user) is None, f"{user} got a server for {options}"


def container_of(docker_client: docker.DockerClient, stack: Stack, user: str):
    """The one container of ``user`` started by this stack's Hub."""
    hub_id = stack.hub.env["LATTICEHUB_HUB_ID"]
    found = docker_client.containers.list(
        filters={"label": [f"{labels.HUB}={hub_id}", f"{labels.USER}={user}"]}
    )
    assert len(found) == 1, found
    return found[0]


def login(stack: Stack, user: str) -> requests.Session:
    """A browser-like session of ``user`` (the test Hub's dummy authenticator)."""
    session = requests.Session()
    page = session.get(f"{stack.hub.url}/hub/login", timeout=30)
    xsrf = session.cookies.get("_xsrf") or re.search(r'name="_xsrf" value="([^"]+)"', page.text)[1]
    r = session.post(
        f"{stack.hub.url}/hub/login?next=",
        data={"username": user, "password": "any", "_xsrf": xsrf},
        timeout=30,
    )
    r.raise_for_status()
    return session


@pytest.fixture
def unlisted_image(docker_client: docker.DockerClient) -> Iterator[str]:
    """A name of the single-user image that no list holds (a tag this test makes).

    It exists in the engine, so a spawn that slipped past the lists would really run it.
    """
    repository = f"lhtest-unlisted-{secrets.token_hex(3)}"
    docker_client.images.get(IMAGE).tag(repository, "latest")
    yield f"{repository}:latest"
    with contextlib.suppress(docker.errors.APIError):
        docker_client.images.remove(f"{repository}:latest", noprune=True)


def test_cpu_and_memory_below_the_floor_are_refused_in_the_api_and_the_spawn_page(stack):
    floors = [
        ({"cpu_limit": 0.001}, ["CPUs 0.001", "floor of 0.01 CPU", "at least 0.01"]),
        ({"cpu_limit": "1m"}, ["CPUs '1m'", "floor of 0.01 CPU"]),
        ({"cpu_limit": 0.009, "mem_limit": "1G"}, ["floor of 0.01 CPU"]),
        ({"mem_limit": "32M"}, ["Memory '32M'", "floor of 64M", "at least 64M"]),
        ({"mem_limit": "1M"}, ["floor of 64M"]),
        ({"mem_limit": 0}, ["Memory 0 ", "floor of 64M"]),
    ]
    for options, words in floors:
        assert_refused(stack, "ann", options, 400, words)
    assert_refused(stack, "eve", {"mem_limit": "63M"}, 400, ["'63M'", "floor of 64M"])

    # the same through the spawn form: the page says why, with the 4xx status
    session = login(stack, "mallory")
    form = session.get(f"{stack.hub.url}/hub/spawn", timeout=30)
    assert "at least 0.01" in html.unescape(form.text), form.text[-2000:]
    xsrf = re.search(r'xsrf_token: "([^"]+)"', form.text)[1]
    r = session.post(
        f"{stack.hub.url}/hub/spawn",
        data={"group": "lqcd", "cpu_limit": "0.001", "_xsrf": xsrf},
        timeout=60,
    )
    assert r.status_code == 400, r.text[-2000:]
    assert "CPUs '0.001' is below the floor of 0.01 CPU" in html.unescape(r.text)
    assert stack.hub.server("mallory") is None


def test_manager_lowering_below_the_floor_leaves_the_ceiling(stack, docker_client):
    # Docker reads memory 0 as "unlimited" and refuses a CPU quota below 1 ms: a group
    # manager who lowers to these values must not give the group unlimited memory, nor
    # break its spawns
    stack.hub.set_properties("lqcd", {"latticehub": {"mem_limit": 0, "cpu_limit": "1m"}})
    r = spawn_as(stack, "ann", {"group": "lqcd"})
    assert r.status_code in (201, 202), r.text
    stack.hub.wait_ready("ann")
    host = container_of(docker_client, stack, "ann").attrs["HostConfig"]
    # the spawner's defaults of jupyterhub_config.py (1G, 1 CPU), within lqcd's ceilings
    assert host["Memory"] == 1 * GIB and host["MemorySwap"] == 1 * GIB
    assert host["CpuQuota"] == 100_000 and host["CpuPeriod"] == 100_000
    assert "mem_limit=0 is below the floor of 64M" in stack.hub.log_path.read_text()


def test_group_without_images_runs_only_the_default_image(make_hub, unlisted_image):
    stack = start_stack(make_hub(LIMITS))
    words = [repr(unlisted_image), "'nuclear'", f"Allowed: {IMAGE}."]
    assert_refused(stack, "eve", {"image": unlisted_image}, 403, words)
    assert_refused(stack, "eve", {"image": "busybox:latest"}, 403, ["'busybox:latest'"])
    # a manager of the group cannot widen its images: the list is the default image alone
    stack.hub.set_properties("nuclear", {"latticehub": {"images": [IMAGE, unlisted_image]}})
    assert_refused(stack, "eve", {"image": unlisted_image}, 403, words)
    # a listed group is held to its list too
    assert_refused(stack, "ann", {"image": unlisted_image}, 403, [repr(unlisted_image)])


def test_alias_of_an_unlisted_image_is_refused(make_hub, unlisted_image, docker_client):
    aliases = {"stable": IMAGE, "sneaky": unlisted_image}
    stack = start_stack(
        make_hub(LIMITS + f"c.GroupLimitDockerSpawner.allowed_images = {aliases!r}\n")
    )
    alias = f"'sneaky' (an alias of {unlisted_image!r})"
    assert_refused(stack, "eve", {"image": "sneaky"}, 403, [alias, "'nuclear'"])
    assert_refused(stack, "mallory", {"image": "sneaky"}, 403, [alias, "'lqcd'"])
    assert_refused(stack, "mallory", {"image": unlisted_image}, 403, [repr(unlisted_image)])

    # an alias of a listed image resolves to that image and runs it
    r = spawn_as(stack, "mallory", {"image": "stable"})
    assert r.status_code in (201, 202), r.text
    stack.hub.wait_ready("mallory")
    container = container_of(docker_client, stack, "mallory")
    assert container.attrs["Config"]["Image"] == IMAGE
    env = dict(e.split("=", 1) for e in container.attrs["Config"]["Env"])
    assert env["JUPYTER_IMAGE_SPEC"] == IMAGE
