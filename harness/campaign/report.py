"""What a campaign prints: a progress line on a terminal, each failing run, a summary, JSON."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from harness.campaign.pool import Outcome
from harness.campaign.run import RunResult, Status, passed_over
from harness.campaign.spec import CONFIG_FILE, Campaign, chaos_command, replay_command

REPLAY_NOTE = ("a replay repeats the same actions at the same offsets on real processes; their "
               "timing (scheduling, fsync, signal delivery) differs, so it may not break the rule "
               "again: run it a few times, or read the kept files")


class Progress:
    """`campaign: 12/300 runs, 25.1 runs/min, 0 violations, 2 running`, rewritten in place."""

    def __init__(self, out: TextIO, total: int, on: bool,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.out, self.total, self.on, self.clock = out, total, on, clock
        self.start = clock()
        self.done = self.violations = 0
        self.shown = False

    def result(self, r: RunResult) -> None:
        self.done += 1
        self.violations += r.status == Status.VIOLATION

    def tick(self, running: int) -> None:
        if not self.on:
            return
        minutes = (self.clock() - self.start) / 60
        rate = f"{self.done / minutes:.1f} runs/min" if minutes > 0 and self.done else "- runs/min"
        text = (f"campaign: {self.done}/{self.total} runs, {rate}, {self.violations} "
                f"violation{'s' if self.violations != 1 else ''}, {running} running")
        self._write(f"\r\x1b[K{text}")
        self.shown = True

    def clear(self) -> None:
        if self.shown:
            self._write("\r\x1b[K")
            self.shown = False

    def _write(self, text: str) -> None:
        try:
            self.out.write(text)
            self.out.flush()
        except (OSError, ValueError):
            pass  # the terminal went away; the campaign goes on


def failure(campaign: Campaign, r: RunResult) -> list[str]:
    """A failing run: which, its seed, the rules, verify's own text, its files, the replay."""
    what = {Status.VIOLATION: "VIOLATION", Status.UNVERIFIABLE: "CANNOT VERIFY",
            Status.UNDECIDED: "NOT DECIDED after the heal"}.get(r.status, r.status.upper())
    rules = f": {', '.join(r.rules)}" if r.rules else ""
    lines = [f"{what} in run {r.run} (plan seed {r.seed}){rules}", ""]
    lines += ["  " + line if line else "" for line in r.evidence.rstrip("\n").splitlines()]
    lines += ["", (f"files kept in {r.directory}/ (config.yaml, plan.txt, chaos.log, "
                   f"verdict.txt, run.json, and the priests' and the supervisor's files)"),
              f"replay this run's plan: {replay_command(campaign, r.run)}",
              f"  or by hand: {chaos_command(campaign, r.run, Path(r.directory) / CONFIG_FILE)}",
              f"  ({REPLAY_NOTE})"]
    return lines


def passed_over_line(campaign: Campaign, r: RunResult) -> str:
    """A run that broke only rules --until does not seek: one line, no evidence."""
    return (f"run {r.run} (plan seed {r.seed}): {', '.join(r.rules)}; passed over "
            f"(--until {' '.join(campaign.until)}), its files removed")


def passed_over_counts(campaign: Campaign, results: Sequence[RunResult]) -> dict[str, int]:
    """Rule -> runs passed over that broke it (with --until)."""
    found: dict[str, int] = {}
    for r in results:
        if passed_over(campaign, r):
            for rule in r.rules:
                found[rule] = found.get(rule, 0) + 1
    return dict(sorted(found.items()))


def counts(results: Sequence[RunResult]) -> dict[str, int]:
    return {s.value: sum(1 for r in results if r.status == s) for s in Status
            if s != Status.INTERRUPTED}


def overhead(campaign: Campaign, results: Sequence[RunResult]) -> float | None:
    """The median of each run's time beyond --duration (up, heal, settle, verify, down)."""
    done = [r.elapsed - campaign.duration for r in results]
    return round(statistics.median(done), 3) if done else None


def summary(campaign: Campaign, outcome: Outcome) -> str:
    """One line: how many runs, passed and failed, how fast; why it stopped early."""
    rs = outcome.results
    c = counts(rs)
    minutes = outcome.elapsed / 60
    rate = f"{len(rs) / minutes:.1f} runs/min" if minutes > 0 else "-"
    over = overhead(campaign, rs)
    parts = [f"{c['pass']} passed", f"{c['violation']} with a violation"]
    for key, label in (("unverifiable", "unverifiable"), ("undecided", "not decided")):
        if c[key]:
            parts.append(f"{c[key]} {label}")
    text = (f"campaign seed {campaign.seed}: {len(rs)} of {len(campaign.numbers)} runs of "
            f"{campaign.duration:g} s on {campaign.config.path} ({', '.join(parts)}) in "
            f"{outcome.elapsed:.1f} s, {rate}")
    if over is not None:
        text += f", median {over:.2f} s a run beyond --duration"
    skipped = passed_over_counts(campaign, rs)
    if campaign.until:
        text += (f"; passed over (--until {' '.join(campaign.until)}), runs breaking other "
                 f"rules: {', '.join(f'{k} in {n}' for k, n in skipped.items()) or 'none'}")
    if outcome.interrupted:
        text += "; INTERRUPTED (Ctrl+C): every process it started has ended"
    elif outcome.stopped:
        sought = f" of {', '.join(campaign.until)}" if campaign.until else ""
        text += f"; stopped at the first violation{sought} (--keep-going runs them all)"
    return text


def to_json(campaign: Campaign, outcome: Outcome, status: int) -> dict[str, Any]:
    """The campaign as plain data, for scripts (`--json`)."""
    failing = [r for r in outcome.results
               if r.status != Status.PASS and not passed_over(campaign, r)]
    return {
        "config": campaign.config.path, "seed": campaign.seed,
        "runs": len(campaign.numbers), "done": len(outcome.results),
        "duration": campaign.duration, "rate": campaign.rate, "faults": list(campaign.faults),
        "flaws": list(campaign.all_flaws), "jobs": campaign.jobs,
        "counts": counts(outcome.results), "elapsed": round(outcome.elapsed, 3),
        "overhead_median": overhead(campaign, outcome.results),
        "interrupted": outcome.interrupted, "stopped": outcome.stopped, "exit_status": status,
        "until": list(campaign.until),
        "passed_over": passed_over_counts(campaign, outcome.results),
        "failures": [{**r.to_json(), "replay": replay_command(campaign, r.run)} for r in failing],
        "results": [{"run": r.run, "seed": r.seed, "status": r.status.value, "rules": r.rules,
                     "elapsed": r.elapsed, "phases": r.phases} for r in outcome.results],
    }
