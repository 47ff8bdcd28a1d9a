"""The executor: applies a chaos plan (`harness.chaos.plan`) to a running cluster.

Every action goes through the supervisor's control channel: the supervisor
sends the signal or starts the process, refuses what makes no sense, and
records each action in `<data_dir>/harness.jsonl`. This module waits for each
step's time, sends it, shows one line per action (coloured on a terminal,
with a progress line for long runs) and records the run's start (with the
seed of a random plan) and end in the same file.

Clock, sleep and the control request are passed to `Executor`, so tests can
drive it with fakes.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from colorama import Fore, Style

from harness.chaos.plan import (
    Plan,
    Step,
    parse_schedule,
)
from harness.errors import PROG, ControlError, NotUpError, RefusedError, UsageError, UserError
from harness.output import use_color
from harness.record import ChaosEnd, ChaosStart, now
from harness.supervisor import control
from harness.supervisor.actions import KILL_AFTER_PROMISE
from harness.supervisor.state import RunState, record_event
from node.config import load_yaml
from node.errors import ConfigError

STYLE = {"kill": Fore.RED, KILL_AFTER_PROMISE: Fore.RED, "stop": Fore.RED,
         "pause": Fore.YELLOW, "resume": Fore.GREEN,
         "restart": Fore.CYAN, "ballot": Fore.MAGENTA, "partition": Fore.BLUE,
         "isolate": Fore.BLUE, "drop": Fore.BLUE, "duplicate": Fore.BLUE, "delay": Fore.BLUE,
         "drop-success": Fore.BLUE, "heal": Fore.GREEN}
PROGRESS_AFTER = 2.0  # plans longer than this get a progress line on a terminal
TICK = 0.1  # seconds between progress updates while waiting for the next step

Send = Callable[[Step], dict[str, Any]]


@dataclass(frozen=True)
class Result:
    """What one step did: when (seconds from the start), to which pid, with what outcome."""

    step: Step
    elapsed: float
    pid: int | None
    outcome: str
    ok: bool


# --- live output ----------------------------------------------------------------


class Live:
    """One line per action; on a terminal, a progress line kept at the bottom."""

    def __init__(self, out: TextIO, color: bool, progress: bool) -> None:
        self.out, self.color, self.progress_on = out, color, progress
        self._shown = False

    def action(self, r: Result) -> None:
        """Print the line of one action (replacing the progress line)."""
        pid = f"pid {r.pid}" if r.pid is not None else ("pid -" if r.step.priest else "")
        note = f"  ({r.step.note})" if r.step.note else ""
        outcome = r.outcome if r.ok else f"REFUSED: {r.outcome}"
        when = f"{f'+{r.elapsed:.3f}s':>9}"
        action, priest = f"{r.step.action:<9}", f"{r.step.what:<8}"
        if self.color:
            style = STYLE.get(r.step.action, "") if r.ok else Fore.RED + Style.BRIGHT
            when = f"{Style.DIM}{when}{Style.RESET_ALL}"
            action = f"{style}{action}{Style.RESET_ALL}"
            priest = f"{Style.BRIGHT}{priest}{Style.RESET_ALL}"
            if not r.ok:
                outcome = f"{Fore.RED}{outcome}{Style.RESET_ALL}"
        self._write(f"{self._clear()}{when}  {action}  {priest} {pid:<10} {outcome}{note}\n")

    def progress(self, done: int, total: int, elapsed: float, span: float, refused: int) -> None:
        """Rewrite the progress line (terminal only)."""
        if not self.progress_on:
            return
        pct = 100 * min(elapsed / span, 1.0) if span > 0 else 100.0
        text = (f"chaos: {done}/{total} actions, {elapsed:.1f}/{span:.1f} s ({pct:.0f}%)"
                f"{f', {refused} refused' if refused else ''}")
        self._write(f"\r\x1b[K{Style.DIM if self.color else ''}{text}"
                    f"{Style.RESET_ALL if self.color else ''}")
        self._shown = True

    def line(self, text: str) -> None:
        self._write(f"{self._clear()}{text}\n")

    def _clear(self) -> str:
        if self._shown:
            self._shown = False
            return "\r\x1b[K"
        return ""

    def _write(self, text: str) -> None:
        try:
            self.out.write(text)
            self.out.flush()
        except (BrokenPipeError, ValueError, OSError):
            pass  # the terminal is gone; the run carries on


# --- the executor ----------------------------------------------------------------


class Executor:
    """Applies a plan's steps at their times via `send`; stops at a refusal unless keep_going."""

    def __init__(self, send: Send, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep, live: Live | None = None,
                 keep_going: bool = False) -> None:
        self.send, self.clock, self.sleep = send, clock, sleep
        self.live = live
        self.keep_going = keep_going
        self.results: list[Result] = []

    def run(self, plan: Plan) -> list[Result]:
        """Apply every step in order, each no earlier than its time; the results so far."""
        start = self.clock()
        total = len(plan.steps)
        for step in plan.steps:
            self._wait_until(start + step.at, start, plan)
            result = self._apply(step, start)
            self.results.append(result)
            if self.live is not None:
                self.live.action(result)
            if not result.ok and not self.keep_going:
                break
        else:
            self._wait_until(start + plan.span, start, plan)  # a trailing --sleep
        if self.live is not None and total:
            self.live.progress(len(self.results), total, self.clock() - start, plan.span,
                               self.refused)
        return self.results

    @property
    def refused(self) -> int:
        return sum(1 for r in self.results if not r.ok)

    def _wait_until(self, when: float, start: float, plan: Plan) -> None:
        # Behind schedule (a slow restart), the next step goes at once: order is kept.
        while (left := when - self.clock()) > 0:
            if self.live is not None:
                self.live.progress(len(self.results), len(plan.steps), self.clock() - start,
                                   plan.span, self.refused)
            self.sleep(min(left, TICK))

    def _apply(self, step: Step, start: float) -> Result:
        try:
            answer = self.send(step)
        except (NotUpError, ControlError):
            raise  # the supervisor is gone, frozen or unreachable: nothing more can be done
        except UserError as e:
            pid = e.pid if isinstance(e, RefusedError) else None
            return Result(step, self.clock() - start, pid, str(e), False)
        return Result(step, self.clock() - start, answer.get("pid"),
                      str(answer.get("outcome", "done")), True)


