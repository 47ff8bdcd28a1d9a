"""A real run, read from what it left, in the shape pictures need.

`load_run` reads the priests' events.jsonl and harness.jsonl (through the
checker's reader, `harness.check.history`) and, when the relay ran,
network.jsonl (`harness.network.record`), and pairs them up:

- every `sent` event becomes a `Sent` message; its receipts are the `received`
  events of the same message at its receiver, and the relay's datagram line
  (matched in order on its link: the priest writes `sent` before the datagram
  leaves, and the relay reads a link's datagrams in the order they were sent)
  says whether it was dropped, where, and why;
- the harness's records give each priest's lane its states (running, paused,
  down) and the network's faults their intervals;
- each proposer's events give its ballots, as bars with an outcome;
- a foreign priest (config key `command`) writes no events: what it sent is
  drawn from the relay's datagram lines alone (`foreign_messages`), each an
  `Unread` message known by the preview of its first bytes, sent when the
  relay read it and received when each copy left the relay; what our own
  priests sent it is drawn from their `sent` events, delivered as the relay
  says. Without the relay (`network: direct`) nothing saw those datagrams.

Only the last run in the data dir is drawn (from its last `up` record on);
`earlier_runs` counts the others. Times are CLOCK_MONOTONIC ns throughout.

A simulated run fills the same model (`harness.report.simulated`), from what
the simulator recorded; its times are virtual ns and `Run.simulated` says so.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from harness.check.history import History, load_history
from harness.check.rules import check
from harness.check.verdict import Verdict
from harness.errors import RunFilesError
from harness.network.faults import Faults
from harness.network.process import NETWORK_FILE
from harness.network.record import DROPPED, Datagram, read_network_log
from harness.record import (
    ChaosAction,
    ChaosEnd,
    ChaosStart,
    DecreeSeen,
    Down,
    NetworkChange,
    PriestExited,
    PriestStarted,
    Record,
    RelayExited,
    RelayStarted,
    Up,
)
from harness.report.unread import Unread, describe
from node.config import Config
from node.messages import (
    NO_VOTE,
    BeginBallot,
    EventKind,
    LastVote,
    Message,
    NextBallot,
    Success,
    Voted,
)
from node.record import PriestEvent

RUNNING, PAUSED, DOWN = "running", "paused", "down"
RELAY_DOWN = "relay down"  # why a datagram sent while the relay was not running is lost
NOT_RECEIVED = "not received"  # it left, and its receiver never recorded it
CUTS = ("partition", "isolate")  # network actions that set the network's groups


@dataclass(frozen=True)
class Sent:
    """One message a priest sent: when, what became of it, when it arrived (each copy)."""

    src: str
    dst: str
    message: Message | Unread  # Unread: a foreign priest's datagram, seen by the relay only
    sent: int
    received: tuple[int, ...] = ()
    datagram: Datagram | None = None  # the relay's line for it; None: no relay, or not seen
    why: str = ""  # when lost: partition, loss, relay down, not received, receiver down
    gone: int | None = None  # when lost, if known otherwise: when it reached a receiver that was down

    @property
    def lost(self) -> bool:
        return not self.received

    @property
    def vanished(self) -> int:
        """Where a lost message was last seen: the relay's time, else when it was sent."""
        if self.gone is not None:
            return self.gone
        return self.datagram.t if self.datagram is not None else self.sent

    @property
    def type(self) -> str:
        m = self.message
        return m.word if isinstance(m, Unread) else type(m).__name__


@dataclass(frozen=True)
class Interval:
    """A stretch of one priest's lane in one state; `cause` the fault that began it, if any."""

    priest: str
    start: int
    end: int
    state: str  # running, paused, down
    cause: str = ""  # kill, stop, pause, exited (a fault); "" for a start or `down`


@dataclass(frozen=True)
class NetFault:
    """A network fault in force from `start` to `end`, on the lanes of `priests`."""

    kind: str  # partition, isolate, drop, duplicate, delay, relay (the relay was down)
    start: int
    end: int
    priests: tuple[str, ...]  # the lanes it cuts (all of them for drop, duplicate, delay, relay)
    text: str


