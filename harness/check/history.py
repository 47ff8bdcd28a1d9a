"""What a run left on disk, read into plain data for the checker (`harness.check.rules`).

For every priest of a config: `<data_dir>/<name>/events.jsonl`, `decree.txt`
and `ledger.log`; for the cluster: `<data_dir>/harness.jsonl` (its records:
`harness.record`). Nothing here judges the run; it only reads, and reports
every line or file it cannot use (by file and line) instead of failing; only
a file where a priest's directory belongs stops it (RunFilesError, exit 2).
Formats: docs/formats.md.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import RunFilesError
from harness.record import DecreeSeen, Record
from harness.record import RecordError as HarnessRecordError
from harness.supervisor.decrees import look
from harness.supervisor.state import HARNESS_FILE
from node.config import Config
from node.errors import LedgerError
from node.ledger import LEDGER, parse_decree
from node.ledger import read_ledger_file as ledger_state
from node.messages import NO_VOTE, ZERO, Ballot, LedgerState, Vote
from node.record import KINDS, LEDGER_FIELDS, EventKind, PriestEvent, RecordError

EVENTS_FILE = "events.jsonl"
DECREE_FILE = "decree.txt"
LEDGER_FILE = LEDGER

# Kinds whose meaning the checker relies on: their ballot (and decree) must be there
# (node.record refuses such an event without them). A `learned` may have no ballot:
# a Success from a priest that learned before its last restart carries ballot zero,
# recorded as null.
NEEDS_BALLOT = frozenset(kind for kind, spec in KINDS.items() if "ballot" in spec.required)
NEEDS_DECREE = frozenset(kind for kind, spec in KINDS.items() if "decree" in spec.required)


@dataclass(frozen=True)
class ReadProblem:
    """A file or line that could not be used: where, and why."""

    path: str
    line: int | None
    reason: str

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        return f"{where}: {self.reason}"


@dataclass(frozen=True)
class DecreeFile:
    """A priest's decree.txt: absent, an int, or text that is not a decree."""

    path: str
    present: bool
    value: int | None = None
    problem: str | None = None  # set when present but a priest would refuse it


@dataclass(frozen=True)
class LedgerFile:
    """A priest's ledger.log as a restart would recover it now; `state` None if unreadable.

    An absent file is the initial state: a priest started on that directory would
    begin from nothing promised and nothing voted.
    """

    path: str
    state: LedgerState | None
    present: bool = True


@dataclass
class History:
    """Everything the checker reads: per-priest events (sorted by t), decree files, problems."""

    data_dir: str
    events: dict[str, list[PriestEvent]] = field(default_factory=dict)
    decrees: dict[str, DecreeFile] = field(default_factory=dict)
    # Read after the events, so a running priest's ledger is at least as new as they are.
    # Empty when there are no files (a simulated run): nothing to compare.
    ledgers: dict[str, LedgerFile] = field(default_factory=dict)
    harness: list[Record] = field(default_factory=list)  # harness.jsonl, sorted by t
    problems: list[ReadProblem] = field(default_factory=list)
    # Priests whose events may be missing: no directory or events.jsonl, an
    # unreadable file, or a line skipped (a recovered ledger ignored counts too).
    incomplete: set[str] = field(default_factory=set)
    absent: set[str] = field(default_factory=set)  # priests with no directory at all
    files: bool = True  # False for a simulated run: no events.jsonl to cite, no priest.log
    # Foreign priests (a `command` in the config): no events, no ledger.log; what the
    # supervisor saw of their decree.txt, from harness.jsonl, in time order.
    foreign: set[str] = field(default_factory=set)
    seen: dict[str, list[DecreeSeen]] = field(default_factory=dict)

    def all_events(self) -> list[PriestEvent]:
        """Every priest's events merged into one list ordered by t."""
        merged = [e for evs in self.events.values() for e in evs]
        merged.sort(key=_by_time)
        return merged

    def first_time(self) -> int | None:
        """The earliest t recorded by any priest, or None if there is no event."""
        firsts = [evs[0].t for evs in self.events.values() if evs]
        return min(firsts) if firsts else None

    def event_count(self) -> int:
        return sum(len(evs) for evs in self.events.values())


def _by_time(e: PriestEvent) -> int:
    return e.t


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector (restored on exit; nesting is fine).

    Loading makes two acyclic objects per event; the collector would rescan
    them again and again: a third of the time on 100,000 events.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def load_history(config: Config) -> History:
    """Read every priest's files and the harness events under config.data_dir."""
    with gc_paused():
        return _load(config)


