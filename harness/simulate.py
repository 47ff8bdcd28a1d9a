"""`paxos-harness simulate`: the real Synod core under thousands of seeded faulty runs.

Each run is a `node.sim.World` built from one seed: the very `node.synod.Priest`
class the priest processes run, joined by a network that loses, duplicates,
delays and partitions, with crashes between any two effects, then a heal
phase (network whole, every priest up, one ballot). After each run the checks
of `harness.verify` -- the same code that judges real runs -- judge its
history, and every priest must hold a decree after the heal ("no progress"
otherwise). The first run that breaks a rule ends the search: exit 1, its
seed, the rule, and its steps as a message diagram (`harness.diagram`),
shortened to the steps that matter (`--trace` for all of them).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Generator, Iterable
from contextlib import closing
from dataclasses import asdict, dataclass
from functools import lru_cache, partial
from pathlib import Path
from typing import Any, TextIO

from colorama import Fore, Style

from harness.diagram import LEGEND, diagram, shorten
from harness.errors import UsageError
from harness.history import DecreeFile, History
from harness.output import use_color
from harness.verdict import KINDS, NO_PROGRESS, Violation
from harness.verify import check
from node.config import MAX_PRIESTS, Config, PriestAddress
from node.flaws import FLAW_NAMES, FLAWS
from node.messages import Timing
from node.record import PriestEvent
from node.sim import Faults, Step, World, describe_step

RULES: dict[str, str] = {
    **KINDS,
    NO_PROGRESS: "after the heal phase (network whole, every priest up, one ballot) "
                 "every priest holds a decree",
}
MAX_STEPS = 200_000  # a run still going after this many steps is stuck: no progress
POOL_MIN_SEEDS = 64  # below this, starting worker processes costs more than it saves


# --- one run -------------------------------------------------------------------


@dataclass(frozen=True)
class Setup:
    """What every run of a search shares: priests, faults, flaws, timing."""

    priests: int = 5
    faults: Faults = Faults()
    flaws: tuple[str, ...] = ()
    timing: Timing = Timing()

    def world(self, seed: int) -> World:
        return World(self.priests, seed, faults=self.faults, timing=self.timing, flaws=self.flaws)


@dataclass(frozen=True)
class Outcome:
    """What one run did and what the checks found in it."""

    seed: int
    violations: tuple[Violation, ...]
    messages: int
    dropped: int
    crashes: int
    ballots: int
    steps: int


def run_seed(setup: Setup, seed: int) -> tuple[World, tuple[Violation, ...]]:
    """Play one seeded run to its end and judge it."""
    world = setup.world(seed)
    world.run(MAX_STEPS)
    return world, judge(world)


def outcome(setup: Setup, seed: int) -> Outcome:
    """`run_seed`, reduced to numbers and findings (what a worker process sends back)."""
    world, violations = run_seed(setup, seed)
    s = world.stats
    return Outcome(seed, violations, s["messages"], s["dropped"], s["crashes"], s["ballots"],
                   s["steps"])


def judge(world: World) -> tuple[Violation, ...]:
    """The verify checks on the run's history, then the heal phase's promise of progress."""
    alive = {name for name, priest in world.priests.items() if priest is not None}
    verdict = check(sim_config(world), to_history(world), alive)
    found = list(verdict.violations)
    if not world.finished:
        found.append(Violation(NO_PROGRESS, f"the run was still going after {MAX_STEPS} steps"))
    elif verdict.waiting:
        ledgers = "; ".join(f"{name} tried {d.ledger.last_tried}, promised {d.ledger.next_bal}, "
                            f"voted {d.ledger.prev_vote}" for name, d in world.disks.items())
        found.append(Violation(NO_PROGRESS, f"after the heal phase {', '.join(verdict.waiting)} "
                               f"hold no decree; ledgers at the end: {ledgers}", verdict.waiting))
    return tuple(found)


def sim_config(world: World) -> Config:
    """A Config naming the world's priests, for the checker (no addresses are used)."""
    return _config(tuple(world.names), world.timing, world.flaws)


@lru_cache(maxsize=16)
def _config(names: tuple[str, ...], timing: Timing, flaws: tuple[str, ...]) -> Config:
    # Built once per search, not once per run: the checker only reads it.
    priests = {name: PriestAddress(name, "127.0.0.1", 0, i + 1) for i, name in enumerate(names)}
    return Config("simulation", "simulation", Path("simulation"), priests, timing, flaws)