@dataclass(frozen=True)
class BallotBar:
    """One ballot of one proposer: from its start to its end, and how it ended."""

    ballot: str
    priest: str
    start: int
    end: int
    decree: int | None  # what it proposed, if it got that far
    outcome: str  # "decided 2002", "abandoned", "gave up", "cut short", "unfinished"


@dataclass(frozen=True)
class Tick:
    """A moment something was done to one priest: a chaos action that was applied, or in a
    simulated run a ballot requested, a crash or a restart."""

    t: int
    kind: str  # the action: ballot, kill, restart, stop, pause, resume; simulated: crash too
    priest: str
    text: str


@dataclass(frozen=True)
class Simulated:
    """What a simulated run was: its seed and world, and the commands that replay it."""

    seed: int
    faults: str  # the world's fault settings, in words
    flaws: tuple[str, ...]
    heal: int | None  # when the heal phase began (virtual ns); None: the run stopped before
    replay: str  # the command that prints its trace
    html: str  # the command that writes this report again
    steps: int
    finished: bool  # the run ended by itself (not stopped after its step limit)


@dataclass
class Run:
    """Everything the diagram and the report draw of one run (times: monotonic ns)."""

    config: Config
    history: History
    t0: int  # the first event of the run: times are shown as seconds after it
    t1: int  # the last thing recorded
    events: dict[str, list[PriestEvent]]
    messages: list[Sent]
    lanes: list[Interval]
    network: list[NetFault]
    ballots: list[BallotBar]
    actions: list[Record]  # chaos and network records of the run, refused ones too
    plans: list[Record]  # chaos_start and chaos_end records
    relay: bool  # network.jsonl was there: fates are known
    earlier_runs: int = 0
    notes: list[str] = field(default_factory=list)
    records: list[Record] = field(default_factory=list)  # harness.jsonl's, of this run only
    ticks: list[Tick] = field(default_factory=list)
    simulated: Simulated | None = None  # set for a simulated run: times are virtual

    @property
    def names(self) -> list[str]:
        return self.config.names

    def seconds(self, t: int) -> float:
        return (t - self.t0) / 1e9

    def between(self) -> list[Sent]:
        """The messages between two different priests (not those a priest sends itself)."""
        return [m for m in self.messages if m.src != m.dst]

    @property
    def foreign(self) -> list[str]:
        """The foreign priests: programs that write no events (config key `command`)."""
        return self.config.foreign_names


def judged_run(config: Config, alive: set[str] | None) -> tuple[Run, Verdict]:
    """The last run under config.data_dir and verify's verdict on the whole history, both
    read once; RunFilesError in one line when there is nothing to draw: no priest recorded an
    event, or (foreign priests alone) no relay recorded their datagrams."""
    history = load_history(config)
    verdict = check(config, history, alive)
    run = load_run(config, history)
    if any(run.events.values()):
        return run, verdict
    if config.foreign_names and len(config.foreign_names) == len(config.names):
        if config.network != "relay":
            how = "TCP, " if config.foreign.transport == "tcp" else ""
            raise RunFilesError(
                f"cluster {config.cluster}'s priests are foreign programs that ran without the "
                f"relay ({how}network: {config.network}): they write no events.jsonl and nothing "
                "saw their messages, so there is nothing to draw; run them behind the relay "
                "(`network: relay`, UDP only) to see their datagrams, or `paxos-harness verify "
                f"{config.path}` to judge them from their decree.txt")
        if not run.relay:
            raise RunFilesError(
                f"cluster {config.cluster}'s priests are foreign programs: they write no "
                f"events.jsonl, and {config.data_dir} holds no {NETWORK_FILE} (the relay's record "
                "of their datagrams), so there is nothing to draw; bring the cluster up again "
                f"(network: relay) and run it, or `paxos-harness verify {config.path}` to judge "
                "them from their decree.txt")
        return run, verdict
    raise RunFilesError(f"{config.data_dir}: no run recorded (no events.jsonl with events); "
                        f"bring the cluster up first: paxos-harness up {config.path}")


