"""Docker and Swarm resource settings for a decided request (pure)."""

from __future__ import annotations

from typing import Any


def docker_resources(
    *,
    mem_limit: int | None,
    cpu_limit: float | None,
    cpu_period: int = 100_000,
    pids_limit: int = 0,
) -> dict[str, Any]:
    """Host-config keys that enforce memory, CPU and process limits.

    ``memswap_limit`` equals ``mem_limit`` so that swap cannot extend the limit, and
    ``cpu_quota = cpu_limit * cpu_period``.

    >>> docker_resources(mem_limit=2**30, cpu_limit=1.5)
    {'mem_limit': 1073741824, 'memswap_limit': 1073741824, 'cpu_period': 100000, \
'cpu_quota': 150000}
    """
    config: dict[str, Any] = {}
    if mem_limit is not None:
        config["mem_limit"] = mem_limit
        config["memswap_limit"] = mem_limit
    if cpu_limit is not None:
        config["cpu_period"] = cpu_period
        config["cpu_quota"] = int(round(cpu_limit * cpu_period))
    if pids_limit and pids_limit > 0:
        config["pids_limit"] = pids_limit
    return config


def hardening() -> dict[str, Any]:
    """Host-config keys every user container gets, whatever the configuration says.

    Not privileged, no Linux capabilities, no privilege gain through setuid binaries.
    """
    return {
        "privileged": False,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
    }


#: Host-config keys that would let a container escape its limits; dropped from
#: ``extra_host_config`` with a warning.
UNSAFE_HOST_CONFIG = ("privileged", "cap_add", "pid_mode", "ipc_mode", "userns_mode", "devices")


def drop_unsafe(host_config: dict[str, Any]) -> list[str]:
    """Remove :data:`UNSAFE_HOST_CONFIG` keys in place; return the removed keys.

    >>> cfg = {"privileged": True, "shm_size": "1G"}
    >>> drop_unsafe(cfg), cfg
    (['privileged'], {'shm_size': '1G'})
    """
    removed = [k for k in UNSAFE_HOST_CONFIG if k in host_config]
    for key in removed:
        del host_config[key]
    return removed


def swarm_resources(*, mem_limit: int | None, cpu_limit: float | None) -> dict[str, Any]:
    """Keyword arguments for ``docker.types.Resources`` (limits and equal reservations).

    Reserving what is limited makes Swarm place a server only where it fits.

    >>> swarm_resources(mem_limit=2**30, cpu_limit=0.5)["cpu_limit"]
    500000000
    """
    config: dict[str, Any] = {}
    if mem_limit is not None:
        config["mem_limit"] = mem_limit
        config["mem_reservation"] = mem_limit
    if cpu_limit is not None:
        config["cpu_limit"] = int(round(cpu_limit * 1e9))
        config["cpu_reservation"] = int(round(cpu_limit * 1e9))
    return config


def swarm_constraints(node: str, extra: tuple[str, ...] | list[str]) -> list[str]:
    """Placement constraints: pin to ``node`` (if chosen) plus the group's own ones.

    >>> swarm_constraints("gpu01", ["node.labels.ib==true"])
    ['node.hostname==gpu01', 'node.labels.ib==true']
    """
    constraints = [f"node.hostname=={node}"] if node else []
    return constraints + [c for c in extra if c not in constraints]
