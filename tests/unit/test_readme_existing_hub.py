"""The README's "Add latticehub to an existing JupyterHub" configuration runs as written."""

from __future__ import annotations

import re
from pathlib import Path

from traitlets.config import Config

ROOT = Path(__file__).resolve().parents[2]


def readme_config() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Add latticehub to an existing JupyterHub", 1)[1].split("\n## ", 1)[0]
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", section, re.S) if "install" in b]
    return "\n".join(line[3:] if line.startswith("   ") else line for line in block.splitlines())


def test_the_existing_hub_configuration_adds_the_services(tmp_path):
    code = readme_config()
    code = code.replace("/etc/latticehub/policy.toml", str(ROOT / "etc" / "policy.toml"))
    code = code.replace("/srv/latticehub", str(tmp_path))
    c = Config()
    exec(compile(code, "README.md", "exec"), {"c": c})  # noqa: S102 - the README's own lines
    services = {s["name"]: s for s in c.JupyterHub.services}
    assert {"experiments", "quotas"} <= set(services)
    assert services["experiments"]["url"] == "http://172.18.0.1:10101"
    assert c.JupyterHub.spawner_class == "groupdocker"
    roles = {r["name"] for r in c.JupyterHub.load_roles}
    assert {"experiments-service", "user"} <= roles
    env = c.Spawner.environment
    assert env["LATTICEHUB_TRACKING_URL"] == "http://172.18.0.1:10101/services/experiments"