def load_run(config: Config, history: History | None = None) -> Run:
    """The last run under config.data_dir, paired up (see the module's docstring)."""
    history = history if history is not None else load_history(config)
    ups = [r.t for r in history.harness if isinstance(r, Up)]
    begin = ups[-1] if ups else None
    events = {n: [e for e in evs if begin is None or e.t >= begin]
              for n, evs in history.events.items()}
    records = [r for r in history.harness if begin is None or r.t >= begin]
    times = [e.t for evs in events.values() for e in evs[:1]] or [r.t for r in records] or [0]
    t0 = min(times)
    ends = [evs[-1].t for evs in events.values() if evs] + [r.t for r in records] + [t0]
    t1 = max(ends)
    log = read_network_log(config.data_dir, NETWORK_FILE, since=begin)
    datagrams = log.datagrams if log else []
    if datagrams:
        t1 = max(t1, *(max(d.at, default=d.t) for d in datagrams))
    run = Run(config, history, t0, t1, events, [], [], [], [], [], [], log is not None,
              earlier_runs=max(0, len(ups) - 1), records=records)
    run.messages = pair_messages(events, datagrams, _relay_gaps(records, t1))
    foreign = set(config.foreign_names)
    if foreign:
        run.messages = sorted([*(_delivered(m) if m.dst in foreign else m for m in run.messages),
                               *foreign_messages(datagrams, foreign)], key=lambda m: m.sent)
        if log is not None and log.cut_at is not None and log.cut_at > t0:
            run.notes.append(f"{NETWORK_FILE} was rotated: the relay's record begins at "
                             f"+{(log.cut_at - t0) / 1e9:.3f} s; foreign priests' datagrams "
                             "before it are not drawn, and messages to them show as not "
                             "received")
        if config.network != "relay":
            run.notes.append(f"{', '.join(config.foreign_names)}: foreign, and no relay "
                             f"(network: {config.network}): nothing saw their messages")
    run.lanes = lanes(config.names, events, records, t0, t1)
    run.network = network_faults(config.names, records, t1)
    run.ballots = ballots(events, exits(records), t1)
    run.actions = [r for r in records if isinstance(r, ChaosAction | NetworkChange)]
    run.ticks = [Tick(r.t, r.action, r.priest, f"{r.action} {r.priest}: {r.outcome}")
                 for r in records if isinstance(r, ChaosAction) and r.applied]
    run.ticks += [Tick(r.t, "decree", r.priest, seen(r)) for r in records
                  if isinstance(r, DecreeSeen) and r.present and r.priest in foreign]
    run.ticks.sort(key=lambda k: k.t)
    run.plans = [r for r in records if isinstance(r, ChaosStart | ChaosEnd)]
    if log is not None and log.skipped:
        lines = "line" if log.skipped == 1 else "lines"
        run.notes.append(f"{log.skipped} {lines} of {NETWORK_FILE} could not be read")
    return run


# --- messages ------------------------------------------------------------------------


def message_of(e: PriestEvent, src: str) -> Message | None:
    """The message a `sent` or `received` event names (sent by `src`); None if it names none."""
    b = e.ballot
    if b is None:
        return None
    if e.msg == "NextBallot":
        return NextBallot(src, b)
    if e.msg == "LastVote":
        return LastVote(src, b, e.vote if e.vote is not None else NO_VOTE)
    if e.msg == "BeginBallot" and e.decree is not None:
        return BeginBallot(src, b, e.decree)
    if e.msg == "Voted":
        return Voted(src, b)
    if e.msg == "Success" and e.decree is not None:
        return Success(src, b, e.decree)
    return None


MATCH_WINDOW = 1_000_000_000  # ns: a datagram the relay read later than this is not this send's


