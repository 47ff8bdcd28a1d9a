"""`paxos-harness verify`: prove agreement, or show its violation, from what a run left.

`check` is a pure function of the config, the history read by
`harness.check.history` and the set of surviving priests: no files, no clock. It
applies every rule in RULES (each names the priests, decrees, ballots and event
times that break it) and the final-state rule: every surviving priest's
decree.txt holds the same decree. `load_and_check` reads then checks; `run`
re-checks until a verdict is final or the wait is over, then prints it. The
Verdict it returns, and how it is printed, are in `harness.check.verdict`.

Event times in messages are seconds after the first event of the history,
followed by the file and line that recorded it (`beta/events.jsonl:12`).

A priest makes a vote or promise durable, then records it: a SIGKILL between
the two leaves it in the ledger only. Each `started` event carries the ledger
the priest recovered; a vote or promise there that its events never showed is
taken as evidence (a `voted` or `promised` event, noted in `recovered_at`) made
before that restart, at the earliest possible time: just after the priest's last
event before it. Learning from such a vote is then not flagged, and a recovered
vote that breaks a recorded promise still is.

Lost files. A priest writes decree.txt and makes each promise and vote durable
before it records them, so a recorded `learned` without a decree.txt is
`decree_lost`, and a ledger below the promises and votes recorded before it
(ledger.log on disk now, or what a `started` event recovered) is `ledger_lost`.
Both are proven by the evidence present (exit 1): nothing the priest did can
explain them, only a file removed or emptied behind its back, or a priest
that forgets (the forget-promises flaw).

Faults. Each violation then carries the faults the harness applied before its
earliest evidence in the same run (`harness.check.faults`, from harness.jsonl).

Missing evidence. Most rules are proven by events that are there (two decrees
learned, a vote below a promise). Two rest on an absence: `unproposed_decree`
(no BeginBallot for d) and `unsound_learning` (no quorum voted d in time).
When a priest's events may be missing (no directory or events.jsonl, an
unreadable file, a skipped line; `History.incomplete`), such a violation is
*unverifiable* if it would vanish had those priests proposed d, or voted d in
any ballot before it was learned. The exit status is then: 1 if any violation
is proven by the evidence present; else 4 ("cannot verify": the files left do
not support a verdict) if any is unverifiable; else 5, 3 or 0 as usual. Read
problems are always listed; with exit 0 they mean the check covered only what
was read.
"""

from __future__ import annotations

import json
import signal
import time
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TextIO

from harness.check.faults import with_faults
from harness.check.history import (
    NEEDS_BALLOT,
    History,
    Recovered,
    gc_paused,
    load_history,
    recovered_ledger,
)
from harness.check.verdict import (
    KINDS,
    OK,
    VIOLATION,
    PriestRow,
    Unchecked,
    Verdict,
    Violation,
    render,
)
from harness.record import DecreeSeen, Garbage, PriestExited, PriestStarted
from node.config import Config
from node.messages import NO_VOTE, ZERO, Ballot, Vote
from node.record import EventKind, PriestEvent

# Events whose ballots make a priest's "ballots seen".
SEEN_KINDS = NEEDS_BALLOT | {EventKind.LEARNED}
# Events through which a priest shows the decree it holds.
HOLDING_KINDS = frozenset({EventKind.LEARNED, EventKind.STARTED, EventKind.REMINDED})
# The kinds any rule or the table reads; the rest (sent, received...) is only counted.
CORE_KINDS = NEEDS_BALLOT | HOLDING_KINDS

# The kinds the loops over every event compare with, looked up once: `EventKind.X` goes
# through the enum's metaclass, 70 ns a time, ten times a plain name.
_VOTED, _PROMISED, _STARTED = EventKind.VOTED, EventKind.PROMISED, EventKind.STARTED

# Violations that rest on an absence of events: missing evidence can explain them.
ABSENCE_KINDS = frozenset({"unproposed_decree", "unsound_learning"})


# --- the index the rules share -------------------------------------------------


