"""Prometheus metrics of the group-limited spawners.

They live in prometheus_client's default registry, which JupyterHub serves on
``/hub/metrics``.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

GROUP_SERVERS = Gauge(
    "latticehub_group_servers",
    "Servers holding a slot of the group (starting or running)",
    ["group"],
)
GROUP_SERVER_LIMIT = Gauge(
    "latticehub_group_server_limit",
    "The group's effective max_servers (-1: unlimited)",
    ["group"],
)
GROUP_QUEUED = Gauge(
    "latticehub_group_spawns_queued",
    "Spawns waiting for a slot of the group",
    ["group"],
)
REJECTIONS = Counter(
    "latticehub_spawn_rejections",
    "Spawns refused by the group limits, by group and reason",
    ["group", "reason"],
)
ORPHANS = Gauge(
    "latticehub_orphaned_servers",
    "Containers/services labelled by this hub that no Hub server owns",
)