def _load(config: Config) -> History:
    history = History(str(config.data_dir))
    for name in config.names:
        if config.is_foreign(name):
            _load_foreign(config.priest_dir(name), name, history)
        else:
            _load_priest(config.priest_dir(name), name, history)
    harness_path = config.data_dir / HARNESS_FILE
    if harness_path.exists():
        history.harness = _read_harness(harness_path, history.problems)
    for record in history.harness:
        if isinstance(record, DecreeSeen) and record.priest in history.foreign:
            history.seen[record.priest].append(record)
    return history


def _load_foreign(directory: Path, name: str, history: History) -> None:
    """A foreign priest: its decree.txt only (an int, with or without a newline).

    It writes no events, so its events count as missing (`incomplete`): a rule
    of the harness's own priests that rests on an absence of events cannot be
    proven by a cluster that mixes them with foreign ones.
    """
    history.events[name] = []
    history.foreign.add(name)
    history.seen[name] = []
    history.incomplete.add(name)
    decree_path = directory / DECREE_FILE
    if not directory.is_dir():
        if directory.exists():
            raise RunFilesError(f"{directory}: not a directory, so priest {name}'s decree.txt "
                                "cannot be read; move that file away and verify again")
        history.absent.add(name)
        history.decrees[name] = DecreeFile(str(decree_path), present=False)
        return
    present, value, text = look(decree_path)
    problem = None if not present or value is not None else f"not a decree: {text!r}"
    history.decrees[name] = DecreeFile(str(decree_path), present, value, problem)


def _load_priest(directory: Path, name: str, history: History) -> None:
    history.events[name] = []
    decree_path = directory / DECREE_FILE
    history.decrees[name] = DecreeFile(str(decree_path), present=False)
    if not directory.is_dir():
        if directory.exists():  # a file in the way: no run leaves this, so no verdict either
            raise RunFilesError(f"{directory}: not a directory, so priest {name}'s events and "
                                "decree.txt cannot be read; move that file away and verify again")
        # Never started, or removed: the checker cannot tell, so its events count as missing.
        history.incomplete.add(name)
        history.absent.add(name)
        history.problems.append(ReadProblem(str(directory), None, f"no directory for priest {name} "
                                            "(never started, or removed)"))
        return
    events_path = directory / EVENTS_FILE
    known = len(history.problems)
    if events_path.exists():
        history.events[name] = read_events(events_path, name, history.problems)
    else:
        history.problems.append(ReadProblem(str(events_path), None, "missing: no events recorded"))
    if len(history.problems) > known:
        history.incomplete.add(name)
    history.decrees[name] = read_decree(decree_path)
    history.ledgers[name] = read_ledger_file(directory / LEDGER_FILE, history.problems)


def read_ledger_file(path: Path, problems: list[ReadProblem]) -> LedgerFile:
    """ledger.log read as its priest would read it (node.ledger); what fails goes to `problems`."""
    try:
        return LedgerFile(str(path), ledger_state(path))
    except FileNotFoundError:
        return LedgerFile(str(path), LedgerState(), present=False)
    except OSError as exc:
        problems.append(ReadProblem(str(path), None, f"cannot read: {exc.strerror or exc}"))
    except LedgerError as exc:  # its message names the file and the line
        problems.append(ReadProblem(str(path), None, str(exc).removeprefix(f"{path}: ")))
    return LedgerFile(str(path), None)


def read_decree(path: Path) -> DecreeFile:
    """decree.txt: absent, a decree, or a problem saying why its priest would refuse it.

    The parsing is the priest's own (node.ledger.parse_decree), so the checker and
    the priest never disagree on what a decree.txt holds.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return DecreeFile(str(path), present=False)
    except OSError as exc:
        return DecreeFile(str(path), present=True, problem=f"cannot read: {exc.strerror or exc}")
    try:
        return DecreeFile(str(path), present=True, value=parse_decree(raw))
    except ValueError as exc:
        return DecreeFile(str(path), present=True, problem=str(exc))


def read_events(path: Path, name: str, problems: list[ReadProblem]) -> list[PriestEvent]:
    """A priest's events.jsonl, sorted by t; unusable lines go to `problems` and are skipped."""
    where = str(path)
    events: list[PriestEvent] = []
    append = events.append
    from_json = PriestEvent.from_json
    for number, obj in _values(path, where, problems):
        event: PriestEvent | None
        try:
            event = from_json(obj, number)
        except RecordError as exc:
            event = _without_ledger(obj, number, exc, where, problems)
            if event is None:
                problems.append(ReadProblem(where, number, exc.reason))
                continue
        if event.priest != name:
            problems.append(ReadProblem(where, number, f"'priest' is {event.priest!r}, not {name!r} "
                                        "whose file this is"))
            continue
        append(event)
    events.sort(key=_by_time)  # stable: ties keep file order, the order of writing
    return events


