"""What the docs name is there: every config and example a README or docs/ page cites."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "examples").glob("*/README.md")),
        *sorted((ROOT / "docs").glob("*.md"))]


def test_every_config_and_example_the_docs_cite_exists() -> None:
    missing = []
    for doc in DOCS:
        for path in re.findall(r"`((?:configs|examples)/[^`\s]+)`", doc.read_text()):
            if not any(ROOT.glob(path)):  # a pattern (`configs/flawed-*.yaml`) names one at least
                missing.append(f"{doc.relative_to(ROOT)}: {path}")
    assert not missing
