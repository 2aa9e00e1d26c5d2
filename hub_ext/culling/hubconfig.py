"""Declare the ``culler`` service and its role in a Hub configuration (``jupyterhub_config.py``).

As the quotas service's ``install`` does, :func:`install` reads the spawner's limit settings
from the config *as it stands when called* (the same document the quotas service gets), puts
them in the service's environment as JSON and gives the service a role whose scopes are
filtered to exactly the groups that have idle settings::

    from hub_ext.culling.hubconfig import install as install_culling
    install_culling(c, Spawner)

Call it last: a config that changes ``group_limits`` afterwards must call it again (it
replaces its own service entry and role, nothing else).
"""

from __future__ import annotations

import sys
from typing import Any

from traitlets.config import Config

from hub_ext.common.hubconfig import (
    config_list,
    policy_document,
    service_policy_env,
)
from latticehub.policy import POLICY_ENV, parse_policy

from .plan import has_idle_settings

#: The service's name (it has no URL: it only calls the Hub API).
SERVICE = "culler"
#: The name of the service's role.
ROLE = "culler-service"
#: What the service does with the Hub API: list active users with their groups and server
#: models (``user_options``, ``started``, ``last_activity``), read the groups' properties (a
#: manager's lowered ``max_servers``), stop servers.
BASE_SCOPES = (
    "list:users",
    "read:users:groups",
    "read:servers",
    "read:groups",
    "delete:servers",
)


def culled_groups(policy: dict[str, Any]) -> list[str] | None:
    """Groups whose servers the culler may stop, from a policy document.

    Returns:
        The listed groups with idle settings, in the admin's order, or ``None`` when
        ``unlisted_group_limits`` or ``no_group_limits`` has idle settings: those pools
        are not known by name (or have no group at all), so scopes cannot be filtered.
    """
    parsed = parse_policy(policy)
    if has_idle_settings(parsed.unlisted) or has_idle_settings(parsed.no_group):
        return None
    return [g for g, limits in parsed.ceilings.items() if has_idle_settings(limits)]


def role_scopes(policy: dict[str, Any]) -> list[str]:
    """The service's least-privilege scopes for a policy document.

    Each of :data:`BASE_SCOPES` filtered by ``!group=<g>`` for every group with idle
    settings; unfiltered when :func:`culled_groups` returns ``None``.
    """
    groups = culled_groups(policy)
    if groups is None:
        return list(BASE_SCOPES)
    return [f"{scope}!group={g}" for scope in BASE_SCOPES for g in groups]


def install(
    c: Config,
    spawner_class: type | None = None,
    *,
    interval: float | None = None,
    busy_fraction: float | None = None,
    environment: dict[str, str] | None = None,
) -> bool:
    """Add (or replace) the ``culler`` service and its role in ``c``.

    With no group that sets ``idle_timeout``, ``idle_timeout_busy`` or ``max_age``, the
    service and its role are removed instead (nothing would be culled).

    Args:
        c: the Hub's config object (``get_config()``).
        spawner_class: the spawner class (default: ``c.JupyterHub.spawner_class``).
        interval: seconds between two rounds (default: the service's own, 60, or the
            value given to an earlier call).
        busy_fraction: share of ``max_servers`` from which a group is busy (default: the
            service's own, 0.8, or the value given to an earlier call).
        environment: extra environment variables for the service.

    Returns:
        Whether the service was declared.
    """
    if spawner_class is None:
        spawner_class = c.JupyterHub.spawner_class
    if not isinstance(spawner_class, type):
        raise ValueError("install(c, Spawner, ...): pass the spawner class itself")
    previous = [s for s in config_list(c.JupyterHub, "services") if s.get("name") == SERVICE]
    services = [s for s in config_list(c.JupyterHub, "services") if s.get("name") != SERVICE]
    roles = [r for r in config_list(c.JupyterHub, "load_roles") if r.get("name") != ROLE]
    policy = policy_document(c, spawner_class)
    if culled_groups(policy) == []:
        c.JupyterHub.services = services
        c.JupyterHub.load_roles = roles
        return False
    env = {k: v for p in previous for k, v in (p.get("environment") or {}).items()}
    env.pop(POLICY_ENV, None)  # an earlier call's document, if the config dropped it
    env.update(service_policy_env(c, spawner_class, "LATTICEHUB_CULLING_POLICY"))
    if interval is not None:
        env["LATTICEHUB_CULL_INTERVAL"] = str(interval)
    if busy_fraction is not None:
        env["LATTICEHUB_CULL_BUSY_FRACTION"] = str(busy_fraction)
    env.update(environment or {})
    services.append(
        {
            "name": SERVICE,
            "command": [sys.executable, "-m", "hub_ext.culling"],
            "environment": env,
        }
    )
    c.JupyterHub.services = services
    roles.append(
        {
            "name": ROLE,
            "description": "Stop idle servers of the groups with idle settings (culler)",
            "scopes": role_scopes(policy),
            "services": [SERVICE],
        }
    )
    c.JupyterHub.load_roles = roles
    return True