@dataclass
class _Index:
    """The history sorted out once by kind, ballot and (ballot, decree)."""

    config: Config
    history: History
    t0: int
    by_kind: dict[str, list[PriestEvent]] = field(default_factory=lambda: defaultdict(list))
    # priest -> its events of CORE_KINDS, in time order
    core: dict[str, list[PriestEvent]] = field(default_factory=dict)
    # (ballot, decree) -> priest -> its first vote event for that pair
    tally: dict[tuple[Ballot, int], dict[str, PriestEvent]] = field(default_factory=dict)
    # id() of an evidence event -> t of the restart whose recovered ledger shows it
    # (the events live as long as the index, so their ids stay theirs)
    recovered_at: dict[int, int] = field(default_factory=dict)
    # priest -> (t, wall - t) of each of its starts that said its wall clock, in time order
    clocks: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    held: dict[str, list[PriestEvent]] | None = None  # `_holdings`, once two rules asked

    def cite(self, e: PriestEvent) -> str:
        """An event's time, on priest.log's clock too, and where it is written:
        '+1.234567s (12:31:07.123 in beta's priest.log), beta/events.jsonl:12'."""
        restart = self.recovered_at.get(id(e)) if e.kind in EVIDENCE_KINDS else None
        where = f"{e.priest}/events.jsonl:{e.line}" if self.history.files else "its start"
        if restart is not None:
            return (f"+{(e.t - self.t0) / 1e9:.6f}s to +{(restart - self.t0) / 1e9:.6f}s "
                    f"(unrecorded; in the ledger recovered at {where})")
        if not self.history.files:
            return f"+{(e.t - self.t0) / 1e9:.6f}s"
        return f"+{(e.t - self.t0) / 1e9:.6f}s{self._log_time(e)}, {where}"

    def when(self, t: int) -> str:
        """A time on the events' clock as seconds after the first event: '+1.234567s'."""
        return f"+{(t - self.t0) / 1e9:.6f}s"

    def _log_time(self, e: PriestEvent) -> str:
        """' (12:31:07.123 in beta's priest.log)': where to look in its narration; '' if unknown."""
        starts = self.clocks.get(e.priest)
        if not starts:
            return ""
        i = bisect_right(starts, (e.t, 1 << 62)) - 1
        offset = starts[max(i, 0)][1]
        wall = (e.t + offset) / 1e9
        clock = time.strftime("%H:%M:%S", time.localtime(wall))
        return f" ({clock}.{int(wall * 1000) % 1000:03d} in {e.priest}'s priest.log)"


def _index(config: Config, history: History) -> _Index:
    first = history.first_time()
    if first is None and history.harness:  # only foreign priests: the harness's clock
        first = history.harness[0].t
    idx = _Index(config, history, first or 0)
    by_kind = idx.by_kind
    for name, events in history.events.items():
        core = idx.core[name] = [e for e in events if e.kind in CORE_KINDS]
        for e in core:
            by_kind[e.kind].append(e)
        # (`started` is a core kind: the core events hold them all, in fewer events.)
        idx.clocks[name] = [(e.t, e.wall - e.t) for e in core if e.kind == _STARTED and e.wall is not None]
    _add_evidence(idx)
    for e in by_kind[EventKind.VOTED]:
        assert e.ballot is not None and e.decree is not None  # history.py guarantees
        voters = idx.tally.setdefault((e.ballot, e.decree), {})
        if e.priest not in voters:
            voters[e.priest] = e
    return idx


# --- evidence from recovered ledgers ---------------------------------------------

EVIDENCE_KINDS = frozenset({EventKind.VOTED, EventKind.PROMISED})


def _add_evidence(idx: _Index) -> None:
    """Add the votes and promises that recovered ledgers show and events do not."""
    # Only restarts that recovered a promise or vote cost anything.
    restarted = {e.priest for e in idx.by_kind[EventKind.STARTED] if recovered_ledger(e) is not None}
    added: list[PriestEvent] = []
    for name in sorted(restarted):
        core, new = _evidence(idx.core[name], idx.history.events[name], idx.t0, idx.recovered_at)
        if new:
            idx.core[name] = core
            added += new
    if added:
        for e in added:
            idx.by_kind[e.kind].append(e)
        # Keep each priest's events in time order (the tally keeps a priest's first vote).
        idx.by_kind[EventKind.VOTED].sort(key=_event_time)
        idx.by_kind[EventKind.PROMISED].sort(key=_event_time)


def _evidence(core: list[PriestEvent], events: list[PriestEvent], t0: int,
              recovered_at: dict[int, int]) -> tuple[list[PriestEvent], list[PriestEvent]]:
    """A priest's core events with evidence placed just before each restart; and the evidence."""
    voted: set[tuple[Ballot, int]] = set()
    top = (0, "")  # the highest ballot promised or voted in so far
    out: list[PriestEvent] = []
    added: list[PriestEvent] = []
    for e in core:
        kind = e.kind
        if kind == _VOTED:
            voted.add((_ballot_of(e), _decree_of(e)))
            top = max(top, _event_ballot_key(e))
        elif kind == _PROMISED:
            top = max(top, _event_ballot_key(e))
        elif kind == _STARTED and (ledger := recovered_ledger(e)) is not None:
            new = _unrecorded(e, ledger, voted, top, _previous(events, e), t0)
            for x in new:
                recovered_at[id(x)] = e.t
                if x.kind == EventKind.VOTED:
                    voted.add((_ballot_of(x), _decree_of(x)))
                top = max(top, _event_ballot_key(x))
            out += new
            added += new
        out.append(e)
    return out, added


