"""The notebook panels in a real browser, the whole way a user goes.

Hub login form → spawn form (group-limited Docker spawner, the real single-user image) →
JupyterLab → a notebook cell shows ``widgets.TrainingLauncher()`` → the tutorial preset,
made tiny in the form → Launch → the monitor follows the docker job (a container) to FINISHED
with a plot → New launch, a second run → ``widgets.ResultsBrowser(project)`` lists both →
Compare selected overlays them. Each panel is saved as a 1280x800 screenshot
(``widgets-*.png``; into docs/img/ with ``LATTICEHUB_UPDATE_DOCS_IMG=1``).
"""

from __future__ import annotations

import json
import re
import time
from contextlib import contextmanager

import pytest
import requests
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect

from latticehub import labels

pytestmark = [pytest.mark.docker, pytest.mark.browser, pytest.mark.slow]

USER = "ann"
PROJECT = "phi4-tutorial"
#: The tutorial preset made tiny, as typed into the launcher (field -> text).
TINY = {"L": "4", "n_layers": "2", "hidden": "4", "steps": "20", "batch_size": "16"}
MORE_CONFIG = {"log_every": 2, "warmup_steps": 2, "eval_samples": 1024, "device": "cpu"}
RAN = re.compile(r"\[(\*|\d+)\]")  # the prompt of a cell that runs or ran
FINAL = re.compile(r"^(FINISHED|FAILED|KILLED|LOST)\b")
#: JupyterLab in the container asks nothing of the Internet (update check, news).
LAB_OFFLINE = """
c.GroupLimitDockerSpawner.args = [
    "--LabApp.news_url=None",
    "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
]
"""
NOTIFICATION_SETTINGS = "@jupyterlab/apputils-extension:notification"
LAUNCH_S = 180  # one tiny training on the 2-core CI machine takes ~15 s; generous for load