def _without_ledger(obj: Any, number: int, exc: RecordError, where: str,
                    problems: list[ReadProblem]) -> PriestEvent | None:
    """A `started` event whose recovered ledger is malformed, read without it; else None.

    The event still counts (it shows the decree held); only its ledger is unusable.
    """
    if exc.field not in LEDGER_FIELDS or obj.get("kind") != EventKind.STARTED:
        return None
    rest = {k: v for k, v in obj.items() if k not in LEDGER_FIELDS}
    try:
        event = PriestEvent.from_json(rest, number)
    except RecordError:
        return None  # reported for the first reason
    problems.append(ReadProblem(where, number, f"{exc.reason}; the recovered ledger is ignored"))
    return event


@dataclass(frozen=True)
class Recovered:
    """The ledger a `started` event says its priest recovered from disk at that start."""

    next_bal: Ballot
    prev_vote: Vote


def recovered_ledger(e: PriestEvent) -> Recovered | None:
    """What a `started` event says was recovered; None if it names no promise and no vote.

    Fields absent (or ignored as malformed when read) count as the initial ledger.
    """
    next_bal = e.next_bal if e.next_bal is not None else ZERO
    prev_vote = e.prev_vote if e.prev_vote is not None else NO_VOTE
    if next_bal.is_zero() and prev_vote.is_none():
        return None
    return Recovered(next_bal, prev_vote)


def _read_harness(path: Path, problems: list[ReadProblem]) -> list[Record]:
    """harness.jsonl's records (`harness.record`), sorted by t; the rest goes to `problems`."""
    where = str(path)
    records: list[Record] = []
    for number, obj in _values(path, where, problems):
        try:
            records.append(Record.from_json(obj))
        except HarnessRecordError as exc:
            problems.append(ReadProblem(where, number, f"not a harness record: {exc}"))
    records.sort(key=_record_time)  # stable: ties keep the order of writing
    return records


def _record_time(r: Record) -> int:
    return r.t


def _values(path: Path, where: str, problems: list[ReadProblem]) -> Iterator[tuple[int, Any]]:
    """(line number, JSON value) for each line of a JSON-lines file; the rest is reported."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        problems.append(ReadProblem(where, None, f"cannot read: {exc.strerror or exc}"))
        return
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        # Rare: decode line by line so one bad line costs only itself.
        text = "\n".join(_decode_lines(raw.split(b"\n"), where, problems))
    if text and not text.endswith("\n"):
        last = text.count("\n") + 1
        problems.append(ReadProblem(where, last, "torn last line (no newline: the priest "
                                    "stopped mid-write); skipped"))
        text = text[: text.rfind("\n") + 1]
    # The C scanner decodes one value at a line's start without slicing the text
    # (about twice as fast as json.loads per line); a value that does not end
    # exactly at the newline is not a line of its own.
    scan = json.JSONDecoder().scan_once  # type: ignore[attr-defined]  # the C scanner, undeclared
    find = text.find
    pos, number, size = 0, 0, len(text)
    while pos < size:
        number += 1
        end = find("\n", pos)
        try:
            obj, stop = scan(text, pos)
        except (StopIteration, ValueError, RecursionError):
            stop = -1
        if stop != end:
            obj = _slow_line(text[pos:end], where, number, problems)
        if obj is not _SKIP:
            yield number, obj
        pos = end + 1


_SKIP = object()


def _slow_line(line: str, where: str, number: int, problems: list[ReadProblem]) -> Any:
    """A line the fast path refused: blank, padded with spaces, or not JSON."""
    if not line.strip():
        return _SKIP
    try:
        return json.loads(line)
    except (ValueError, RecursionError):
        shown = line if len(line) <= 60 else line[:60] + "..."
        problems.append(ReadProblem(where, number, f"not a JSON line: {shown!r}"))
        return _SKIP


def _decode_lines(lines: list[bytes], where: str, problems: list[ReadProblem]) -> list[str]:
    out = []
    for number, line in enumerate(lines, start=1):
        try:
            out.append(line.decode("utf-8"))
        except UnicodeDecodeError:
            problems.append(ReadProblem(where, number, "not UTF-8 text"))
            out.append("")  # keeps line numbers; a blank line is skipped
    return out
