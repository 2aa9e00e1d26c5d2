"""Fail when a package imports above its floor (docs/architecture.md); part of ``make lint``.

The floors, bottom up: ``latticehub`` ← ``spawner``, ``flows`` ← ``hub_ext`` ← ``widgets`` ←
``jupyterhub_config.py``. Besides, ``hub_ext`` never imports ``spawner``, and ``flows`` and
``widgets`` never import ``hub_ext``. Every ``import`` statement counts, also those inside
functions (a lazy import is still a dependency). Usage: ``python scripts/check_layers.py
[ROOT]``; exit status 1 with one line per violation.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

#: package -> the project's packages it must never import
FORBIDDEN: dict[str, frozenset[str]] = {
    "latticehub": frozenset({"spawner", "flows", "hub_ext", "widgets", "jupyterhub_config"}),
    "spawner": frozenset({"flows", "hub_ext", "widgets", "jupyterhub_config"}),
    "flows": frozenset({"spawner", "hub_ext", "widgets", "jupyterhub_config"}),
    "hub_ext": frozenset({"spawner", "widgets", "jupyterhub_config"}),
    "widgets": frozenset({"spawner", "hub_ext", "jupyterhub_config"}),
}
#: file -> imports it may make despite its floor, with the reason
ALLOWED: dict[tuple[str, str], str] = {
    ("hub_ext/common/hubconfig.py", "spawner"): (
        "runs inside jupyterhub_config.py (the top floor) to read the spawner's settings"
    ),
}


def imported(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """``(line, top-level package)`` of every absolute import in ``tree``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module.split(".")[0]


def violations(root: Path) -> list[str]:
    """One line per import above its floor under ``root`` (a checkout)."""
    found = []
    for package, forbidden in FORBIDDEN.items():
        for path in sorted((root / package).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=rel)
            for line, name in imported(tree):
                if name in forbidden and (rel, name) not in ALLOWED:
                    found.append(
                        f"{rel}:{line}: {package} imports {name}, a floor above it or beside "
                        "it (docs/architecture.md): move the shared code down to latticehub "
                        "(or hub_ext/common), or call the other part over HTTP"
                    )
    return found


def main(argv: list[str]) -> int:
    """Print the violations under ``argv[0]`` (default: the checkout); 1 if there are any."""
    root = Path(argv[0]) if argv else Path(__file__).resolve().parents[1]
    found = violations(root)
    for line in found:
        print(line)
    if not found:
        print(f"layers: no import above its floor in {', '.join(FORBIDDEN)}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
