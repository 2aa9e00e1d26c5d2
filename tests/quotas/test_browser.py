"""The quotas pages in headless Chromium behind a real Hub (login form, Hub OAuth, XSRF)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.docker.conftest import remove_hub_objects
from tests.quotas.conftest import ACCESS, start_quota_hub

pytestmark = [pytest.mark.docker, pytest.mark.browser]

#: the header's link (hub_templates/page.html); the service is not in the Services menu
QUOTAS_LINK = "#latticehub-quotas"
#: cat may reach the service but manages no group: no link, and the service says why
EXTRA = f"""
c.JupyterHub.load_roles.append(
    {{"name": "quotas-visitor", "scopes": [{ACCESS!r}], "users": ["cat"]}}
)
"""


def login(page, hub, user: str) -> None:
    page.goto(f"{hub.url}/hub/login?next=%2Fhub%2Fhome")
    page.fill("#username_input", user)
    page.fill("#password_input", "any")
    page.click("#login_submit")
    page.wait_for_url(re.compile(r"/hub/home"))


def shown_groups(page) -> list[str]:
    return [r.get_attribute("data-group") for r in page.locator("#groups tbody tr").all()]


def shot(page, name: str) -> None:
    """Screenshots to $LATTICEHUB_ARTIFACTS/screenshots (when set), for a look by eye."""
    base = os.environ.get("LATTICEHUB_ARTIFACTS")
    if base:
        target = Path(base) / "screenshots"
        target.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(target / f"quotas-{name}.png"), full_page=True)


@pytest.fixture
def hub(docker_client, test_network, tmp_path):
    hub = start_quota_hub(tmp_path / "hub", test_network, extra=EXTRA)
    yield hub
    hub.stop()
    remove_hub_objects(docker_client, hub.env["LATTICEHUB_HUB_ID"])


def test_admin_sees_all_groups_manager_one_and_the_lowered_limit_shows(hub, new_page):
    quotas = f"{hub.url}/services/quotas/"

    # the admin: the Hub's Services menu links to the service, which shows every group
    admin = new_page(hub.url)
    login(admin, hub, "boss")
    assert admin.locator(QUOTAS_LINK).get_attribute("href") == "/services/quotas/"
    assert admin.locator('a[href="/services/quotas/"]').count() == 1  # not in Services too
    admin.click(QUOTAS_LINK)  # Hub OAuth (no confirmation page) and back
    admin.wait_for_url(quotas)
    assert shown_groups(admin) == ["lqcd", "nuclear"]
    assert "All groups" in admin.locator("#scope").inner_text()
    assert admin.locator('#groups tr[data-group="lqcd"] .limit').inner_text() == "2"
    assert admin.locator("#nodes tbody tr").count() == 1
    shot(admin, "admin-overview")
    admin.click("#nav-usage")  # recorded hours: two charts, the tables, a CSV link
    admin.wait_for_url(re.compile(r"/services/quotas/usage$"))
    assert admin.locator("svg.usage-chart").count() == 2
    assert "format=csv" in admin.locator("#csv").get_attribute("href")
    shot(admin, "admin-usage")
    admin.goto(quotas)

    # the manager of lqcd: one group; lowers max_servers through the form
    ann = new_page(hub.url)
    login(ann, hub, "ann")
    assert ann.locator(QUOTAS_LINK).count() == 1
    ann.goto(quotas)
    ann.wait_for_url(quotas)
    assert shown_groups(ann) == ["lqcd"]
    ann.click('#groups tr[data-group="lqcd"] a.group-link')
    ann.wait_for_url(f"{quotas}groups/lqcd")
    ann.fill("#lower-form input[name=max_servers]", "1")
    ann.click("#lower-submit")
    ann.wait_for_url(f"{quotas}groups/lqcd?saved=1")
    assert ann.locator("#saved").count() == 1
    assert ann.locator('#limits tr[data-key="max_servers"] td.effective').inner_text() == "1"
    assert ann.locator('#limits tr[data-key="max_servers"] td.ceiling').inner_text() == "2"
    assert ann.locator("#limit").inner_text() == "1"
    shot(ann, "manager-group")

    # above the ceiling: refused with the ceiling named, nothing written
    ann.fill("#lower-form input[name=max_servers]", "5")
    ann.click("#lower-submit")
    error = ann.locator("#form-error")
    error.wait_for()
    assert "ceiling of 2" in error.inner_text()
    assert ann.locator('#limits tr[data-key="max_servers"] td.effective').inner_text() == "1"

    # a post with the session cookie but without the XSRF token is refused
    forged = ann.request.post(f"{quotas}groups/lqcd", form={"max_servers": "0"}, max_redirects=0)
    assert forged.status in (401, 403), forged.status
    lowered = hub.request("GET", "/groups/lqcd").json()["properties"]["latticehub"]
    assert lowered == {"max_servers": 1}

    # the admin's overview shows the lowered limit
    admin.goto(quotas)
    assert admin.locator('#groups tr[data-group="lqcd"] .limit').inner_text() == "1"
    assert "max_servers=1" in admin.locator('#groups tr[data-group="lqcd"] .lowered').inner_text()

    # a member who manages nothing: no link, and the Hub refuses the login to the service
    mallory = new_page(hub.url)
    login(mallory, hub, "mallory")
    assert mallory.locator(QUOTAS_LINK).count() == 0
    response = mallory.goto(quotas)
    assert response.status == 403
    assert mallory.locator("#latticehub-experiments").count() == 1  # every user's service

    # a user who may reach the service but manages no group: no link either, and a 403 that
    # says what a manager holds
    cat = new_page(hub.url)
    login(cat, hub, "cat")
    assert cat.locator(QUOTAS_LINK).count() == 0
    response = cat.goto(quotas)
    assert response.status == 403
    assert "manages no group" in cat.locator("body").inner_text()
