"""The ground floor (``latticehub/``) imports nothing of latticehub's other packages, and the
old import paths of what moved there still work, with a DeprecationWarning."""

from __future__ import annotations

import importlib
import subprocess
import sys
import warnings

import pytest

CORE = ["latticehub.units", "latticehub.naming", "latticehub.limits", "latticehub.gpus",
        "latticehub.slots", "latticehub.labels", "latticehub.policy",
        "latticehub.client"]  # fmt: skip
#: What the core must never load: the upper floors and the heavy frameworks.
ABOVE = ["spawner", "hub_ext", "widgets", "flows", "tornado", "jupyterhub", "dockerspawner",
         "docker", "traitlets", "sqlalchemy", "requests", "torch"]  # fmt: skip


def test_the_core_loads_nothing_above_it():
    code = (
        f"import sys; import {', '.join(CORE)}; "
        f"print(sorted(m for m in {ABOVE!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_services_import_no_sibling_service():
    """quotas, culling and experiments talk over HTTP; what they share is in hub_ext.common."""
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[2] / "hub_ext"
    services = ["experiments", "quotas", "culling"]
    found = []
    for service in services:
        others = [s for s in services if s != service]
        for path in (root / service).rglob("*.py"):
            text = path.read_text()
            for other in others:
                for spelling in (f"hub_ext.{other}", f"from ..{other}", f"from ...{other}"):
                    if spelling in text:
                        found.append(f"{path.relative_to(root)} imports {other} ({spelling})")
    assert not found, found


@pytest.mark.parametrize(
    ("old", "new", "name"),
    [
        ("spawner.units", "latticehub.units", "parse_bytes"),
        ("spawner.naming", "latticehub.naming", "safe_name"),
        ("spawner.limits", "latticehub.limits", "GroupLimits"),
        ("spawner.gpus", "latticehub.gpus", "assign_gpus"),
        ("spawner.labels", "latticehub.labels", "slot_from_labels"),
        ("hub_ext.experiments.client", "latticehub.client", "start_run"),
        ("hub_ext.experiments.spool", "latticehub.client.spool", "Spool"),
        ("hub_ext.experiments.environment", "latticehub.client.environment", "environment"),
    ],
)
def test_old_paths_warn_and_give_the_same_objects(old, new, name):
    sys.modules.pop(old, None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(old)
    assert any(
        issubclass(w.category, DeprecationWarning) and new in str(w.message) for w in caught
    ), [str(w.message) for w in caught]
    assert getattr(module, name) is getattr(importlib.import_module(new), name)
    with pytest.raises(AttributeError):
        module.no_such_name  # noqa: B018
