"""The benchmark's output: a table on screen and one JSON file under logs/bench/."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any, Protocol

from bench.stats import Figure, percentile

HEADERS = ["row", "figure", "median", "p90", "p99", "n", "floor", "x floor", "target"]


class Entry(Protocol):
    row: str
    name: str

    def to_json(self) -> dict[str, Any]: ...


def fmt(value: float | None, unit: str) -> str:
    """A value in its unit, scaled for reading: 812 us, 3.4 ms, 1.20 s, 14.1 MB, 1,234/s."""
    if value is None:
        return "-"
    if unit == "B":
        return f"{value / 1e6:.1f} MB"
    if unit == "/s":
        return f"{value:,.0f}/s"
    if unit == "runs":
        return f"{value:,.0f} runs"
    if value < 1e-3:
        return f"{value * 1e6:.0f} us"
    if value < 1.0:
        return f"{value * 1e3:.2f} ms"
    return f"{value:.2f} s"


def _cells(entry: Entry) -> list[str]:
    if not isinstance(entry, Figure):
        return [entry.row, entry.name, entry.to_json().get("skipped", "-"), "", "", "", "", "", ""]
    f = entry
    floor = f"{fmt(f.floor, f.unit)} ({f.floor_name})" if f.floor is not None else "-"
    ratio = f"{f.ratio:.2f}" if f.ratio is not None else "-"
    target = "-"
    if f.target is not None:
        met = f.met
        target = f"{f.target.text}: {'-' if met is None else 'met' if met else 'MISSED'}"
    return [f.row, f.name, fmt(f.median, f.unit), fmt(percentile(f.samples, 90), f.unit),
            fmt(percentile(f.samples, 99), f.unit), str(len(f.samples)), floor, ratio, target]


def table(entries: list[Entry]) -> str:
    """A plain aligned table, one line per figure."""
    rows = [HEADERS] + [_cells(e) for e in entries]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADERS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines) + "\n"


def write_json(directory: Path, entries: list[Entry], options: dict[str, Any]) -> Path:
    """logs/bench/bench-<time>.json (and latest.json): every figure with its samples."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    document = {
        "version": 1, "time": stamp, "options": options,
        "host": {"python": platform.python_version(), "machine": platform.machine(),
                 "system": platform.platform()},
        "figures": [e.to_json() for e in entries],
    }
    text = json.dumps(document, indent=2) + "\n"
    path = directory / f"bench-{stamp}.json"
    path.write_text(text)
    (directory / "latest.json").write_text(text)
    return path
