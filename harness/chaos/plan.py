"""Chaos plans: what to do to which priest or to the network, and when. Pure: no I/O, no
clock, no global random.

A plan is a tuple of `Step`s, each an action on one priest (or on the network,
with a value: a partition, a probability, a delay range) at an offset in
seconds from the start of the run, in time order. Three sources make one:

- the command line (`--kill delta --sleep 0.5 --partition alpha,beta/gamma,delta`):
  steps in the order given, `--sleep` moving the offsets of those after it;
- a schedule file: a YAML list of `{at: SECONDS, <action>: PRIEST or VALUE}`
  entries (an optional `note` is shown when the step runs; a network entry may
  carry a `seed` for the relay's random draws);
- the random nemesis: a plan drawn in advance from a seed, so the same seed
  (and the same starting states) always gives the same plan.

The executor that applies a plan is `harness.chaos.executor`.

The nemesis tracks each priest's state as it plans, with the supervisor's own
table of what each action allows (`harness.supervisor.actions`), so every step
it plans is one the supervisor accepts: it never kills a dead priest, resumes
only paused ones, restarts only dead ones, asks only running ones for a
ballot, and (unless majority loss is allowed) keeps a quorum of
priests running. With network faults in its mix (`faults`), it also cuts,
isolates, loses, duplicates and delays datagrams, and loses Success datagrams
alone (so a quorum votes but nobody hears the decree passed), each network
step with a seed drawn from the plan's own. Every plan ends with a heal phase: the network healed
first, then every priest restarted and resumed, then one ballot, so a correct
cluster converges.

A plan of a second or more opens with a decision window (its first WINDOW s),
where a single decree is decided. Most windows are contention: 2-3 ballots at
different priests with 2-3 faults among them. With process and network faults
both in the mix, a share SPLIT of them is a split decision instead: a
minority is cut off and ballots in vain while one of its priests, armed with
kill-after-promise, dies right after its promise and is restarted; the
network merges and a majority priest ballots. A promise is worth something
only before the decision, and only a split keeps the majority from deciding
before a priest that promised in the minority comes back: without it no
random plan caught a forgotten promise in 300 runs.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from harness.errors import UnknownPriestError, UsageError
from harness.network.faults import parse_value
from harness.supervisor.actions import (
    ACTIONS,
    DOWN,
    KILL_AFTER_PROMISE,
    MAX_GARBAGE,
    NETWORK_ACTIONS,
    PRIEST_ACTIONS,
    State,
    allows,
)

SLEEP = "sleep"

# What the nemesis mixes, and how often relative to each other.
WEIGHTS: dict[str, float] = {"ballot": 3.0, "kill": 2.0, KILL_AFTER_PROMISE: 1.0,
                             "restart": 2.0, "pause": 1.5, "resume": 1.5}
NETWORK_WEIGHTS: dict[str, float] = {"partition": 1.0, "isolate": 1.0, "drop": 1.0,
                                     "duplicate": 0.5, "delay": 0.5, "drop-success": 1.0,
                                     "heal": 1.5}
FAULT_KINDS = ("process", "network")  # what --faults chooses from
MAX_STEPS = 100_000  # a bound on rate x duration: a plan is printed and kept in memory
HEAL = "heal"
# A single-decree cluster decides in its first ballot, so a random plan opens with
# the decision: contending ballots with faults among them, in the first WINDOW s.
WINDOW = 0.3
WINDOW_NOTE = "decision window"
WINDOW_MIN_DURATION = 1.0  # a shorter plan has no window
# The share of windows (with process and network faults in the mix) that are a split decision.
SPLIT = 1 / 3
SPLIT_NOTE = "decision window, split"


class ScheduleError(UsageError):
    """A schedule file that cannot be used: names the file, the entry and the key."""

    def __init__(self, path: str, index: int | None, key: str, problem: str) -> None:
        where = path + (f": entry {index}" if index is not None else "") + (f": {key}" if key
                                                                            else "")
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True)
class Step:
    """One action, `at` seconds after the run starts: on `priest`, or on the network with
    `value` (`priest` is "" then) and an optional `seed` for the relay's draws."""

    at: float
    action: str
    priest: str
    note: str = ""
    value: object = None
    seed: int | None = None

    @property
    def what(self) -> str:
        """The priest, or the network action's value as text."""
        if self.action not in NETWORK_ACTIONS:
            return self.priest
        text = "network" if self.value is None else str(self.value)
        return text + (f" (seed {self.seed})" if self.seed is not None else "")


