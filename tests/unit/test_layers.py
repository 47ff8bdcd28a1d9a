"""The core is a leaf: it imports only the message types and the flaw strategies.

(The layering of node/ and harness/ as a whole: test_architecture.py.)
"""

from __future__ import annotations

import ast
from pathlib import Path

NODE = Path(__file__).resolve().parents[2] / "node"


def project_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    found |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    return {m for m in found if m.split(".")[0] in ("node", "harness")}


def test_the_core_imports_only_messages_and_flaws() -> None:
    assert project_imports(NODE / "synod.py") == {"node.messages", "node.flaws"}


def test_the_vocabulary_modules_are_leaves() -> None:
    assert project_imports(NODE / "messages.py") == set()
    assert project_imports(NODE / "flaws.py") == {"node.messages"}


def test_only_what_runs_the_core_imports_it() -> None:
    users = {p.name for p in NODE.glob("*.py") if "node.synod" in project_imports(p)}
    assert users == {"runtime.py", "sim.py"}
