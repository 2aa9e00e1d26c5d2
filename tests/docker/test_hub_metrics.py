"""The spawner's per-group gauges on a real Hub's ``/hub/metrics`` (docker tier).

One Hub for the module: three groups (``lqcd`` max 2, ``nuclear`` max 1, ``spare`` max 4),
a container labelled for this hub that no Hub server owns (an orphan of ``spare``), a short
spawn queue (``spawn_queue_timeout``), and a service ``prometheus`` whose only scope is
``read:metrics`` (the scrape set-up docs/monitoring.md describes). The tests spawn, queue,
refuse and stop real servers through the Hub API, remove the orphan's container, and read
what a Prometheus server would scrape after each step. The tests share the Hub and run in
file order.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from latticehub import labels
from tests.docker.conftest import IMAGE, remove_hub_objects
from tests.hub import HubProcess, free_port

pytestmark = [pytest.mark.docker, pytest.mark.slow]

#: seconds a spawn waits in its group's queue before HTTP 429 (under the Hub's 10 s
#: slow_spawn_timeout, so that the refusal is the answer of the POST itself)
QUEUE_TIMEOUT = 4
SCRAPE_TOKEN = secrets.token_hex(16)

CONFIG = f"""
c.GroupLimitDockerSpawner.group_limits = {{
    "lqcd": {{"max_servers": 2, "mem_limit": "512M", "cpu_limit": 0.25}},
    "nuclear": {{"max_servers": 1, "mem_limit": "512M", "cpu_limit": 0.25}},
    "spare": {{"max_servers": 4, "mem_limit": "512M", "cpu_limit": 0.25}},
}}
c.GroupLimitDockerSpawner.unlisted_group_limits = None
c.GroupLimitDockerSpawner.mem_limit = "512M"
c.GroupLimitDockerSpawner.spawn_queue_timeout = {QUEUE_TIMEOUT}
c.JupyterHub.load_groups = {{
    "lqcd": {{"users": ["ann", "ben", "cat", "mallory"], "properties": {{}}}},
    "nuclear": {{"users": ["dan", "erin"], "properties": {{}}}},
    "spare": {{"users": [], "properties": {{}}}},
}}
# the scraper of docs/monitoring.md: a service token that may read metrics, nothing else
c.JupyterHub.services.append({{"name": "prometheus", "api_token": {SCRAPE_TOKEN!r}}})
c.JupyterHub.load_roles.append(
    {{"name": "metrics-scraper", "scopes": ["read:metrics"], "services": ["prometheus"]}}
)
# the quotas service gets these group limits (jupyterhub_config.py: call it again after
# changing group_limits)
from hub_ext.quotas.hubconfig import install as install_quotas
install_quotas(c)
"""

Samples = dict[tuple[str, frozenset], float]


@pytest.fixture(scope="module")
def hub(docker_client, test_network, tmp_path_factory):
    hub_id = f"m{secrets.token_hex(4)}"
    hub = HubProcess(
        tmp_path_factory.mktemp("metrics-hub"),
        hub_ip=test_network[1],
        network=test_network[0],
        hub_id=hub_id,
        extra_config=CONFIG,
    )
    hub.env["LATTICEHUB_QUOTAS_PORT"] = str(free_port())
    # an orphan: a running container with this hub's labels that no Hub server owns
    # (no network: it only has to be "running" for the ledger's rebuild)
    docker_client.containers.run(
        IMAGE,
        ["sleep", "600"],
        name=f"lhtest-{hub_id}-ghost",
        labels={labels.HUB: hub_id, labels.GROUP: "spare", labels.USER: "ghost"},
        network_mode="none",
        detach=True,
    )
    try:
        hub.start()
        yield hub
    finally:
        hub.stop()
        remove_hub_objects(docker_client, hub_id)


@pytest.fixture(autouse=True)
def _hub_log_on_failure(request):
    yield
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed and "hub" in request.fixturenames:
        hub = request.getfixturevalue("hub")
        print(f"==== hub log {hub.workdir}\n{hub.tail(150)}")


def scrape(hub, token: str | None = SCRAPE_TOKEN) -> Samples:
    """GET /hub/metrics (through the proxy, as Prometheus would) and parse every sample."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    r = requests.get(f"{hub.url}/hub/metrics", headers=headers, timeout=30)
    assert r.status_code == 200, r.text[:500]
    assert r.headers["Content-Type"].startswith("text/plain"), r.headers
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **label_values: str) -> float | None:
    """The value of one sample (``None``: the series is not exposed)."""
    return samples.get((name, frozenset(label_values.items())))