# --- schedules and the run ---------------------------------------------------------


def load_schedule(path: str, names: Sequence[str]) -> tuple[Step, ...]:
    """Read and validate a schedule file; UsageError/UnknownPriestError naming file and entry."""
    try:
        raw = load_yaml(path)
    except ConfigError as e:  # a schedule is an argument, not the cluster's config
        raise UsageError(str(e)) from None
    return parse_schedule(raw, path, names)


def send(state: RunState, step: Step) -> dict[str, Any]:
    """One step as a control request: a priest's action, or a network action with its value."""
    return control.request(state.socket, step.action, step.priest or None, arg=step.value,
                           seed=step.seed, owner=state.supervisor.pid)


def execute(plan: Plan, state: RunState, *, keep_going: bool, out: TextIO) -> int:
    color = use_color(out)
    live = Live(out, color, progress=color and plan.span > PROGRESS_AFTER)
    data_dir = Path(state.data_dir)
    if plan.seed is not None:
        live.line(f"chaos: random plan, seed {plan.seed}: {len(plan.steps)} actions over "
                  f"{plan.span:g} s (replay with --random --seed {plan.seed} "
                  f"--duration {plan.duration:g} --rate {plan.rate:g})")
    record_event(data_dir, ChaosStart(t=now(), source=plan.source, seed=plan.seed,
                                      steps=len(plan.steps), duration=plan.duration,
                                      rate=plan.rate))
    executor = Executor(lambda step: send(state, step), live=live, keep_going=keep_going)
    started = time.monotonic()
    outcome = "interrupted"
    try:
        results = executor.run(plan)
        outcome = "done" if executor.refused == 0 else "refused"
    finally:
        elapsed = time.monotonic() - started
        record_event(data_dir, ChaosEnd(t=now(), source=plan.source, seed=plan.seed,
                                        done=len(executor.results) - executor.refused,
                                        refused=executor.refused, elapsed=round(elapsed, 3),
                                        outcome=outcome))
    live.line(_summary(results, len(plan.steps), elapsed, plan.seed))
    if executor.refused:
        first = next(r for r in results if not r.ok)
        print(f"{PROG}: error: {first.step.action} {first.step.what}: {first.outcome}",
              file=sys.stderr)
        return 1
    return 0


def _summary(results: Sequence[Result], planned: int, elapsed: float, seed: int | None) -> str:
    refused = sum(1 for r in results if not r.ok)
    rate = len(results) / elapsed if elapsed > 0 else 0.0
    text = (f"chaos: {len(results)} of {planned} actions in {elapsed:.2f} s ({rate:.1f}/s), "
            f"{refused} refused")
    if seed is not None:
        text += f"; seed {seed}"
    if len(results) < planned:
        text += f"; stopped at the first refusal, {planned - len(results)} not tried"
    return text + f"; check agreement with `{PROG} verify --wait 5`"
