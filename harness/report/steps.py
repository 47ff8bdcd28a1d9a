"""A real run as the diagram's steps (`node.sim.Step`), and shortened to what matters.

The simulator records its steps as it goes; a real run's are rebuilt from its
record (`harness.report.run.Run`): a send per `sent` event (its fate from the
relay and the receiver), a ledger write per promise, vote and ballot begun
(the ledger carried from what the priest recovered at its start), a decree
per `learned`, and a row per fault the harness applied (kill, restart, stop,
pause, resume, ballot, each network change, the relay's death and restart).
A foreign priest's lane has its datagrams (sends of `Unread` messages) and a
`seen` step where the supervisor saw its decree.txt hold a decree (or not).
Step time is seconds after `Run.t0`.

Steps of a real run that the simulator has no kind for carry their words
first in `what` (`harness.report.diagram.REAL_KINDS`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import replace

from harness.check.verdict import Violation
from harness.network.faults import Faults
from harness.record import (
    ChaosAction,
    DecreeSeen,
    Down,
    NetworkChange,
    PriestExited,
    RelayExited,
    RelayStarted,
)
from harness.report.diagram import SEEN, shorten_steps
from harness.report.run import Run, Sent, Unread, cut_off, seen
from harness.supervisor.actions import KILL_AFTER_PROMISE
from node.messages import NO_VOTE, ZERO, EventKind, LedgerState, Message, Success, Vote
from node.sim import Step


def steps(run: Run) -> list[Step]:
    """Every step of the run, in time order."""
    out: list[tuple[int, int, Step]] = []  # (t, order, step): ties keep faults before effects

    def add(t: int, order: int, step: Step) -> None:
        out.append((t, order, step._replace(time=run.seconds(t))))

    for m in run.messages:
        add(m.sent, 2, _send(m))
    starts: dict[str, list[tuple[int, LedgerState, int | None]]] = {}
    for name, evs in run.events.items():
        ledger = LedgerState()
        starts[name] = []
        for e in evs:
            if e.kind is EventKind.STARTED:
                ledger = LedgerState(e.last_tried or ZERO, e.next_bal or ZERO,
                                     e.prev_vote or NO_VOTE)
                starts[name].append((e.t, ledger, e.decree))
            elif e.kind is EventKind.BALLOT_STARTED and e.ballot is not None:
                ledger = replace(ledger, last_tried=e.ballot)
                add(e.t, 1, Step(0, "ledger", name, None, ledger))
            elif e.kind is EventKind.PROMISED and e.ballot is not None:
                ledger = replace(ledger, next_bal=e.ballot)
                add(e.t, 1, Step(0, "ledger", name, None, ledger))
            elif e.kind is EventKind.VOTED and e.ballot is not None and e.decree is not None:
                ledger = replace(ledger, prev_vote=Vote(e.ballot, e.decree))
                add(e.t, 1, Step(0, "ledger", name, None, ledger))
            elif e.kind is EventKind.LEARNED:
                add(e.t, 1, Step(0, "decree", name, None, e.decree))
    for t, step in _fault_steps(run, starts):
        add(t, 0, step)
    out.sort(key=lambda x: (x[0], x[1]))
    return [s for _, _, s in out]


def _send(m: Sent) -> Step:
    if m.lost:
        return Step(0, "send", m.src, m.dst, m.message, "lost", m.why if m.src != m.dst else "")
    return Step(0, "send", m.src, m.dst, m.message, "duplicated" if len(m.received) > 1 else "")


def _fault_steps(run: Run, starts: dict[str, list[tuple[int, LedgerState, int | None]]]
                 ) -> list[tuple[int, Step]]:
    out: list[tuple[int, Step]] = []
    explained: set[tuple[str, int | None]] = set()  # exits a kill or stop explains
    faults = Faults()
    for r in run.actions:
        if isinstance(r, ChaosAction) and r.applied:
            if r.action == "kill":
                out.append((r.t, Step(0, "crash", r.priest)))
            elif r.action == "restart":
                after = [s for s in starts.get(r.priest, []) if s[0] >= r.t]
                ledger, decree = (after[0][1], after[0][2]) if after else (LedgerState(), None)
                out.append((r.t, Step(0, "restart", r.priest, None, (ledger, decree))))
            elif r.action in ("stop", "pause", "resume"):
                words = {"stop": "stopped (SIGTERM)", "pause": "paused (SIGSTOP)",
                         "resume": "resumed (SIGCONT)"}[r.action]
                out.append((r.t, Step(0, r.action, r.priest, None, (f"{r.priest}: {words}",))))
            elif r.action == "ballot":
                out.append((r.t, Step(0, "ballot", r.priest)))
            elif r.action == KILL_AFTER_PROMISE:
                words = f"{r.priest}: armed: SIGKILL right after its next promise"
                out.append((r.t, Step(0, "armed", r.priest, None, (words,))))
            if r.action in ("kill", "stop"):
                explained.add((r.priest, r.pid))
        elif isinstance(r, NetworkChange) and r.applied and r.faults is not None:
            faults = Faults.from_wire(r.faults)
            value = "" if r.value is None else f" {_value(r.value)}"
            text = f"network: {r.action}{value}; now {faults.describe()}"
            cut = cut_off(run.names, faults.groups)
            out.append((r.t, Step(0, "network", "", None, (text, r.action, r.value, cut))))
    stopping = False  # after `down`: exits are the cluster stopping, not faults
    for r in run.records:
        if stopping:
            continue
        if isinstance(r, Down):
            stopping = True
            out.append((r.t, Step(0, "stop", "", None, ("down: every priest stopped",))))
        elif isinstance(r, PriestExited) and (r.priest, r.pid) not in explained \
                and r.priest in run.names:
            how = f"signal {-r.status}" if r.status < 0 else f"status {r.status}"
            out.append((r.t, Step(0, "exited", r.priest, None, (f"{r.priest}: exited ({how})",))))
        elif isinstance(r, RelayExited):
            words = "relay: died; datagrams are lost until it restarts"
            out.append((r.t, Step(0, "relay", "", None, (words,))))
        elif isinstance(r, DecreeSeen) and r.present and r.priest in run.foreign:
            out.append((r.t, Step(0, SEEN, r.priest, None, (seen(r), r.value))))
        elif isinstance(r, RelayStarted) and r.restarts:
            out.append((r.t, Step(0, "relay", "", None, (f"relay: restarted ({r.restarts}x)",))))
    return out


def _value(value: object) -> str:
    if isinstance(value, list | tuple) and all(isinstance(g, list | tuple) for g in value):
        return "/".join(",".join(map(str, g)) for g in value)
    if isinstance(value, list | tuple):
        return "-".join(map(str, value))
    return str(value)


# --- what matters ----------------------------------------------------------------------


def collapse(all_steps: Iterable[Step]) -> list[Step]:
    """Retransmissions folded into the first copy: 'sent 5 times, 4 lost' on its row (our
    priests' messages only: a foreign datagram is known by its first bytes alone)."""
    listed = list(all_steps)
    key = _send_key
    total: Counter[tuple[str, str | None, object]] = Counter()
    lost: Counter[tuple[str, str | None, object]] = Counter()
    for s in listed:
        if s.kind == "send":
            total[key(s)] += 1
            lost[key(s)] += s.fate == "lost"
    out, seen = [], set()
    for s in listed:
        # A foreign datagram is known by its first bytes only: two alike may differ after them,
        # so none is folded into another as if resent.
        if s.kind != "send" or isinstance(s.what, Unread):
            out.append(s)
            continue
        k = key(s)
        if k in seen:
            continue
        seen.add(k)
        if total[k] > 1:
            more = f"sent {total[k]} times" + (f", {lost[k]} lost" if lost[k] else "")
            out.append(s._replace(note=f"{s.note}; {more}" if s.note else more))
        else:
            out.append(s)
    return out


def _send_key(s: Step) -> tuple[str, str | None, object]:
    return (s.priest, s.peer, s.what)


def of_ballot(all_steps: Sequence[Step], run: Run, ballot: str) -> list[Step]:
    """The steps of one ballot: its messages (and the Success of its decree), the ledger and
    decree writes it caused, and every fault in its time span."""
    decrees = {b.decree for b in run.ballots if b.ballot == ballot and b.decree is not None}

    def mine(s: Step) -> bool:
        if s.kind == "send":
            m: Message = s.what  # type: ignore[assignment]
            return str(m.ballot) == ballot or (isinstance(m, Success) and m.decree in decrees)
        if s.kind == "ledger":
            state: LedgerState = s.what  # type: ignore[assignment]
            return ballot in (str(state.last_tried), str(state.next_bal),
                              str(state.prev_vote.ballot))
        if s.kind == "decree":
            return s.what in decrees
        return False

    kept = [i for i, s in enumerate(all_steps) if mine(s)]
    if not kept:
        return []
    first, last, chosen = kept[0], kept[-1], set(kept)
    return [s for i, s in enumerate(all_steps) if i in chosen
            or (first <= i <= last and s.kind not in ("send", "ledger", "decree"))]


def shorten(run: Run, all_steps: Sequence[Step], violations: Sequence[Violation]) -> list[Step]:
    """What matters: for a violation, the steps it rests on (lost messages too); else (and for
    a run of foreign priests alone) every step, retransmissions folded into their first copy."""
    if violations and any(run.events.values()):  # foreign priests' runs: no events to cite
        events = [e for evs in run.events.values() for e in evs]
        return shorten_steps(collapse(all_steps), events, violations, lost=True, t0=run.t0)
    return collapse(all_steps)


__all__ = ["steps", "collapse", "of_ballot", "shorten"]