@dataclass(frozen=True)
class Plan:
    """The steps of one chaos run, where they came from, and the seed of a random one."""

    steps: tuple[Step, ...]
    source: str
    seed: int | None = None
    duration: float | None = None
    rate: float | None = None
    end: float = 0.0  # the run lasts at least this long: a trailing `--sleep` waits it out
    window: float = 0.0  # a random plan's decision window: its first `window` seconds

    @property
    def span(self) -> float:
        """Seconds from the start to the last step, or to the end of a trailing sleep."""
        return max(self.steps[-1].at if self.steps else 0.0, self.end)


# --- the command line -----------------------------------------------------------


def plan_from_args(items: Sequence[tuple[str, object]], names: Sequence[str],
                   where: str) -> Plan:
    """The plan of the command line's one-shot actions; a trailing `--sleep` is waited out."""
    steps = steps_from_args(items, names, where)
    end = sum(float(arg) for action, arg in items if action == SLEEP)  # type: ignore[arg-type,misc]
    return Plan(steps, "the command line", end=round(end, 6))


def steps_from_args(items: Sequence[tuple[str, object]], names: Sequence[str],
                    where: str) -> tuple[Step, ...]:
    """Steps from the ordered (action, argument) pairs of the command line.

    `--sleep S` adds S seconds before the steps after it. Unknown priest names
    raise UnknownPriestError naming the option and `where` (the config file).
    """
    at = 0.0
    steps: list[Step] = []
    for action, arg in items:
        if action == SLEEP:
            at += float(arg)  # type: ignore[arg-type]
            continue
        if action not in ACTIONS:
            raise UsageError(f"unknown action {action!r} (known: {', '.join(ACTIONS)})")
        if action in NETWORK_ACTIONS:
            value = parse_value(action, None if arg == [] else arg, names, where="--")
            steps.append(Step(round(at, 6), action, "", value=value))
            continue
        _require(str(arg), names, f"--{action}: no priest named {arg!r} in {where}")
        steps.append(Step(round(at, 6), action, str(arg)))
    if not steps:
        raise UsageError(f"no action given: use {', '.join(f'--{a}' for a in ACTIONS)}, or "
                         f"--schedule FILE, or --random")
    return tuple(steps)


def _require(name: str, names: Sequence[str], message: str) -> None:
    if name not in names:
        raise UnknownPriestError(f"{message} (known: {', '.join(names)})")


# --- schedule files ---------------------------------------------------------------

ENTRY_KEYS = ("at", "note", "seed", "count", *ACTIONS)


def parse_schedule(raw: object, path: str, names: Sequence[str]) -> tuple[Step, ...]:
    """Steps from a schedule's parsed YAML: a list of {at: SECONDS, ACTION: PRIEST[, note]}.

    Entries are numbered from 1 in errors; offsets must not go back in time.
    """
    if not isinstance(raw, list) or not raw:
        raise ScheduleError(path, None, "", "must be a non-empty list of entries like "
                            "{at: 0.5, kill: delta}")
    steps: list[Step] = []
    for index, entry in enumerate(raw, start=1):
        step = _entry(entry, path, index, names)
        if steps and step.at < steps[-1].at:
            raise ScheduleError(path, index, "at", f"{step.at:g} comes before the previous "
                                f"entry's {steps[-1].at:g}; list entries in time order")
        steps.append(step)
    return tuple(steps)


