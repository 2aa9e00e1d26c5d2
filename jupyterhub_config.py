# latticehub: JupyterHub configuration.
#
# Runs as-is on the embedded defaults: SQLite, the local Docker engine, the Hub on
# http://127.0.0.1:8000 with demo groups and users. Settings switch to production parts:
#
#   LATTICEHUB_DB_URL       Hub database, e.g. postgresql://hub:pw@db/jupyterhub (default SQLite)
#   LATTICEHUB_SPAWNER      "docker" (default) or "swarm"
#   LATTICEHUB_BIND_URL     public URL (default http://127.0.0.1:8000)
#   LATTICEHUB_NETWORK      Docker network of user containers (default "latticehub")
#   LATTICEHUB_HUB_IP       address containers use to reach the Hub API (default: the
#                           network's gateway); the Hub API binds there
#   LATTICEHUB_IMAGE        single-user image (default latticehub/singleuser:latest)
#   LATTICEHUB_DEMO         "1" (default): a shared demo password (printed) and
#                           seeded demo groups; "0": configure a real authenticator in
#                           jupyterhub_config.d/ (README: PAM, OAuth)
#   LATTICEHUB_STATE        directory for the SQLite file and cookie secret
#
# Each jupyterhub_config.d/*.py is loaded last, in name order (site overrides).
import glob
import json
import os
import secrets
import sys

import docker

from spawner import GroupLimitDockerSpawner, GroupLimitSwarmSpawner

c = get_config()  # noqa: F821 - provided by JupyterHub

HERE = os.path.dirname(os.path.abspath(__file__))
STATE = os.environ.get("LATTICEHUB_STATE", os.path.join(HERE, "run"))
os.makedirs(STATE, exist_ok=True)
NETWORK = os.environ.get("LATTICEHUB_NETWORK", "latticehub")
IMAGE = os.environ.get("LATTICEHUB_IMAGE", "latticehub/singleuser:latest")
DEMO = os.environ.get("LATTICEHUB_DEMO", "1") == "1"


def network_gateway(name: str) -> str:
    """The host's address on a Docker network: containers reach the Hub API there."""
    try:
        net = docker.from_env(timeout=10).networks.get(name)
        return net.attrs["IPAM"]["Config"][0]["Gateway"]
    except Exception as e:  # the message says what to run
        sys.exit(
            f"latticehub: cannot read Docker network {name!r} ({e}). Start the engine and "
            f"create it with `scripts/services.sh start`, or set LATTICEHUB_HUB_IP."
        )