def pair_messages(events: dict[str, list[PriestEvent]], datagrams: Iterable[Datagram],
                  relay_gaps: list[tuple[int, int]]) -> list[Sent]:
    """Each `sent` event with its relay datagram (if any) and its `received` events."""
    sends: list[tuple[str, str, Message, int]] = []
    for name, evs in events.items():
        for e in evs:
            if e.kind is EventKind.SENT and e.peer is not None:
                m = message_of(e, name)
                if m is not None:
                    sends.append((name, e.peer, m, e.t))
    sends.sort(key=lambda s: s[3])
    on_link: dict[tuple[str, str], list[Datagram]] = defaultdict(list)
    for g in datagrams:
        if g.src is not None:
            on_link[(g.src, g.dst)].append(g)
    for link in on_link.values():
        link.sort(key=lambda d: d.t)
    taken = dict.fromkeys(on_link, 0)
    found: list[Datagram | None] = []
    for src, dst, _, t in sends:
        found.append(_datagram(on_link.get((src, dst)), taken, (src, dst), t)
                     if src != dst else None)
    receipts = _receipts(events)
    copies: dict[tuple[str, str, Message], list[tuple[int, int]]] = defaultdict(list)
    for i, ((src, dst, m, t), d) in enumerate(zip(sends, found, strict=True)):
        if d is not None and d.fate == DROPPED:
            continue
        for at in (d.at if d is not None and d.at else (t,)):
            copies[(src, dst, m)].append((at, i))
    got: dict[int, list[int]] = defaultdict(list)
    for key, ready in copies.items():
        ready.sort()
        used = [False] * len(ready)
        for r in receipts.get(key, ()):
            # The latest copy ready before the receipt, not yet matched.
            j = bisect.bisect_right(ready, (r, len(sends))) - 1
            while j >= 0 and used[j]:
                j -= 1
            if j >= 0:
                used[j] = True
                got[ready[j][1]].append(r)
    out = []
    for i, ((src, dst, m, t), d) in enumerate(zip(sends, found, strict=True)):
        received = tuple(sorted(got.get(i, ())))
        why = ""
        if not received:
            if d is not None and d.fate == DROPPED:
                why = d.reason or "dropped"
            elif d is None and src != dst and any(a <= t < b for a, b in relay_gaps):
                why = RELAY_DOWN
            else:
                why = NOT_RECEIVED
        out.append(Sent(src, dst, m, t, received, d, why))
    return out


def foreign_messages(datagrams: Iterable[Datagram], foreign: set[str]) -> list[Sent]:
    """What foreign priests sent, from the relay's lines alone: each datagram an `Unread`
    message, sent when the relay read it, received when each copy left the relay."""
    out = []
    for d in datagrams:
        if d.src is None or d.src not in foreign or d.src == d.dst:
            continue
        m = Unread(d.src, d.head or "")
        if d.fate == DROPPED:
            out.append(Sent(d.src, d.dst, m, d.t, (), d, d.reason or "dropped"))
        else:
            out.append(Sent(d.src, d.dst, m, d.t, d.at or (d.t,), d))
    return out


def _delivered(m: Sent) -> Sent:
    """A message of our own priest to a foreign one, which records no receipt: delivered
    when the relay sent it on (each copy as it left), lost when the relay dropped it."""
    d = m.datagram
    if d is None or d.fate == DROPPED or m.received:
        return m
    return replace(m, received=d.at or (d.t,), why="")


def seen(r: DecreeSeen) -> str:
    """A foreign priest's decree.txt as the supervisor saw it, in words."""
    if r.value is not None:
        return f"{r.priest}: decree.txt holds {r.value} (seen by the supervisor)"
    return f"{r.priest}: decree.txt holds {r.text!r}, not a decree (seen by the supervisor)"


def _datagram(link: list[Datagram] | None, taken: dict[tuple[str, str], int],
              key: tuple[str, str], t: int) -> Datagram | None:
    if not link:
        return None
    i = taken[key]
    while i < len(link) and link[i].t < t:
        i += 1  # read before this send: a datagram whose `sent` event is missing
    if i < len(link) and link[i].t - t <= MATCH_WINDOW:
        taken[key] = i + 1
        return link[i]
    taken[key] = i
    return None


