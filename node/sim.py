"""A deterministic, seeded world for the very same Synod core the priests run.

Virtual time, a network that drops, duplicates, delays (so reorders) and
partitions messages, and crashes that may strike between any two effects:
a crashed priest loses everything but what was persisted, exactly as a
SIGKILLed process does. Same seed, same run, event for event.

The world records a history in the shape of events.jsonl, so the checker that
reads real runs (harness.verify) can judge simulated ones too.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field
from typing import Sequence

from node.messages import (
    BallotRequested,
    CancelTimer,
    Effect,
    Event,
    LedgerState,
    Learn,
    Message,
    Persist,
    Received,
    Record,
    Send,
    SetTimer,
    TimerFired,
)
from node.synod import Priest, Timing


@dataclass(frozen=True)
class Faults:
    """Probabilities per message (drop, duplicate) and per step (crash, ballot)."""

    drop: float = 0.1
    duplicate: float = 0.05
    max_delay: float = 0.01  # seconds; a random delay in [0, max_delay] reorders messages
    crash: float = 0.01  # chance that a priest crashes at a given effect
    restart_after: float = 0.05
    ballots: int = 3  # ballot requests at random priests during the faulty phase
    partition: float = 0.2  # chance the run has a partition for part of its faulty phase


@dataclass
class Disk:
    """What survives a crash: the persisted ledger and decree."""

    ledger: LedgerState = field(default_factory=LedgerState)
    decree: int | None = None


@dataclass(order=True)
class _Item:
    time: float
    seq: int
    kind: str = field(compare=False)  # deliver | timer | ballot | restart | heal
    priest: str = field(compare=False)
    payload: object = field(compare=False, default=None)


class World:
    """N priests, a network and a clock; `run()` plays a faulty phase then a heal phase."""

    def __init__(self, n: int, seed: int, *, faults: Faults = Faults(), timing: Timing = Timing(),
                 flaws: Sequence[str] = (), horizon: float = 2.0, names: Sequence[str] | None = None
                 ) -> None:
        self.names = list(names) if names else [f"p{i}" for i in range(1, n + 1)]
        self.rng = random.Random(seed)
        self.seed, self.faults, self.timing, self.flaws = seed, faults, timing, tuple(flaws)
        self.horizon = horizon
        self.disks = {name: Disk() for name in self.names}
        self.priests: dict[str, Priest | None] = {name: self._boot(name) for name in self.names}
        self.queue: list[_Item] = []
        self.timers: dict[tuple[str, str], float] = {}
        self.now = 0.0
        self.seq = 0
        self.healed = False
        self.cut: set[str] = set()  # priests on the minority side of a partition
        self.history: list[dict[str, object]] = []
        self.trace: list[str] = []
        self.stats = {"messages": 0, "dropped": 0, "crashes": 0, "steps": 0}

    # --- set-up ----------------------------------------------------------

    def _boot(self, name: str) -> Priest:
        disk = self.disks[name]
        return Priest(name, self.names, ledger=disk.ledger, decree=disk.decree,
                      index=self.names.index(name) + 1, timing=self.timing, flaws=self.flaws)

    def _push(self, delay: float, kind: str, priest: str, payload: object = None) -> None:
        self.seq += 1
        heapq.heappush(self.queue, _Item(self.now + delay, self.seq, kind, priest, payload))

    def _plan(self) -> None:
        f = self.faults
        for _ in range(f.ballots):
            self._push(self.rng.uniform(0, self.horizon / 2), "ballot", self.rng.choice(self.names))
        if self.rng.random() < f.partition and len(self.names) > 2:
            size = self.rng.randint(1, (len(self.names) - 1) // 2 + 1)
            self.cut = set(self.rng.sample(self.names, size))
            self._note(f"partition: {sorted(self.cut)} cut off from the rest")
        self._push(self.horizon, "heal", "")

    # --- running ---------------------------------------------------------

    def run(self, max_steps: int = 200_000) -> None:
        """The faulty phase until `horizon`, then the network heals, all restart, one ballot."""
        self._plan()
        while self.queue and self.stats["steps"] < max_steps:
            item = heapq.heappop(self.queue)
            self.now = item.time
            self.stats["steps"] += 1
            self._step(item)

    def _step(self, item: _Item) -> None:
        if item.kind == "heal":
            return self._heal()
        if item.kind == "restart":
            return self._restart(item.priest)
        priest = self.priests[item.priest]
        if priest is None:
            return  # down: the message or request is lost
        if item.kind == "deliver":
            message = item.payload
            assert isinstance(message, Message.__args__)  # type: ignore[attr-defined]
            self._log(item.priest, "received", message)
            self._apply(item.priest, priest.handle(Received(message)))
        elif item.kind == "timer":
            name = str(item.payload)
            if self.timers.get((item.priest, name)) == item.time:
                del self.timers[(item.priest, name)]
                self._apply(item.priest, priest.handle(TimerFired(name)))
        elif item.kind == "ballot":
            self._note(f"{item.priest}: asked to begin a ballot")
            self._apply(item.priest, priest.handle(BallotRequested()))

    def _heal(self) -> None:
        self.healed = True
        self.cut = set()
        self._note("heal: the network is whole, every priest is up")
        for name in self.names:
            if self.priests[name] is None:
                self._restart(name)
        self._push(0.0, "ballot", self.rng.choice(self.names))

    def _restart(self, name: str) -> None:
        if self.priests[name] is not None:
            return
        self.priests[name] = self._boot(name)
        disk = self.disks[name]
        self._note(f"{name}: restarts from its ledger {disk.ledger} decree {disk.decree}")
        self.history.append(self._event(name, "started", decree=disk.decree))

    def _crash(self, name: str) -> None:
        self.priests[name] = None
        self.stats["crashes"] += 1
        for key in [k for k in self.timers if k[0] == name]:
            del self.timers[key]
        self._note(f"{name}: CRASH (keeps only its ledger)")
        self._push(self.rng.uniform(0, self.faults.restart_after), "restart", name)

    def _apply(self, name: str, effects: list[Effect]) -> None:
        for effect in effects:
            if not self.healed and self.rng.random() < self.faults.crash:
                self._crash(name)
                return  # the rest of the effects never happen
            self._effect(name, effect)

    def _effect(self, name: str, effect: Effect) -> None:
        disk = self.disks[name]
        if isinstance(effect, Persist):
            disk.ledger = effect.state
            self._note(f"{name}: ledger <- {effect.state}")
        elif isinstance(effect, Learn):
            disk.decree = effect.decree
            self._note(f"{name}: decree.txt <- {effect.decree}")
        elif isinstance(effect, Send):
            self._send(name, effect.dst, effect.message)
        elif isinstance(effect, SetTimer):
            when = effect.delay + (self.rng.uniform(0, effect.jitter) if effect.jitter else 0.0)
            self.timers[(name, effect.name)] = self.now + when
            self._push(when, "timer", name, effect.name)
        elif isinstance(effect, CancelTimer):
            self.timers.pop((name, effect.name), None)
        elif isinstance(effect, Record):
            self.history.append(self._event(name, effect.kind, ballot=str(effect.ballot),
                                            decree=effect.decree, peer=effect.peer))

    def _send(self, src: str, dst: str, message: Message) -> None:
        self.stats["messages"] += 1
        self._log(src, "sent", message, dst)
        f = self.faults
        if not self.healed and ((src in self.cut) != (dst in self.cut) or self.rng.random() < f.drop):
            self.stats["dropped"] += 1
            self.trace.append(f"{self.now:9.4f}  {src} -x {type(message).__name__}({message.ballot}) "
                              f"to {dst}: lost")
            return
        copies = 2 if not self.healed and self.rng.random() < f.duplicate else 1
        for _ in range(copies):
            delay = self.rng.uniform(0, f.max_delay if not self.healed else 0.001)
            self._push(delay, "deliver", dst, message)

    # --- history and trace -------------------------------------------------

    def _event(self, name: str, kind: str, **fields: object) -> dict[str, object]:
        self.seq += 1  # events are made in virtual-time order, so the counter orders them
        return {"t": self.seq, "priest": name, "kind": kind, **fields}

    def _log(self, name: str, kind: str, m: Message, dst: str | None = None) -> None:
        if kind == "sent":
            body = " ".join(f"{k}={v}" for k, v in vars(m).items() if k != "src")
            self.trace.append(f"{self.now:9.4f}  {m.src} -> {dst}  {type(m).__name__} {body}")

    def _note(self, text: str) -> None:
        self.trace.append(f"{self.now:9.4f}  {text}")

    # --- results -------------------------------------------------------------

    def decrees(self) -> dict[str, int | None]:
        return {name: disk.decree for name, disk in self.disks.items()}


def run_world(n: int, seed: int, **kw: object) -> World:
    """Build and run one world; returns it for inspection."""
    world = World(n, seed, **kw)  # type: ignore[arg-type]
    world.run()
    return world


__all__ = ["World", "Faults", "Disk", "run_world", "Event"]
