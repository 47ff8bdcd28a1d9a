"""A deterministic, seeded world for the very same Synod core the priests run.

Virtual time, a network that drops, duplicates, delays (so reorders) and
partitions messages, and crashes that may strike between any two effects:
a crashed priest loses everything but what was persisted, exactly as a
SIGKILLed process does. Same seed, same run, event for event.

A run has two phases. The faulty phase lasts `horizon` virtual seconds:
ballots are requested at random priests (several may overlap), messages are
lost, duplicated and delayed, one side of a partition may be cut off, priests
crash and restart. Then the heal phase: the network is whole, every priest is
up, nothing fails any more, and one ballot is requested; after it every
priest must hold the decree.

The world records the very events a priest writes to events.jsonl
(`node.record.PriestEvent`; t is virtual time in ns, strictly increasing), so
the checker that reads real runs (harness.verify) judges simulated ones too,
and a list of steps (sends, ledger writes, crashes...) from which a trace or a
message diagram is drawn, and each message's arrivals (when each copy reached
its receiver, and whether the receiver was up to take it), from which the
trace shows delays and reorders and the HTML report draws every message.

Speed matters here (thousands of runs a minute), so the loop keeps plain
tuples in its queue and its logs, builds text only when asked, and records each
priest's events in its own list, as the checker reads them.
A search that only judges runs needs no steps: `World(..., steps=False)` keeps
none (nor arrivals), and a run it finds broken is played again, with them, to be
shown; the run is the same either way, since keeping steps draws no random number.
Messages pass as the frozen message values, not through the codec: the
simulated network is honest (it loses, duplicates and delays, it never
forges), so datagram bytes and their HMAC tags would add time and nothing
the core could notice. The codec, tags included, is tested on its own
(tests/unit/test_codec.py) and by the real-process tests.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, NamedTuple, cast

from node.flaws import strategy
from node.messages import (
    BallotRequested,
    CancelTimer,
    Effect,
    EventKind,
    Learn,
    LedgerState,
    Message,
    Persist,
    Received,
    Record,
    Send,
    SetTimer,
    TimerFired,
    Timing,
)
from node.record import PriestEvent, recorded, started_event
from node.synod import FRESH_LEDGER, Priest


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

    ledger: LedgerState = FRESH_LEDGER  # immutable: every new disk can share it
    decree: int | None = None


class Step(NamedTuple):
    """One step of a run, for traces and diagrams.

    kind: send (priest -> peer, `what` the message, `fate` "", "lost" or
    "duplicated"; a message lost in the network says why in `note`: LOST_CUT
    or LOST_DROP), ledger (`what` the LedgerState written), decree (`what` the
    decree written), crash, restart (`what` = (ledger, decree) recovered),
    ballot (a ballot was requested of priest), partition (`what` the cut-off
    priests), heal. A real run's steps (harness.report.steps) add pause, resume,
    stop, exited, network and relay. `note`: words a diagram adds to the row.
    """

    time: float
    kind: str
    priest: str
    peer: str | None = None
    what: object = None
    fate: str = ""
    note: str = ""


_BALLOT_STARTED = EventKind.BALLOT_STARTED  # looked up once: EventKind.X costs 70 ns a time
# Queue item kinds, ordered by (time, seq) in the heap.
_DELIVER, _TIMER, _BALLOT, _RESTART, _HEAL = range(5)
HORIZON = 2.0  # virtual seconds of a run's faulty phase, by default
LOST_CUT, LOST_DROP = "partition", "loss"  # why the network lost a message (a real relay's words)
RECEIVER_DOWN = "receiver down"  # it arrived at a priest that was down: lost too
IN_FLIGHT = "in flight"  # still on its way when the run stopped (after max_steps)


class Arrival(NamedTuple):
    """One copy of a message reaching its receiver: when, and whether it was up to take it."""

    time: float
    taken: bool


class World:
    """N priests, a network and a clock; `run()` plays a faulty phase then a heal phase."""

    def __init__(self, n: int, seed: int, *, faults: Faults = Faults(), timing: Timing = Timing(),  # noqa: B008
                 flaws: Sequence[str] = (), horizon: float = HORIZON, names: Sequence[str] | None = None,
                 steps: bool = True) -> None:
        self.names = list(names) if names else [f"p{i}" for i in range(1, n + 1)]
        self.rng = random.Random(seed)
        self.seed, self.faults, self.timing, self.flaws = seed, faults, timing, tuple(flaws)
        self.strategy = strategy(self.flaws)
        self.horizon = horizon
        self.disks = {name: Disk() for name in self.names}
        self.priests: dict[str, Priest | None] = {name: self._boot(name) for name in self.names}
        # (time, seq, kind, priest, payload): plain tuples order fastest in the heap.
        self.queue: list[tuple[float, int, int, str, Any]] = []
        self.timers: dict[tuple[str, str], float] = {}
        self.now = 0.0
        self.seq = 0
        self.healed = False
        self.cut: set[str] = set()  # priests on the minority side of a partition
        # Each priest's recorded events, as its events.jsonl would hold them (see `record`).
        self.events_of: dict[str, list[PriestEvent]] = {name: [] for name in self.names}
        self.incarnations = dict.fromkeys(self.names, 0)  # each priest's starts so far
        self.last_t = -1  # t of the last event recorded, in ns: each one's is higher
        self.raw_steps: list[tuple[object, ...]] = []  # Step fields as plain tuples (cheap)
        # (time, index of the send step in raw_steps, taken): one per copy that arrived.
        self.raw_arrivals: list[tuple[float, int, bool]] = []
        self.keeps_steps = steps  # False: raw_steps holds only the run's rare steps, no arrivals
        self.stats = {"messages": 0, "dropped": 0, "duplicated": 0, "crashes": 0, "steps": 0,
                      "ballots": 0, "requests": 0}
        self.finished = False  # the queue drained before max_steps
        for name in self.names:  # as a real priest does when its process starts
            self.record(self.now, name, (FRESH_LEDGER, None))

    # --- set-up ----------------------------------------------------------

    def _boot(self, name: str) -> Priest:
        disk = self.disks[name]
        return Priest(name, self.names, ledger=disk.ledger, decree=disk.decree,
                      index=self.names.index(name) + 1, timing=self.timing,
                      strategy=self.strategy)

    def _push(self, delay: float, kind: int, priest: str, payload: Any = None) -> None:
        self.seq += 1
        heapq.heappush(self.queue, (self.now + delay, self.seq, kind, priest, payload))

    def _plan(self) -> None:
        f = self.faults
        for _ in range(f.ballots):
            self._push(self.rng.uniform(0, self.horizon / 2), _BALLOT, self.rng.choice(self.names))
        if self.rng.random() < f.partition and len(self.names) > 2:
            size = self.rng.randint(1, (len(self.names) - 1) // 2 + 1)
            self.cut = set(self.rng.sample(self.names, size))
            self.raw_steps.append((self.now, "partition", "", None, sorted(self.cut), ""))
        self._push(self.horizon, _HEAL, "")

    # --- running ---------------------------------------------------------

    def run(self, max_steps: int = 200_000) -> None:
        """The faulty phase until `horizon`, then the network heals, all restart, one ballot."""
        self._plan()
        queue, pop, priests = self.queue, heapq.heappop, self.priests
        keeps, arrived = self.keeps_steps, self.raw_arrivals.append
        steps = 0
        while queue and steps < max_steps:
            when, _, kind, name, payload = pop(queue)
            self.now = when
            steps += 1
            if kind == _DELIVER:  # payload: (the message, the index of its send step in raw_steps)
                priest = priests[name]
                message, index = payload
                if keeps:
                    arrived((when, index, priest is not None))
                if priest is not None:  # a message to a priest that is down is lost
                    self._apply(name, priest.handle(Received(message)))
            elif kind == _TIMER:
                priest = priests[name]
                if priest is not None and self.timers.get((name, payload)) == when:
                    del self.timers[(name, payload)]
                    self._apply(name, priest.handle(TimerFired(payload)))
            else:
                self._other(kind, name)
        self.stats["steps"] = steps
        self.finished = not queue

    def _other(self, kind: int, name: str) -> None:
        if kind == _HEAL:
            self._heal()
        elif kind == _RESTART:
            self._restart(name)
        else:
            priest = self.priests[name]
            if priest is None:
                return  # down: the request is lost
            self.stats["requests"] += 1
            self.raw_steps.append((self.now, "ballot", name, None, None, ""))
            self._apply(name, priest.handle(BallotRequested()))

    def _heal(self) -> None:
        self.healed = True
        self.cut = set()
        self.raw_steps.append((self.now, "heal", "", None, None, ""))
        for name in self.names:
            if self.priests[name] is None:
                self._restart(name)
        self._push(0.0, _BALLOT, self.rng.choice(self.names))

    def _restart(self, name: str) -> None:
        if self.priests[name] is not None:
            return
        priest = self.priests[name] = self._boot(name)
        # What it recovered, as a real priest records it: after its strategy's `recover`
        # (the forget-promises flaw forgets here, not on disk).
        recovered = (priest.ledger, self.disks[name].decree)
        self.raw_steps.append((self.now, "restart", name, None, recovered, ""))
        self.record(self.now, name, recovered)

    def _crash(self, name: str) -> None:
        self.priests[name] = None
        self.stats["crashes"] += 1
        for key in [k for k in self.timers if k[0] == name]:
            del self.timers[key]
        self.raw_steps.append((self.now, "crash", name, None, None, ""))
        self._push(self.rng.uniform(0, self.faults.restart_after), _RESTART, name)

    def _apply(self, name: str, effects: list[Effect]) -> None:
        # The hot loop of the simulator: kept flat, with the common effects inline.
        crash = 0.0 if self.healed else self.faults.crash
        rnd = self.rng.random
        for effect in effects:
            if crash and rnd() < crash:
                self._crash(name)
                return  # the rest of the effects never happen
            if type(effect) is Send:
                self._send(name, effect.dst, effect.message)
            elif type(effect) is Record:
                if effect.kind is _BALLOT_STARTED:
                    self.stats["ballots"] += 1
                self.record(self.now, name, effect)
            else:
                self._effect(name, effect)

    def _effect(self, name: str, effect: Effect) -> None:
        if type(effect) is SetTimer:
            when = effect.delay + (self.rng.uniform(0, effect.jitter) if effect.jitter else 0.0)
            self.timers[(name, effect.name)] = self.now + when
            self._push(when, _TIMER, name, effect.name)
        elif type(effect) is Persist:
            self.disks[name].ledger = effect.state
            if self.keeps_steps:
                self.raw_steps.append((self.now, "ledger", name, None, effect.state, ""))
        elif type(effect) is CancelTimer:
            self.timers.pop((name, effect.name), None)
        elif type(effect) is Learn:
            self.disks[name].decree = effect.decree
            if self.keeps_steps:
                self.raw_steps.append((self.now, "decree", name, None, effect.decree, ""))

    def _send(self, src: str, dst: str, message: Message) -> None:
        stats, rnd, now, keeps = self.stats, self.rng.random, self.now, self.keeps_steps
        stats["messages"] += 1
        index = len(self.raw_steps)  # the send step's, appended last
        if self.healed:
            self.seq += 1
            heapq.heappush(self.queue, (now + 0.001 * rnd(), self.seq, _DELIVER, dst, (message, index)))
            if keeps:
                self.raw_steps.append((now, "send", src, dst, message, ""))
            return
        f, cut = self.faults, self.cut
        if cut and (src in cut) != (dst in cut):
            stats["dropped"] += 1
            if keeps:
                self.raw_steps.append((now, "send", src, dst, message, "lost", LOST_CUT))
            return
        if rnd() < f.drop:
            stats["dropped"] += 1
            if keeps:
                self.raw_steps.append((now, "send", src, dst, message, "lost", LOST_DROP))
            return
        fate, payload = "", (message, index)  # what a delivery carries
        if rnd() < f.duplicate:
            stats["duplicated"] += 1
            fate = "duplicated"
            self._push(f.max_delay * rnd(), _DELIVER, dst, payload)
        self.seq += 1
        heapq.heappush(self.queue, (now + f.max_delay * rnd(), self.seq, _DELIVER, dst, payload))
        if keeps:
            self.raw_steps.append((now, "send", src, dst, message, fate))

    # --- results -------------------------------------------------------------

    def record(self, now: float, name: str, what: Record | tuple[LedgerState, int | None]) -> None:
        """Record an event of priest `name` at virtual time `now`, as its events.jsonl would hold it.

        `what`: a Record effect of its core, or the (ledger, decree) a start
        recovered. t is `now` in ns, nudged to strictly increase; `pid` counts
        the priest's incarnations (1, then 2 after its first restart...); `line`
        is the event's line in its priest's file.
        """
        t = int(now * 1e9)
        t = self.last_t = t if t > self.last_t else self.last_t + 1
        events = self.events_of[name]
        if type(what) is Record:
            events.append(recorded(what, t, name, self.incarnations[name], len(events) + 1))
        else:
            ledger, decree = cast(tuple[LedgerState, "int | None"], what)
            self.incarnations[name] += 1
            events.append(started_event(t, name, self.incarnations[name], ledger, decree,
                                        line=len(events) + 1))

    @property
    def events(self) -> list[PriestEvent]:
        """Every priest's recorded events in one list, in the order they happened (by t)."""
        merged = [e for events in self.events_of.values() for e in events]
        merged.sort(key=_event_time)
        return merged

    @property
    def history(self) -> list[dict[str, object]]:
        """The recorded events as the JSON objects of events.jsonl lines."""
        return [e.to_json() for e in self.events]

    @property
    def steps(self) -> list[Step]:
        """Every step of the run in order: sends, ledger and decree writes, crashes...

        A send's note says when it arrived ("arrives in 4.2 ms"), whether it
        overtook messages sent before it on its link, or why it was lost; one
        that reached only a priest that was down is lost too.
        """
        if not self.keeps_steps:
            raise ValueError("this world kept no steps: build it with World(..., steps=True)")
        out = [Step(*s) for s in self.raw_steps]  # type: ignore[arg-type]
        for i, (fate, note) in _arrival_notes(out, self.arrivals, self.finished).items():
            out[i] = out[i]._replace(fate=fate, note=note)
        return out

    @property
    def arrivals(self) -> dict[int, list[Arrival]]:
        """Each copy's arrival, by the index of its send in `steps`, in order of arrival."""
        out: dict[int, list[Arrival]] = {}
        for time, index, taken in self.raw_arrivals:
            out.setdefault(index, []).append(Arrival(time, taken))
        return out

    @property
    def trace(self) -> list[str]:
        """The steps as text lines, one per step, prefixed by virtual time in seconds."""
        return [f"{s.time:9.4f}  {describe_step(s)}" for s in self.steps]

    def decrees(self) -> dict[str, int | None]:
        return {name: disk.decree for name, disk in self.disks.items()}


