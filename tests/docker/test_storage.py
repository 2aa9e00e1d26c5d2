"""Homes and group directories on the real engine: shared within a group, read-only where
the limits say so, and the home survives a restart of the server."""

from __future__ import annotations

import secrets

import pytest

from latticehub import labels

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def container_of(docker_client, hub, user):
    (found,) = docker_client.containers.list(
        filters={"label": [f"{labels.HUB}={hub.env['LATTICEHUB_HUB_ID']}", f"{labels.USER}={user}"]}
    )
    return found


def sh(container, command):
    result = container.exec_run(["bash", "-c", command])
    return result.exit_code, result.output.decode(errors="replace")


def test_group_dir_shared_readonly_and_persistent_home(make_hub, docker_client):
    tag = secrets.token_hex(3)
    config = f"""
c.GroupLimitDockerSpawner.group_limits = {{
    "lqcd": {{"max_servers": 3, "mem_limit": "512M", "shared_dir": "lhtest-{tag}-{{group}}"}},
    "viewers": {{"max_servers": 3, "mem_limit": "512M", "shared_dir": "lhtest-{tag}-lqcd",
                 "shared_readonly": True}},
}}
c.GroupLimitDockerSpawner.home_volume = "lhtest-{tag}-home-{{username}}"
"""
    hub = make_hub(config).start()
    hub.create_users(["ann", "ben", "vic"])
    hub.create_group("lqcd", ["ann", "ben"])
    hub.create_group("viewers", ["vic"])
    try:
        for user in ("ann", "ben", "vic"):
            assert hub.spawn(user).status_code in (201, 202)
        for user in ("ann", "ben", "vic"):
            hub.wait_ready(user)
        ann, ben, vic = (container_of(docker_client, hub, u) for u in ("ann", "ben", "vic"))
        assert sh(ann, "echo from-ann > /srv/group/note && echo mine > ~/home.txt")[0] == 0
        assert sh(ben, "cat /srv/group/note") == (0, "from-ann\n")
        assert sh(ben, "echo from-ben >> /srv/group/note")[0] == 0
        assert sh(vic, "cat /srv/group/note")[1] == "from-ann\nfrom-ben\n"
        code, out = sh(vic, "echo x > /srv/group/vic")
        assert code != 0 and "Read-only" in out
        assert sh(ben, "cat ~/home.txt")[0] != 0  # homes are per user

        # the home volume survives the server being recreated
        hub.stop_server("ann")
        assert hub.spawn("ann").status_code in (201, 202)
        hub.wait_ready("ann")
        assert sh(container_of(docker_client, hub, "ann"), "cat ~/home.txt") == (0, "mine\n")
    finally:
        for user in ("ann", "ben", "vic"):
            if hub.server(user) is not None:
                hub.stop_server(user)
        for volume in docker_client.volumes.list(filters={"name": f"lhtest-{tag}"}):
            volume.remove(force=True)
