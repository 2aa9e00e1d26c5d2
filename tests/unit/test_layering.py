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


def _checker():
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).resolve().parents[2] / "scripts" / "check_layers.py"
    spec = importlib.util.spec_from_file_location("check_layers", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_checkout_has_no_import_above_its_floor():
    import pathlib

    checker = _checker()
    assert checker.violations(pathlib.Path(__file__).resolve().parents[2]) == []


@pytest.mark.parametrize(
    ("path", "source", "expected"),
    [
        ("latticehub/x.py", "import spawner.ledger\n", "latticehub imports spawner"),
        ("latticehub/x.py", "from hub_ext.common import db\n", "latticehub imports hub_ext"),
        ("spawner/x.py", "def f():\n    import flows.models\n", "spawner imports flows"),
        (
            "flows/x.py",
            "from hub_ext.experiments.client import start_run\n",
            "flows imports hub_ext",
        ),
        ("widgets/x.py", "from hub_ext.quotas import app\n", "widgets imports hub_ext"),
        ("hub_ext/quotas/x.py", "from spawner import labels\n", "hub_ext imports spawner"),
        ("hub_ext/x.py", "import widgets.api\n", "hub_ext imports widgets"),
    ],
)
def test_an_upward_import_is_reported(tmp_path, path, source, expected):
    checker = _checker()
    for package in checker.FORBIDDEN:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("from . import sibling\n")
    target = tmp_path / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(source)
    found = checker.violations(tmp_path)
    assert len(found) == 1 and expected in found[0] and found[0].startswith(path), found
    assert checker.main([str(tmp_path)]) == 1


def test_allowed_exceptions_are_named_with_a_reason(tmp_path):
    checker = _checker()
    for package in checker.FORBIDDEN:
        (tmp_path / package).mkdir()
    (tmp_path / "hub_ext/common").mkdir()
    (tmp_path / "hub_ext/common/hubconfig.py").write_text(
        "def f():\n    from spawner.traits import GroupLimitsConfig\n"
    )
    assert checker.violations(tmp_path) == []
    assert all(reason for reason in checker.ALLOWED.values())