def _unrecorded(start: PriestEvent, ledger: Recovered, voted: set[tuple[Ballot, int]],
                top: tuple[int, str], before: PriestEvent | None, t0: int) -> list[PriestEvent]:
    """Evidence events for what `start` recovered beyond what its priest recorded."""
    # The earliest moment the unrecorded write can have happened: just after the
    # priest's last recorded event (it was running then, and nothing later shows).
    t = min(before.t + 1, start.t) if before is not None else t0
    pid = before.pid if before is not None else None
    out = []
    vote = ledger.prev_vote
    if not vote.is_none() and (vote.ballot, vote.decree) not in voted:
        out.append(PriestEvent(t, start.priest, EventKind.VOTED, pid, vote.ballot, vote.decree,
                               line=start.line))
        top = max(top, _ballot_key(vote.ballot))
    # A vote in b also promises b; a promise only matters above the highest ballot seen.
    if _ballot_key(ledger.next_bal) > top:
        out.append(PriestEvent(t, start.priest, EventKind.PROMISED, pid, ledger.next_bal,
                               line=start.line))
    return out


def _previous(events: list[PriestEvent], e: PriestEvent) -> PriestEvent | None:
    """The event just before `e` in its priest's time-ordered list, if any."""
    i = bisect_left(events, e.t, key=_event_time)
    while events[i] is not e:  # ties on t: find e itself
        i += 1
    return events[i - 1] if i > 0 else None


def _event_time(e: PriestEvent) -> int:
    return e.t


# --- the rules -----------------------------------------------------------------


def _final_agreement(idx: _Index, survivors: list[str]) -> list[Violation]:
    holders: dict[int, list[str]] = defaultdict(list)
    for name in survivors:
        value = idx.history.decrees[name].value
        if value is not None:
            holders[value].append(name)
    if len(holders) < 2:
        return []
    parts = "; ".join(f"{d} in {', '.join(ps)}" for d, ps in sorted(holders.items()))
    return [Violation("disagreement", f"surviving priests' decree.txt files differ: {parts}",
                      tuple(p for ps in holders.values() for p in ps), tuple(sorted(holders)))]


def _learned_different(idx: _Index) -> list[Violation]:
    # decree -> priest -> the first evidence that it learned it: its `learned` event, what the
    # supervisor saw of its decree.txt (a foreign priest), or its decree.txt's path. Put in
    # words only when there are two decrees: most histories hold one.
    claims: dict[int, dict[str, PriestEvent | DecreeSeen | str]] = defaultdict(dict)
    times: list[int] = []
    for e in idx.by_kind[EventKind.LEARNED]:
        assert e.decree is not None
        if e.priest not in claims[e.decree]:
            claims[e.decree][e.priest] = e
            times.append(e.t)
    for name in idx.history.foreign:
        for r in idx.history.seen[name]:
            if r.value is not None and name not in claims[r.value]:
                claims[r.value][name] = r
                times.append(r.t)
    learners = {e.priest for e in idx.by_kind[EventKind.LEARNED]}
    for name, file in idx.history.decrees.items():
        # A priest killed between writing decree.txt and recording `learned`.
        if name not in learners and file.value is not None:
            claims[file.value].setdefault(name, file.path)
    if len(claims) < 2:
        return []

    def said(name: str, evidence: PriestEvent | DecreeSeen | str) -> str:
        if isinstance(evidence, PriestEvent):
            return f"{name} at {idx.cite(evidence)}"
        if isinstance(evidence, DecreeSeen):
            return f"{name} (its decree.txt at {idx.when(evidence.t)})"
        return f"{name} in {evidence}"

    parts = "; ".join(f"{d} learned by {', '.join(said(p, x) for p, x in c.items())}"
                      for d, c in sorted(claims.items()))
    return [Violation("learned_different", f"priests learned different decrees: {parts}",
                      tuple(sorted({p for c in claims.values() for p in c})),
                      tuple(sorted(claims)), (), tuple(times))]


def _holdings(idx: _Index) -> dict[str, list[PriestEvent]]:
    """Per priest, in time order, the events that show the decree it holds (found once per index)."""
    if idx.held is None:
        idx.held = {name: [e for e in events if e.kind in HOLDING_KINDS and e.decree is not None]
                    for name, events in idx.core.items()}
    return idx.held


def _stability(idx: _Index) -> list[Violation]:
    out = []
    for name, events in _holdings(idx).items():
        first = events[0] if events else None
        changed = next((e for e in events if first and e.decree != first.decree), None)
        if first and changed:
            out.append(Violation(
                "decree_changed",
                f"{name}'s decree changed: {_held(idx, first)}, then {_held(idx, changed)}",
                (name,), (_decree_of(first), _decree_of(changed)), _ballots(first, changed),
                (first.t, changed.t)))
        file = idx.history.decrees[name]
        if first and file.value is not None and file.value != first.decree:
            out.append(Violation(
                "decree_file_mismatch",
                f"{file.path} holds {file.value} but {name} {_held(idx, first)}",
                (name,), (file.value, _decree_of(first)), _ballots(first), (first.t,)))
    return out


