"""Declare the quotas service and its role in a Hub configuration (``jupyterhub_config.py``).

The service needs the admin's ceilings, which live on the spawner class in the Hub's
config. :func:`install` reads them from the config *as it stands when called* (after every
override), puts them in the service's environment as JSON and gives the service a role
whose write scope covers exactly the groups that have a share::

    from hub_ext.quotas.hubconfig import install as install_quotas
    install_quotas(c, Spawner, url="http://127.0.0.1:10102")

Call it last: a config that changes ``group_limits`` afterwards must call it again (it
replaces its own service entry and role, nothing else).
"""

from __future__ import annotations

import os
import sys
from typing import Any

from traitlets.config import Config

from latticehub.policy import POLICY_ENV

from ..common.hubconfig import (
    config_dict,
    config_list,
    policy_document,
    service_policy_env,
)

#: The service's name, URL prefix ``/services/quotas/``.
SERVICE = "quotas"
#: The name of the service's role.
ROLE = "quotas-service"
#: Read scopes: users with active servers and their groups, server models (user options,
#: start, activity, pending state), the spawner's queue gauges on ``/hub/metrics``.
READ_SCOPES = ("list:users", "read:users:groups", "read:servers", "read:metrics")
#: The custom scope that lets a service read every group's usage (jobs, artifact storage) on the
#: experiments service (its handlers check the same scope name).
USAGE_READ_SCOPE = "custom:latticehub-usage:read"
#: With ``LATTICEHUB_EXPERIMENTS_API`` set: call the experiments API, read usage only.
USAGE_SCOPES = ("access:services!service=experiments", USAGE_READ_SCOPE)
#: Docker client settings passed on from the Hub's environment, when set.
DOCKER_ENV = ("DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "DOCKER_CONFIG")
#: The Hub's environment the service also reads: where its usage record lives and the
#: tracking database with the batch jobs (the Hub starts services with a bare environment).
USAGE_ENV = (
    "LATTICEHUB_STATE",
    "LATTICEHUB_USAGE_DB",
    "LATTICEHUB_USAGE_INTERVAL",
)


def role_scopes(policy: dict[str, Any]) -> list[str]:
    """The service's least-privilege scopes for a policy document.

    Reading: :data:`READ_SCOPES`. Writing group properties needs the ``groups`` scope
    (JupyterHub has no narrower one for ``PUT /groups/{name}/properties``); it is
    filtered to the listed groups, or unfiltered when ``unlisted_group_limits`` gives
    every group a share.
    """
    if policy.get("unlisted_group_limits") is not None:
        return [*READ_SCOPES, "groups"]
    return [*READ_SCOPES, *(f"groups!group={g}" for g in policy.get("group_limits") or {})]


def install(
    c: Config,
    spawner_class: type | None = None,
    *,
    url: str | None = None,
    environment: dict[str, str] | None = None,
) -> None:
    """Add (or replace) the ``quotas`` service and its role in ``c``.

    Args:
        c: the Hub's config object (``get_config()``).
        spawner_class: the spawner class (default: ``c.JupyterHub.spawner_class``).
        url: where the service listens, e.g. ``http://127.0.0.1:10102`` (the proxy
            reaches it there; user containers never need it). Default: the URL of the
            ``quotas`` entry already in ``c`` (when called again after an override).
        environment: extra environment variables for the service.
    """
    if spawner_class is None:
        spawner_class = c.JupyterHub.spawner_class
    if not isinstance(spawner_class, type):
        raise ValueError("install(c, Spawner, ...): pass the spawner class itself")
    previous = [s for s in config_list(c.JupyterHub, "services") if s.get("name") == SERVICE]
    url = url or (previous[0].get("url") if previous else None)
    if not url:
        raise ValueError("install(c, ..., url='http://127.0.0.1:10102'): the service needs a URL")
    policy = policy_document(c, spawner_class)
    env = {k: v for p in previous for k, v in (p.get("environment") or {}).items()}
    env.update({k: os.environ[k] for k in DOCKER_ENV + USAGE_ENV if os.environ.get(k)})
    env.pop(POLICY_ENV, None)  # an earlier call's document, if the config dropped it
    env.update(service_policy_env(c, spawner_class, "LATTICEHUB_QUOTAS_POLICY"))
    env.update(environment or {})
    services = [s for s in config_list(c.JupyterHub, "services") if s.get("name") != SERVICE]
    services.append(
        {
            "name": SERVICE,
            "url": url,
            "command": [sys.executable, "-m", "hub_ext.quotas"],
            "environment": env,
            "oauth_no_confirm": True,
            # not in the Hub's Services menu, which shows every service a user may reach:
            # the header's "Quotas" link (hub_templates/page.html) shows only to managers
            "display": False,
            # the login token shows the service which groups the user may write (the
            # manager rule, docs/quotas.md); the service writes with its own token
            "oauth_client_allowed_scopes": ["groups"],
        }
    )
    c.JupyterHub.services = services
    scopes = role_scopes(policy)
    if env.get("LATTICEHUB_EXPERIMENTS_API"):
        # the pages show each group's jobs and artifact storage, read from the experiments API
        scopes += USAGE_SCOPES
        custom = config_dict(c.JupyterHub, "custom_scopes")
        custom[USAGE_READ_SCOPE] = {
            "description": "Read every group's usage on the experiments service: artifact "
            "storage and queued and running jobs (GET /api/v1/storage, GET /api/v1/jobs)"
        }
        c.JupyterHub.custom_scopes = custom
    roles = [r for r in config_list(c.JupyterHub, "load_roles") if r.get("name") != ROLE]
    roles.append(
        {
            "name": ROLE,
            "description": "Read servers, groups and queue gauges; lower the groups' limits",
            "scopes": scopes,
            "services": [SERVICE],
        }
    )
    c.JupyterHub.load_roles = roles
