"""Simulated ballots per second: `simulate` with its checks, `node.sim.World` alone, the bare core.

`search_rate` is what `paxos-harness simulate --jobs 1` does: seeded runs of
five priests under the default faults, each judged by the checks (the figure
the project's goal is stated for). `world_rate` is the World alone, no checks.
The floor is the same Synod core with nothing around it: five `Priest`
objects and a FIFO of messages, no clock, heap, randomness, trace or history.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence

from harness.simulate.runs import Setup, search
from node.messages import BallotRequested, EventKind, Message, Received, Send
from node.sim import Faults, World
from node.synod import Priest

NO_FAULTS = Faults(drop=0.0, duplicate=0.0, crash=0.0, partition=0.0, ballots=1)
NAMES = [f"p{i}" for i in range(1, 6)]


def _world_ballots(seed: int, faults: Faults) -> int:
    world = World(5, seed, faults=faults)
    world.run()
    return sum(1 for e in world.events if e.kind is EventKind.BALLOT_STARTED)


def world_rate(duration: float, faults: Faults, seed0: int = 0) -> float:
    """Ballots started per wall-clock second over worlds run for about `duration` seconds."""
    ballots, seed = 0, seed0
    t0 = time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < duration or ballots == 0:
        ballots += _world_ballots(seed, faults)
        seed += 1
    return ballots / elapsed


def search_rate(duration: float, seed0: int = 0, batch: int = 200) -> tuple[float, float]:
    """Ballots per wall-clock and per CPU second of `simulate --jobs 1` (every run judged),
    over batches of `batch` seeds for about `duration` seconds."""
    ballots, seed, cpu = 0, seed0, 0.0
    t0 = time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < duration or ballots == 0:
        c0 = time.process_time()
        report = search(Setup(), range(seed, seed + batch), jobs=1)
        cpu += time.process_time() - c0
        if report.failed is not None:  # the correct core breaks no rule: the figure would lie
            raise AssertionError(f"seed {report.failed.seed} broke a rule")
        ballots += report.ballots
        seed += batch
    return ballots / elapsed, ballots / cpu


def _core_ballot() -> None:
    priests = {n: Priest(n, NAMES, index=i + 1) for i, n in enumerate(NAMES)}
    queue: deque[tuple[str, Message]] = deque()

    def apply(effects: Sequence[object]) -> None:
        for e in effects:
            if isinstance(e, Send):
                queue.append((e.dst, e.message))

    apply(priests["p1"].handle(BallotRequested()))
    while queue:
        dst, message = queue.popleft()
        apply(priests[dst].handle(Received(message)))
    if any(p.decree is None for p in priests.values()):
        raise AssertionError("the bare core did not decide")  # the floor must do the same work


def core_rate(duration: float) -> float:
    """Ballots per second of the bare core: the simulation's floor."""
    ballots = 0
    t0 = time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < duration or ballots == 0:
        _core_ballot()
        ballots += 1
    return ballots / elapsed
