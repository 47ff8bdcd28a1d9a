"""`paxos-harness chaos`: apply a chaos plan (harness.chaos) to a running cluster.

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

import argparse
import inspect
import os
import secrets
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from colorama import Fore, Style

from harness import control
from harness.chaos import (
    SLEEP,
    Plan,
    Step,
    describe_plan,
    initial_states,
    parse_schedule,
    plan_random,
    steps_from_args,
)
from harness.cli import number_arg
from harness.errors import NotUpError, RefusedError, UsageError, UserError
from harness.output import use_color
from harness.state import RunState, read_state, record_event, resolve_config
from node.config import Config, load_yaml
from node.errors import ConfigError

PROG = "paxos-harness"
STYLE = {"kill": Fore.RED, "stop": Fore.RED, "pause": Fore.YELLOW, "resume": Fore.GREEN,
         "restart": Fore.CYAN, "ballot": Fore.MAGENTA}
PROGRESS_AFTER = 2.0  # plans longer than this get a progress line on a terminal
TICK = 0.1  # seconds between progress updates while waiting for the next step

Send = Callable[[str, str], dict[str, Any]]


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
        pid = f"pid {r.pid}" if r.pid is not None else "pid -"
        note = f"  ({r.step.note})" if r.step.note else ""
        outcome = r.outcome if r.ok else f"REFUSED: {r.outcome}"
        when = f"{f'+{r.elapsed:.3f}s':>9}"
        action, priest = f"{r.step.action:<7}", f"{r.step.priest:<8}"
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
            answer = self.send(step.action, step.priest)
        except NotUpError:
            raise  # the supervisor is gone: nothing more can be done
        except UserError as e:
            pid = e.pid if isinstance(e, RefusedError) else None
            return Result(step, self.clock() - start, pid, str(e), False)
        return Result(step, self.clock() - start, answer.get("pid"),
                      str(answer.get("outcome", "done")), True)


# --- the verb ----------------------------------------------------------------------


class _Ordered(argparse.Action):
    """Appends (action, value) to one list, so actions run in command-line order."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        items = list(getattr(namespace, self.dest, None) or [])
        items.append((self.const, values))
        setattr(namespace, self.dest, items)


_seconds = number_arg("a number of seconds")
_positive = number_arg("a number of seconds", above_zero=True)
_rate = number_arg("a number of actions per second", above_zero=True)


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"must be between 0 and 2^63-1, got {text}")
    return value


