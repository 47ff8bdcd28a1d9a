"""A run's steps as a message diagram, and shortened to the steps a violation rests on.

`simulate` prints the first run that breaks a rule this way: one lane per
priest, one row per step (LEGEND says what each mark means).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

from harness.check.verdict import NO_PROGRESS, Violation
from node.messages import LedgerState, Message, Success, describe_message
from node.sim import Step, World, describe_step


def shorten(world: World, violations: Iterable[Violation]) -> list[Step]:
    """The steps that matter for these violations, up to the last event they cite.

    Kept: ballot requests, crashes, restarts, partition and heal; messages of the
    ballots involved (first copy only: retransmissions and lost ones are left
    out) and Success for the decrees involved; ledger and decree writes of the
    priests or ballots involved. For "no progress": the steps from the heal on,
    without retransmissions.
    """
    found = list(violations)
    steps = world.steps
    seen: set[tuple[str, str | None, object]] = set()
    if found and all(v.kind == NO_PROGRESS for v in found):
        heal = next((i for i, s in enumerate(steps) if s.kind == "heal"), 0)
        return [s for s in steps[heal:] if s.kind != "send" or _first_copy(s, seen)]
    ballots = {b for v in found for b in v.ballots}
    decrees = {d for v in found for d in v.decrees}
    priests = {p for v in found for p in v.priests}
    ballots |= {str(e.ballot) for e in world.events
                if e.kind in ("proposed", "voted", "learned") and e.decree in decrees}
    times = [t for v in found for t in v.times]
    end = max(times) / 1e9 + 1e-6 if times else float("inf")
    out = []
    for s in steps:
        if s.time > end:
            break
        if _matters(s, ballots, decrees, priests, seen):
            out.append(s)
    return out


def _matters(s: Step, ballots: set[str], decrees: set[int], priests: set[str],
             seen: set[tuple[str, str | None, object]]) -> bool:
    if s.kind == "send":
        m = cast(Message, s.what)
        wanted = str(m.ballot) in ballots or (isinstance(m, Success) and m.decree in decrees)
        return wanted and _first_copy(s, seen)
    if s.kind == "ledger":
        state = cast(LedgerState, s.what)
        named = {str(state.last_tried), str(state.next_bal), str(state.prev_vote.ballot)}
        return s.priest in priests or bool(named & ballots)
    if s.kind == "decree":
        return s.priest in priests or s.what in decrees
    return True  # ballot requests, crashes, restarts, partition, heal


def _first_copy(s: Step, seen: set[tuple[str, str | None, object]]) -> bool:
    """A send that was not lost and is not a retransmission of one already kept."""
    key = (s.priest, s.peer, s.what)
    if s.fate == "lost" or key in seen:
        return False
    seen.add(key)
    return True


LEGEND = ("* sends  > < receives  x lost  @ to itself  # ledger written  "
          "D decree.txt written  X crash  R restart  B ballot requested  : down  "
          "! a step the violation rests on")
# Said only when the diagram shows them.
NOTES = {
    ".*": "1.* is round 1 numbered by the flawed last_tried + 1: no priest's name in it, so "
          "two priests' ballots 1.* are the same ballot",
    "Success(0,": "Success(0, d): sent by a priest that learned d before its last restart; "
                  "decree.txt keeps the decree, not the ballot that passed it",
}


def legend(rows: Iterable[str]) -> list[str]:
    """The legend, and a note for each notation the rows use that needs one."""
    text = "\n".join(rows)
    return [f"legend: {LEGEND}", *(f"note: {n}" for key, n in NOTES.items() if key in text)]


def rests_on(world: World, violations: Iterable[Violation]) -> set[tuple[str, int]]:
    """(priest, time in us) of the durable steps the violations cite as evidence.

    Microseconds: an event's time is its step's, nudged by a few ns to keep
    events of one instant in order.
    """
    found: set[tuple[str, int]] = set()
    for v in violations:
        for t in v.times:
            found.update((p, t // 1000) for p in v.priests)
    return found


def diagram(world: World, steps: list[Step],
            marked: set[tuple[str, int]] | frozenset[tuple[str, int]] = frozenset()) -> list[str]:
    """The steps as a message diagram: one lane per priest, one row per step.

    A step of a priest in `marked` at that time (us) is flagged `!` (see `rests_on`).
    """
    names = world.names
    width = max(4, max(len(n) for n in names) + 2)
    lane = {name: i * width + width // 2 for i, name in enumerate(names)}
    up = dict.fromkeys(names, True)
    header = "".join(n.center(width) for n in names)
    rows = [f" {'time (s)':>9}  {header}", f" {'':9}  {'-' * len(header)}"]
    for s in steps:
        if s.kind == "crash":
            up[s.priest] = False
        cells = [" "] * (width * len(names))
        for name in names:
            cells[lane[name]] = "|" if up[name] else ":"
        _mark(cells, s, lane)
        if s.kind in ("restart", "heal"):
            for name in names if s.kind == "heal" else [s.priest]:
                up[name] = True
        flag = "!" if s.kind in _DURABLE and (s.priest, int(s.time * 1e9) // 1000) in marked else " "
        rows.append(f"{flag}{s.time:9.4f}  {''.join(cells)}  {_label(s)}".rstrip())
    return rows


_MARKS = {"ledger": "#", "decree": "D", "crash": "X", "restart": "R", "ballot": "B"}
_DURABLE = ("ledger", "decree")  # the steps an event records: what evidence cites


def _mark(cells: list[str], s: Step, lane: dict[str, int]) -> None:
    if s.kind == "send":
        a, b = lane[s.priest], lane[str(s.peer)]
        if a == b:
            cells[a] = "@"
            return
        for i in range(min(a, b) + 1, max(a, b)):
            cells[i] = "-"
        cells[a] = "*"
        cells[b] = "x" if s.fate == "lost" else (">" if b > a else "<")
    elif s.kind in _MARKS:
        cells[lane[s.priest]] = _MARKS[s.kind]


def _label(s: Step) -> str:
    if s.kind != "send":
        return describe_step(s)
    fate = {"lost": "  lost", "duplicated": "  delivered twice"}.get(s.fate, "")
    return f"{describe_message(cast(Message, s.what))}{fate}"
