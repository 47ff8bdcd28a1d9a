"""A run's steps as a message diagram, and shortened to the steps a violation rests on.

`simulate` prints the first run that breaks a rule this way, and `diagram`
a real run (its steps: `harness.report.steps`): one lane per priest, one row
per step (LEGEND and REAL_LEGEND say what each mark means).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import cast

from colorama import Fore, Style

from harness.check.verdict import NO_PROGRESS, Violation
from harness.report.unread import Unread, describe
from node.messages import LedgerState, Message, Success
from node.record import PriestEvent
from node.sim import Step, World, describe_step


def shorten(world: World, violations: Iterable[Violation]) -> list[Step]:
    """The steps of a simulated run that matter for these violations (see `shorten_steps`)."""
    return shorten_steps(world.steps, world.events, violations)


def shorten_steps(steps: Sequence[Step], events: Iterable[PriestEvent],
                  violations: Iterable[Violation], *, lost: bool = False, t0: int = 0) -> list[Step]:
    """The steps that matter for these violations, up to the last event they cite.

    Kept: ballot requests, faults (crashes, restarts, partition, heal...);
    messages of the ballots involved (first copy only: retransmissions, and lost
    ones unless `lost`, are left out) and Success for the decrees involved; ledger
    and decree writes of the priests or ballots involved. For "no progress": the
    steps from the heal on, without retransmissions. `t0`: the time (ns) of step
    time 0, for the events' times.
    """
    found = list(violations)
    seen: set[tuple[str, str | None, object]] = set()
    if found and all(v.kind == NO_PROGRESS for v in found):
        heal = next((i for i, s in enumerate(steps) if s.kind == "heal"), 0)
        return [s for s in steps[heal:] if s.kind != "send" or _first_copy(s, seen, lost)]
    ballots = {b for v in found for b in v.ballots}
    decrees = {d for v in found for d in v.decrees}
    priests = {p for v in found for p in v.priests}
    ballots |= {str(e.ballot) for e in events
                if e.kind in ("proposed", "voted", "learned") and e.decree in decrees}
    times = [t for v in found for t in v.times]
    end = (max(times) - t0) / 1e9 + 1e-6 if times else float("inf")
    out = []
    for s in steps:
        if s.time > end:
            break
        if _matters(s, ballots, decrees, priests, seen, lost):
            out.append(s)
    return out


def _matters(s: Step, ballots: set[str], decrees: set[int], priests: set[str],
             seen: set[tuple[str, str | None, object]], lost: bool) -> bool:
    if s.kind == "send":
        m = cast(Message, s.what)
        wanted = str(m.ballot) in ballots or (isinstance(m, Success) and m.decree in decrees)
        return wanted and _first_copy(s, seen, lost)
    if s.kind == "ledger":
        state = cast(LedgerState, s.what)
        named = {str(state.last_tried), str(state.next_bal), str(state.prev_vote.ballot)}
        return s.priest in priests or bool(named & ballots)
    if s.kind == "decree":
        return s.priest in priests or s.what in decrees
    return True  # ballot requests, crashes, restarts, partition, heal


def _first_copy(s: Step, seen: set[tuple[str, str | None, object]], lost: bool = False) -> bool:
    """A send that is not a retransmission of one already kept, nor lost (unless `lost`)."""
    key = (s.priest, s.peer, s.what)
    if (s.fate == "lost" and not lost) or key in seen:
        return False
    seen.add(key)
    return True


LEGEND = ("* sends  > < receives  x lost  @ to itself  # ledger written  "
          "D decree.txt written  X crash  R restart  B ballot requested  : down  "
          "! a step the violation rests on")
# What a real run's diagram adds (harness.report.steps).
REAL_LEGEND = ("P paused (SIGSTOP)  C resumed (SIGCONT)  S stopped (SIGTERM)  E exited  "
               "A armed (killed at its next promise)  . paused  % cut off by the network")
# What a diagram with foreign priests adds (harness.report.run.Unread, steps `seen`).
FOREIGN_LEGEND = ('"..." a foreign priest\'s datagram, by its first bytes (from the relay: '
                  "sent when the relay read it)  d decree.txt seen by the supervisor  "
                  "? decree.txt seen holding no decree")
# Said only when the diagram shows them.
NOTES = {
    ".*": "1.* is round 1 numbered by the flawed last_tried + 1: no priest's name in it, so "
          "two priests' ballots 1.* are the same ballot",
    "Success(0,": "Success(0, d): sent by a priest that learned d before its last restart; "
                  "decree.txt keeps the decree, not the ballot that passed it",
}
SEEN = "seen"  # a step of a real run: the supervisor saw a foreign priest's decree.txt
REAL_KINDS = frozenset({"pause", "resume", "stop", "exited", "armed", "network", "relay", SEEN})


def legend(rows: Iterable[str], steps: Iterable[Step] = ()) -> list[str]:
    """The legend, and a note for each notation the rows use that needs one."""
    text = "\n".join(rows)
    listed = list(steps)
    real = [f"legend: {REAL_LEGEND}"] if any(s.kind in REAL_KINDS for s in listed) else []
    if any(s.kind == SEEN or isinstance(s.what, Unread) for s in listed):
        real.append(f"legend: {FOREIGN_LEGEND}")
    return [f"legend: {LEGEND}", *real,
            *(f"note: {n}" for key, n in NOTES.items() if key in text)]


def rests_on(violations: Iterable[Violation], t0: int = 0) -> set[tuple[str, int]]:
    """(priest, time in us after `t0` ns) of the durable steps the violations cite as evidence.

    Microseconds: a simulated event's time is its step's, nudged by a few ns to
    keep events of one instant in order.
    """
    found: set[tuple[str, int]] = set()
    for v in violations:
        for t in v.times:
            found.update((p, (t - t0) // 1000) for p in v.priests)
    return found


HEADER_EVERY = 40  # rows between repeated column headers, so a pager always shows the names


def diagram(names: Sequence[str], steps: Sequence[Step],
            marked: set[tuple[str, int]] | frozenset[tuple[str, int]] = frozenset(), *,
            color: bool = False, header_every: int = 0,
            before: Sequence[Step] = ()) -> list[str]:
    """The steps as a message diagram: one lane per priest, one row per step.

    A step of a priest in `marked` at that time (us) is flagged `!` (see `rests_on`).
    `header_every` N > 0 repeats the priests' names every N rows; `color` paints
    lost messages, faults and decrees with ANSI codes, each row closing its own.
    `before`: the run's steps ahead of the first shown, replayed for the lanes' states
    only (a priest down, paused or cut off since before them), drawn as no row.
    """
    width = max(4, max(len(n) for n in names) + 2)
    lane = {name: i * width + width // 2 for i, name in enumerate(names)}
    state = dict.fromkeys(names, "|")
    header = "".join(n.center(width) for n in names)
    top = [f" {'time (s)':>9}  {header}", f" {'':9}  {'-' * len(header)}"]
    if color:
        top = [f"{Style.BRIGHT}{row}{Style.RESET_ALL}" for row in top]
    rows = list(top)
    for s in before:
        if s.kind in _GOES_DOWN:
            for name in [s.priest] if s.priest else names:
                state[name] = ":"
        _after(s, state, names)
    for n, s in enumerate(steps):
        if header_every and n and n % header_every == 0:
            rows += top
        if s.kind in _GOES_DOWN:
            for name in [s.priest] if s.priest else names:  # no priest: the whole cluster
                state[name] = ":"
        cells = [" "] * (width * len(names))
        for name in names:
            cells[lane[name]] = state[name]
        paint = _mark(cells, s, lane)
        _after(s, state, names)
        key = (s.priest, round(s.time * 1e9) // 1000)
        flag = "!" if s.kind in _DURABLE and key in marked else " "
        label = _label(s)
        if color and (paint or flag == "!"):
            code = Fore.RED if flag == "!" else paint
            rows.append(f"{code}{flag}{s.time:9.4f}  {''.join(cells)}  {label}".rstrip()
                        + Style.RESET_ALL)
        else:
            rows.append(f"{flag}{s.time:9.4f}  {''.join(cells)}  {label}".rstrip())
    return rows


_MARKS = {"ledger": "#", "decree": "D", "crash": "X", "restart": "R", "ballot": "B",
          "pause": "P", "resume": "C", "stop": "S", "exited": "E", "armed": "A"}
_DURABLE = ("ledger", "decree")  # the steps an event records: what evidence cites
_GOES_DOWN = ("crash", "stop", "exited")
_PAINT = {"crash": Fore.YELLOW, "restart": Fore.YELLOW, "pause": Fore.YELLOW,
          "resume": Fore.YELLOW, "stop": Fore.YELLOW, "exited": Fore.YELLOW, "armed": Fore.YELLOW,
          "partition": Fore.YELLOW, "heal": Fore.YELLOW, "network": Fore.YELLOW,
          "relay": Fore.YELLOW, "decree": Fore.GREEN, "ballot": Fore.CYAN}


def _after(s: Step, state: dict[str, str], names: Sequence[str]) -> None:
    """A lane's state from the next row on."""
    if s.kind in ("restart", "resume"):
        state[s.priest] = "|"
    elif s.kind == "pause":
        state[s.priest] = "."
    elif s.kind == "heal":
        for name in names:
            state[name] = "|"
    elif s.kind == "network":
        cut = _cut_lanes(s)
        for name in names:
            if state[name] == "%" and name not in cut:
                state[name] = "|"
            elif name in cut and state[name] == "|":
                state[name] = "%"


