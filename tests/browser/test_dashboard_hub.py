"""The dashboard behind a real JupyterHub: login form, Hub OAuth, XSRF, group isolation."""

from __future__ import annotations

import re

import pytest
import requests

pytestmark = [pytest.mark.docker, pytest.mark.browser]


def login(page, hub, user: str) -> None:
    page.goto(f"{hub.url}/hub/login?next=%2Fhub%2Fhome")
    page.fill("#username_input", user)
    page.fill("#password_input", "any")
    page.click("#login_submit")
    page.wait_for_url(re.compile(r"/hub/home"))


def test_dashboard_behind_the_real_hub(make_hub, new_page, screenshot):
    hub = make_hub().start()
    hub.create_users(["ann", "bob"])
    hub.create_group("lqcd", ["ann"])
    hub.create_group("nuclear", ["bob"])
    hub.wait_experiments()
    headers = {"Authorization": f"token {hub.user_token('ann')}"}

    def api(method, path, **kwargs):
        r = requests.request(method, f"{hub.experiments}/{path}", headers=headers, timeout=30,
                             **kwargs)  # fmt: skip
        assert r.status_code < 300, (path, r.status_code, r.text)
        return r.json() if r.content else None

    project = api("POST", "projects", json={"name": "phi4-L8", "group": "lqcd"})
    run = api("POST", "runs", json={"project": project["id"], "name": "hub-run",
                                    "params": {"L": 8, "lr": 0.003}})  # fmt: skip
    points = [{"key": "loss", "value": 2.0 / (1 + s), "step": s} for s in range(0, 100, 5)]
    api("POST", f"runs/{run['id']}/batch", json={"metrics": points})
    api(
        "POST", f"runs/{run['id']}/logs/stdout", json={"offset": 0, "lines": ["hello from the job"]}
    )

    # Hub login form, then the home page links to the dashboard
    page = new_page(hub.url, user=None)
    login(page, hub, "ann")
    link = page.locator("#latticehub-experiments")
    assert link.get_attribute("href") == "/services/experiments/"
    assert page.locator("#latticehub-dashboard").count() == 1
    screenshot(page, "hub-home")
    link.click()
    # Hub OAuth (no confirmation page for this service) and back to the dashboard
    page.wait_for_url(f"{hub.url}/services/experiments/")
    assert page.locator("#projects a.project-link").all_inner_texts() == ["phi4-L8"]
    assert page.locator("#hub-home").get_attribute("href") == "/hub/home"

    page.click("#projects a.project-link")
    page.click("#runs a:has-text('hub-run')")
    run_url = f"{hub.url}/services/experiments/runs/{run['id']}"
    page.wait_for_url(run_url)
    # the live stream works through the proxy with the session cookie and the XSRF token
    page.locator("#log-stdout .line", has_text="hello from the job").wait_for()
    page.locator("#plots .plotbox[data-key='loss'] path.series").wait_for()
    api("POST", f"runs/{run['id']}/logs/stdout", json={"offset": 1, "lines": ["a live line"]})
    page.locator("#log-stdout .line", has_text="a live line").wait_for()
    assert page.evaluate("document.body.dataset.live") == "on"

    # a form with the token changes state
    page.fill("#tag-form input[name=key]", "reviewed")
    page.fill("#tag-form input[name=value]", "yes")
    page.click("#tag-form button")
    page.wait_for_url(run_url)
    assert "reviewed" in page.locator("#tag-table").inner_text()
    assert api("GET", f"runs/{run['id']}")["tags"]["reviewed"] == "yes"

    # the same POST with the Hub session cookie but without the token is refused
    r = page.request.post(run_url, form={"action": "set_tag", "key": "forged", "value": "1"},
                          max_redirects=0)  # fmt: skip
    assert r.status in (401, 403), (r.status, r.text()[:300])
    status = page.evaluate(
        """async (id) => (await fetch(`/services/experiments/api/v1/runs/${id}/batch`,
             {method: "POST", body: JSON.stringify({tags: {forged: "1"}})})).status""",
        run["id"],
    )
    assert status in (401, 403)
    assert "forged" not in api("GET", f"runs/{run['id']}")["tags"]
    token = page.locator("meta[name=lh-xsrf]").get_attribute("content")
    r = page.request.post(run_url, form={"action": "set_tag", "key": "legit", "value": "1",
                                         "_xsrf": token}, max_redirects=0)  # fmt: skip
    assert r.status == 303, (r.status, r.text()[:300])
    assert api("GET", f"runs/{run['id']}")["tags"]["legit"] == "1"

    # another group's user: no project listed, the run page is a 404 page
    other = new_page(hub.url, user=None)
    login(other, hub, "bob")
    other.goto(f"{hub.url}/services/experiments/")
    assert other.locator("#projects").count() == 0
    response = other.goto(run_url)
    assert response.status == 404
    assert "does not exist" in other.locator("#error-message").inner_text()
