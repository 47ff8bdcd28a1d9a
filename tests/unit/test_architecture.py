"""The layering the folders promise, checked from the source's imports.

node/ never imports harness/; the harness's packages import one another
without cycles (lazy imports inside functions count too); a verb module is
imported only by the CLI's table.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def imports(path: Path) -> set[str]:
    """Every module `path` imports, anywhere in it, as dotted names."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return found


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_of(module: str) -> str | None:
    """harness.supervisor.core -> harness.supervisor; harness.cli -> harness.cli."""
    parts = module.split(".")
    if parts[0] != "harness" or len(parts) < 2:
        return None
    sub = ROOT / "harness" / parts[1]
    return ".".join(parts[:2]) if sub.is_dir() or (ROOT / "harness" / f"{parts[1]}.py").exists() \
        else None


def test_node_never_imports_the_harness() -> None:
    for path in sorted((ROOT / "node").glob("*.py")):
        wrong = {m for m in imports(path) if m.split(".")[0] == "harness"}
        assert not wrong, f"{path.name} imports {sorted(wrong)}"


def test_the_harness_packages_import_each_other_without_cycles() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    for path in sorted((ROOT / "harness").rglob("*.py")):
        source = package_of(module_name(path))
        if source is None:  # harness/__init__.py, harness/__main__.py
            continue
        for target in filter(None, map(package_of, imports(path))):
            if target != source:
                graph[source].add(target)
    done: set[str] = set()

    def visit(package: str, trail: tuple[str, ...]) -> None:
        assert package not in trail, f"import cycle: {' -> '.join(trail + (package,))}"
        if package in done:
            return
        for target in sorted(graph[package]):
            visit(target, trail + (package,))
        done.add(package)

    for package in sorted(graph):
        visit(package, ())
    assert "harness.verbs" in graph["harness.cli"]  # the check sees the real graph


def test_a_verb_is_imported_only_by_the_cli_table() -> None:
    for path in sorted((ROOT / "harness").rglob("*.py")):
        if path.parent.name == "verbs" or path.name == "cli.py":
            continue
        wrong = {m for m in imports(path) if m.startswith("harness.verbs")}
        assert not wrong, f"{path.relative_to(ROOT)} imports {sorted(wrong)}"
