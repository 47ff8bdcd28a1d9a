"""The README's pictures of the report, made again: docs/report-<name>.png.

    .venv/bin/python scripts/screenshots.py                  # all of them
    .venv/bin/python scripts/screenshots.py flaw demo        # some: demo, partition, flaw

Each one runs what it pictures, writes its report, and has headless Chromium
(`bench/browser.py`; Debian: `apt-get install chromium`) take a screenshot
1400 px wide:
- demo: `scripts/demo.py` on four real priests;
- partition: `chaos --schedule configs/chaos/partition.yaml` on four real priests;
- flaw: `simulate --flaw same-ballot-numbers --seed 444 --html`, the first
  seed where that flaw makes priests disagree, opened zoomed to the
  violations' evidence (the report's `#t=FROM,TO`).
Real priests run from a temporary directory, on free ports, and are taken down
(`down`) whatever happens; the report is written there, the PNG to docs/.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script: bench/ and harness/ from this checkout

from bench.browser import chromium, png_colours, run_browser  # noqa: E402
from bench.cluster import free_udp_ports, priest_names  # noqa: E402

WIDTH = 1400
ENV = {**os.environ, "NO_COLOR": "1", "PYTHONPATH": str(REPO)}
FLAW_SEED = 444  # README: one where same-ballot-numbers makes priests disagree


def harness(cwd: Path, *args: str, ok: tuple[int, ...] = (0,)) -> str:
    """`python -m harness ARGS` in `cwd`; its output, or SystemExit naming the step that failed."""
    print(f"$ paxos-harness {' '.join(args)}", flush=True)
    done = subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env=ENV, check=False)
    if done.returncode not in ok:
        raise SystemExit(f"screenshots: `{' '.join(args)}` exited {done.returncode}:\n"
                         f"{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return done.stdout


def write_config(work: Path) -> str:
    """configs/four.yaml in `work`, as shipped but on free ports: the page names what a user
    running from the repository would see (configs/..., data dir logs/four)."""
    lines = ["cluster: four", "data_dir: logs/four", "priests:"]
    lines += [f"  {name}: {{host: 127.0.0.1, port: {port}}}"
              for name, port in zip(priest_names(4), free_udp_ports(4), strict=True)]
    (work / "configs" / "chaos").mkdir(parents=True)
    (work / "configs" / "four.yaml").write_text("\n".join(lines) + "\n")
    return "configs/four.yaml"


def demo(work: Path) -> tuple[Path, str, int]:
    """The demo on four priests, then its report."""
    config = write_config(work)
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "demo.py"), config],
                          cwd=work, capture_output=True, text=True, timeout=300, env=ENV, check=False)
    if done.returncode != 0:
        raise SystemExit(f"screenshots: the demo failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    page = work / "demo.html"
    harness(work, "report", config, "-o", str(page))
    return page, "", 1100


def partition(work: Path) -> tuple[Path, str, int]:
    """alpha cut off while it ballots; the majority decides; after the heal alpha learns."""
    config = write_config(work)
    schedule = "configs/chaos/partition.yaml"
    shutil.copy(REPO / schedule, work / schedule)
    try:
        harness(work, "up", config, "--detach", "--fresh")
        harness(work, "chaos", config, "--schedule", schedule)
        harness(work, "verify", config, "--wait", "5")
    finally:
        harness(work, "down", config, ok=(0, 1))
    page = work / "partition.html"
    harness(work, "report", config, "-o", str(page))
    return page, "", 1100


def flaw(work: Path) -> tuple[Path, str, int]:
    """A flaw caught by the simulator, zoomed to the evidence of every rule it broke."""
    page = work / "flaw.html"
    harness(work, "simulate", "--flaw", "same-ballot-numbers", "--seed", str(FLAW_SEED),
            "--html", str(page), ok=(1,))
    windows = [(float(a), float(b)) for a, b in
               re.findall(r'class="show" href="#t=([0-9.]+),([0-9.]+)"', page.read_text())]
    view = f"#t={min(a for a, _ in windows):.6f},{max(b for _, b in windows):.6f}" if windows else ""
    return page, view, 1500


SHOTS: dict[str, Callable[[Path], tuple[Path, str, int]]] = {
    "demo": demo, "partition": partition, "flaw": flaw}


def main(argv: list[str] | None = None) -> int:
    names = (argv if argv is not None else sys.argv[1:]) or list(SHOTS)
    unknown = [n for n in names if n not in SHOTS]
    if unknown:
        print(f"screenshots: unknown {', '.join(unknown)} (choose from {', '.join(SHOTS)})",
              file=sys.stderr)
        return 2
    binary = chromium()
    if binary is None:
        print("screenshots: no chromium to take them with (apt-get install chromium)", file=sys.stderr)
        return 2
    for name in names:
        with tempfile.TemporaryDirectory(prefix=f"paxos-shot-{name}-") as tmp:
            page, view, height = SHOTS[name](Path(tmp))
            png = REPO / "docs" / f"report-{name}.png"
            done = run_browser(binary, page.resolve().as_uri() + view, f"--screenshot={png}",
                               f"--window-size={WIDTH},{height}", "--hide-scrollbars")
            if done.returncode != 0 or not png.exists() or png_colours(png) <= 16:
                raise SystemExit(f"screenshots: no picture of {page}: {done.stderr[-1000:]}")
            print(f"wrote {png.relative_to(REPO)} ({png.stat().st_size / 1e3:.0f} KB)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