def notebook(*sources: str) -> dict:
    """An nbformat 4 notebook with one code cell per source, for the Python 3 kernel."""
    cells = [
        {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
         "source": source}
        for source in sources
    ]  # fmt: skip
    return {
        "cells": cells,
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def login(page, hub, user: str) -> None:
    page.goto(f"{hub.url}/hub/login?next=%2Fhub%2Fhome")
    page.fill("#username_input", user)
    page.fill("#password_input", "any")
    page.click("#login_submit")
    page.wait_for_url(re.compile(r"/hub/home"))


def set_field(panel, name: str, value: str) -> None:
    """Type into a launcher field as a user does (the value syncs when the input blurs)."""
    field = panel.locator(f".lh-input-{name}").locator("input, textarea").first
    field.fill(value)
    field.blur()


def run_cell(page, index: int) -> None:
    """Put the cursor in a notebook cell and run it with Shift+Enter.

    A Shift+Enter while the kernel's connection is still being set up runs nothing (the
    prompt stays ``[ ]``): then the user presses it again.
    """
    cell = page.locator(".jp-NotebookPanel .jp-Cell").nth(index)
    for _ in range(3):
        cell.locator(".jp-InputArea-editor").click()
        page.keyboard.press("Shift+Enter")
        try:
            expect(cell.locator(".jp-InputPrompt")).to_have_text(RAN, timeout=15_000)
            return
        except AssertionError:
            print(f"cell {index} did not start: Shift+Enter again")
    raise AssertionError(f"cell {index} did not run after 3 tries")


def to_top(locator) -> None:
    """Scroll the notebook so that the element starts at the top of the view."""
    locator.evaluate("e => e.scrollIntoView({block: 'start'})")


def wait_finished(monitor, what: str) -> str:
    """Wait for the monitor's run to end; its run id. Fails unless it FINISHED."""
    status = monitor.locator(".lh-status .lh-status-text")
    expect(status).to_have_text(FINAL, timeout=LAUNCH_S * 1000)
    text = status.inner_text()
    log = monitor.locator(".lh-log").inner_text()
    assert text.startswith("FINISHED"), f"{what}: the monitor says {text!r}; output:\n{log}"
    return monitor.locator(".lh-title code").inner_text().strip()


def failure_report(hub, docker_client) -> str:
    """Hub log tail, the user's container log and every job's stderr."""
    parts = [f"==== hub log (tail)\n{hub.tail(80)}"]
    selector = [f"{labels.HUB}={hub.env['LATTICEHUB_HUB_ID']}", f"{labels.USER}={USER}"]
    for container in docker_client.containers.list(all=True, filters={"label": selector}):
        logs = container.logs(tail=60).decode(errors="replace")
        parts.append(f"==== container {container.name} ({container.status})\n{logs}")
    for path in sorted((hub.workdir / "jobs").glob("**/stderr.log")):
        text = path.read_text(errors="replace").splitlines()[-40:]
        parts.append(f"==== {path.relative_to(hub.workdir)}\n" + "\n".join(text))
    return "\n".join(parts)


@contextmanager
def explained(hub, docker_client, step: list[str]):
    """Re-raise a failure with the step it happened in and the logs that explain it."""
    try:
        yield
    except (AssertionError, PlaywrightError) as e:
        raise AssertionError(
            f"failed at: {step[0]}\n{e}\n{failure_report(hub, docker_client)}"
        ) from e


def test_launch_watch_and_compare_in_jupyterlab(make_hub, new_page, screenshot, docker_client):
    began = time.monotonic()
    hub = make_hub(LAB_OFFLINE).start()
    hub.create_users([USER])
    hub.create_group("lqcd", [USER])
    hub.wait_experiments()
    token = hub.user_token(USER)
    headers = {"Authorization": f"token {token}"}
    server = f"{hub.url}/user/{USER}"
    step = ["login"]
    page = new_page(hub.url, user=None)
    page.set_default_timeout(30_000)
    shot = lambda name: screenshot(page, name, prefix="widgets")  # noqa: E731

    with explained(hub, docker_client, step):
        # -- log in and start a server through the Hub's pages ---------------------------
        login(page, hub, USER)
        step[0] = "spawn form"
        page.click("#start")  # "Start My Server": the group-limited spawner's options form
        expect(page.locator("#lh-group")).to_have_value("lqcd")
        page.fill("#lh-mem", "2G")
        page.locator("#spawn_form [type=submit]").click()
        step[0] = "server start"
        page.wait_for_url(re.compile(rf"/user/{USER}/"), timeout=240_000)
        container = docker_client.containers.list(
            filters={
                "label": [f"{labels.HUB}={hub.env['LATTICEHUB_HUB_ID']}", f"{labels.USER}={USER}"]
            }  # fmt: skip
        )[0]
        assert container.attrs["HostConfig"]["Memory"] == 2 * 1024**3
        assert "--LabApp.news_url=None" in container.attrs["Config"]["Cmd"]
        env = dict(e.split("=", 1) for e in container.attrs["Config"]["Env"])
        # the panels reach the experiments service directly on the Hub's address
        assert env["LATTICEHUB_TRACKING_URL"].startswith(f"http://{hub.env['LATTICEHUB_HUB_IP']}:")

        # -- a notebook in the user's home, JupyterLab without news or update pop-ups ----
        step[0] = "notebook upload"
        cells = (
            "import widgets\nlauncher = widgets.TrainingLauncher()\nlauncher",
            f"browser = widgets.ResultsBrowser({PROJECT!r})\nbrowser",
        )
        r = requests.put(
            f"{server}/api/contents/panels.ipynb", headers=headers, timeout=30,
            json={"type": "notebook", "format": "json", "content": notebook(*cells)},
        )  # fmt: skip
        assert r.status_code in (200, 201), r.text
        r = requests.put(
            f"{server}/lab/api/settings/{NOTIFICATION_SETTINGS}", headers=headers, timeout=30,
            json={"raw": json.dumps({"fetchNews": "false", "checkForUpdates": False})},
        )  # fmt: skip
        assert r.status_code == 204, r.text

        step[0] = "JupyterLab"
        page.goto(f"{server}/lab/tree/panels.ipynb")
        expect(page.locator(".jp-NotebookPanel .jp-Cell")).to_have_count(2, timeout=90_000)
        expect(page.locator("#jp-main-statusbar")).to_contain_text("| Idle", timeout=90_000)

        # -- the launcher: tutorial preset, made tiny, docker executor (the default) -------
        step[0] = "launcher cell"
        run_cell(page, 0)
        launcher = page.locator(".lh-launcher")
        expect(launcher.locator(".lh-launch")).to_be_visible(timeout=90_000)
        expect(launcher.locator(".lh-input-group select")).to_have_value("lqcd")
        assert launcher.locator(".lh-status .lh-error").count() == 0, launcher.inner_text()
        step[0] = "filling the launcher"
        launcher.locator(".lh-preset select").select_option(label="tutorial φ⁴ L=8")
        expect(launcher.locator(".lh-status-text")).to_contain_text("tutorial")
        expect(launcher.locator(".lh-input-L input")).to_have_value("8")
        for name, value in TINY.items():
            set_field(launcher, name, value)
        set_field(launcher, "extra", json.dumps(MORE_CONFIG))
        launcher.locator(".lh-input-executor select").select_option("docker")
        set_field(launcher, "project", PROJECT)
        set_field(launcher, "name", "tiny-1")
        expect(launcher.locator(".lh-launch")).to_be_enabled()
        assert launcher.locator(".lh-invalid").count() == 0
        to_top(launcher)
        shot("launcher")
        step[0] = "first launch"
        launcher.locator(".lh-launch").click()

        # -- the monitor: FINISHED, plot, full progress bar --------------------------------
        monitor = launcher.locator(".lh-monitor")
        expect(monitor).to_be_visible()
        first = wait_finished(monitor, "first run")
        expect(monitor.locator(".lh-plot img")).to_be_visible()
        expect(monitor.locator(".lh-progress-text")).to_have_text("step 20 / 20")
        bar = monitor.locator(".lh-progress .progress-bar")
        assert bar.evaluate("e => e.style.width") == "100%"
        assert monitor.locator(".lh-cancel").is_disabled()
        assert monitor.locator(".lh-dashboard-link").get_attribute("href") == (
            f"/services/experiments/runs/{first}"
        )
        to_top(monitor)
        shot("monitor")
        run = requests.get(f"{hub.experiments}/runs/{first}", headers=headers, timeout=30).json()
        assert run["status"] == "FINISHED" and run["user"] == USER
        assert {k: run["params"][k] for k in ("L", "steps", "batch_size", "n_layers")} == {
            "L": "4", "steps": "20", "batch_size": "16", "n_layers": "2",
        }, run["params"]  # fmt: skip

        # -- New launch: the form comes back with its values; a second seed ----------------
        step[0] = "second launch"
        launcher.locator(".lh-back").click()
        expect(launcher.locator(".lh-input-L input")).to_have_value("4")
        set_field(launcher, "seed", "1")
        set_field(launcher, "name", "tiny-2")
        expect(launcher.locator(".lh-launch")).to_be_enabled()
        launcher.locator(".lh-launch").click()
        second = wait_finished(launcher.locator(".lh-monitor"), "second run")
        assert second != first

        # -- the results browser: both runs, compared -----------------------------------
        step[0] = "results browser"
        run_cell(page, 1)
        results = page.locator(".lh-results")
        rows = results.locator(".lh-results-table tr[data-run-id]")
        expect(rows).to_have_count(2, timeout=60_000)
        assert {rows.nth(i).get_attribute("data-run-id") for i in range(2)} == {first, second}
        assert "FINISHED" in rows.nth(0).inner_text() and "FINISHED" in rows.nth(1).inner_text()
        columns = results.locator(".lh-results-table th[data-column]").all_inner_texts()
        assert "params.seed" in columns and not any("params.out" in c for c in columns), columns
        to_top(results)
        shot("results")
        step[0] = "compare"
        results.locator(".lh-run-picker select").select_option(index=[0, 1])
        expect(results.locator(".lh-results-table tr[data-run-id] td").first).to_have_text("✓")
        results.locator(".lh-compare").click()
        view = results.locator(".lh-compare-view")
        expect(view.locator(".lh-compare-plot img")).to_be_visible(timeout=60_000)
        expect(results.locator(".lh-status-text")).to_have_text("Comparing 2 runs on loss.")
        expect(view.locator(".lh-compare-metric select")).to_have_value("loss")
        diff = view.locator(".lh-param-diff")
        assert {first[:8], second[:8]} <= set(diff.locator("thead code").all_inner_texts())
        assert diff.locator("tbody th").all_inner_texts() == ["seed"]
        to_top(results.locator(".lh-compare"))
        shot("compare")

    elapsed = time.monotonic() - began
    print(f"notebook panels: whole path in {elapsed:.0f} s")