def to_history(world: World) -> History:
    """The world's recorded events as the History `harness.history` reads from files.

    They are the events the priests would have written (`World.events`): line
    numbers as in each priest's events.jsonl, `pid` counting the priest's
    incarnations, and a `started` event carrying the ledger the priest
    recovered, so the checker sees a vote or promise made durable just before
    a crash struck and kept it from being recorded.
    """
    history = History("simulation")
    events: dict[str, list[PriestEvent]] = {name: [] for name in world.names}
    for e in world.events:
        events[e.priest].append(e)
    history.events = events
    history.decrees = {name: DecreeFile(f"{name}/decree.txt", disk.decree is not None, disk.decree)
                       for name, disk in world.disks.items()}
    return history


# --- many runs -------------------------------------------------------------------


@dataclass
class Report:
    """A search's totals, and the first run that broke a rule (if any)."""

    setup: Setup
    seeds: range
    runs: int = 0
    messages: int = 0
    dropped: int = 0
    crashes: int = 0
    ballots: int = 0
    seconds: float = 0.0
    failed: Outcome | None = None

    def add(self, o: Outcome) -> None:
        self.runs += 1
        self.messages += o.messages
        self.dropped += o.dropped
        self.crashes += o.crashes
        self.ballots += o.ballots

    def rate(self, count: int) -> float:
        return count / self.seconds if self.seconds > 0 else 0.0