def _receipts(events: dict[str, list[PriestEvent]]) -> dict[tuple[str, str, Message], list[int]]:
    found: dict[tuple[str, str, Message], list[int]] = defaultdict(list)
    for name, evs in events.items():
        for e in evs:
            if e.kind is EventKind.RECEIVED and e.peer is not None:
                m = message_of(e, e.peer)
                if m is not None:
                    found[(e.peer, name, m)].append(e.t)
    return found


def _relay_gaps(records: list[Record], t1: int) -> list[tuple[int, int]]:
    """When the relay was not running: from each relay_exited to the next relay_started."""
    gaps, down = [], None
    for r in records:
        if isinstance(r, RelayExited) and down is None:
            down = r.t
        elif isinstance(r, RelayStarted) and down is not None:
            gaps.append((down, r.t))
            down = None
    if down is not None:
        gaps.append((down, t1))
    return gaps


# --- lanes ---------------------------------------------------------------------------


def lanes(names: list[str], events: dict[str, list[PriestEvent]], records: list[Record],
          t0: int, t1: int) -> list[Interval]:
    """Each priest's lane as intervals of running, paused and down, from the harness's records.

    Without records (priests started by hand) a priest runs from its first event
    to its last.
    """
    by_priest: dict[str, list[tuple[int, str, str]]] = defaultdict(list)  # (t, state, cause)
    cause: dict[str, str] = {}
    for r in records:
        if isinstance(r, PriestStarted):
            by_priest[r.priest].append((r.t, RUNNING, ""))
        elif isinstance(r, PriestExited):
            by_priest[r.priest].append((r.t, DOWN, cause.pop(r.priest, "exited")))
        elif isinstance(r, ChaosAction) and r.applied:
            if r.action in ("kill", "stop"):
                cause[r.priest] = r.action
            elif r.action == "pause":
                by_priest[r.priest].append((r.t, PAUSED, "pause"))
            elif r.action == "resume":
                by_priest[r.priest].append((r.t, RUNNING, ""))
        elif isinstance(r, Down):
            for name in names:
                by_priest[name].append((r.t, DOWN, ""))
    out = []
    for name in names:
        changes = by_priest.get(name)
        evs = events.get(name) or []
        if not changes:
            if evs:
                out.append(Interval(name, evs[0].t, evs[-1].t, RUNNING))
            continue
        if evs and evs[0].t < changes[0][0]:  # events before the first record: it ran already
            changes.insert(0, (evs[0].t, RUNNING, ""))
        state, since, why = DOWN, t0, ""
        for t, new, new_cause in changes:
            if new == state and not (new == DOWN and new_cause and not why):
                continue
            if t > since:
                out.append(Interval(name, since, t, state, why))
            state, since, why = new, max(t, t0), new_cause
        if t1 > since:
            out.append(Interval(name, since, t1, state, why))
    return out


# --- the network ---------------------------------------------------------------------


def network_faults(names: list[str], records: list[Record], t1: int) -> list[NetFault]:
    """The network's faults as intervals, each on the lanes it affects."""
    out: list[NetFault] = []
    faults, since = Faults(), dict[str, int]()
    cut_by = "partition"
    for r in records:
        if isinstance(r, NetworkChange) and r.applied and r.faults is not None:
            new = Faults.from_wire(r.faults)
            _close(out, names, faults, new, since, r.t, cut_by)
            if new.groups != faults.groups and r.action in CUTS:
                cut_by = r.action
            faults = new
    _close(out, names, faults, Faults(), since, t1, cut_by)
    down = None
    for r in records:
        if isinstance(r, RelayExited) and down is None:
            down = r.t
        elif isinstance(r, RelayStarted) and down is not None:
            out.append(NetFault("relay", down, r.t, tuple(names), "the relay was down"))
            down = None
    if down is not None:
        out.append(NetFault("relay", down, t1, tuple(names), "the relay was down"))
    out.sort(key=lambda f: (f.start, f.kind))
    return out


