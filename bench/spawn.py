"""Spawn time: stock DockerSpawner vs GroupLimitDockerSpawner, then a spawn storm.

Runs two real Hubs (each with configurable-http-proxy) on one Docker network made for the
run, same image, same machine. Spawns alternate between the two Hubs (``--n`` each);
the time is from the REST start request to the Hub reporting the server ready. Then a
storm: ``--storm-users`` simultaneous spawns against a group limit of ``--storm-limit``
(GroupLimitDockerSpawner) and against the Hub-wide ``active_server_limit`` (stock), the
nearest stock mechanism. Prints medians, ratios and whether any storm overshot.

    .venv/bin/python bench/spawn.py [--n 5] [--storm-users 20] [--storm-limit 5]

Traffic goes only to 127.0.0.1 and to containers on the network this script creates.
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from latticehub import labels  # noqa: E402
from tests.hub import HubProcess  # noqa: E402

IMAGE = "latticehub/singleuser:latest"

STOCK = """
c.JupyterHub.spawner_class = "docker"
c.DockerSpawner.image = {image!r}
c.DockerSpawner.network_name = {network!r}
c.DockerSpawner.use_internal_ip = False
c.DockerSpawner.host_ip = "127.0.0.1"
c.DockerSpawner.pull_policy = "never"
c.DockerSpawner.remove = True
c.DockerSpawner.mem_limit = "1G"
c.DockerSpawner.cpu_limit = 1.0
c.DockerSpawner.prefix = "jupyter-{hub_id}"
c.DockerSpawner.start_timeout = 300
c.DockerSpawner.http_timeout = 300
c.DockerSpawner.extra_create_kwargs = {{"labels": {{"org.latticehub.hub": {hub_id!r}}}}}
c.JupyterHub.active_server_limit = {limit}
"""

GROUP = """
c.GroupLimitDockerSpawner.group_limits = {{
    "bench": {{"max_servers": 1000, "mem_limit": "1G", "cpu_limit": 1.0}},
    "storm": {{"max_servers": {limit}, "mem_limit": "1G", "cpu_limit": 1.0}},
}}
c.GroupLimitDockerSpawner.start_timeout = 300
c.GroupLimitDockerSpawner.http_timeout = 300
"""


def timed_spawn(hub: HubProcess, user: str) -> float:
    start = time.perf_counter()
    r = hub.spawn(user)
    if r.status_code not in (201, 202):
        raise RuntimeError(f"spawn of {user} failed: {r.status_code} {r.text}")
    hub.wait_ready(user, timeout=300)
    return time.perf_counter() - start


def storm(hub: HubProcess, users: list[str], client: docker.DockerClient) -> dict:
    """Fire all spawns at once; time until every accepted server is ready."""
    hub_id = hub.env["LATTICEHUB_HUB_ID"]
    start = time.perf_counter()
    with ThreadPoolExecutor(len(users)) as pool:
        responses = list(pool.map(hub.spawn, users))
    accepted = [u for u, r in zip(users, responses, strict=True) if r.status_code in (201, 202)]
    peak = 0
    for user in accepted:
        with contextlib.suppress(AssertionError):
            hub.wait_ready(user, timeout=300)
        peak = max(peak, len(client.containers.list(filters={"label": f"{labels.HUB}={hub_id}"})))
    elapsed = time.perf_counter() - start
    ready = [u for u in accepted if (hub.server(u) or {}).get("ready")]
    return {"accepted": len(accepted), "ready": len(ready), "peak": peak, "seconds": elapsed}


def stop_all(hub: HubProcess, users: list[str]) -> None:
    for user in users:
        with contextlib.suppress(Exception):
            if hub.server(user) is not None:
                hub.stop_server(user, timeout=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5, help="spawns per spawner (>= 5)")
    parser.add_argument("--storm-users", type=int, default=20)
    parser.add_argument("--storm-limit", type=int, default=5)
    args = parser.parse_args()

    client = docker.from_env(timeout=300)
    client.images.get(IMAGE)
    net = client.networks.create(f"lhbench-{secrets.token_hex(3)}", driver="bridge")
    net.reload()
    gateway = net.attrs["IPAM"]["Config"][0]["Gateway"]
    work = Path(tempfile.mkdtemp(prefix="lhbench-"))
    hubs: list[HubProcess] = []
    try:
        ids = {"stock": f"bs{secrets.token_hex(3)}", "group": f"bg{secrets.token_hex(3)}"}
        stock = HubProcess(
            work / "stock",
            hub_ip=gateway,
            network=net.name,
            hub_id=ids["stock"],
            extra_config=STOCK.format(
                image=IMAGE, network=net.name, hub_id=ids["stock"], limit=args.storm_limit
            ),
        )
        group = HubProcess(
            work / "group",
            hub_ip=gateway,
            network=net.name,
            hub_id=ids["group"],
            extra_config=GROUP.format(limit=args.storm_limit),
        )
        hubs = [stock.start(), group.start()]
        users = [f"b{i}" for i in range(args.n)]
        storm_users = [f"st{i:02d}" for i in range(args.storm_users)]
        for hub in hubs:
            hub.create_users(users + storm_users)
        group.create_group("bench", users)
        group.create_group("storm", storm_users)

        times: dict[str, list[float]] = {"stock": [], "group": []}
        for i, user in enumerate(users):
            order = [("stock", stock), ("group", group)]
            if i % 2:
                order.reverse()  # alternate who goes first
            for name, hub in order:
                seconds = timed_spawn(hub, user)
                times[name].append(seconds)
                hub.stop_server(user, timeout=120)
                print(f"  {name:5s} spawn {i + 1}/{args.n}: {seconds:.2f}s", flush=True)

        med = {k: statistics.median(v) for k, v in times.items()}
        print("\nspawn time, REST request to ready (median of", args.n, "each)")
        for name in ("stock", "group"):
            spread = f"min {min(times[name]):.2f}s max {max(times[name]):.2f}s"
            print(f"  {name:5s} {med[name]:.2f}s  ({spread})")
        print(f"  ratio group/stock: {med['group'] / med['stock']:.3f}")

        print(f"\nstorm: {args.storm_users} simultaneous spawns, limit {args.storm_limit}")
        results = {}
        for name, hub in (("stock", stock), ("group", group)):
            results[name] = storm(hub, storm_users, client)
            r = results[name]
            over = "OVERSHOOT" if r["peak"] > args.storm_limit else "exact"
            print(
                f"  {name:5s} accepted {r['accepted']}, ready {r['ready']}, peak containers "
                f"{r['peak']} ({over}), all allowed ready after {r['seconds']:.1f}s",
                flush=True,
            )
            stop_all(hub, storm_users)
        ratio = results["group"]["seconds"] / results["stock"]["seconds"]
        print(f"  ratio group/stock time to all allowed ready: {ratio:.3f}")
    finally:
        for hub in hubs:
            hub.stop()
        for container in client.containers.list(all=True, filters={"network": net.name}):
            container.remove(force=True)
        for volume in client.volumes.list(filters={"name": "lhtest-b"}):
            volume.remove(force=True)
        net.remove()


if __name__ == "__main__":
    main()
