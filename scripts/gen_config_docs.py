"""Write docs/config.md from the spawners' traitlets (their help strings are the source).

Usage: ``scripts/gen_config_docs.py`` rewrites docs/config.md; with ``--check`` it exits
with 1 when the file is out of date (the unit tier runs that).
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

from dockerspawner import DockerSpawner, SwarmSpawner
from traitlets.config import Application, Configurable

from hub_ext.culling.app import CullerApp
from hub_ext.experiments.app import ExperimentsApp
from hub_ext.experiments.jobs.settings import JobsConfig
from hub_ext.experiments.live import LiveConfig
from hub_ext.quotas.app import QuotasApp
from spawner import GroupLimitDockerSpawner, GroupLimitSwarmSpawner
from spawner.traits import GroupLimitsConfig

OUT = Path(__file__).resolve().parent.parent / "docs" / "config.md"


def own_traits(cls: type, base: type | None) -> list[tuple[str, object]]:
    """Configurable traits defined by ``cls`` itself (not inherited from ``base``)."""
    traits = cls.class_traits(config=True)
    inherited = set(base.class_traits(config=True)) if base else set()
    return sorted((n, t) for n, t in traits.items() if n not in inherited)


def render() -> str:
    """The Markdown reference of every configurable trait the spawners add."""
    lines = [
        "# Configuration reference",
        "",
        "Generated from the traits' help by `scripts/gen_config_docs.py`; do not edit.",
        "Set them in `jupyterhub_config.py`, e.g.",
        "`c.GroupLimitDockerSpawner.group_limits = {...}`. The experiments service takes its",
        "settings on its command line (`--JobsConfig.poll_interval=5`) or from the environment",
        "variables that each help names (`jupyterhub_config.py` passes those); a default shown",
        "as empty is computed at start, as the help says.",
        "",
    ]
    sections = [
        ("Group limits (both spawners)", GroupLimitsConfig, None),
        ("GroupLimitDockerSpawner", GroupLimitDockerSpawner, DockerSpawner),
        ("GroupLimitSwarmSpawner", GroupLimitSwarmSpawner, SwarmSpawner),
        ("experiments service (`ExperimentsApp`)", ExperimentsApp, Application),
        ("experiments jobs (`JobsConfig`; see docs/jobs.md)", JobsConfig, Configurable),
        ("experiments live streams (`LiveConfig`; see docs/live.md)", LiveConfig, Configurable),
        ("quotas service (`QuotasApp`; see docs/quotas.md)", QuotasApp, Application),
        ("culler service (`CullerApp`; see docs/culling.md)", CullerApp, Application),
    ]
    shared = set(GroupLimitsConfig.class_traits(config=True))
    for title, cls, parent in sections:
        names = own_traits(cls, parent)
        if parent in (DockerSpawner, SwarmSpawner):
            names = [(n, t) for n, t in names if n not in shared]
            # defaults this suite changes on the parent's traits
            names += [(n, t) for n, t in cls.class_traits(config=True).items() if n == "remove"]
        lines += [f"## {title}", ""]
        for name, trait in sorted(names):
            default = trait.default_value_repr()
            lines += [
                f"### `{name}`",
                "",
                f"*{type(trait).__name__}*, default `{default}`",
                "",
                inspect.cleandoc(trait.help or "(no help)"),
                "",
            ]
    return "\n".join(lines).rstrip() + "\n"


def main() -> int:
    """Write or check docs/config.md; returns the exit status."""
    text = render()
    if "--check" in sys.argv:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT} is out of date: run scripts/gen_config_docs.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
