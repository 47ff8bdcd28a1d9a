"""The `report` row: the HTML report of a 30 s random-nemesis run of five priests.

One real cluster (`up --detach` with the relay), `chaos --random --seed 7
--duration 30`, `down`; then, on what it left: the time `paxos-harness report`
takes (a blank page opened in the same browser is not its floor: generating
is Python, showing is the browser), the file's size, and how long headless
Chromium takes to show it: the page's own `data-ready` (ms from navigation to
the end of its script, after the DOM and SVG are parsed) and the wall time of
a whole `--screenshot` run beside that of a blank page (the floor: starting
the browser). Medians; the targets are the issue's (< 5 MB, < 2 s).
"""

from __future__ import annotations

import re
import tempfile
import time
from pathlib import Path

from bench.browser import chromium, run_browser
from bench.cluster import write_config
from bench.starts import Skipped, _down, _harness, _up
from bench.stats import Figure, Target

SEED, DURATION, PRIESTS = 7, 30, 5


def report_row(workdir: Path, samples: int) -> list[Figure | Skipped]:
    """Bring up, fault for DURATION s, bring down; then time `report` and the browser."""
    config = write_config(workdir / "report", PRIESTS, "reportbench")
    _, up = _up(config)
    try:
        chaos = _harness("chaos", str(config), "--random", "--seed", str(SEED), "--duration",
                         str(DURATION), cwd=config.parent, timeout=DURATION + 60)
        if chaos.returncode != 0:
            return [Skipped("report", "report", f"chaos failed: {chaos.stderr.strip()[-300:]}")]
        _harness("verify", str(config), "--wait", "10", cwd=config.parent)
    finally:
        _down(up)
    out = workdir / "report" / "report.html"
    took = []
    for _ in range(samples):
        t0 = time.perf_counter()
        done = _harness("report", str(config), "-o", str(out), cwd=config.parent, timeout=120)
        took.append(time.perf_counter() - t0)
        if done.returncode != 0:
            return [Skipped("report", "report", f"report failed: {done.stderr.strip()[-300:]}")]
    messages = len(re.findall(r'class="msg', out.read_text()))
    notes = {"messages": messages, "seed": SEED, "duration": DURATION, "priests": PRIESTS}
    rows: list[Figure | Skipped] = [
        Figure("report", f"paxos-harness report ({messages} messages)", "s", took, notes=notes),
        Figure("report", "report.html size", "B", [float(out.stat().st_size)], notes=notes,
               target=Target(5e6, text="< 5 MB")),
    ]
    rows += _browser(out, samples, notes)
    return rows


def _browser(page: Path, samples: int, notes: dict[str, object]) -> list[Figure | Skipped]:
    binary = chromium()
    if binary is None:
        return [Skipped("report", "shown in Chromium", "no chromium (apt-get install chromium)")]
    with tempfile.TemporaryDirectory(prefix="paxos-bench-page-") as tmp:
        blank = Path(tmp) / "blank.html"
        blank.write_text("<!doctype html><title>blank</title><p>blank</p>\n")
        ready, wall, floor = [], [], []
        for _ in range(samples):
            t0 = time.perf_counter()
            dom = run_browser(binary, page.resolve().as_uri(), "--dump-dom")
            found = re.search(r'data-ready="(\d+)"', dom.stdout)
            if found:
                ready.append(int(found.group(1)) / 1000)
            shot = Path(tmp) / "shot.png"
            t0 = time.perf_counter()
            run_browser(binary, page.resolve().as_uri(), f"--screenshot={shot}",
                        "--window-size=1400,1000")
            wall.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            run_browser(binary, blank.resolve().as_uri(), f"--screenshot={shot}",
                        "--window-size=1400,1000")
            floor.append(time.perf_counter() - t0)
    out: list[Figure | Skipped] = []
    if ready:
        out.append(Figure("report", "page ready in Chromium (its data-ready)", "s", ready,
                          notes=notes, target=Target(2.0, text="< 2 s")))
    out.append(Figure("report", "Chromium screenshot of the report", "s", wall,
                      floor=sorted(floor)[len(floor) // 2], floor_name="same of a blank page",
                      notes=notes, target=Target(2.0, text="< 2 s")))
    return out