def _entry(entry: object, path: str, index: int, names: Sequence[str]) -> Step:
    if not isinstance(entry, dict):
        raise ScheduleError(path, index, "", f"must be a mapping like {{at: 0.5, kill: delta}}, "
                            f"got {entry!r}")
    for key in entry:
        if key not in ENTRY_KEYS:
            raise ScheduleError(path, index, str(key), f"unknown key (expected at, note, seed, "
                                f"count, and one of: {', '.join(ACTIONS)})")
    at = entry.get("at")
    if "at" not in entry:
        raise ScheduleError(path, index, "at", "missing: the offset in seconds from the start")
    if isinstance(at, bool) or not isinstance(at, int | float) or not math.isfinite(at) or at < 0:
        raise ScheduleError(path, index, "at", f"must be a number of seconds >= 0, got {at!r}")
    actions = [k for k in entry if k in ACTIONS]
    if len(actions) != 1:
        found = ", ".join(actions) if actions else "none"
        raise ScheduleError(path, index, "", f"needs exactly one action ({', '.join(ACTIONS)}), "
                            f"found {found}")
    action = actions[0]
    note = entry.get("note", "")
    if not isinstance(note, str):
        raise ScheduleError(path, index, "note", f"must be text, got {note!r}")
    seed = entry.get("seed")
    if "seed" in entry and (action not in NETWORK_ACTIONS or isinstance(seed, bool)
                            or not isinstance(seed, int) or not 0 <= seed < 2**63):
        raise ScheduleError(path, index, "seed", "an integer 0 to 2^63-1, for a network action "
                            f"only, got {seed!r}")
    if action in NETWORK_ACTIONS:
        value = parse_value(action, entry[action], names, where=f"{path}: entry {index}: ")
        return Step(float(at), action, "", note, value, seed)
    priest = entry[action]
    if not isinstance(priest, str):
        raise ScheduleError(path, index, action, f"must be a priest's name, got {priest!r}")
    if priest not in names:
        raise UnknownPriestError(f"{path}: entry {index}: {action}: no priest named {priest!r} "
                                 f"in the config (known: {', '.join(names)})")
    value = None
    if "count" in entry:
        value = entry["count"]
        metavar = ACTIONS[action].value_metavar
        if metavar is None:
            raise ScheduleError(path, index, "count", f"goes with garbage only, not {action}")
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_GARBAGE:
            raise ScheduleError(path, index, "count", f"must be an integer 1-{MAX_GARBAGE}, "
                                f"got {value!r}")
    return Step(float(at), action, priest, note, value)


# --- the random nemesis -------------------------------------------------------------


def plan_random(names: Sequence[str], seed: int, duration: float, rate: float, *,
                initial: Mapping[str, str] | None = None,
                allow_majority_loss: bool = False,
                faults: Sequence[str] = ("process",), watchable: bool = True) -> Plan:
    """A random plan: about `rate` actions a second for `duration` seconds, then a heal.

    Deterministic in (names, seed, duration, rate, initial, allow_majority_loss, faults,
    watchable). `initial` maps each priest to its supervisor state (default: all running);
    `faults` says what the nemesis mixes: "process" faults, "network" faults, or both;
    `watchable` False (foreign priests: no events.jsonl) leaves out kill-after-promise.
    """
    if duration <= 0 or rate <= 0 or not math.isfinite(duration * rate):
        raise UsageError("--duration and --rate must be positive numbers")
    if duration * rate > MAX_STEPS:
        raise UsageError(f"--rate x --duration is {duration * rate:g} actions; at most "
                         f"{MAX_STEPS} in one plan")
    rng = random.Random(seed)
    states = {n: State((initial or {}).get(n, State.RUNNING)) for n in names}
    quorum = len(names) // 2 + 1
    weights = {**(WEIGHTS if "process" in faults else {}),
               **(NETWORK_WEIGHTS if "network" in faults and len(names) > 1 else {})}
    if not watchable:
        weights.pop(KILL_AFTER_PROMISE, None)
    faulty = False  # is the network faulted at this point of the plan?
    steps: list[Step] = []
    window = WINDOW if duration >= WINDOW_MIN_DURATION else 0.0
    split = (window and "network" in faults and "process" in faults and rng.random() < SPLIT
             and watchable)
    if split and _split_window(rng, states, quorum, allow_majority_loss, names, steps):
        faulty = False
    elif window:
        faulty = _decision_window(rng, states, quorum, allow_majority_loss, weights, names,
                                  steps)
    at = window + rng.expovariate(rate)  # Poisson arrivals: `rate` a second on average
    while at < duration:
        choice = _pick(rng, states, quorum, allow_majority_loss, weights, faulty)
        if choice is not None:
            action, name = choice
            if action in NETWORK_ACTIONS:
                steps.append(_network_step(rng, round(at, 3), action, names))
                faulty = action != "heal"
            else:
                steps.append(Step(round(at, 3), action, name))
                after = ACTIONS[action].after
                assert after is not None
                states[name] = after
        at += rng.expovariate(rate)
    if "network" in faults:
        steps.append(Step(round(duration, 3), "heal", "", HEAL))
    steps.extend(heal_steps(states, round(duration, 3), rng.choice(list(names))))
    return Plan(tuple(steps), "the random nemesis", seed=seed, duration=duration, rate=rate,
                window=window)