def _event_time(e: PriestEvent) -> int:
    return e.t


def _arrival_notes(steps: list[Step], arrivals: dict[int, list[Arrival]],
                   finished: bool) -> dict[int, tuple[str, str]]:
    """(fate, note) for each send that left: its copies' delays, what it overtook on its
    link, or why it was lost after all (its receiver was down, or it was still on its way)."""
    out: dict[int, tuple[str, str]] = {}
    # link -> (sent, first arrival, i), in send order
    first: dict[tuple[str, str | None], list[tuple[float, float, int]]] = {}
    longest = 0.0  # the longest delay: no message sent earlier than that before can be passed
    for i, s in enumerate(steps):
        if s.kind != "send" or s.fate == "lost":
            continue
        copies = arrivals.get(i, [])
        taken = [a.time - s.time for a in copies if a.taken]
        if not taken:
            why = RECEIVER_DOWN if copies or finished else IN_FLIGHT
            out[i] = ("lost", why)
            continue
        words = "arrives in " + " and ".join(f"{d * 1e3:.1f}" for d in taken) + " ms"
        if len(copies) > len(taken):
            words += f"; {len(copies) - len(taken)} copy lost ({RECEIVER_DOWN})"
        out[i] = (s.fate, words)
        first.setdefault((s.priest, s.peer), []).append((s.time, s.time + taken[0], i))
        longest = max(longest, taken[0])
    for link in first.values():  # count the earlier sends each one overtook
        for k, (_, at, i) in enumerate(link):
            passed, j = 0, k - 1
            while j >= 0 and link[j][0] + longest >= at:
                passed += link[j][1] > at
                j -= 1
            if passed:
                fate, words = out[i]
                out[i] = (fate, f"{words}, overtaking {passed} sent before it")
    return out


