"""Packaging and generated docs stay in step with the code."""

import re
import subprocess
import sys
import zipfile
from importlib.metadata import distribution, entry_points
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("name", "target"),
    [("groupdocker", "GroupLimitDockerSpawner"), ("groupswarm", "GroupLimitSwarmSpawner")],
)
def test_spawner_entry_points_load(name, target):
    (ep,) = [e for e in entry_points(group="jupyterhub.spawners") if e.name == name]
    assert ep.value == f"spawner:{target}"
    assert ep.load().__name__ == target


def test_distribution_declares_requirements_and_extras():
    dist = distribution("latticehub")
    requires = " ".join(dist.requires or [])
    for needed in ("jupyterhub>=6", "dockerspawner>=14", "docker>=7"):
        assert needed in requires
    extras = set(dist.metadata.get_all("Provides-Extra") or [])
    assert {"test", "train", "widgets"} <= extras


def test_every_package_imports():
    code = "import spawner, hub_ext, widgets, flows"
    subprocess.run([sys.executable, "-c", code], check=True, cwd="/")


def test_config_reference_is_up_to_date():
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_config_docs.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def test_repo_config_compiles():
    compile((ROOT / "jupyterhub_config.py").read_text(), "jupyterhub_config.py", "exec")


def test_latticehub_cli_help():
    result = subprocess.run(
        [sys.executable, "-m", "hub_ext.experiments.cli", "sync", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "spool directory" in result.stdout
    assert any(e.name == "latticehub" for e in entry_points(group="console_scripts"))


def test_experiments_service_help():
    result = subprocess.run(
        [sys.executable, "-m", "hub_ext.experiments", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--db-url" in result.stdout


@pytest.mark.slow
def test_wheel_holds_every_subpackage_and_the_dashboard_files(tmp_path):
    # the single-user image installs this wheel (not the checkout): a missing subpackage
    # or template only shows there
    root = ROOT
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(root)],
        check=True,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("latticehub-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in (
        "latticehub/client/__init__.py",
        "latticehub/client/spool.py",
        "latticehub/policy.py",
        "hub_ext/experiments/client.py",
        "hub_ext/common/service.py",
        "hub_ext/experiments/store/sql.py",
        "hub_ext/experiments/jobs/manager.py",
        "hub_ext/experiments/dashboard/templates/run.html",
        "hub_ext/experiments/dashboard/static/dashboard.js",
        "hub_ext/hub_templates/page.html",
        *(
            f"hub_ext/quotas/templates/{p.name}"
            for p in (root / "hub_ext/quotas/templates").glob("*.html")
        ),
        *(f"spawner/templates/{p.name}" for p in (root / "spawner/templates").glob("*.html")),
        *(
            f"hub_ext/common/templates/{p.name}"
            for p in (root / "hub_ext/common/templates").glob("*.html")
        ),
        "latticehub/policydoc.py",
        "latticehub/joblimits.py",
        "flows/train.py",
        "widgets/__init__.py",
    ):
        assert needed in names, f"{needed} is missing from the wheel"


def test_license_file_is_the_license_setup_declares():
    declared = re.search(r'license="([^"]+)"', (ROOT / "setup.py").read_text()).group(1)
    text = (ROOT / "LICENSE").read_text()
    names = {"BSD-3-Clause": "BSD 3-Clause License"}
    assert declared in names, f"setup.py declares {declared}: add its LICENSE heading here"
    assert text.startswith(names[declared])
    assert "Neither the name of the copyright holder" in text  # the third clause


def test_changelog_has_an_entry_for_the_version_setup_declares():
    version = re.search(r'version="([^"]+)"', (ROOT / "setup.py").read_text()).group(1)
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert f"## {version}" in changelog
    assert changelog.index("## Unreleased") < changelog.index(f"## {version}")
