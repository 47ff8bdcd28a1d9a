"""Row `campaign`: real campaigns (`paxos-harness campaign ... --json`) of 5 priests, 2 s runs.

- overhead: each run's time beyond `--duration` (up, heal, settle, down,
  verify), one run at a time, against the processes a run must start: five
  forked priests and one exec'd relay (`5 x fork_start + exec_start`, floors
  of the same bench run); target: at most 0.4 s at the median;
- the correct core: violations in a campaign of `runs` runs with process and
  network faults (target 0);
- each flaw: the run that first breaks a rule, in a campaign of up to `runs`
  runs, once per seed (target: within 300); a campaign that catches nothing
  counts as 301 (or `runs + 1` if more), so it misses the target, and its
  notes say so. `ledger_lost` is passed over (`--until` every other rule): it
  is forget-promises' own trace at its first restart, not what the flaw breaks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.cluster import REPO, BenchError, write_config
from bench.stats import Figure, Target
from harness.check.verdict import KINDS
from node.flaws import FLAW_NAMES

DURATION = 2.0
# What a flaw breaks: every rule but forget-promises' own trace (a ledger that lost a promise).
BROKEN = tuple(k for k in KINDS if k != "ledger_lost")
OVERHEAD_FLOOR = "5 x fork_start + exec_start"


def _campaign(config: Path, *args: str) -> dict[str, Any]:
    env = {**os.environ, "NO_COLOR": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "harness", "campaign", str(config),
                           "--duration", f"{DURATION:g}", "--json", *args], cwd=config.parent,
                          env=env, capture_output=True, text=True, timeout=6 * 3600)
    if done.returncode not in (0, 1):
        raise BenchError(f"campaign exit {done.returncode}: {done.stderr.strip()[-300:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def overhead(workdir: Path, runs: int) -> Figure:
    """Seconds each run takes beyond --duration, one run at a time."""
    config = write_config(workdir / "campaign-overhead", 5, "camp")
    summary = _campaign(config, "--runs", str(runs), "--seed", "1", "--jobs", "1")
    samples = [r["elapsed"] - DURATION for r in summary["results"]]
    return Figure("campaign", "a run beyond --duration, 5 priests", "s", samples,
                  floor_name=OVERHEAD_FLOOR, target=Target(0.4, text="<= 0.4 s"),
                  notes={"phases": [r["phases"] for r in summary["results"]]})


def correct_core(workdir: Path, runs: int, jobs: int) -> Figure:
    """Violations of the correct core in `runs` runs of 2 s, process and network faults."""
    config = write_config(workdir / "campaign-correct", 5, "camp")
    summary = _campaign(config, "--runs", str(runs), "--seed", "1", "--jobs", str(jobs),
                        "--keep-going")
    bad = summary["counts"]["violation"]
    return Figure("campaign", f"runs with a violation of {runs}, correct core", "runs",
                  [float(bad)],
                  target=Target(1, text="0"), notes={"counts": summary["counts"],
                                                     "elapsed": summary["elapsed"]})


def catches(workdir: Path, runs: int, seeds: int, jobs: int) -> list[Figure]:
    """Per flaw: the number of the run that first broke a rule, for each seed."""
    out = []
    for flaw in FLAW_NAMES:
        samples: list[float] = []
        notes: dict[str, Any] = {}
        for seed in range(1, seeds + 1):
            config = write_config(workdir / f"campaign-{flaw}-{seed}", 5, "camp")
            until = [arg for rule in BROKEN for arg in ("--until", rule)]
            summary = _campaign(config, "--runs", str(runs), "--seed", str(seed), "--jobs",
                                str(jobs), "--flaw", flaw, *until)
            failing = [f["run"] for f in summary["failures"] if f["status"] == "violation"]
            samples.append(float(min(failing)) if failing else float(max(runs, 300) + 1))
            notes[f"seed {seed}"] = {"done": summary["done"], "rules": [
                f["rules"] for f in summary["failures"]], "caught": bool(failing),
                "passed_over": summary["passed_over"]}
        out.append(Figure("campaign", f"runs to the first catch, {flaw}", "runs", samples,
                          target=Target(301, text="<= 300"), notes=notes))
    return out