def _decision_window(rng: random.Random, states: dict[str, State], quorum: int,
                     allow_majority_loss: bool, weights: Mapping[str, float],
                     names: Sequence[str], steps: list[Step]) -> bool:
    """The plan's first WINDOW s: 2-3 ballots at different priests, 2-3 faults among them.

    Appends the steps (in time order, each allowed in the states before it) and
    updates `states`; True if it left the network faulted.
    """
    faults = {a: w for a, w in weights.items() if a != "ballot"}
    slots = ["ballot"] * rng.randint(2, 3) + ["fault"] * (rng.randint(2, 3) if faults else 0)
    rng.shuffle(slots)
    times = sorted(round(rng.uniform(0.0, WINDOW), 3) for _ in slots)
    balloted: set[str] = set()
    faulty = False
    for at, slot in zip(times, slots, strict=True):
        if slot == "ballot":
            free = [n for n in names if states[n] == State.RUNNING and n not in balloted]
            if free:
                proposer = rng.choice(free)
                balloted.add(proposer)
                steps.append(Step(at, "ballot", proposer, WINDOW_NOTE))
            continue
        choice = _pick(rng, states, quorum, allow_majority_loss, faults, faulty)
        if choice is None:
            continue
        action, name = choice
        if action in NETWORK_ACTIONS:
            steps.append(replace(_network_step(rng, at, action, names), note=WINDOW_NOTE))
            faulty = action != "heal"
        else:
            steps.append(Step(at, action, name, WINDOW_NOTE))
            after = ACTIONS[action].after
            assert after is not None
            states[name] = after
    return faulty


