"""`paxos-harness chaos`: real faults, from the command line, a schedule or a seeded plan."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

from harness.chaos.executor import execute, load_schedule
from harness.chaos.plan import SLEEP, Plan, describe_plan, plan_from_args, plan_random
from harness.errors import PROG, NotUpError, UsageError
from harness.record import fresh_seed
from harness.supervisor import control
from harness.supervisor.actions import ACTIONS, MAX_GARBAGE, Target
from harness.supervisor.state import RunState, read_state, resolve_config
from harness.verbs.args import config_arg, fault_kinds, faults_for, number_arg, seed_arg
from node.config import Config


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


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_GARBAGE:
        raise argparse.ArgumentTypeError(f"must be an integer 1-{MAX_GARBAGE}, got {text!r}")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.set_defaults(steps=None)
    config_arg(p)
    one = p.add_argument_group("one-shot actions (repeatable, applied in command-line order)")
    net = p.add_argument_group("network faults (through the relay; each lasts until --heal or "
                               "a later one of its kind; mixed in order with the actions)")
    for action in ACTIONS.values():
        group = one if action.target == Target.PRIEST else net
        group.add_argument(f"--{action.name}", action=_Ordered, const=action.name, dest="steps",
                           metavar=action.metavar, help=action.help,
                           nargs=0 if action.metavar is None else None)
    one.add_argument("--sleep", action=_Ordered, const=SLEEP, dest="steps", type=_seconds,
                     metavar="SECONDS", help="wait this long before the next action")
    one.add_argument("--count", type=_count, metavar="COUNT",
                     help="how many malformed inputs each --garbage sends (default 20)")
    p.add_argument("--schedule", metavar="FILE",
                   help="a YAML timeline: a list of {at: SECONDS, ACTION: PRIEST}")
    rnd = p.add_argument_group("the random nemesis")
    rnd.add_argument("--random", action="store_true", help="a random plan drawn from --seed")
    rnd.add_argument("--seed", type=seed_arg, metavar="S", help="the plan's seed (default: a new one, "
                     "printed)")
    rnd.add_argument("--duration", type=_positive, metavar="T",
                     help="seconds of chaos before the heal phase (default 10)")
    rnd.add_argument("--rate", type=_rate, metavar="R",
                     help="actions per second on average (default 2)")
    rnd.add_argument("--faults", type=fault_kinds, metavar="KINDS",
                     help="what the nemesis mixes: process, network, or process,network "
                          "(default: both; process only with network: direct)")
    rnd.add_argument("--allow-majority-loss", action="store_true",
                     help="let the nemesis kill or pause a majority (progress stops until the "
                          "heal)")
    p.add_argument("--dry-run", action="store_true", help="print the plan and do nothing")


def run(args: argparse.Namespace) -> int:
    """Inject real faults into the running cluster of CONFIG (default: the current cluster).

    Every action is done by the supervisor (a real signal, a real new process,
    or a change of the relay that carries every datagram) and recorded in
    <data_dir>/harness.jsonl. Three ways to say what:
        paxos-harness chaos --kill delta --ballot alpha
        paxos-harness chaos --restart delta --sleep 0.5 --ballot beta
        paxos-harness chaos --pause gamma            # --resume gamma: SIGCONT
        paxos-harness chaos --garbage beta --count 50  # malformed input where beta listens
        paxos-harness chaos --partition alpha,beta/gamma,delta   # unnamed priests: one more group
        paxos-harness chaos --isolate alpha --ballot alpha --sleep 1 --heal --ballot beta
        paxos-harness chaos --drop 0.3 --duplicate 0.2 --delay 5-40
        paxos-harness chaos --schedule configs/chaos/partition.yaml
        paxos-harness chaos --random --seed 7 --duration 30 [--rate 2] [--faults process,network]
    Network faults need the relay (the default; `network: direct` in the
    config refuses them). One-shot actions and schedules stop at the first
    refused action (exit 1).
    The random nemesis plans in advance from its seed (printed; the same seed
    and starting states give the same plan, network steps with seeds of their
    own for the relay), keeps a quorum running unless --allow-majority-loss,
    goes on past a refusal, and ends with a heal phase (the network healed,
    every priest running, then a ballot). --dry-run prints the plan only.
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
    return execute(plan, state, keep_going=mode == "random", out=sys.stdout)


def _print_plan(plan: Plan) -> None:
    print("\n".join(describe_plan(plan)), flush=True)  # a closed pipe: cli.main says 141


def _mode(args: argparse.Namespace) -> str:
    """Which of the three ways the command line chose; UsageError if none or several."""
    modes = [m for m, on in (("actions", bool(args.steps)), ("schedule", args.schedule),
                             ("random", args.random)) if on]
    if len(modes) != 1:
        raise UsageError("chaos: give one-shot actions (--kill N ...), or --schedule FILE, or "
                         "--random" + ("" if not modes else f"; not {' and '.join(modes)}"))
    if modes[0] != "random":
        for opt in ("seed", "duration", "rate", "faults"):
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
    if args.count is not None and not any(a == "garbage" for a, _ in args.steps or ()):
        raise UsageError("--count goes with --garbage")
    if mode == "actions":
        plan = plan_from_args(args.steps, config.names, config.path)
        if args.count is None:
            return plan
        steps = tuple(dataclasses.replace(s, value=args.count) if s.action == "garbage" else s
                      for s in plan.steps)
        return dataclasses.replace(plan, steps=steps)
    if mode == "schedule":
        return Plan(load_schedule(args.schedule, config.names), args.schedule)
    return None


def _random_plan(args: argparse.Namespace, config: Config, state: RunState | None) -> Plan:
    """The nemesis's plan, from the priests' real states if the cluster is up (else all running)."""
    seed = args.seed if args.seed is not None else fresh_seed()
    initial = None
    if state is not None:  # plan from the real states, so that no step is refused
        rows = control.request(state.socket, "status", owner=state.supervisor.pid)["priests"]
        initial = {r["priest"]: r["state"] for r in rows}
    kinds = faults_for(config, args.faults)
    return plan_random(config.names, seed, args.duration or 10.0, args.rate or 2.0,
                       initial=initial, allow_majority_loss=args.allow_majority_loss,
                       faults=kinds, watchable=not config.foreign_names)
