"""Declare the ``experiments`` service, its roles and the servers' access in a Hub config.

As the quotas and culling services' ``install`` do, :func:`install` adds (or replaces) the
service entry and its roles, so ``jupyterhub_config.py`` says only where things are::

    from hub_ext.experiments.hubconfig import install as install_experiments
    install_experiments(c, url="http://172.18.0.1:10101", state="/var/lib/latticehub",
                        policy_file="/etc/latticehub/policy.toml")

The service reads the groups' job limits and artifact caps from the policy document (the
spawner's ``policy_file``, passed as ``$LATTICEHUB_POLICY``); every other setting is passed
on from the Hub's environment when set (``LATTICEHUB_*``, docs/config.md), else takes the
default given here.
"""

from __future__ import annotations

import json
import os
import sys

from traitlets.config import Config

from latticehub.policy import POLICY_ENV

from ..common.hubconfig import config_dict, config_list

#: The service's name, URL prefix ``/services/experiments/``.
SERVICE = "experiments"
#: The service's role: it reads user names and groups (membership checks), nothing more. Job
#: tokens are its own (bound to one run), never Hub tokens, so it holds no ``tokens`` scope.
ROLE = "experiments-service"
SERVICE_SCOPES = ("read:users:name", "read:users:groups")
#: Every user may use the service; notebook servers' tokens may call it as their user.
USER_SCOPES = ("self", "access:services!service=experiments")
SERVER_TOKEN_SCOPES = (
    "users:activity!user",
    "access:servers!server",
    "access:services!service=experiments",
)
#: Settings passed on from the Hub's environment (their defaults are the service's own).
PASSED_ON = (
    "LATTICEHUB_SYSTEM_USERNAME",
    "LATTICEHUB_JOB_PYTHON",
    "LATTICEHUB_LIVE_MAX_STREAMS",
    "LATTICEHUB_LIVE_RECHECK_S",
    "LATTICEHUB_HEARTBEAT_TIMEOUT",
    # the old spellings of the policy document's jobs and artifacts sections (deprecated)
    "LATTICEHUB_JOB_LIMITS",
    "LATTICEHUB_ARTIFACT_QUOTAS",
)


def install(
    c: Config,
    *,
    url: str,
    state: str,
    policy_file: str = "",
    network: str = "",
    swarm: bool = False,
    job_images: dict[str, str] | None = None,
    environment: dict[str, str] | None = None,
) -> None:
    """Add (or replace) the ``experiments`` service, its roles and the servers' access.

    Args:
        c: the Hub's config object (``get_config()``).
        url: where the service listens, e.g. ``http://172.18.0.1:10101``: the user
            containers' network gateway, so that notebooks and jobs reach it directly.
        state: directory of the default tracking database, artifacts and job directories.
        policy_file: the deployment's policy document (the spawner's ``policy_file``).
        network: the Docker network of docker jobs ("" with Swarm: jobs reach the service
            through their node's gateway, as the servers do).
        swarm: run docker jobs as Swarm services.
        job_images: each group's job image (``"*"``: every other group).
        environment: extra environment variables for the service (win over the rest).
    """
    api = f"{url}/services/{SERVICE}"
    env = {k: os.environ[k] for k in PASSED_ON if os.environ.get(k)}
    prefix = os.environ.get("LATTICEHUB_SLURM_PREFIX", "")
    env.update(
        {
            "LATTICEHUB_TRACKING_DB": os.environ.get(
                "LATTICEHUB_TRACKING_DB", f"sqlite:///{os.path.join(state, 'tracking.sqlite')}"
            ),
            "LATTICEHUB_ARTIFACT_DIR": os.environ.get(
                "LATTICEHUB_ARTIFACT_DIR", os.path.join(state, "artifacts")
            ),
            "LATTICEHUB_JOBS_DIR": os.environ.get(
                "LATTICEHUB_JOBS_DIR", os.path.join(state, "jobs")
            ),
            # slurm only where jobs can be submitted as their users' accounts
            "LATTICEHUB_EXECUTORS": os.environ.get("LATTICEHUB_EXECUTORS")
            or ("docker,slurm" if prefix else "docker"),
            "LATTICEHUB_SLURM_PREFIX": prefix,
            "LATTICEHUB_JOB_IMAGES": json.dumps(job_images or {}),
            "LATTICEHUB_NETWORK": "" if swarm else network,
            "LATTICEHUB_JOB_SWARM": "1" if swarm else "",
            "LATTICEHUB_HUB_ID": os.environ.get("LATTICEHUB_HUB_ID", "latticehub"),
            "LATTICEHUB_JOB_TRACKING_URL": api,
        }
    )
    if policy_file:
        env[POLICY_ENV] = policy_file
    env.update(environment or {})
    services = [s for s in config_list(c.JupyterHub, "services") if s.get("name") != SERVICE]
    services.append(
        {
            "name": SERVICE,
            "url": url,
            "command": [sys.executable, "-m", "hub_ext.experiments"],
            "environment": env,
            "oauth_no_confirm": True,
            # a group manager's browser session carries their groups!group=<g> scope, so that
            # the dashboard lets them transfer their group's projects (nobody else gets more)
            "oauth_client_allowed_scopes": ["groups"],
        }
    )
    c.JupyterHub.services = services
    ours = (ROLE, "user")
    roles = [r for r in config_list(c.JupyterHub, "load_roles") if r.get("name") not in ours]
    roles += [
        {
            "name": ROLE,
            "description": "Read user names and groups",
            "scopes": list(SERVICE_SCOPES),
            "services": [SERVICE],
        },
        {"name": "user", "scopes": list(USER_SCOPES)},
    ]
    c.JupyterHub.load_roles = roles
    environment = config_dict(c.Spawner, "environment")
    c.Spawner.environment = {**environment, "LATTICEHUB_TRACKING_URL": api}
    c.Spawner.server_token_scopes = list(SERVER_TOKEN_SCOPES)