def _decree_lost(idx: _Index) -> list[Violation]:
    # A priest records `learned` only once decree.txt is durable, and a `started` or
    # `reminded` event with a decree read it from that file: absent now, it was lost.
    out = []
    for name, events in _holdings(idx).items():
        file = idx.history.decrees[name]
        if events and not file.present:
            first = events[0]
            out.append(Violation(
                "decree_lost", f"{name} {_held(idx, first)}, but {file.path} is gone",
                (name,), (_decree_of(first),), _ballots(first), (first.t,)))
    return out


def _ledger_lost(idx: _Index) -> list[Violation]:
    out = []
    for name, events in idx.core.items():
        loss = _first_loss(idx, name, events)
        if loss is not None:
            out.append(loss)
    return out


def _first_loss(idx: _Index, name: str, events: list[PriestEvent]) -> Violation | None:
    """The first ledger of `name` (recovered at a restart, or on disk now) below its events.

    A priest records a promise or vote only once its ledger holds it durably, and a
    ledger's promise and vote never go down: a restart that recovers less, or a
    ledger.log that holds less, has lost what the priest promised.
    """
    promise: PriestEvent | None = None  # the highest ballot promised or voted in so far
    vote: PriestEvent | None = None  # the vote in the highest ballot so far
    promise_key = vote_key = (0, "")  # their ballots, as _ballot_key gives them
    for e in events:
        kind = e.kind
        if kind == EventKind.PROMISED or kind == EventKind.VOTED:
            key = _event_ballot_key(e)
            if key > promise_key:
                promise, promise_key = e, key
            if kind == EventKind.VOTED and key > vote_key:
                vote, vote_key = e, key
        elif kind == EventKind.STARTED and (e.next_bal is not None or e.prev_vote is not None):
            # (A `started` without its ledger says nothing of it: not a loss.)
            recovered = recovered_ledger(e) or Recovered(ZERO, NO_VOTE)
            lost = _lost(recovered.next_bal, recovered.prev_vote, promise, vote)
            if lost:
                return _ledger_violation(
                    idx, name, f"{name} recovered "
                    f"{_ledger_text(recovered.next_bal, recovered.prev_vote)} when it restarted "
                    f"at {idx.cite(e)}", lost, (e.t,))
    file = idx.history.ledgers.get(name)
    if file is None or file.state is None:
        return None
    lost = _lost(file.state.next_bal, file.state.prev_vote, promise, vote)
    if not lost:
        return None
    if not file.present:
        holds = "is gone (a restart would recover nothing)"
    else:
        holds = (f"holds {_ledger_text(file.state.next_bal, file.state.prev_vote)} "
                 "(what a restart would recover)")
    return _ledger_violation(idx, name, f"{file.path} {holds}", lost, ())


def _lost(next_bal: Ballot, prev_vote: Vote, promise: PriestEvent | None,
          vote: PriestEvent | None) -> list[PriestEvent]:
    """The recorded promise and vote that a ledger of (next_bal, prev_vote) no longer holds."""
    lost = []
    if promise is not None and _ballot_key(next_bal) < _event_ballot_key(promise):
        lost.append(promise)
    if vote is not None and not any(x is vote for x in lost) and (
            prev_vote.is_none() or _ballot_key(prev_vote.ballot) < _event_ballot_key(vote)):
        lost.append(vote)  # (a vote that is also the highest promise is named once)
    return lost


def _ledger_text(next_bal: Ballot, prev_vote: Vote) -> str:
    return f"next_bal={next_bal} prev_vote={prev_vote}"


def _ledger_violation(idx: _Index, name: str, what: str, lost: list[PriestEvent],
                      times: tuple[int, ...]) -> Violation:
    def said(e: PriestEvent) -> str:
        if e.kind == EventKind.VOTED:
            return f"voted {e.decree} in ballot {e.ballot} at {idx.cite(e)}"
        return f"promised ballot {e.ballot} at {idx.cite(e)}"

    return Violation("ledger_lost", f"{what}, but {name} had {' and '.join(map(said, lost))}",
                     (name,), tuple(_decree_of(e) for e in lost if e.kind == EventKind.VOTED),
                     _ballots(*lost), times)


def _malformed(idx: _Index) -> list[Violation]:
    seen_bad = {n for n, seen in idx.history.seen.items() if any(_not_a_decree(r) for r in seen)}
    return [Violation("malformed_decree", f"{f.path}: {f.problem}", (name,))
            for name, f in idx.history.decrees.items()
            if f.problem is not None and name not in seen_bad]


def _not_a_decree(r: DecreeSeen) -> bool:
    return r.present and r.value is None