def per_group(samples: Samples, name: str) -> dict[str, float]:
    """``{group: value}`` of a gauge labelled by group alone."""
    out = {}
    for (sample, label_set), v in samples.items():
        found = dict(label_set)
        if sample == name and set(found) == {"group"}:
            out[found["group"]] = v
    return out


def wait_for(hub, check: Callable[[Samples], bool], what: str, timeout: float = 30) -> Samples:
    """Scrape until ``check`` holds (bounded); fail with the last scrape otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(hub)
        if check(samples):
            return samples
        if time.monotonic() > deadline:
            shown = {
                k: v
                for k, v in samples.items()
                if k[0].startswith("latticehub_") or k[0] == "jupyterhub_running_servers"
            }
            raise AssertionError(f"{what}: not within {timeout}s; last scrape {shown}")
        time.sleep(0.3)


# the public names (README, docs/monitoring.md, the Grafana dashboard), written out: a
# renamed metric must fail here
SERVERS = "latticehub_group_servers"
LIMIT = "latticehub_group_server_limit"
QUEUED = "latticehub_group_spawns_queued"
REJECTED = "latticehub_spawn_rejections_total"
ORPHANS = "latticehub_orphaned_servers"


def test_metrics_need_the_read_metrics_scope(hub):
    r = requests.get(f"{hub.url}/hub/metrics", timeout=30)
    assert r.status_code == 403, (r.status_code, r.text[:300])
    assert "latticehub_" not in r.text
    r = requests.get(
        f"{hub.url}/hub/metrics", headers={"Authorization": "token not-a-token"}, timeout=30
    )
    assert r.status_code in (401, 403), (r.status_code, r.text[:300])
    # a user's own token (scope "self") does not include read:metrics
    user_token = hub.user_token("mallory")
    r = requests.get(
        f"{hub.url}/hub/metrics", headers={"Authorization": f"token {user_token}"}, timeout=30
    )
    assert r.status_code == 403, (r.status_code, r.text[:300])
    # the scraper's token does; so does the same token on /hub/api/metrics
    assert value(scrape(hub), "jupyterhub_total_users") is not None
    r = requests.get(
        f"{hub.api}/metrics", headers={"Authorization": f"token {SCRAPE_TOKEN}"}, timeout=30
    )
    assert r.status_code == 200 and f"# TYPE {SERVERS} gauge" in r.text, r.text[:300]


def ghost_name(hub) -> str:
    return f"lhtest-{hub.env['LATTICEHUB_HUB_ID']}-ghost"


def stop_servers(hub, *users: str) -> None:
    """Stop servers concurrently and wait until each is gone."""
    with ThreadPoolExecutor(len(users)) as pool:
        list(pool.map(hub.stop_server, users))


def test_group_gauges_follow_spawns_queue_refusals_and_stops(hub, docker_client):
    # -- three servers: lqcd full (2 of 2), nuclear full (1 of 1) ------------------------
    started = {"ben": "lqcd", "cat": "lqcd", "dan": "nuclear"}
    with ThreadPoolExecutor(len(started)) as pool:
        responses = dict(zip(started, pool.map(hub.spawn, started), strict=True))
    for user, r in responses.items():
        assert r.status_code in (201, 202), (user, r.status_code, r.text)
    for user in started:
        hub.wait_ready(user)

    samples = scrape(hub)
    # the orphan counts against its group, as it does for the limits
    assert per_group(samples, SERVERS) == {"lqcd": 2, "nuclear": 1, "spare": 1}
    assert per_group(samples, QUEUED) == {"lqcd": 0, "nuclear": 0, "spare": 0}
    # the effective max_servers of each group that has spawned since the Hub started
    assert value(samples, LIMIT, group="lqcd") == 2
    assert value(samples, LIMIT, group="nuclear") == 1
    assert _spawn_count(samples) == 3
    assert not any(k[0] == REJECTED for k in samples), "no refusal yet"
    # the orphan report comes orphan_report_delay (5 s here) after the ledger's rebuild
    wait_for(hub, lambda s: value(s, ORPHANS) == 1, "latticehub_orphaned_servers == 1")

    # -- a refusal by policy: mallory is not in nuclear ------------------------------------
    r = hub.spawn("mallory", {"group": "nuclear"})
    assert r.status_code == 403, r.text
    samples = scrape(hub)
    assert value(samples, REJECTED, group="nuclear", reason="foreign_group") == 1
    assert per_group(samples, SERVERS)["nuclear"] == 1
    # JupyterHub's own histogram counts it as a failed spawn with the same reason
    wait_for(hub, lambda s: _failures(s, "foreign_group") == 1, "failure foreign_group", 10)

    # -- a full group: erin waits in nuclear's queue, then is refused ----------------------
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(hub.spawn, "erin")
        samples = wait_for(
            hub, lambda s: value(s, QUEUED, group="nuclear") == 1, "erin queued", QUEUE_TIMEOUT
        )
        assert per_group(samples, SERVERS)["nuclear"] == 1, "a queued spawn holds no slot"
        r = waiting.result(timeout=60)
    assert r.status_code == 429, r.text
    assert "nuclear" in r.json()["message"], r.text
    samples = scrape(hub)
    assert value(samples, QUEUED, group="nuclear") == 0
    assert value(samples, REJECTED, group="nuclear", reason="queue_timeout") == 1
    assert value(samples, REJECTED, group="nuclear", reason="foreign_group") == 1
    wait_for(hub, lambda s: _failures(s, "queue_timeout") == 1, "failure queue_timeout", 10)

    # -- an admin removes the orphan's container: its slot is freed at the next reconcile,
    # which a refused reservation runs (the one below)
    docker_client.containers.get(ghost_name(hub)).remove(force=True)
    assert per_group(scrape(hub), SERVERS)["spare"] == 1, "not noticed before a reconcile"

    # -- a manager lowers lqcd to 1: the limit gauge follows at the next spawn -------------
    hub.set_properties("lqcd", {"latticehub": {"max_servers": 1}})
    r = hub.spawn("ann")
    assert r.status_code == 429, r.text
    samples = scrape(hub)
    assert value(samples, LIMIT, group="lqcd") == 1
    assert value(samples, REJECTED, group="lqcd", reason="queue_timeout") == 1
    assert per_group(samples, SERVERS) == {"lqcd": 2, "nuclear": 1, "spare": 0}, (
        "running servers keep running; the removed orphan's slot is free"
    )
    assert value(samples, QUEUED, group="lqcd") == 0

    # -- stops free the slots at once ------------------------------------------------------
    stop_servers(hub, "dan", "ben")
    samples = scrape(hub)
    assert per_group(samples, SERVERS) == {"lqcd": 1, "nuclear": 0, "spare": 0}
    # ... and the freed slot is usable: erin now starts in nuclear (while cat stops)
    with ThreadPoolExecutor(2) as pool:
        stopping = pool.submit(hub.stop_server, "cat")
        r = hub.spawn("erin")
        assert r.status_code in (201, 202), r.text
        hub.wait_ready("erin")
        stopping.result(timeout=90)
    samples = scrape(hub)
    assert per_group(samples, SERVERS) == {"lqcd": 0, "nuclear": 1, "spare": 0}
    assert value(samples, LIMIT, group="nuclear") == 1
    # JupyterHub's own gauge is recounted at each spawn request (in between, concurrent
    # spawns raise it and refused ones lower it: jupyterhub#2685); after erin's spawn
    # request it agrees with the group gauges
    running(hub, 1)
    hub.stop_server("erin")
    samples = scrape(hub)
    assert per_group(samples, SERVERS) == {"lqcd": 0, "nuclear": 0, "spare": 0}
    running(hub, 0)
    # counters never go down
    assert value(samples, REJECTED, group="nuclear", reason="queue_timeout") == 1


def running(hub, n: int) -> None:
    """JupyterHub's own gauge reaches ``n`` (it is updated after the proxy's route)."""
    wait_for(
        hub,
        lambda s: value(s, "jupyterhub_running_servers") == n,
        f"jupyterhub_running_servers == {n}",
        10,
    )


def _failures(samples: Samples, reason: str) -> float:
    """Failed spawns with ``reason`` in JupyterHub's spawn-duration histogram."""
    return (
        value(
            samples,
            "jupyterhub_server_spawn_duration_seconds_count",
            status="failure",
            reason=reason,
        )
        or 0.0
    )


def _spawn_count(samples: Samples) -> float:
    """Successful spawns in JupyterHub's spawn-duration histogram (any reason label)."""
    return sum(
        v
        for (name, label_set), v in samples.items()
        if name == "jupyterhub_server_spawn_duration_seconds_count"
        and dict(label_set).get("status") == "success"
    )


def test_orphan_gauge_follows_a_removed_orphan(hub, docker_client):
    samples = scrape(hub)
    if per_group(samples, SERVERS).get("spare") != 0:
        pytest.skip("runs after test_group_gauges_follow_spawns_queue_refusals_and_stops")
    # the orphan's container is gone and its slot is free ...
    assert not docker_client.containers.list(all=True, filters={"name": ghost_name(hub)})
    # ... so no orphan is left
    assert value(samples, ORPHANS) == 0
