"""Stand-ins for JupyterHub objects where a spawner is driven without a Hub."""

from __future__ import annotations

from types import SimpleNamespace

from jupyterhub.objects import Server


class Group:
    """An ORM group stand-in: a name and properties."""

    def __init__(self, name: str, properties: dict | None = None):
        self.name = name
        self.properties = properties or {}


def hub_user(name: str, groups: list[Group]) -> SimpleNamespace:
    """The parts of a Hub ``User`` that the spawner and ``get_env`` read."""
    return SimpleNamespace(
        name=name,
        groups=groups,
        url=f"/user/{name}/",
        base_url="/",
        escaped_name=name,
        server=Server(),
        settings={},
        id=1,
    )
