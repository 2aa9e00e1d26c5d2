# latticehub: JupyterHub configuration.
#
# Runs as-is on the embedded defaults: SQLite, the local Docker engine, the Hub on
# http://127.0.0.1:8000 with demo groups and users. What each group may use (servers, jobs,
# idle rules, artifact storage) is the policy document, not this file (docs/policy.md).
# Settings switch to production parts:
#
#   LATTICEHUB_POLICY       the policy document (default etc/policy.toml)
#   LATTICEHUB_DB_URL       Hub database, e.g. postgresql://hub:pw@db/jupyterhub (default SQLite)
#   LATTICEHUB_SPAWNER      "docker" (default) or "swarm"
#   LATTICEHUB_BIND_URL     public URL (default http://127.0.0.1:8000)
#   LATTICEHUB_NETWORK      Docker network of user containers (default "latticehub")
#   LATTICEHUB_HUB_IP       address containers use to reach the Hub API (default: the
#                           network's gateway); the Hub API and experiments service bind there
#   LATTICEHUB_IMAGE        single-user image (default latticehub/singleuser:latest)
#   LATTICEHUB_DEMO         "1" (default): a shared demo password (printed) and seeded demo
#                           groups; "0": configure a real authenticator in jupyterhub_config.d/
#   LATTICEHUB_STATE        directory for the SQLite files, artifacts, jobs, cookie secret
#   (more in docs/config.md: ports, executors, Slurm, live streams, culling interval)
#
# Each jupyterhub_config.d/*.py is loaded before the services are declared, in name order
# (site overrides); the services read the policy and settings as they stand then.
import glob
import os
import sys

import docker

from hub_ext import demo
from hub_ext.culling.hubconfig import install as install_culling
from hub_ext.experiments.hubconfig import install as install_experiments
from hub_ext.quotas.hubconfig import install as install_quotas
from latticehub.policy import load_policy
from spawner import GroupLimitDockerSpawner, GroupLimitSwarmSpawner

c = get_config()  # noqa: F821 - provided by JupyterHub

HERE = os.path.dirname(os.path.abspath(__file__))
env = os.environ.get
STATE = env("LATTICEHUB_STATE", os.path.join(HERE, "run"))
os.makedirs(STATE, exist_ok=True)
NETWORK = env("LATTICEHUB_NETWORK", "latticehub")
IMAGE = env("LATTICEHUB_IMAGE", "latticehub/singleuser:latest")
POLICY = env("LATTICEHUB_POLICY") or os.path.join(HERE, "etc", "policy.toml")


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
c.JupyterHub.bind_url = env("LATTICEHUB_BIND_URL", "http://127.0.0.1:8000")
HUB_IP = env("LATTICEHUB_HUB_IP") or network_gateway(NETWORK)
c.JupyterHub.hub_bind_url = f"http://{HUB_IP}:{env('LATTICEHUB_HUB_PORT', '8081')}"
c.JupyterHub.hub_connect_ip = HUB_IP
c.JupyterHub.db_url = env("LATTICEHUB_DB_URL", f"sqlite:///{STATE}/jupyterhub.sqlite")
c.JupyterHub.cookie_secret_file = os.path.join(STATE, "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = os.path.join(STATE, "jupyterhub.pid")
c.ConfigurableHTTPProxy.pid_file = os.path.join(STATE, "jupyterhub-proxy.pid")
# servers keep running across Hub restarts; the spawner rebuilds its ledger from labels
c.JupyterHub.cleanup_servers = False
c.JupyterHub.authenticate_prometheus = True
# the Hub's pages link to the experiments dashboard (nav bar "Experiments", home page)
c.JupyterHub.template_paths = [os.path.join(HERE, "hub_ext", "hub_templates")]

# -- Spawner: the groups' ceilings come from the policy document ---------------------
swarm = env("LATTICEHUB_SPAWNER", "docker") == "swarm"
Spawner = GroupLimitSwarmSpawner if swarm else GroupLimitDockerSpawner
c.JupyterHub.spawner_class = Spawner
s = c[Spawner.__name__]
s.policy_file = POLICY
s.image = IMAGE
s.network_name = "" if swarm else NETWORK
s.use_internal_ip = False  # the proxy reaches servers on 127.0.0.1:<published port>
s.host_ip = "127.0.0.1"
s.pull_policy = "never"  # images are built locally (images/build.sh); no registry
s.mem_limit = "1G"  # default per server; clamped to the group's ceiling
s.cpu_limit = 1.0
s.start_timeout = 120
s.http_timeout = 60

if env("LATTICEHUB_DEMO", "1") == "1":
    demo.install(c)

for path in sorted(glob.glob(os.path.join(HERE, "jupyterhub_config.d", "*.py"))):
    load_subconfig(path)  # noqa: F821 - provided by traitlets

# -- Services (docs/architecture.md) -----------------------------------------------------
# experiments: tracking, jobs, artifacts; it listens where the Hub API does (the containers'
# gateway) so that notebooks and jobs reach it; every request needs a Hub or job token.
EXPERIMENTS_PORT = int(env("LATTICEHUB_EXPERIMENTS_PORT", "10101"))
EXPERIMENTS_URL = f"http://{HUB_IP}:{EXPERIMENTS_PORT}"
install_experiments(
    c,
    url=EXPERIMENTS_URL,
    state=STATE,
    policy_file=s.policy_file,
    network=NETWORK,
    swarm=swarm,
    # each group's jobs run from its first server image (else the default)
    job_images={"*": s.image, **load_policy(s.policy_file).group_images()},
)
# quotas: usage against the limits per group, for admins and group managers (docs/quotas.md);
# it reads jobs and artifact storage from the experiments API with its own narrow token
install_quotas(
    c,
    Spawner,
    url=f"http://127.0.0.1:{env('LATTICEHUB_QUOTAS_PORT') or EXPERIMENTS_PORT + 1}",
    environment={
        "LATTICEHUB_STATE": STATE,
        "LATTICEHUB_EXPERIMENTS_API": f"{EXPERIMENTS_URL}/services/experiments",
    },
)
# culler: stops idle servers with each group's idle rules (docs/culling.md); not declared
# when no group has idle rules
CULL_INTERVAL = env("LATTICEHUB_CULL_INTERVAL")
install_culling(c, Spawner, interval=float(CULL_INTERVAL) if CULL_INTERVAL else None)