ACTION_HELP = {
    "kill": "crash priest N (SIGKILL)",
    "ballot": "ask priest N to start a ballot (SIGTSTP)",
    "restart": "start priest N again on its ledger (also one never started)",
    "stop": "stop priest N cleanly (SIGTERM, grace, SIGKILL)",
    "pause": "freeze priest N (SIGSTOP)",
    "resume": "unfreeze priest N (SIGCONT)",
}


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register `chaos`, its options and its help (the docstring of cmd_chaos)."""
    doc = inspect.cleandoc(cmd_chaos.__doc__ or "chaos")
    p = subparsers.add_parser("chaos", help=doc.splitlines()[0], description=doc,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(func=cmd_chaos, steps=None)
    p.add_argument("config", metavar="CONFIG", nargs="?", help="default: the current cluster")
    one = p.add_argument_group("one-shot actions (repeatable, applied in command-line order)")
    for action, text in ACTION_HELP.items():
        one.add_argument(f"--{action}", action=_Ordered, const=action, dest="steps",
                         metavar="N", help=text)
    one.add_argument("--sleep", action=_Ordered, const=SLEEP, dest="steps", type=_seconds,
                     metavar="SECONDS", help="wait this long before the next action")
    p.add_argument("--schedule", metavar="FILE",
                   help="a YAML timeline: a list of {at: SECONDS, ACTION: PRIEST}")
    rnd = p.add_argument_group("the random nemesis")
    rnd.add_argument("--random", action="store_true", help="a random plan drawn from --seed")
    rnd.add_argument("--seed", type=_seed, metavar="S", help="the plan's seed (default: a new one, "
                     "printed)")
    rnd.add_argument("--duration", type=_positive, metavar="T",
                     help="seconds of chaos before the heal phase (default 10)")
    rnd.add_argument("--rate", type=_rate, metavar="R",
                     help="actions per second on average (default 2)")
    rnd.add_argument("--allow-majority-loss", action="store_true",
                     help="let the nemesis kill or pause a majority (progress stops until the "
                          "heal)")
    p.add_argument("--dry-run", action="store_true", help="print the plan and do nothing")


def cmd_chaos(args: argparse.Namespace) -> int:
    """Inject real faults into the running cluster of CONFIG (default: the current cluster).

    Every action is done by the supervisor (a real signal, or a real new
    process) and recorded in <data_dir>/harness.jsonl. Three ways to say what:
        paxos-harness chaos --kill delta --ballot alpha
        paxos-harness chaos --restart delta --sleep 0.5 --ballot beta
        paxos-harness chaos --pause gamma            # --resume gamma: SIGCONT
        paxos-harness chaos --schedule configs/chaos/crash-during-ballot.yaml
        paxos-harness chaos --random --seed 7 --duration 30 [--rate 2] [--dry-run]
    One-shot actions and schedules stop at the first refused action (exit 1).
    The random nemesis plans in advance from its seed (printed; the same seed
    and starting states give the same plan), keeps a quorum running unless
    --allow-majority-loss, goes on past a refusal, and ends with a heal phase
    (every priest running, then a ballot). --dry-run prints the plan only.
    Exit 0: every action done; 1: one refused or failed, or the cluster is not
    up; 2: a usage, config or schedule error (nothing is done then).
    """
    mode = _mode(args)
    config = resolve_config(args.config)
    fixed = _fixed_plan(args, mode, config)  # names are checked before anything runs
    state = _running(config)
    if state is None and not args.dry_run:
        raise NotUpError(f"cluster {config.cluster} is not up: start it with "
                         f"`{PROG} up {config.path} --detach`")
    plan = fixed or _random_plan(args, config, state)
    if args.dry_run:
        _print_plan(plan)
        return 0
    assert state is not None
    return _execute(plan, state, keep_going=mode == "random", out=sys.stdout)


def _print_plan(plan: Plan) -> None:
    try:
        print("\n".join(describe_plan(plan)), flush=True)
    except BrokenPipeError:  # `| head`: the reader has seen enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _mode(args: argparse.Namespace) -> str:
    """Which of the three ways the command line chose; UsageError if none or several."""
    modes = [m for m, on in (("actions", bool(args.steps)), ("schedule", args.schedule),
                             ("random", args.random)) if on]
    if len(modes) != 1:
        raise UsageError("chaos: give one-shot actions (--kill N ...), or --schedule FILE, or "
                         "--random" + ("" if not modes else f"; not {' and '.join(modes)}"))
    if modes[0] != "random":
        for opt in ("seed", "duration", "rate"):
            if getattr(args, opt) is not None:
                raise UsageError(f"--{opt} goes with --random")
        if args.allow_majority_loss:
            raise UsageError("--allow-majority-loss goes with --random")
    return modes[0]


def _running(config: Config) -> RunState | None:
    state = read_state(config.data_dir)
    return state if state is not None and state.supervisor.alive() else None


def _fixed_plan(args: argparse.Namespace, mode: str, config: Config) -> Plan | None:
    """The plan of one-shot actions or of a schedule; None for the random nemesis."""
    if mode == "actions":
        return Plan(steps_from_args(args.steps, config.names, config.path), "the command line")
    if mode == "schedule":
        return Plan(load_schedule(args.schedule, config.names), args.schedule)
    return None


def _random_plan(args: argparse.Namespace, config: Config, state: RunState | None) -> Plan:
    """The nemesis's plan, from the priests' real states if the cluster is up (else all running)."""
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    initial = None
    if state is not None:  # plan from the real states, so that no step is refused
        rows = control.request(state.socket, "status")["priests"]
        initial = initial_states({r["priest"]: r["state"] for r in rows})
    return plan_random(config.names, seed, args.duration or 10.0, args.rate or 2.0,
                       initial=initial, allow_majority_loss=args.allow_majority_loss)


def load_schedule(path: str, names: Sequence[str]) -> tuple[Step, ...]:
    """Read and validate a schedule file; UsageError/UnknownPriestError naming file and entry."""
    try:
        raw = load_yaml(path)
    except ConfigError as e:  # a schedule is an argument, not the cluster's config
        raise UsageError(str(e)) from None
    return parse_schedule(raw, path, names)


def _execute(plan: Plan, state: RunState, *, keep_going: bool, out: TextIO) -> int:
    color = use_color(out)
    live = Live(out, color, progress=color and plan.span > PROGRESS_AFTER)
    data_dir = Path(state.data_dir)
    if plan.seed is not None:
        live.line(f"chaos: random plan, seed {plan.seed}: {len(plan.steps)} actions over "
                  f"{plan.span:g} s (replay with --random --seed {plan.seed} "
                  f"--duration {plan.duration:g} --rate {plan.rate:g})")
    record_event(data_dir, "chaos_start", source=plan.source, seed=plan.seed,
                 steps=len(plan.steps), duration=plan.duration, rate=plan.rate)
    executor = Executor(lambda a, n: control.request(state.socket, a, n), live=live,
                        keep_going=keep_going)
    started = time.monotonic()
    outcome = "interrupted"
    try:
        results = executor.run(plan)
        outcome = "done" if executor.refused == 0 else "refused"
    finally:
        elapsed = time.monotonic() - started
        record_event(data_dir, "chaos_end", source=plan.source, seed=plan.seed,
                     done=len(executor.results) - executor.refused, refused=executor.refused,
                     elapsed=round(elapsed, 3), outcome=outcome)
    live.line(_summary(results, len(plan.steps), elapsed, plan.seed))
    if executor.refused:
        first = next(r for r in results if not r.ok)
        print(f"{PROG}: error: {first.step.action} {first.step.priest}: {first.outcome}",
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