def describe_step(s: Step) -> str:
    """One step in words: 'p1 -> p3  NextBallot ballot=1.p1', 'p2: CRASH'..."""
    if s.kind == "send":
        m = cast(Message, s.what)
        body = " ".join(f"{f.name}={getattr(m, f.name)}" for f in fields(m) if f.name != "src")
        words = [w for w in ({"lost": "lost", "duplicated": "duplicated"}.get(s.fate, ""), s.note)
                 if w]
        tail = f"  ({': '.join(words)})" if words else ""
        return f"{s.priest} -> {s.peer}  {type(m).__name__} {body}{tail}"
    if s.kind == "ledger":
        return f"{s.priest}: ledger <- {_ledger(cast(LedgerState, s.what))}"
    if s.kind == "decree":
        return f"{s.priest}: decree.txt <- {s.what}"
    if s.kind == "crash":
        return f"{s.priest}: CRASH (keeps only its ledger)"
    if s.kind == "restart":
        ledger, decree = cast(tuple[LedgerState, "int | None"], s.what)
        held = f"decree {decree}" if decree is not None else "no decree"
        return f"{s.priest}: restarts from its ledger {_ledger(ledger)}, {held}"
    if s.kind == "ballot":
        return f"{s.priest}: asked to begin a ballot"
    if s.kind == "partition":
        return f"partition: {s.what} cut off from the rest"
    return "heal: the network is whole, every priest is up"


def _ledger(state: LedgerState) -> str:
    return f"last_tried={state.last_tried} next_bal={state.next_bal} prev_vote={state.prev_vote}"


def run_world(n: int, seed: int, **kw: object) -> World:
    """Build and run one world; returns it for inspection."""
    world = World(n, seed, **kw)  # type: ignore[arg-type]
    world.run()
    return world


__all__ = ["World", "Faults", "Disk", "Step", "Arrival", "describe_step", "run_world", "HORIZON",
           "LOST_CUT", "LOST_DROP", "RECEIVER_DOWN", "IN_FLIGHT"]
