"""A spawn storm against a group limit, then a Hub SIGKILL and restart."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from latticehub import labels

pytestmark = [pytest.mark.docker, pytest.mark.slow]

STORM_USERS = [f"s{i:02d}" for i in range(12)]
LIMITS = """
c.GroupLimitDockerSpawner.group_limits = {
    "storm": {"max_servers": 3, "mem_limit": "512M", "cpu_limit": 0.5},
}
c.GroupLimitDockerSpawner.mem_limit = "512M"
"""


def running_containers(docker_client, hub_id, group="storm"):
    return docker_client.containers.list(
        filters={"label": [f"{labels.HUB}={hub_id}", f"{labels.GROUP}={group}"]}
    )


def db_urls():
    urls = [pytest.param(None, id="sqlite")]
    pg = os.environ.get("LATTICEHUB_TEST_PG_URL")
    if pg or os.environ.get("LATTICEHUB_REQUIRE_SERVICES") == "1":
        urls.append(pytest.param(pg or "", id="postgres", marks=pytest.mark.postgres))
    return urls


@pytest.mark.parametrize("db_url", db_urls())
def test_storm_is_exact_and_survives_hub_sigkill(make_hub, docker_client, db_url, tmp_path):
    if db_url == "":
        pytest.fail("LATTICEHUB_REQUIRE_SERVICES=1 but LATTICEHUB_TEST_PG_URL is not set")
    if db_url:
        db_url = fresh_postgres_db(db_url, tmp_path.name)
    hub = make_hub(LIMITS, db_url=db_url).start()
    hub_id = hub.env["LATTICEHUB_HUB_ID"]
    hub.create_users(STORM_USERS)
    hub.create_group("storm", STORM_USERS)

    # 12 simultaneous spawns against max_servers=3
    with ThreadPoolExecutor(len(STORM_USERS)) as pool:
        responses = dict(zip(STORM_USERS, pool.map(hub.spawn, STORM_USERS), strict=True))
    accepted = [u for u, r in responses.items() if r.status_code in (201, 202)]
    refused = [u for u, r in responses.items() if r.status_code == 429]
    assert len(accepted) == 3, {u: (r.status_code, r.text[:200]) for u, r in responses.items()}
    assert len(refused) == 9
    for user in refused:
        message = responses[user].json()["message"]
        assert "'storm'" in message and "limit of 3" in message, message
        assert all(f"{u}/" in message for u in accepted), message
    for user in accepted:
        hub.wait_ready(user)
    assert len(running_containers(docker_client, hub_id)) == 3

    # metrics: servers in use and the limit, per group
    metrics = hub.request("GET", "/../metrics").text
    assert 'latticehub_group_servers{group="storm"} 3.0' in metrics
    assert 'latticehub_group_server_limit{group="storm"} 3.0' in metrics
    assert 'latticehub_spawn_rejections_total{group="storm",reason="group_full"} 9.0' in metrics

    # after one stops, a waiting user gets in (and the next is refused again)
    hub.stop_server(accepted[0])
    r = hub.spawn(refused[0])
    assert r.status_code in (201, 202), r.text
    hub.wait_ready(refused[0])
    holders = accepted[1:] + [refused[0]]
    assert hub.spawn(refused[1]).status_code == 429

    # SIGKILL the Hub; restart with the same database (cleanup_servers=False)
    hub.kill()
    assert len(running_containers(docker_client, hub_id)) == 3
    hub.start()
    for user in holders:
        assert hub.server(user)["ready"], f"{user} lost after restart"
    r = hub.spawn(refused[2])
    assert r.status_code == 429, r.text
    message = r.json()["message"]
    assert "limit of 3" in message and all(f"{u}/" in message for u in holders), message
    assert len(running_containers(docker_client, hub_id)) == 3

    # a container that dies behind the Hub's back frees its slot at the next spawn
    running_containers(docker_client, hub_id)[0].kill()
    r = hub.spawn(refused[3])
    assert r.status_code in (201, 202), r.text
    hub.wait_ready(refused[3])


def fresh_postgres_db(url: str, name: str) -> str:
    """Create an empty database for one test on the PostgreSQL server at ``url``."""
    import sqlalchemy

    db = f"lh_{name.lower()}"[:60].replace("-", "_")
    engine = sqlalchemy.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{db}"'))
        conn.execute(sqlalchemy.text(f'CREATE DATABASE "{db}"'))
    engine.dispose()
    return url.rsplit("/", 1)[0] + f"/{db}"


def test_hub_metrics_endpoint_needs_auth(make_hub):
    hub = make_hub(LIMITS).start()
    assert requests.get(f"{hub.url}/hub/metrics", timeout=10).status_code in (401, 403)