def _foreign_decrees(idx: _Index) -> list[Violation]:
    """What the supervisor saw of each foreign priest's decree.txt: not a decree, a decree
    that changed, a decree that vanished."""
    out = []
    for name in idx.config.names:
        seen = idx.history.seen.get(name, [])
        bad = next((r for r in seen if _not_a_decree(r)), None)
        if bad is not None:
            why = (" (a write that is not atomic, caught between truncating and writing: a "
                   "crash then would lose the decree)" if bad.text == "" else "")
            out.append(Violation(
                "malformed_decree", f"{name}'s decree.txt held {bad.text!r}, not a decree, at "
                f"{idx.when(bad.t)} (seen by the supervisor){why}", (name,), (), (), (bad.t,)))
        first = next((r for r in seen if r.value is not None), None)
        if first is None:
            continue
        assert first.value is not None
        later = [r for r in seen if r.t > first.t or (r.t == first.t and r is not first)]
        changed = next((r for r in later if r.value is not None and r.value != first.value), None)
        if changed is not None:
            assert changed.value is not None
            out.append(Violation(
                "decree_changed", f"{name}'s decree.txt held {first.value} at "
                f"{idx.when(first.t)}, then {changed.value} at {idx.when(changed.t)} (seen by "
                "the supervisor)", (name,), (first.value, changed.value), (),
                (first.t, changed.t)))
        gone = next((r for r in later if not r.present), None)
        if gone is not None:
            out.append(Violation(
                "decree_lost", f"{name}'s decree.txt held {first.value} at {idx.when(first.t)}, "
                f"and was gone at {idx.when(gone.t)} (seen by the supervisor)", (name,),
                (first.value,), (), (first.t, gone.t)))
    return out


# A priest that ends on its own this long after the last malformed input it was sent
# (and was not seen dead while they were sent) ended of something else.
CRASH_WINDOW = 2_000_000_000  # ns


def _crashed_on_input(idx: _Index) -> list[Violation]:
    """A priest that ended on its own (not asked to by the harness) of malformed input: seen
    dead while it was sent, or ended within CRASH_WINDOW of the last input."""
    out = []
    records = idx.history.harness
    cited: set[int] = set()
    for i, sent in enumerate(records):
        if not isinstance(sent, Garbage):
            continue
        for later in records[i + 1:]:
            if isinstance(later, PriestStarted) and later.priest == sent.priest:
                break
            if isinstance(later, PriestExited) and later.priest == sent.priest:
                if not later.by_harness and id(later) not in cited and _soon(sent, later):
                    cited.add(id(later))
                    out.append(_crash(idx, sent, later))
                break
    return out


def _soon(sent: Garbage, ended: PriestExited) -> bool:
    """Did `ended` come of `sent`: seen dead during it, or soon after its last input?"""
    if sent.died_after is not None:
        return True
    last = max((int(x.get("t", sent.t)) for x in sent.inputs if isinstance(x, dict)),
               default=sent.t)
    return ended.t - last <= CRASH_WINDOW


def _crash(idx: _Index, sent: Garbage, ended: PriestExited) -> Violation:
    inputs = [x for x in sent.inputs if isinstance(x, dict)]
    k = sent.died_after
    if k is None or not 0 <= k < len(inputs):
        k = max((j for j, x in enumerate(inputs) if x.get("t", 0) <= ended.t), default=-1)
    status = (f"killed by signal {_signal_name(-ended.status)}" if ended.status < 0
              else f"exit status {ended.status}")
    what = "input" if k < 0 else (f"input {k + 1} of {len(inputs)} ({inputs[k].get('kind')}: "
                                  f"'{inputs[k].get('data')}', sent at "
                                  f"{idx.when(int(inputs[k].get('t', sent.t)))})")
    return Violation(
        "crashed_on_input", f"{sent.priest} died ({status}, seen at {idx.when(ended.t)}) after "
        f"malformed input to its {sent.transport.upper()} port {sent.port}: {what}",
        (sent.priest,), (), (), (sent.t, ended.t))


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def _validity(idx: _Index) -> list[Violation]:
    proposed = {e.decree for e in idx.by_kind[EventKind.PROPOSED]}
    firsts: dict[int, dict[str, PriestEvent]] = defaultdict(dict)
    for e in idx.by_kind[EventKind.LEARNED]:
        if e.decree not in proposed:
            assert e.decree is not None
            firsts[e.decree].setdefault(e.priest, e)
    out = []
    for d, learners in sorted(firsts.items()):
        cites = "; ".join(f"{p} at {idx.cite(e)}" for p, e in learners.items())
        out.append(Violation(
            "unproposed_decree", f"decree {d} was learned but no priest proposed it "
            f"(no BeginBallot for {d}): {cites}",
            tuple(learners), (d,), _ballots(*learners.values()),
            tuple(e.t for e in learners.values())))
    learned_by = {e.priest for e in idx.by_kind[EventKind.LEARNED]}
    for name, f in idx.history.decrees.items():
        if name in idx.history.foreign:
            continue  # its proposals are its own business: no events to find them in
        if name not in learned_by and f.value is not None and f.value not in proposed:
            out.append(Violation("unproposed_decree", f"{f.path} holds {f.value}, which no "
                                 f"priest proposed (no BeginBallot for {f.value})",
                                 (name,), (f.value,)))
    return out


