"""The packages' imports point one way (docs/design.md, "Architecture"): read with ``ast`` from every file, lazy
imports inside functions included, so a new import against the direction fails here.

    python tests/test_layering.py       # prints each package and the project packages it imports
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("alignment", "toyworld", "training", "evaluations", "studio", "benchmarks")
ALLOWED = {
    "app": {"studio"},
    "alignment": set(),
    "toyworld": {"alignment"},  # only toyworld/taste_reward.py: the taste as an alignment reward
    "training": {"alignment", "toyworld"},
    "evaluations": {"alignment", "toyworld", "training"},
    "studio": {"alignment", "toyworld"},  # toyworld only to register toy-taste when STUDIO_REWARD names it
    "benchmarks": {"alignment", "studio", "toyworld"},
}


def files_of(package: str) -> list[Path]:
    return [ROOT / "app.py"] if package == "app" else sorted((ROOT / package).rglob("*.py"))


def imports_of(path: Path) -> set[str]:
    """The top-level names ``path`` imports (absolute imports only: relative ones stay in the package)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def dependencies() -> dict[str, dict[str, list[str]]]:
    """package -> {project package it imports -> the files that import it}."""
    project = set(ALLOWED)
    table = {}
    for package in ALLOWED:
        found: dict[str, list[str]] = {}
        for path in files_of(package):
            for name in sorted(imports_of(path) & project - {package}):
                found.setdefault(name, []).append(str(path.relative_to(ROOT)))
        table[package] = found
    return table


def test_every_package_is_in_the_table():
    on_disk = {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file()}
    assert on_disk == set(PACKAGES)


def test_imports_point_one_way():
    wrong = {f"{package} -> {name} ({', '.join(files)})"
             for package, found in dependencies().items() for name, files in found.items()
             if name not in ALLOWED[package]}
    assert not wrong, sorted(wrong)


def test_no_cycles():
    graph = {package: set(found) for package, found in dependencies().items()}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in graph[start])

    assert not [p for p in graph if reaches(p, p, {p})]


def test_no_private_name_of_alignment_is_imported_elsewhere():
    wrong = []
    for package in set(ALLOWED) - {"alignment"}:
        for path in files_of(package):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("alignment"):
                    wrong += [f"{path.relative_to(ROOT)}: {a.name}" for a in node.names if a.name.startswith("_")]
    assert not wrong


if __name__ == "__main__":
    for package, found in dependencies().items():
        print(f"{package:12s} -> {', '.join(sorted(found)) or '-'}")