# -- Hub --------------------------------------------------------------------------
c.JupyterHub.bind_url = os.environ.get("LATTICEHUB_BIND_URL", "http://127.0.0.1:8000")
HUB_IP = os.environ.get("LATTICEHUB_HUB_IP") or network_gateway(NETWORK)
c.JupyterHub.hub_bind_url = f"http://{HUB_IP}:{os.environ.get('LATTICEHUB_HUB_PORT', '8081')}"
c.JupyterHub.hub_connect_ip = HUB_IP
c.JupyterHub.db_url = os.environ.get(
    "LATTICEHUB_DB_URL", f"sqlite:///{os.path.join(STATE, 'jupyterhub.sqlite')}"
)
c.JupyterHub.cookie_secret_file = os.path.join(STATE, "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = os.path.join(STATE, "jupyterhub.pid")
c.ConfigurableHTTPProxy.pid_file = os.path.join(STATE, "jupyterhub-proxy.pid")
# servers keep running across Hub restarts; the spawner rebuilds its ledger from labels
c.JupyterHub.cleanup_servers = False
c.JupyterHub.authenticate_prometheus = True
# the Hub's pages link to the experiments dashboard (nav bar "Experiments", home page)
c.JupyterHub.template_paths = [os.path.join(HERE, "hub_ext", "hub_templates")]

# -- Spawner ----------------------------------------------------------------------
swarm = os.environ.get("LATTICEHUB_SPAWNER", "docker") == "swarm"
Spawner = GroupLimitSwarmSpawner if swarm else GroupLimitDockerSpawner
c.JupyterHub.spawner_class = Spawner
s = c[Spawner.__name__]
s.image = IMAGE
s.network_name = "" if swarm else NETWORK
s.use_internal_ip = False  # the proxy reaches servers on 127.0.0.1:<published port>
s.host_ip = "127.0.0.1"
s.pull_policy = "never"  # images are built locally (images/build.sh); no registry
s.mem_limit = "1G"  # default per server; clamped to the group's ceiling
s.cpu_limit = 1.0
s.start_timeout = 120
s.http_timeout = 60
s.group_limits = {
    "lqcd": {
        "max_servers": 3,
        "max_servers_per_user": 1,
        "mem_limit": "4G",
        "cpu_limit": 2.0,
        "gpus": 1,
        "images": [IMAGE],
        "shared_dir": "latticehub-group-{group}",
    },
    "nuclear": {
        "max_servers": 1,
        "mem_limit": "2G",
        "cpu_limit": 1.0,
        "images": [IMAGE],
        "shared_dir": "latticehub-group-{group}",
        "shared_readonly": False,
    },
}
# users in no listed group are refused with a message that says whom to ask
s.no_group_limits = None

# -- Jobs (the experiments service's /api/v1/jobs) -----------------------------------------
# What each group may launch to the batch nodes; "*" is every other group. Mirrors the
# spawner's group limits: admins set ceilings here, per group. Jobs never run as the service:
# "docker" runs each job in a container from the group's own single-user image as the user's
# uid; "slurm" submits as the user's own account (LATTICEHUB_SLURM_PREFIX, e.g.
# "sudo -u {username}", and LATTICEHUB_SYSTEM_USERNAME map Hub users to cluster accounts).
JOB_LIMITS = {
    "*": {"executors": ["docker"], "max_jobs": 2, "max_cpus": 2, "max_time": "1:00:00"},
    "lqcd": {
        "executors": ["docker", "slurm"],
        "partitions": ["debug", "long"],
        "max_jobs": 4,
        "max_cpus": 2,
        "max_mem": "4G",
        "max_time": "2:00:00",
    },
}
SLURM_PREFIX = os.environ.get("LATTICEHUB_SLURM_PREFIX", "")
# the slurm executor only where jobs can be submitted as their users' accounts
EXECUTORS = os.environ.get("LATTICEHUB_EXECUTORS") or ("docker,slurm" if SLURM_PREFIX else "docker")


def group_images() -> dict[str, str]:
    """Each group's job image: the first image its servers may run (else the default)."""
    images = {"*": IMAGE}
    for group, limits in (s.get("group_limits") or {}).items():
        if isinstance(limits, dict) and limits.get("images"):
            images[group] = limits["images"][0]
    return images


# -- Services -----------------------------------------------------------------------
# experiments: tracking API (Hub OAuth for browsers, Hub tokens for programs). Its own
# token may only read user names and groups (to check group membership).
EXPERIMENTS_PORT = int(os.environ.get("LATTICEHUB_EXPERIMENTS_PORT", "10101"))
# It listens where the Hub API does (the user containers' network gateway), so that notebook
# panels and the tracking client in a user's container reach it directly; every request
# still needs a Hub token or the Hub OAuth cookie.
EXPERIMENTS_URL = f"http://{HUB_IP}:{EXPERIMENTS_PORT}"
TRACKING_DB = os.environ.get(
    "LATTICEHUB_TRACKING_DB", f"sqlite:///{os.path.join(STATE, 'tracking.sqlite')}"
)
# artifact storage caps (JSON, ExperimentsApp.artifact_quota); the demo caps each group
ARTIFACT_QUOTAS = os.environ.get("LATTICEHUB_ARTIFACT_QUOTAS") or (
    json.dumps({"*": "20G", "~": "5G"}) if DEMO else "{}"
)
c.Spawner.environment = {
    "LATTICEHUB_TRACKING_URL": f"{EXPERIMENTS_URL}/services/experiments",
}
c.JupyterHub.services = [
    {
        "name": "experiments",
        "url": EXPERIMENTS_URL,
        "command": [sys.executable, "-m", "hub_ext.experiments"],
        "environment": {
            "LATTICEHUB_TRACKING_DB": TRACKING_DB,
            "LATTICEHUB_ARTIFACT_DIR": os.environ.get(
                "LATTICEHUB_ARTIFACT_DIR", os.path.join(STATE, "artifacts")
            ),
            # jobs: executors, per-group job limits (JSON), job directories
            "LATTICEHUB_EXECUTORS": EXECUTORS,
            "LATTICEHUB_JOB_LIMITS": os.environ.get(
                "LATTICEHUB_JOB_LIMITS", json.dumps(JOB_LIMITS)
            ),
            "LATTICEHUB_JOBS_DIR": os.environ.get(
                "LATTICEHUB_JOBS_DIR", os.path.join(STATE, "jobs")
            ),
            "LATTICEHUB_SLURM_PREFIX": SLURM_PREFIX,
            "LATTICEHUB_SYSTEM_USERNAME": os.environ.get(
                "LATTICEHUB_SYSTEM_USERNAME", "{username}"
            ),
            # the Python of slurm jobs, one every account can run (scripts/services.sh jobpython)
            **{k: os.environ[k] for k in ["LATTICEHUB_JOB_PYTHON"] if os.environ.get(k)},
            # docker jobs: the group's image, on the user containers' network, labelled with
            # this hub's id; they reach the service at its address on that network
            "LATTICEHUB_JOB_IMAGES": json.dumps(group_images()),
            # with the Swarm spawner, docker jobs are Swarm services (on no network: they
            # reach the service through their node's gateway, as the servers do)
            "LATTICEHUB_NETWORK": "" if swarm else NETWORK,
            "LATTICEHUB_JOB_SWARM": "1" if swarm else "",
            "LATTICEHUB_HUB_ID": os.environ.get("LATTICEHUB_HUB_ID", "latticehub"),
            "LATTICEHUB_JOB_TRACKING_URL": f"{EXPERIMENTS_URL}/services/experiments",
            # live streams: open streams per user, and how often a stream re-checks access
            "LATTICEHUB_LIVE_MAX_STREAMS": os.environ.get("LATTICEHUB_LIVE_MAX_STREAMS", "10"),
            "LATTICEHUB_LIVE_RECHECK_S": os.environ.get("LATTICEHUB_LIVE_RECHECK_S", "30"),
            # artifact storage cap per group ("*": groups not listed, "~": private projects)
            "LATTICEHUB_ARTIFACT_QUOTAS": ARTIFACT_QUOTAS,
            # seconds without a heartbeat before a RUNNING run is marked LOST
            "LATTICEHUB_HEARTBEAT_TIMEOUT": os.environ.get("LATTICEHUB_HEARTBEAT_TIMEOUT", "180"),
        },
        "oauth_no_confirm": True,
        # a group manager's browser session carries their groups!group=<g> scope, so that the
        # dashboard lets them transfer their group's projects (nobody else gets more)
        "oauth_client_allowed_scopes": ["groups"],
    }
]
c.JupyterHub.load_roles = [
    {
        "name": "experiments-service",
        # least privilege: job tokens are the service's own (bound to one run), never Hub
        # tokens, so the service holds no "tokens" scope and cannot act as any user
        "description": "Read user names and groups",
        "scopes": ["read:users:name", "read:users:groups"],
        "services": ["experiments"],
    },
    {
        # every user may use the experiments service
        "name": "user",
        "scopes": ["self", "access:services!service=experiments"],
    },
]
# notebook servers' tokens may call the experiments API as their user
c.Spawner.server_token_scopes = [
    "users:activity!user",
    "access:servers!server",
    "access:services!service=experiments",
]

# -- Demo users and groups (loopback only) ---------------------------------------------
if DEMO:
    password = os.environ.get("LATTICEHUB_DEMO_PASSWORD") or secrets.token_urlsafe(9)
    admin_password = secrets.token_urlsafe(32)
    c.JupyterHub.authenticator_class = "shared-password"
    c.SharedPasswordAuthenticator.user_password = password
    c.SharedPasswordAuthenticator.admin_password = admin_password
    c.Authenticator.allowed_users = {"alice", "bob", "carol", "dave", "erin", "frank"}
    c.Authenticator.admin_users = {"admin"}
    c.JupyterHub.load_groups = {
        "lqcd": {"users": ["alice", "bob", "carol", "dave"], "properties": {}},
        "nuclear": {"users": ["alice", "erin", "frank"], "properties": {}},
    }
    # a manager of lqcd may lower its values through the group's properties
    c.JupyterHub.load_roles.append(
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
        c.JupyterHub.services.append({"name": "demo-seed", "api_token": seed_token})
        c.JupyterHub.load_roles.append(
            {"name": "demo-seed", "scopes": ["servers!user=frank"], "services": ["demo-seed"]}
        )
    if not c.JupyterHub.bind_url.startswith(("http://127.0.0.1", "http://localhost")):
        sys.exit("latticehub: the demo login is for loopback only; set LATTICEHUB_DEMO=0")
    print(
        "\n"
        "  latticehub DEMO login (shared password, loopback only, NOT for production)\n"
        f"  URL:      {c.JupyterHub.bind_url}\n"
        "  users:    alice (lqcd+nuclear), bob, carol, dave (lqcd); erin, frank (nuclear)\n"
        f"  password: {password}\n"
        f"  admin:    user 'admin', password {admin_password}\n",
        file=sys.stderr,
        flush=True,
    )

for path in sorted(glob.glob(os.path.join(HERE, "jupyterhub_config.d", "*.py"))):
    load_subconfig(path)  # noqa: F821 - provided by traitlets

# -- quotas service (docs/quotas.md) ----------------------------------------------------
# Usage against the limits per group and node, for admins and group managers, at
# /services/quotas/; managers lower their group's values there. Declared after the site
# overrides so that it carries the final group_limits; a config that changes group_limits
# after loading this file calls install_quotas(c) again. It adds the service and its role
# "quotas-service" (read users, servers, metrics; write the listed groups' properties).
# Managers need the scope access:services!service=quotas beside groups!group=<name>.
from hub_ext.quotas.hubconfig import install as install_quotas  # noqa: E402

QUOTAS_PORT = int(os.environ.get("LATTICEHUB_QUOTAS_PORT") or EXPERIMENTS_PORT + 1)
install_quotas(
    c,
    Spawner,
    url=f"http://127.0.0.1:{QUOTAS_PORT}",
    # its usage record (usage.sqlite) beside the Hub's database, unless LATTICEHUB_USAGE_DB
    environment={
        "LATTICEHUB_STATE": STATE,
        # each group's batch jobs and artifact storage, read from the experiments API with
        # the service's own token (custom:latticehub-usage:read), never from its database
        "LATTICEHUB_EXPERIMENTS_API": f"{EXPERIMENTS_URL}/services/experiments",
    },
)

# -- culler service: idle culling per group (docs/culling.md) ---------------------------
# Stops idle servers with each group's own timeouts, read from these group_limits keys
# (seconds): idle_timeout, idle_timeout_busy (used instead while the group holds >= 80% of
# its max_servers) and max_age (stopped even if active). Groups without them are never
# culled; when no group has them, no service is declared. It runs jupyterhub-idle-culler's
# cull_idle every LATTICEHUB_CULL_INTERVAL seconds (default 60) with a per-group decision.
# Its role "culler-service" is filtered to the groups with idle settings: list:users,
# read:users:groups, read:servers, read:groups, delete:servers, each "!group=<name>".
# Declared last, like quotas: a config that changes group_limits afterwards calls
# install_culling(c) again.
from hub_ext.culling.hubconfig import install as install_culling  # noqa: E402

if DEMO:
    # the demo groups: 1 h idle (15 min while the group is busy), at most 12 h per server;
    # values set for them in jupyterhub_config.d/ win
    _limits = s.get("group_limits")
    for _name in ("lqcd", "nuclear"):
        if isinstance(_limits, dict) and isinstance(_limits.get(_name), dict):
            _idle = {"idle_timeout": 3600, "idle_timeout_busy": 900, "max_age": 12 * 3600}
            _limits[_name] = {**_idle, **_limits[_name]}
    install_quotas(c)  # again: the quotas service shows the same limits, idle keys included
install_culling(
    c,
    Spawner,
    interval=float(os.environ["LATTICEHUB_CULL_INTERVAL"])
    if os.environ.get("LATTICEHUB_CULL_INTERVAL")
    else None,
)