def _promises(idx: _Index) -> list[Violation]:
    out = []
    for name, events in idx.core.items():
        promise: PriestEvent | None = None
        top = (0, "")  # the promised ballot as a (round, priest) tuple: fast to compare
        broken: list[tuple[PriestEvent, PriestEvent]] = []
        for e in events:
            if e.kind == _PROMISED and _event_ballot_key(e) > top:
                promise, top = e, _event_ballot_key(e)
            elif e.kind == _VOTED and promise is not None and _event_ballot_key(e) < top:
                broken.append((promise, e))
        if broken:
            p, v = broken[0]
            more = f" (and {len(broken) - 1} more such votes)" if len(broken) > 1 else ""
            out.append(Violation(
                "promise_broken",
                f"{name} promised ballot {p.ballot} at {idx.cite(p)} (pid {p.pid}), "
                f"then voted {v.decree} in the lower ballot {v.ballot} at {idx.cite(v)} "
                f"(pid {v.pid}){more}",
                (name,), (_decree_of(v),), _ballots(p, v), (p.t, v.t)))
    return out


def _one_decree_per_ballot(idx: _Index) -> list[Violation]:
    out = []
    for ballot, events in _by_ballot(idx.by_kind[EventKind.PROPOSED]).items():
        if len(events) == 1:
            continue
        firsts = _first_per(events, lambda e: e.decree)
        if len(firsts) > 1:
            cites = "; ".join(f"{e.priest} proposed {e.decree} at {idx.cite(e)}" for e in firsts)
            out.append(Violation(
                "ballot_two_decrees", f"ballot {ballot} has two decrees: {cites}",
                tuple(sorted({e.priest for e in firsts})), tuple(_decree_of(e) for e in firsts),
                (str(ballot),), tuple(e.t for e in firsts)))
    for ballot, events in _by_ballot(idx.by_kind[EventKind.BALLOT_STARTED]).items():
        if len(events) == 1:
            continue
        firsts = _first_per(events, lambda e: e.priest)
        if len(firsts) > 1:
            cites = "; ".join(f"{e.priest} at {idx.cite(e)}" for e in firsts)
            out.append(Violation(
                "ballot_reused", f"ballot {ballot} was begun by {len(firsts)} priests: {cites}",
                tuple(e.priest for e in firsts), (), (str(ballot),), tuple(e.t for e in firsts)))
    return out


def _chosen_stays_chosen(idx: _Index) -> list[Violation]:
    chosen = [key for key, voters in idx.tally.items() if len(voters) >= idx.config.quorum]
    if not chosen:
        return []
    b0, d0 = min(chosen)
    voters = idx.tally[(b0, d0)]
    if not any(b > b0 and d != d0 for b, d in idx.tally):  # the usual case: no words to write
        return []
    basis = (f"a quorum ({', '.join(sorted(voters))}) voted {d0} in ballot {b0}, "
             f"complete at {idx.cite(_quorum_event(voters, idx.config.quorum))}")
    out = []
    for (b, d), later in sorted(idx.tally.items(), key=_tally_key):
        if b > b0 and d != d0:
            cites = "; ".join(f"{p} at {idx.cite(e)}" for p, e in sorted(later.items()))
            out.append(Violation(
                "chosen_changed",
                f"{basis}; yet in the later ballot {b} votes went to {d}: {cites}",
                tuple(sorted(set(voters) | set(later))), (d0, d), (str(b0), str(b)),
                tuple(e.t for e in later.values())))
    return out


def _learning_sound(idx: _Index) -> list[Violation]:
    quorum = idx.config.quorum
    # decree -> the earliest moment a quorum had voted for it in one ballot
    known: dict[int, tuple[PriestEvent, Ballot]] = {}
    for (b, d), voters in idx.tally.items():
        if len(voters) >= quorum:
            last = _quorum_event(voters, quorum)
            if d not in known or last.t < known[d][0].t:
                known[d] = (last, b)
    early: dict[int, list[PriestEvent]] = defaultdict(list)
    for e in idx.by_kind[EventKind.LEARNED]:
        assert e.decree is not None
        # `voted` is recorded once the vote is durable, before Voted is sent, so a
        # sound `learned` comes strictly after the quorum's votes on the one clock.
        if e.decree not in known or e.t < known[e.decree][0].t:
            early[e.decree].append(e)
    return [_unsound(idx, d, events, known.get(d)) for d, events in sorted(early.items())]


