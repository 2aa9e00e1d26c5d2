"""The demo login: users, groups and a group manager for trying latticehub on one machine.

``jupyterhub_config.py`` calls :func:`install` when ``$LATTICEHUB_DEMO`` is ``1`` (the
default): one shared password (printed at start), an admin, and the groups of the shipped
policy document (``etc/policy.toml``). Loopback only; production sets ``LATTICEHUB_DEMO=0``
and configures a real authenticator (README: PAM, OAuth).
"""

from __future__ import annotations

import os
import secrets
import sys

from traitlets.config import Config

from .common.hubconfig import config_list

#: Demo users and the groups they are in (alice is in both and manages lqcd).
GROUPS = {
    "lqcd": ["alice", "bob", "carol", "dave"],
    "nuclear": ["alice", "erin", "frank"],
}


def install(c: Config) -> None:
    """Configure the demo login on ``c`` (after ``c.JupyterHub.bind_url`` is set).

    Raises:
        SystemExit: the Hub would listen beyond loopback.
    """
    bind_url = c.JupyterHub.bind_url
    if not bind_url.startswith(("http://127.0.0.1", "http://localhost")):
        sys.exit("latticehub: the demo login is for loopback only; set LATTICEHUB_DEMO=0")
    password = os.environ.get("LATTICEHUB_DEMO_PASSWORD") or secrets.token_urlsafe(9)
    admin_password = secrets.token_urlsafe(32)
    c.JupyterHub.authenticator_class = "shared-password"
    c.SharedPasswordAuthenticator.user_password = password
    c.SharedPasswordAuthenticator.admin_password = admin_password
    c.Authenticator.allowed_users = {u for users in GROUPS.values() for u in users}
    c.Authenticator.admin_users = {"admin"}
    c.JupyterHub.load_groups = {g: {"users": u, "properties": {}} for g, u in GROUPS.items()}
    roles = config_list(c.JupyterHub, "load_roles")
    # a manager of lqcd may lower its values through the group's properties
    roles.append(
        {
            "name": "lqcd-manager",
            "description": "Lower the lqcd group's limits (group properties)",
            "scopes": [
                "groups!group=lqcd",
                "read:groups!group=lqcd",
                "access:services!service=quotas",
            ],
            "users": ["alice"],
        }
    )
    seed_token = os.environ.get("LATTICEHUB_DEMO_SEED_TOKEN")
    if seed_token:
        # scripts/up.sh starts frank's server with it, to show a full group
        c.JupyterHub.services = [
            *config_list(c.JupyterHub, "services"),
            {"name": "demo-seed", "api_token": seed_token},
        ]
        roles.append(
            {"name": "demo-seed", "scopes": ["servers!user=frank"], "services": ["demo-seed"]}
        )
    c.JupyterHub.load_roles = roles
    print(
        "\n"
        "  latticehub DEMO login (shared password, loopback only, NOT for production)\n"
        f"  URL:      {bind_url}\n"
        "  users:    alice (lqcd+nuclear), bob, carol, dave (lqcd); erin, frank (nuclear)\n"
        f"  password: {password}\n"
        f"  admin:    user 'admin', password {admin_password}\n",
        file=sys.stderr,
        flush=True,
    )
