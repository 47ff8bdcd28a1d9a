"""A simulated run in the report's model (`harness.report.run.Run`), from what the simulator kept.

`node.sim.World` records every send with its fate and each copy's arrival,
the ledger and decree writes, crashes and restarts, the partition and the
heal, and the events the priests record. Here they become what a real run's
files become, so the HTML report draws either alike:

- virtual time is the time axis (ns after the run's start, which is `t0`);
- each send is a `Sent`: its receipts are the copies that reached a priest
  that was up; a lost one says why (`partition`, `loss` in the network, or
  `receiver down` when it reached only a priest that was down, where it
  vanishes);
- a priest's lane runs from the start; a crash takes it down until its
  restart (kind `crash`);
- the partition is a network fault on the lanes it cut off, and the world's
  loss, duplication and delay one on every lane, until the heal;
- ballot requests, crashes and restarts are ticks; ballots come from the
  priests' events as for a real run;
- the verdict is `simulate`'s: verify's checks with the violations `judge`
  found (the rules it leaves out left out, "no progress" added).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import cast

from harness.check.history import LedgerFile
from harness.check.rules import check
from harness.check.verdict import Verdict, Violation
from harness.report.run import (
    DOWN,
    RUNNING,
    Interval,
    NetFault,
    Run,
    Sent,
    Simulated,
    Tick,
    ballots,
)
from harness.simulate.runs import Setup, replay_command, sim_config, to_history
from node.messages import Message
from node.sim import Arrival, Faults, Step, World, describe_step

CRASH = "crash"  # a simulated crash: its lane's fault kind and its tick's


def ns(seconds: float) -> int:
    """Virtual seconds as the ns the priests' events carry."""
    return int(seconds * 1e9)


def simulated_run(setup: Setup, world: World, violations: Sequence[Violation]) -> tuple[Run, Verdict]:
    """The model of a played world, and simulate's verdict on it (`violations`, from `judge`)."""
    config = sim_config(world)
    history = to_history(world)
    alive = {name for name, priest in world.priests.items() if priest is not None}
    verdict = replace(check(config, history, alive), violations=tuple(violations))
    # The report shows each priest's ledger as the run left it; the checks above do not read it.
    history.ledgers = {name: LedgerFile(f"{name}/ledger.log", disk.ledger)
                       for name, disk in world.disks.items()}
    steps = world.steps
    arrivals = world.arrivals
    t1 = max([ns(s.time) for s in steps[-1:]] + [ns(a[0]) for a in world.raw_arrivals[-1:]]
             + [e.t for evs in history.events.values() for e in evs[-1:]] + [0])
    heal = next((ns(s.time) for s in steps if s.kind == "heal"), None)
    crashes: dict[str, list[int]] = {name: [] for name in world.names}
    for s in steps:
        if s.kind == "crash":
            crashes[s.priest].append(ns(s.time))
    run = Run(config, history, 0, t1, history.events, messages(steps, arrivals),
              lanes(world.names, steps, t1), network(world.names, world.faults, steps, t1),
              ballots(history.events, crashes, t1), [], [], True, ticks=ticks(steps))
    run.simulated = Simulated(
        world.seed, settings(world.faults), world.flaws, heal, replay_command(setup, world.seed),
        html_command(setup, world.seed), len(steps), world.finished)
    if not world.finished:
        run.notes.append(f"the run was stopped after {world.stats['steps']} steps")
    return run, verdict


def messages(steps: Sequence[Step], arrivals: dict[int, list[Arrival]]) -> list[Sent]:
    """Every send with the copies that were taken, or why it was lost and where it vanished."""
    out = []
    for i, s in enumerate(steps):
        if s.kind != "send":
            continue
        copies = arrivals.get(i, [])
        received = tuple(ns(a.time) for a in copies if a.taken)
        why = "" if received else s.note
        gone = ns(copies[0].time) if copies and not received else None
        out.append(Sent(s.priest, str(s.peer), cast(Message, s.what), ns(s.time), received,
                        why=why, gone=gone))
    return out


def lanes(names: Sequence[str], steps: Sequence[Step], t1: int) -> list[Interval]:
    """Each priest running from the start; down from each crash to its restart."""
    state = dict.fromkeys(names, RUNNING)
    since = dict.fromkeys(names, 0)
    out = []
    for s in steps:
        if s.kind not in ("crash", "restart") or s.priest not in state:
            continue
        t = ns(s.time)
        was = state[s.priest]
        if t > since[s.priest]:
            out.append(Interval(s.priest, since[s.priest], t, was, CRASH if was == DOWN else ""))
        state[s.priest] = DOWN if s.kind == "crash" else RUNNING
        since[s.priest] = t
    for name in names:
        if t1 > since[name]:
            cause = CRASH if state[name] == DOWN else ""
            out.append(Interval(name, since[name], t1, state[name], cause))
    return out


def network(names: Sequence[str], faults: Faults, steps: Sequence[Step], t1: int) -> list[NetFault]:
    """The partition on the lanes it cut off, and loss, duplication and delay on every lane,
    from the start to the heal."""
    heal = next((ns(s.time) for s in steps if s.kind == "heal"), t1)
    every = tuple(names)
    out = []
    for s in steps:
        if s.kind == "partition":
            cut = cast(list[str], s.what)
            lanes_cut = tuple(n for n in names if n in cut)
            out.append(NetFault("partition", ns(s.time), heal, lanes_cut,
                                f"partition: {', '.join(lanes_cut)} cut off from the rest"))
    for kind, on, text in (("drop", faults.drop, f"drop {faults.drop:.0%}"),
                           ("duplicate", faults.duplicate, f"duplicate {faults.duplicate:.0%}"),
                           ("delay", faults.max_delay, f"delay 0-{faults.max_delay * 1e3:g} ms")):
        if on and heal > 0:
            out.append(NetFault(kind, 0, heal, every, text))
    out.sort(key=lambda f: (f.start, f.kind))
    return out


def ticks(steps: Sequence[Step]) -> list[Tick]:
    """A tick per ballot requested, crash and restart."""
    kinds = {"ballot": "ballot", "crash": CRASH, "restart": "restart"}
    return [Tick(ns(s.time), kinds[s.kind], s.priest, describe_step(s))
            for s in steps if s.kind in kinds]


def settings(f: Faults) -> str:
    """The world's faults in words."""
    return (f"drop {f.drop}, duplicate {f.duplicate}, delay up to {f.max_delay * 1e3:g} ms, "
            f"crash {f.crash} per effect (restart within {f.restart_after * 1e3:g} ms), "
            f"partition {f.partition}, {f.ballots} ballots requested")


def html_command(setup: Setup, seed: int) -> str:
    """The command that writes this report again."""
    return replay_command(setup, seed).removesuffix(" --trace") + " --html FILE"


__all__ = ["simulated_run", "messages", "lanes", "network", "ticks", "settings", "html_command",
           "ns", "CRASH"]