def _unsound(idx: _Index, d: int, events: list[PriestEvent],
             basis: tuple[PriestEvent, Ballot] | None) -> Violation:
    cites = "; ".join(f"{e.priest} at {idx.cite(e)}" for e in events[:10])
    more = f" and {len(events) - 10} more" if len(events) > 10 else ""
    need = f"{idx.config.quorum} of {len(idx.config.priests)}"
    if basis is None:
        counts = [(len(v), b) for (b, dd), v in idx.tally.items() if dd == d]
        top = max(counts) if counts else None
        most = f"at most {top[0]} votes, in ballot {top[1]}" if top else "no vote for it"
        why = f"no quorum ({need}) ever voted {d} in one ballot ({most})"
    else:
        why = f"a quorum ({need}) had voted {d} only at {idx.cite(basis[0])}, in ballot {basis[1]}"
    return Violation("unsound_learning", f"{d} was learned too early: {cites}{more}; {why}",
                     tuple(sorted({e.priest for e in events})), (d,), _ballots(*events),
                     tuple(e.t for e in events))


# --- helpers -------------------------------------------------------------------


def _ballot_of(e: PriestEvent) -> Ballot:
    """The ballot of an event of a kind that always has one (NEEDS_BALLOT)."""
    assert e.ballot is not None  # history.py keeps no such event without one
    return e.ballot


def _decree_of(e: PriestEvent) -> int:
    """The decree of an event of a kind that always has one (NEEDS_DECREE)."""
    assert e.decree is not None  # history.py keeps no such event without one
    return e.decree


def _held(idx: _Index, e: PriestEvent) -> str:
    """'learned 1001 in ballot 2.gamma at +0.01s, ...' (a Success may carry no ballot)."""
    where = f" in ballot {e.ballot}" if e.ballot is not None and not e.ballot.is_zero() else ""
    return f"{e.kind} {e.decree}{where} at {idx.cite(e)}"


# Sort keys: a Ballot's own comparison builds two tuples per call; these build one.
def _ballot_key(b: Ballot) -> tuple[int, str]:
    """A ballot as (round, priest): compares as the ballot does, faster."""
    return (b.round, b.priest)


def _event_ballot_key(e: PriestEvent) -> tuple[int, str]:
    """The `_ballot_key` of an event's ballot."""
    return _ballot_key(_ballot_of(e))


def _tally_key(item: tuple[tuple[Ballot, int], object]) -> tuple[int, str, int]:
    """A tally entry ((ballot, decree), voters) as (round, priest, decree), to sort by ballot."""
    (b, d), _ = item
    return (b.round, b.priest, d)


def _ballots(*events: PriestEvent) -> tuple[str, ...]:
    return tuple(dict.fromkeys(str(e.ballot) for e in events if e.ballot is not None))


def _by_ballot(events: Iterable[PriestEvent]) -> dict[Ballot, list[PriestEvent]]:
    groups: dict[Ballot, list[PriestEvent]] = defaultdict(list)
    for e in events:
        groups[_ballot_of(e)].append(e)
    return groups


def _first_per(events: list[PriestEvent], key: Callable[[PriestEvent], object]) -> list[PriestEvent]:
    """The earliest event for each distinct key, in time order."""
    firsts: dict[object, PriestEvent] = {}
    for e in sorted(events, key=lambda e: e.t):
        firsts.setdefault(key(e), e)
    return list(firsts.values())


def _quorum_event(voters: dict[str, PriestEvent], quorum: int) -> PriestEvent:
    """The vote that completed a quorum: the quorum-th earliest."""
    return sorted(voters.values(), key=lambda e: e.t)[quorum - 1]


def _rows(idx: _Index, alive: set[str]) -> tuple[PriestRow, ...]:
    rows = []
    for name in idx.config.names:
        seen = {e.ballot for e in idx.core[name] if e.kind in SEEN_KINDS and e.ballot is not None}
        seen.discard(Ballot(0, ""))
        rows.append(PriestRow(name, name in alive, idx.history.decrees[name].value,
                              tuple(str(b) for b in sorted(seen, key=_ballot_key)),
                              len(idx.history.events[name])))
    return tuple(rows)


# --- entry points ----------------------------------------------------------------


def check(config: Config, history: History, alive: set[str] | None,
          rules: Sequence[Callable[[_Index], list[Violation]]] | None = None) -> Verdict:
    """Judge a history: `alive` is the set of running priests, or None if the cluster is down.

    `rules`: the rules to apply (default RULES; see `rules_except`).
    """
    survivors = [n for n in config.names if alive is None or n in alive]
    idx = _index(config, history)
    proven, unproven = _judge(idx, survivors, rules)
    # Evidence missing only because foreign priests write no events: not lost, never there.
    # Such a violation is no "cannot verify" but a rule that cannot be checked here.
    foreign_only = bool(unproven) and history.incomplete <= history.foreign
    nothing = bool(config.names) and history.absent >= set(config.names) and not history.harness
    return Verdict(config.cluster, config.quorum, alive is not None,
                   _rows(idx, set(survivors)), tuple(proven), tuple(history.problems),
                   history.event_count(), () if foreign_only else tuple(unproven), nothing,
                   tuple(config.flaws), _unchecked(config, history, unproven if foreign_only
                                                   else []))