def _close(out: list[NetFault], names: list[str], old: Faults, new: Faults, since: dict[str, int],
           t: int, cut_by: str) -> None:
    """End the parts of `old` that `new` changes; start those `new` brings (since[part] = t)."""
    parts: dict[str, tuple[Any, Any, tuple[str, ...], str]] = {
        "cut": (old.groups, new.groups, cut_off(names, old.groups),
                f"{cut_by} {'/'.join(','.join(g) for g in old.groups)}"),
        "drop": (old.drop, new.drop, tuple(names), f"drop {old.drop:.0%}"),
        "duplicate": (old.duplicate, new.duplicate, tuple(names), f"duplicate {old.duplicate:.0%}"),
        "delay": (old.delay, new.delay, tuple(names),
                  f"delay {old.delay[0]:g}-{old.delay[1]:g} ms" if old.delay else ""),
    }
    for part, (before, after, lanes_cut, text) in parts.items():
        if before == after:
            continue
        if part in since and before and lanes_cut:
            kind = cut_by if part == "cut" else part
            out.append(NetFault(kind, since.pop(part), t, lanes_cut, text))
        since.pop(part, None)
        if after:
            since[part] = t


def cut_off(names: list[str], groups: tuple[tuple[str, ...], ...]) -> tuple[str, ...]:
    """The priests a partition cuts off: all but those of its largest group (the first, on a tie)."""
    if not groups:
        return ()
    largest = max(groups, key=len)
    return tuple(n for n in names if n not in largest)


# --- ballots -------------------------------------------------------------------------


def exits(records: list[Record]) -> dict[str, list[int]]:
    """When each priest's process ended, in order, from the harness's records."""
    out: dict[str, list[int]] = defaultdict(list)
    for r in records:
        if isinstance(r, PriestExited):
            out[r.priest].append(r.t)
    return out


def ballots(events: dict[str, list[PriestEvent]], ended: dict[str, list[int]],
            t1: int) -> list[BallotBar]:
    """Every ballot a priest began, from `ballot_started` to how it ended; `ended`: when each
    priest's process ended (a ballot open then was cut short)."""
    out = [bar for name, evs in events.items()
           for bar in _priest_ballots(name, evs, ended.get(name, []), t1)]
    out.sort(key=lambda b: b.start)
    return out


def _priest_ballots(name: str, evs: list[PriestEvent], exits: list[int], t1: int) -> list[BallotBar]:
    out: list[BallotBar] = []
    open_: dict[str, tuple[int, int | None]] = {}  # ballot -> (start, decree proposed)

    def close(b: str, t: int, outcome: str, decree: int | None = None) -> None:
        start, proposed = open_.pop(b)
        out.append(BallotBar(b, name, start, t, decree if decree is not None else proposed, outcome))

    for e in evs:
        b = str(e.ballot) if e.ballot is not None else ""
        if e.kind is EventKind.BALLOT_STARTED:
            open_[b] = (e.t, None)
        elif e.kind is EventKind.PROPOSED and b in open_:
            open_[b] = (open_[b][0], e.decree)
        elif e.kind is EventKind.BALLOT_ABANDONED and b in open_:
            close(b, e.t, "gave up" if e.gave_up else "abandoned")
        elif e.kind is EventKind.LEARNED:
            for ob in list(open_):
                if ob == b:
                    close(ob, e.t, f"decided {e.decree}", e.decree)
                else:
                    close(ob, e.t, f"learned {e.decree}")
        elif e.kind is EventKind.STARTED:
            for ob in list(open_):  # the process that ran it is gone
                close(ob, _exit_before(exits, e.t), "cut short")
    for ob in list(open_):
        ended = [x for x in exits if x >= open_[ob][0]]
        close(ob, ended[0] if ended else t1, "cut short" if ended else "unfinished")
    return out


def _exit_before(exits: list[int], t: int) -> int:
    before = [x for x in exits if x <= t]
    return before[-1] if before else t


__all__ = ["Run", "Sent", "Unread", "Interval", "NetFault", "BallotBar", "Tick", "Simulated",
           "load_run", "describe", "foreign_messages", "seen", "pair_messages", "lanes",
           "network_faults", "ballots", "exits", "message_of", "RUNNING", "PAUSED", "DOWN"]