def _cut_lanes(s: Step) -> set[str]:
    what = s.what
    if isinstance(what, tuple) and len(what) == 4 and isinstance(what[3], tuple):
        return set(what[3])
    return set()


def _mark(cells: list[str], s: Step, lane: dict[str, int]) -> str:
    """Draw the step's marks in `cells`; the colour the row wants, or ""."""
    if s.kind == "send":
        a, b = lane[s.priest], lane[str(s.peer)]
        if a == b:
            cells[a] = "@"
            return ""
        for i in range(min(a, b) + 1, max(a, b)):
            cells[i] = "-"
        cells[a] = "*"
        lost = s.fate == "lost"
        cells[b] = "x" if lost else (">" if b > a else "<")
        return Fore.RED if lost else ""
    if s.kind == SEEN and s.priest in lane:
        held = s.what[1] if isinstance(s.what, tuple) and len(s.what) > 1 else None
        cells[lane[s.priest]] = "?" if held is None else "d"
        return Fore.GREEN if held is not None else Fore.YELLOW
    if s.kind in _MARKS and s.priest in lane:
        cells[lane[s.priest]] = _MARKS[s.kind]
    return _PAINT.get(s.kind, "")


def _label(s: Step) -> str:
    note = f"  ({s.note})" if s.note else ""
    if s.kind != "send":
        what = s.what
        if s.kind in REAL_KINDS and isinstance(what, tuple):
            return f"{what[0]}{note}"  # a real run's step carries its own words first
        return describe_step(s) + note
    fate = {"lost": "  lost", "duplicated": "  delivered twice"}.get(s.fate, "")
    what = s.what
    return f"{describe(cast(Message | Unread, what))}{fate}{note}"
