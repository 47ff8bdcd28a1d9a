"""`paxos-harness simulate`: the real Synod core under thousands of seeded faulty runs.

Each run is a `node.sim.World` built from one seed: the very `node.synod.Priest`
class the priest processes run, joined by a network that loses, duplicates,
delays and partitions, with crashes between any two effects, then a heal
phase (network whole, every priest up, one ballot). After each run the checks
of `harness.check.rules` -- the same code that judges real runs -- judge its
history (all but `ledger_lost`: see NOT_JUDGED), and every priest must hold a
decree after the heal ("no progress" otherwise). The first run that breaks a
rule ends the search: exit 1, its seed, the rule, and its steps as a message
diagram (`harness.report.diagram`), shortened to the steps that matter
(`--trace` for all of them).
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Generator, Iterable
from contextlib import closing
from dataclasses import dataclass, field
from functools import lru_cache, partial
from pathlib import Path

from harness.check.history import DecreeFile, History
from harness.check.rules import rules_except, violations
from harness.check.verdict import KINDS, NO_PROGRESS, Violation, without_decree
from node.config import Config, PriestAddress
from node.messages import Timing
from node.sim import HORIZON, Faults, World

# Not judged here: a simulated disk loses nothing, so only the forget-promises flaw can
# lower a ledger, by design; the search is for what that breaks (a broken promise, a
# changed decree), which the loss itself, found at the first restart, would hide.
NOT_JUDGED = frozenset({"ledger_lost"})
RULES: dict[str, str] = {
    **{kind: rule for kind, rule in KINDS.items() if kind not in NOT_JUDGED},
    NO_PROGRESS: "after the heal phase (network whole, every priest up, one ballot) "
                 "every priest holds a decree",
}
JUDGED_RULES = rules_except(NOT_JUDGED)  # not run at all: cheaper than dropping what they find
MAX_STEPS = 200_000  # a run still going after this many steps is stuck: no progress
POOL_MIN_SEEDS = 64  # below this, starting worker processes costs more than it saves


# --- one run -------------------------------------------------------------------


@dataclass(frozen=True)
class Setup:
    """What every run of a search shares: priests, faults, flaws, timing, the faulty phase's length."""

    priests: int = 5
    faults: Faults = Faults()
    flaws: tuple[str, ...] = ()
    timing: Timing = Timing()
    horizon: float = HORIZON  # virtual seconds of the faulty phase, before the heal

    def world(self, seed: int, *, steps: bool = True) -> World:
        return World(self.priests, seed, faults=self.faults, timing=self.timing, flaws=self.flaws,
                     horizon=self.horizon, steps=steps)


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


def run_seed(setup: Setup, seed: int, *, steps: bool = True) -> tuple[World, tuple[Violation, ...]]:
    """Play one seeded run to its end and judge it; `steps`: keep its steps, to show it."""
    world = setup.world(seed, steps=steps)
    world.run(MAX_STEPS)
    return world, judge(world)


def outcome(setup: Setup, seed: int) -> Outcome:
    """`run_seed`, reduced to numbers and findings (what a worker process sends back)."""
    world, violations = run_seed(setup, seed, steps=False)  # the verb replays a broken one
    s = world.stats
    return Outcome(seed, violations, s["messages"], s["dropped"], s["crashes"], s["ballots"],
                   s["steps"])


def judge(world: World) -> tuple[Violation, ...]:
    """The verify checks on the run's history, then the heal phase's promise of progress."""
    alive = {name for name, priest in world.priests.items() if priest is not None}
    history = to_history(world)
    found = [v for v in violations(sim_config(world), history, alive, JUDGED_RULES)
             if v.kind not in NOT_JUDGED]
    waiting = without_decree(world.decrees(), alive)
    if not world.finished:
        found.append(Violation(NO_PROGRESS, f"the run was still going after {MAX_STEPS} steps"))
    elif waiting:
        ledgers = "; ".join(f"{name} tried {d.ledger.last_tried}, promised {d.ledger.next_bal}, "
                            f"voted {d.ledger.prev_vote}" for name, d in world.disks.items())
        found.append(Violation(NO_PROGRESS, f"after the heal phase {', '.join(waiting)} "
                               f"hold no decree; ledgers at the end: {ledgers}", waiting))
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
    """The world's recorded events as the History `harness.check.history` reads from files.

    They are the events the priests would have written (`World.events_of`):
    line numbers as in each priest's events.jsonl, `pid` counting the priest's
    incarnations, and a `started` event carrying the ledger the priest
    recovered, so the checker sees a vote or promise made durable just before
    a crash struck and kept it from being recorded.
    """
    history = History("simulation", files=False)
    history.events = {name: list(events) for name, events in world.events_of.items()}
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
    passed_over: dict[str, int] = field(default_factory=dict)  # with --until: other rules broken

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


def search(setup: Setup, seeds: range, *, jobs: int = 1, until: frozenset[str] = frozenset(),
           clock: Callable[[], float] = time.perf_counter) -> Report:
    """Run seeds in order until one breaks a rule (one of `until`, if given) or all are done.

    With `until`, runs that break only other rules are passed over and counted
    by rule in `passed_over`.
    """
    report = Report(setup, seeds)
    start = clock()
    with closing(outcomes(setup, seeds, jobs)) as found:  # closing stops the workers at once
        for o in found:
            report.add(o)
            kinds = {v.kind for v in o.violations}
            if kinds and (not until or kinds & until):
                report.failed = o
                break
            for kind in kinds:
                report.passed_over[kind] = report.passed_over.get(kind, 0) + 1
    report.seconds = clock() - start
    return report


def first_failing_seed(setup: Setup,
                       seeds: Iterable[int]) -> tuple[int, tuple[Violation, ...]] | None:
    """The first seed whose run breaks a rule, with what it broke; None if all are clean."""
    for seed in seeds:
        _, violations = run_seed(setup, seed, steps=False)
        if violations:
            return seed, violations
    return None


def replay_command(setup: Setup, seed: int) -> str:
    """The command line that replays one run with its full trace."""
    parts = [f"paxos-harness simulate --priests {setup.priests} --seed {seed}"]
    d, f = Faults(), setup.faults
    for name in ("drop", "duplicate", "crash", "partition", "ballots"):
        if getattr(f, name) != getattr(d, name):
            parts.append(f"--{name} {getattr(f, name)}")
    if setup.horizon != HORIZON:
        parts.append(f"--horizon {setup.horizon:g}")
    parts += [f"--flaw {flaw}" for flaw in setup.flaws]
    return " ".join(parts + ["--trace"])


__all__ = ["Setup", "Outcome", "Report", "run_seed", "outcome", "judge", "to_history", "sim_config",
           "outcomes", "search", "first_failing_seed", "replay_command", "RULES"]
