"""The `report` row: the HTML report of a real 30 s random-nemesis run, and of a simulated run
of 30 virtual seconds with about 10,000 messages.

The real run: one cluster of five priests (`up --detach` with the relay),
`chaos --random --seed 7 --duration 30`, `down`; then the time `paxos-harness
report` takes on what it left. The large one: `paxos-harness simulate` on one
seed of a 30 s faulty phase with thousands of ballot requests and a
partition (SIM_ARGS), written with `--html`, and timed the same way.

For each page: its size (target < 5 MB), and how long headless Chromium takes
to show it, through the DevTools protocol (`bench.browser.page_times`): the
page's own `data-ready` (its script ran to the end: the DOM and SVG parsed)
and `shown` (two animation frames after its load event: laid out and
painted), both in ms after its navigation began, beside the same of a blank
page with a one-line script opened in the same run (the floor: what any page
costs). Samples of the pages and the blank page interleave. Medians; the
targets are the issue's (< 5 MB, < 2 s). Generating is Python and has no
browser floor.
"""

from __future__ import annotations

import re
import tempfile
import time
from pathlib import Path

from bench.browser import chromium, page_times
from bench.cluster import write_config
from bench.starts import Skipped, _down, _harness, _up
from bench.stats import Figure, Target, median

SEED, DURATION, PRIESTS = 7, 30, 5
# About 10,000 messages between priests, 30 virtual seconds, crashes and a partition.
SIM_ARGS = ("simulate", "--seed", "0", "--ballots", "2700", "--partition", "1", "--horizon", "30")
BLANK = ("<!doctype html><title>blank</title><p>blank</p><script>document.documentElement"
         ".setAttribute('data-ready', String(Math.round(performance.now())));</script>\n")


def report_row(workdir: Path, samples: int) -> list[Figure | Skipped]:
    """The real run's report and the large simulated one: generation, size, Chromium."""
    rows: list[Figure | Skipped] = []
    pages: dict[str, tuple[Path, dict[str, object]]] = {}
    real = _real(workdir, samples)
    if isinstance(real, Skipped):
        rows.append(real)
    else:
        figures, page, notes = real
        rows += figures
        pages["real run"] = (page, notes)
    figures, page, notes = _simulated(workdir, samples)
    rows += figures
    if page is not None:
        pages["simulated"] = (page, notes)
    return rows + _browser(pages, samples)


def _real(workdir: Path, samples: int) -> Skipped | tuple[list[Figure | Skipped], Path, dict[str, object]]:
    """Bring up, fault for DURATION s, bring down; then time `report`."""
    config = write_config(workdir / "report", PRIESTS, "reportbench")
    _, up = _up(config)
    try:
        chaos = _harness("chaos", str(config), "--random", "--seed", str(SEED), "--duration",
                         str(DURATION), cwd=config.parent, timeout=DURATION + 60)
        if chaos.returncode != 0:
            return Skipped("report", "report", f"chaos failed: {chaos.stderr.strip()[-300:]}")
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
            return Skipped("report", "report", f"report failed: {done.stderr.strip()[-300:]}")
    messages = _messages(out)
    notes = {"messages": messages, "seed": SEED, "duration": DURATION, "priests": PRIESTS}
    return [
        Figure("report", f"paxos-harness report ({messages} messages)", "s", took, notes=notes),
        Figure("report", "report.html size, real run", "B", [float(out.stat().st_size)],
               notes=notes, target=Target(5e6, text="< 5 MB")),
    ], out, notes


def _simulated(workdir: Path, samples: int
               ) -> tuple[list[Figure | Skipped], Path | None, dict[str, object]]:
    """Time `simulate ... --html` on the large run."""
    out = workdir / "report" / "simulated.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    took = []
    for _ in range(samples):
        t0 = time.perf_counter()
        done = _harness(*SIM_ARGS, "--html", str(out), cwd=workdir, timeout=300)
        took.append(time.perf_counter() - t0)
        if done.returncode not in (0, 1):
            why = f"simulate --html failed: {done.stderr.strip()[-300:]}"
            return [Skipped("report", "simulated report", why)], None, {}
    messages = _messages(out)
    notes: dict[str, object] = {"messages": messages, "command": "paxos-harness " + " ".join(SIM_ARGS)}
    return [
        Figure("report", f"simulate --html ({messages} messages, whole command)", "s", took,
               notes=notes),
        Figure("report", "report.html size, simulated", "B", [float(out.stat().st_size)],
               notes=notes, target=Target(5e6, text="< 5 MB")),
    ], out, notes


def _messages(page: Path) -> int:
    return len(re.findall(r'class="msg', page.read_text()))


def _browser(pages: dict[str, tuple[Path, dict[str, object]]], samples: int
             ) -> list[Figure | Skipped]:
    binary = chromium()
    if binary is None:
        return [Skipped("report", "shown in Chromium", "no chromium (apt-get install chromium)")]
    if not pages:
        return []
    ready: dict[str, list[float]] = {name: [] for name in pages}
    shown: dict[str, list[float]] = {name: [] for name in pages}
    blank_ready: list[float] = []
    blank_shown: list[float] = []
    with tempfile.TemporaryDirectory(prefix="paxos-bench-page-") as tmp:
        blank = Path(tmp) / "blank.html"
        blank.write_text(BLANK)
        for _ in range(samples):  # interleaved, so a slow moment of the machine hits all alike
            for name, (page, _notes) in pages.items():
                times = page_times(binary, page.resolve().as_uri())
                ready[name].append(times.ready / 1000)
                shown[name].append(times.shown / 1000)
            times = page_times(binary, blank.resolve().as_uri())
            blank_ready.append(times.ready / 1000)
            blank_shown.append(times.shown / 1000)
    out: list[Figure | Skipped] = []
    for name, (_page, notes) in pages.items():
        what = f"{name}, {notes['messages']} messages"
        out.append(Figure("report", f"script done in Chromium (data-ready), {what}", "s",
                          ready[name], floor=median(blank_ready), floor_name="same, blank page",
                          notes=notes))
        out.append(Figure("report", f"shown in Chromium (load + 2 frames), {what}", "s",
                          shown[name], floor=median(blank_shown), floor_name="same, blank page",
                          notes=notes, target=Target(2.0, text="< 2 s")))
    return out