def _split_window(rng: random.Random, states: dict[str, State], quorum: int,
                  allow_majority_loss: bool, names: Sequence[str], steps: list[Step]) -> bool:
    """A split decision in the first WINDOW s: a minority is cut off and ballots in vain; one
    of its priests, armed, is killed right after its promise and restarted; the network
    merges; then a priest of the majority ballots, where a promise made in the minority must
    still bind. Appends the steps and updates `states`; False (nothing planned) if the
    priests' states leave no such split.
    """
    if len(names) < 3:
        return False  # no majority to cut a minority from
    cut = rng.sample(list(names), rng.randint(1, len(names) // 2))
    inside = [n for n in names if n in cut and states[n] == State.RUNNING]
    outside = [n for n in names if n not in cut and states[n] == State.RUNNING]
    if not inside or not outside:
        return False
    victim, proposer, leader = rng.choice(inside), rng.choice(inside), rng.choice(outside)
    if not allowed(KILL_AFTER_PROMISE, victim, states, quorum, allow_majority_loss):
        return False
    ballot = rng.uniform(0.05, 0.1)
    restart = ballot + rng.uniform(0.03, 0.08)
    merge = restart + rng.uniform(0.02, 0.06)
    value = parse_value("partition", ",".join(n for n in names if n in cut), names)
    steps += [
        Step(0.0, "partition", "", SPLIT_NOTE, value, rng.randrange(2**31)),
        Step(round(rng.uniform(0.0, 0.04), 3), KILL_AFTER_PROMISE, victim, SPLIT_NOTE),
        Step(round(ballot, 3), "ballot", proposer, SPLIT_NOTE),
        Step(round(restart, 3), "restart", victim, SPLIT_NOTE),
        Step(round(merge, 3), HEAL, "", SPLIT_NOTE),
        Step(round(merge + rng.uniform(0.0, 0.04), 3), "ballot", leader, SPLIT_NOTE),
    ]
    return True


def _network_step(rng: random.Random, at: float, action: str, names: Sequence[str]) -> Step:
    """A network step with a random value and a seed of its own for the relay, both from `rng`."""
    value: object = None
    if action == "partition":
        cut = rng.sample(list(names), rng.randint(1, len(names) // 2))
        value = ",".join(n for n in names if n in cut)  # the rest form the other group
    elif action == "isolate":
        value = rng.choice(list(names))
    elif action == "drop":
        value = rng.choice([0.1, 0.2, 0.3, 0.5])
    elif action == "duplicate":
        value = rng.choice([0.1, 0.2, 0.3])
    elif action == "drop-success":  # a quorum votes, and nobody hears the decree passed
        value = rng.choice([0.5, 1.0, 1.0])
    elif action == "delay":
        lo = rng.choice([0, 2, 5, 10])
        value = f"{lo}-{lo + rng.choice([5, 10, 20, 40])}"
    seed = rng.randrange(2**31) if action != "heal" else None
    return Step(at, action, "", value=parse_value(action, value, names), seed=seed)


def allowed(action: str, name: str, states: Mapping[str, State], quorum: int,
            allow_majority_loss: bool) -> bool:
    """True if the nemesis may plan `action` on `name` given every priest's state."""
    state = states[name]
    leaves = ACTIONS[action].after
    if state == State.RUNNING and leaves != State.RUNNING and not allow_majority_loss:
        running = sum(1 for s in states.values() if s == State.RUNNING)
        if running - 1 < quorum:
            return False
    return allows(action, state)


def _pick(rng: random.Random, states: Mapping[str, State], quorum: int,
          allow_majority_loss: bool, weights: Mapping[str, float] = WEIGHTS,
          faulty: bool = False) -> tuple[str, str] | None:
    """An action the nemesis may take now, and its priest ("" for the network); None if none fits."""
    options = {a: [n for n in states if allowed(a, n, states, quorum, allow_majority_loss)]
               if a in PRIEST_ACTIONS else ([""] if a != "heal" or faulty else [])
               for a in weights}
    actions = [a for a in weights if options[a]]
    if not actions:
        return None
    action = rng.choices(actions, weights=[weights[a] for a in actions])[0]
    if action in NETWORK_ACTIONS:
        return action, ""
    return action, rng.choice(options[action])


def heal_steps(states: Mapping[str, State], at: float, proposer: str) -> list[Step]:
    """Restart every down priest, resume every paused one, then a ballot at `proposer`."""
    steps = [Step(at, "restart" if s in DOWN else "resume", n, HEAL)
             for n, s in states.items() if s != State.RUNNING]
    steps.append(Step(at, "ballot", proposer, HEAL))
    return steps


# --- text ----------------------------------------------------------------------------


def describe_plan(plan: Plan) -> list[str]:
    """The plan as lines of text, one per step (what --dry-run prints)."""
    head = f"chaos plan from {plan.source}: {len(plan.steps)} actions over {plan.span:g} s"
    if plan.seed is not None:
        head += f", seed {plan.seed} (--duration {plan.duration:g} --rate {plan.rate:g})"
    lines = [head]
    if plan.window and any(s.note == SPLIT_NOTE for s in plan.steps):
        lines.append(f"decision window: +0.000 to +{plan.window:.3f}s, split: a minority cut "
                     "off ballots in vain, one of its priests is killed right after its promise "
                     "and restarted, the network merges, and a priest of the majority ballots; "
                     "the promise must bind it")
    elif plan.window:
        lines.append(f"decision window: +0.000 to +{plan.window:.3f}s, ballots at several priests "
                     "with faults among them; a single decree is decided here, so the later "
                     "faults strike a cluster that has decided and test that it stays so")
    for i, step in enumerate(plan.steps, start=1):
        note = f"  # {step.note}" if step.note else ""
        lines.append(f"{i:>5}  {f'+{step.at:.3f}s':>10}  {step.action:<9}  {step.what}{note}")
    if plan.steps and plan.end > plan.steps[-1].at:
        lines.append(f"{'':>5}  {f'+{plan.end:.3f}s':>10}  (the end of the last --sleep)")
    return lines
