"""The job environment and the notebook image carry every module their code imports.

Both build a small wheel from a list of files (``JOB_CLIENT_FILES`` in scripts/services.sh,
``CLIENT_FILES`` in images/build.sh), not from the whole package. A module the client starts
to import but the lists lack would fail every job and notebook at ``import`` time, and only
the slow tiers would notice.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def listed(script: str, name: str) -> set[Path]:
    text = (ROOT / script).read_text(encoding="utf-8")
    found = re.search(rf"^{name}=\(([^)]*)\)", text, re.MULTILINE)
    assert found, f"{name} not found in {script}"
    out: set[Path] = set()
    for entry in found.group(1).split():
        path = ROOT / entry
        out |= set(path.rglob("*.py")) if path.is_dir() else {path}
    return out


def project_imports(path: Path) -> set[Path]:
    """Files of ``latticehub`` that ``path`` imports (absolute or relative, lazy ones too)."""
    package = path.relative_to(ROOT).with_suffix("").parts[:-1]
    out: set[Path] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[tuple[str, ...]] = []
        if isinstance(node, ast.Import):
            names = [tuple(a.name.split(".")) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else ()
            module = tuple(node.module.split(".")) if node.module else ()
            names = [base + module + (a.name,) for a in node.names] + [base + module]
        for parts in names:
            if parts and parts[0] == "latticehub":
                for candidate in (ROOT.joinpath(*parts).with_suffix(".py"),
                                  ROOT.joinpath(*parts, "__init__.py")):  # fmt: skip
                    if candidate.exists():
                        out.add(candidate)
    return out


@pytest.mark.parametrize(
    ("script", "name", "packages"),
    [
        ("scripts/services.sh", "JOB_CLIENT_FILES", ("flows",)),  # python -m flows.train
        ("images/build.sh", "CLIENT_FILES", ("flows", "widgets")),  # a notebook
    ],
)
def test_every_module_the_client_imports_is_in_the_list(script, name, packages):
    """The client, and the packages that go whole beside the list, import only listed files."""
    whole = [path for package in packages for path in (ROOT / package).rglob("*.py")]
    files = listed(script, name) | set(whole)
    todo = [ROOT / "latticehub/client/__init__.py", *whole]
    needed: set[Path] = set()
    while todo:
        path = todo.pop()
        if path in needed:
            continue
        needed.add(path)
        todo += project_imports(path)
    missing = sorted(str(p.relative_to(ROOT)) for p in needed - files)
    assert not missing, f"{script} {name} lacks {missing}: add them to the list"