def outcomes(setup: Setup, seeds: range, jobs: int = 1) -> Generator[Outcome, None, None]:
    """Every seed's outcome, in seed order; `jobs` > 1 spreads runs over worker processes."""
    # The first seeds run here: a flaw is often caught before workers would have started.
    head, rest = seeds[:POOL_MIN_SEEDS], seeds[POOL_MIN_SEEDS:]
    if jobs <= 1 or len(rest) < POOL_MIN_SEEDS:
        head, rest = seeds, seeds[len(seeds):]
    yield from (outcome(setup, seed) for seed in head)
    if not rest:
        return
    chunk = max(1, min(100, len(rest) // (jobs * 8)))
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    with context.Pool(jobs) as pool:  # leaving the block terminates the workers
        # imap keeps seed order, so the first violation found is the lowest seed: deterministic.
        yield from pool.imap(partial(outcome, setup), rest, chunksize=chunk)


def search(setup: Setup, seeds: range, *, jobs: int = 1,
           clock: Callable[[], float] = time.perf_counter) -> Report:
    """Run seeds in order until one breaks a rule or all are done."""
    report = Report(setup, seeds)
    start = clock()
    with closing(outcomes(setup, seeds, jobs)) as found:  # closing stops the workers at once
        for o in found:
            report.add(o)
            if o.violations:
                report.failed = o
                break
    report.seconds = clock() - start
    return report


def first_failing_seed(setup: Setup,
                       seeds: Iterable[int]) -> tuple[int, tuple[Violation, ...]] | None:
    """The first seed whose run breaks a rule, with what it broke; None if all are clean."""
    for seed in seeds:
        _, violations = run_seed(setup, seed)
        if violations:
            return seed, violations
    return None


# --- the command ---------------------------------------------------------------------


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"a probability is between 0 and 1, got {text}")
    return value


def _count(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be {low} to {high}, got {value}")
        return value
    return parse


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register `simulate`, its options and its help (the docstring of cmd_simulate)."""
    doc = cmd_simulate.__doc__ or ""
    p = subparsers.add_parser("simulate", help=doc.splitlines()[0], description=doc,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(func=lambda args: cmd_simulate(args, sys.stdout))
    d = Faults()
    p.add_argument("--priests", type=_count(1, MAX_PRIESTS), default=5, metavar="N",
                   help="priests per run (default 5)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--seeds", type=_count(1, 10**9), metavar="K",
                       help="run K seeds, from --first-seed on (default 1000)")
    which.add_argument("--seed", type=_count(0, 2**63), metavar="S", help="run seed S only")
    p.add_argument("--first-seed", type=_count(0, 2**63), default=0, metavar="F",
                   help="the first of the --seeds K seeds (default 0)")
    p.add_argument("--trace", action="store_true",
                   help="print the whole run as a message diagram, step by step "
                        "(with --seed; with --seeds, for the run that breaks a rule)")
    p.add_argument("--flaw", action="append", choices=FLAW_NAMES, default=[], metavar="NAME",
                   help=f"a deliberate mistake in the core, repeatable: {', '.join(FLAW_NAMES)}")
    p.add_argument("--json", action="store_true", help="machine-readable result")
    p.add_argument("--drop", type=_probability, default=d.drop, metavar="P",
                   help=f"chance a message is lost (default {d.drop})")
    p.add_argument("--duplicate", type=_probability, default=d.duplicate, metavar="P",
                   help=f"chance a message arrives twice (default {d.duplicate})")
    p.add_argument("--crash", type=_probability, default=d.crash, metavar="P",
                   help=f"chance a priest crashes before each effect (default {d.crash})")
    p.add_argument("--partition", type=_probability, default=d.partition, metavar="P",
                   help=f"chance a run cuts a minority off until the heal (default {d.partition})")
    p.add_argument("--ballots", type=_count(0, 1000), default=d.ballots, metavar="N",
                   help=f"ballots asked of random priests before the heal (default {d.ballots})")
    p.add_argument("--jobs", type=_count(0, 256), default=0, metavar="J",
                   help="worker processes (default 0: one per CPU); results do not depend on it")


def cmd_simulate(args: argparse.Namespace, out: TextIO) -> int:
    """Run the real Synod core under seeded faults; check every run (exit 1 on a violation).

    Each seed is one deterministic run: ballots at random priests, lost,
    duplicated and reordered messages, partitions, crashes between any two
    effects; then a heal phase (network whole, all priests up, one ballot).
    Every run is judged by the checks of `verify`, and every priest must hold
    a decree after the heal. Exit 0 with a summary when every run is clean;
    exit 1 at the first run that breaks a rule, with its seed, the rule, and
    its steps as a message diagram shortened to those that matter; exit 2 for
    a bad option. The same seed always replays the same run:
        paxos-harness simulate --priests 5 --seeds 2000
        paxos-harness simulate --priests 5 --seed 1234 --trace
        paxos-harness simulate --priests 5 --seeds 2000 --flaw same-ballot-numbers
    """
    setup = _setup(args)
    seeds = _seeds(args)
    color = not args.json and use_color(out)
    _warn_flaws(setup.flaws, sys.stderr if args.json else out, color)
    jobs = args.jobs or min(os.cpu_count() or 1, 8)
    report = search(setup, seeds, jobs=jobs)
    world, violations = run_seed(setup, report.failed.seed) if report.failed else (None, ())
    if world is None and args.trace and len(seeds) == 1:
        world, violations = run_seed(setup, seeds[0])
    if args.json:
        out.write(json.dumps(_to_json(report, args, world, violations), indent=2) + "\n")
    else:
        out.write("\n".join(_render(report, args, world, violations, color)) + "\n")
    return 1 if report.failed else 0


def _setup(args: argparse.Namespace) -> Setup:
    faults = Faults(drop=args.drop, duplicate=args.duplicate, crash=args.crash,
                    partition=args.partition, ballots=args.ballots)
    return Setup(args.priests, faults, tuple(dict.fromkeys(args.flaw)))


def _seeds(args: argparse.Namespace) -> range:
    if args.seed is not None:
        if args.first_seed:
            raise UsageError("--first-seed goes with --seeds K, not with --seed S")
        return range(args.seed, args.seed + 1)
    return range(args.first_seed, args.first_seed + (args.seeds or 1000))


def _warn_flaws(flaws: tuple[str, ...], out: TextIO, color: bool) -> None:
    for flaw in flaws:
        line = (f"WARNING: flaw {flaw} is ON: {FLAWS[flaw].teaches}. This core is broken on "
                "purpose; expect violations.")
        out.write(f"{Fore.YELLOW}{Style.BRIGHT}{line}{Style.RESET_ALL}\n" if color else line + "\n")


def replay_command(setup: Setup, seed: int) -> str:
    """The command line that replays one run with its full trace."""
    parts = [f"paxos-harness simulate --priests {setup.priests} --seed {seed}"]
    d, f = Faults(), setup.faults
    for name in ("drop", "duplicate", "crash", "partition", "ballots"):
        if getattr(f, name) != getattr(d, name):
            parts.append(f"--{name} {getattr(f, name)}")
    parts += [f"--flaw {flaw}" for flaw in setup.flaws]
    return " ".join(parts + ["--trace"])


def _trace(world: World, violations: tuple[Violation, ...], full: bool) -> tuple[list[Step], str]:
    steps = world.steps
    if full or not violations:
        return steps, f"the whole run, {len(steps)} steps"
    short = shorten(world, violations)
    return short, f"shortened to the {len(short)} steps that matter, of {len(steps)}"


def _render(report: Report, args: argparse.Namespace, world: World | None,
            violations: tuple[Violation, ...], color: bool) -> list[str]:
    def paint(text: str, code: str) -> str:
        return f"{code}{text}{Style.RESET_ALL}" if color else text

    setup, seeds = report.setup, report.seeds
    f = setup.faults
    span = f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {seeds[0]}..{seeds[-1]}"
    lines = [f"simulate: {setup.priests} priests, {span}; drop {f.drop}, duplicate {f.duplicate}, "
             f"crash {f.crash}, partition {f.partition}, {f.ballots} ballots requested per run"]
    if world is not None:
        steps, what = _trace(world, violations, args.trace)
        lines += ["", f"trace of seed {world.seed} ({what}):", f"legend: {LEGEND}"]
        lines += diagram(world, steps)
    if report.failed is not None:
        lines += [""] + _violation_lines(report, violations, paint)
    lines += ["", _summary(report)]
    if report.failed is None:
        clean = f"CLEAN (exit 0): {report.runs} runs, no violation"
        lines.append(paint(clean, Fore.GREEN + Style.BRIGHT))
    return lines


def _violation_lines(report: Report, violations: tuple[Violation, ...],
                     paint: Callable[[str, str], str]) -> list[str]:
    assert report.failed is not None
    seed = report.failed.seed
    kinds = ", ".join(dict.fromkeys(v.kind for v in violations))
    lines = [paint(f"VIOLATION (exit 1) in seed {seed}: {kinds}", Fore.RED + Style.BRIGHT)]
    for v in violations:
        lines += [f"  {paint(v.kind, Fore.RED)}: {v.message}", f"    rule: {RULES[v.kind]}"]
    lines.append(f"replay: {replay_command(report.setup, seed)}")
    return lines


def _summary(r: Report) -> str:
    lost = f" ({100 * r.dropped / r.messages:.0f}% lost)" if r.messages else ""
    return (f"{r.runs} runs, {r.messages} messages{lost}, {r.crashes} crashes, {r.ballots} "
            f"ballots in {r.seconds:.2f}s: {r.rate(r.runs):.0f} runs/s, "
            f"{r.rate(r.ballots):.0f} ballots/s")


def _to_json(report: Report, args: argparse.Namespace, world: World | None,
             violations: tuple[Violation, ...]) -> dict[str, Any]:
    r, setup = report, report.setup
    data: dict[str, Any] = {
        "status": "violation" if r.failed else "clean", "exit_status": 1 if r.failed else 0,
        "priests": setup.priests, "first_seed": r.seeds[0], "seeds": len(r.seeds),
        "flaws": list(setup.flaws), "faults": asdict(setup.faults),
        "runs": r.runs, "messages": r.messages, "dropped": r.dropped, "crashes": r.crashes,
        "ballots": r.ballots, "seconds": round(r.seconds, 6),
        "runs_per_second": round(r.rate(r.runs), 1),
        "ballots_per_second": round(r.rate(r.ballots), 1),
        "violation": None,
    }
    if r.failed is not None:
        data["violation"] = {
            "seed": r.failed.seed, "replay": replay_command(setup, r.failed.seed),
            "violations": [{"kind": v.kind, "rule": RULES[v.kind], "message": v.message,
                            "priests": list(v.priests), "decrees": list(v.decrees),
                            "ballots": list(v.ballots)} for v in violations],
        }
    if world is not None:
        steps, _ = _trace(world, violations, args.trace)
        data["trace"] = [f"{s.time:.6f} {describe_step(s)}" for s in steps]
    return data


__all__ = ["Setup", "Outcome", "Report", "run_seed", "outcome", "judge", "to_history", "sim_config",
           "outcomes", "search", "first_failing_seed", "replay_command", "add_parser",
           "cmd_simulate", "RULES"]