def violations(config: Config, history: History, alive: set[str] | None,
               rules: Sequence[Callable[[_Index], list[Violation]]] | None = None
               ) -> tuple[Violation, ...]:
    """The violations `check` proves, without the rest of its verdict (the table of priests).

    For a caller that judges thousands of runs and reads nothing else (`simulate`).
    """
    survivors = [n for n in config.names if alive is None or n in alive]
    proven, _ = _judge(_index(config, history), survivors, rules)
    return tuple(proven)


def _judge(idx: _Index, survivors: list[str],
           rules: Sequence[Callable[[_Index], list[Violation]]] | None
           ) -> tuple[list[Violation], list[Violation]]:
    """Every rule applied, each violation with its faults: (proven, resting on missing evidence)."""
    found = _final_agreement(idx, survivors)
    for rule in RULES if rules is None else rules:
        found += rule(idx)
    found = list(with_faults(found, idx.history.harness, idx.t0))
    proven = [v for v in found if not _rests_on_missing(idx, v)]
    unproven = [v for v in found if _rests_on_missing(idx, v)]
    return proven, unproven


def _rests_on_missing(idx: _Index, v: Violation) -> bool:
    """Would `v` vanish if the priests with missing events had done what it lacks?"""
    missing = idx.history.incomplete
    if not missing or v.kind not in ABSENCE_KINDS:
        return False
    if v.kind == "unproposed_decree":
        return True  # any of them may have proposed it
    # unsound_learning: could they complete a quorum for d before its first learning?
    (d,), first = v.decrees, min(v.times)
    best = len(missing)
    for (_, dd), voters in idx.tally.items():
        if dd == d:
            early = {p for p, e in voters.items() if e.t <= first}
            best = max(best, len(early | missing))
    return best >= idx.config.quorum


RULES: tuple[Callable[[_Index], list[Violation]], ...] = (
    _malformed, _decree_lost, _ledger_lost, _learned_different, _stability, _validity, _promises,
    _one_decree_per_ballot, _chosen_stays_chosen, _learning_sound, _foreign_decrees,
    _crashed_on_input,
)
# Rules that find one kind of violation only, by that kind: a caller that does not judge
# the kind can leave the rule out instead of running it and dropping what it finds.
_SINGLE_KIND = {"ledger_lost": _ledger_lost, "malformed_decree": _malformed,
                "decree_lost": _decree_lost}


def rules_except(kinds: frozenset[str]) -> tuple[Callable[[_Index], list[Violation]], ...]:
    """RULES without the single-kind rules whose kind is in `kinds` (the rest still run)."""
    left_out = {rule for kind, rule in _SINGLE_KIND.items() if kind in kinds}
    return tuple(rule for rule in RULES if rule not in left_out)


# What can be checked of a foreign priest (from its decree.txt as the supervisor saw it, and
# its process); every other rule needs events it does not write.
FOREIGN_CHECKED = ("disagreement", "learned_different", "decree_changed", "decree_lost",
                   "malformed_decree", "crashed_on_input")


def _unchecked(config: Config, history: History,
               dropped: Sequence[Violation] = ()) -> Unchecked | None:
    """The rules that could not be checked for the foreign priests, and why; None if none.

    `dropped`: violations of the harness's own priests that only a foreign priest's
    missing events could explain (it may have proposed or voted): named, not judged.
    """
    if not history.foreign:
        return None
    names = tuple(n for n in config.names if n in history.foreign)
    rules = tuple(k for k in KINDS if k not in FOREIGN_CHECKED)
    why = ("foreign priests write no events.jsonl and no ledger.log; checked from their "
           "decree.txt as the supervisor saw it (every 20 ms and at every chaos action): "
           f"{', '.join(FOREIGN_CHECKED)}")
    kinds = sorted({v.kind for v in dropped})
    if kinds:
        why += (f"; for the harness's own priests, {', '.join(kinds)} could not be checked "
                "either: a foreign priest may have proposed or voted what they learned")
    return Unchecked(names, rules, why)


def load_and_check(config: Config, alive: set[str] | None) -> Verdict:
    """Read the run's files under config.data_dir and judge them."""
    with gc_paused():  # the history is a large acyclic heap, freed on return
        return check(config, load_history(config), alive)


def run(config: Config, *, alive_fn: Callable[[], set[str] | None], wait: float, as_json: bool,
        color: bool, out: TextIO, clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep, interval: float = 0.2) -> int:
    """Check until the verdict is 0 or 1 or `wait` seconds pass; print it; return its status.

    Exit statuses: 0 agreement, 1 a proven violation, 3 not yet learned, 4 cannot verify
    (a violation rests only on unreadable evidence), 5 nothing ran (see the module's docstring).
    """
    deadline = clock() + max(wait, 0.0)
    while True:
        verdict = load_and_check(config, alive_fn())
        status = verdict.exit_status
        now = clock()
        if status in (OK, VIOLATION) or now >= deadline:
            break
        sleep(min(interval, deadline - now))
    out.write(json.dumps(verdict.to_json(), indent=2) + "\n" if as_json else render(verdict, color))
    return status
