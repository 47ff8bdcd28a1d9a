"""The run record of a priest: `events.jsonl`, one `PriestEvent` per line.

One type for whoever writes an event and whoever reads it: the priest's
runtime writes `to_line()`, the simulator records the same events in memory,
and the checker reads each line back with `from_json()`. `KINDS` says which
fields each kind of event carries; docs/formats.md documents both tables, and
a test holds the documentation and this module to each other.

Reading is strict and never fatal: anything that is not an event raises a
`RecordError` saying which field is wrong, and the reader reports it with its
file and line.
"""

from __future__ import annotations

import json
import json.encoder
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, NoReturn

from node.ledger import parse_vote
from node.messages import (
    Ballot,
    BeginBallot,
    EventKind,
    LastVote,
    LedgerState,
    Message,
    Record,
    Success,
    Vote,
)

__all__ = ["EventKind", "KINDS", "KindSpec", "PriestEvent", "RecordError", "FIELDS",
           "LEDGER_FIELDS", "recorded", "message_event", "started_event"]


class RecordError(ValueError):
    """A JSON value that is not an event; `field` names the culprit, when there is one."""

    def __init__(self, reason: str, field: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.field = field


class PriestEvent(NamedTuple):
    """One line of a priest's events.jsonl.

    A NamedTuple, so frozen, and cheap enough to build that a checker reads
    100,000 of them in a blink (a frozen dataclass of this size costs six
    times as much to build). Fields that do not apply to its kind are None.
    """

    t: int  # time.monotonic_ns() of the writer; virtual time in a simulation
    priest: str
    kind: EventKind
    pid: int | None = None  # the writing process; in a simulation, the incarnation (1, 2...)
    ballot: Ballot | None = None
    decree: int | None = None
    peer: str | None = None
    text: str | None = None
    msg: str | None = None
    vote: Vote | None = None
    last_tried: Ballot | None = None
    next_bal: Ballot | None = None
    prev_vote: Vote | None = None
    reason: str | None = None
    detail: str | None = None
    addr: str | None = None
    suppressed: int | None = None
    quorum: tuple[str, ...] | None = None
    gave_up: bool | None = None
    promised: Ballot | None = None
    conflict: bool | None = None
    dropped: tuple[tuple[str, int], ...] | None = None  # stopped: (reason, count) pairs
    wall: int | None = None  # started: time.time_ns() at the instant of `t` (priest.log's clock)
    # Not written: the line of its priest's events.jsonl it was read from (or, in a
    # simulation, would have been written at); 0 when unknown.
    line: int = 0

    def to_json(self) -> dict[str, Any]:
        """The JSON object of its line: `t`, `priest`, `pid`, `kind`, then its kind's fields."""
        out: dict[str, Any] = {"t": self.t, "priest": self.priest, "pid": self.pid,
                               "kind": _KIND_TEXT[self.kind]}
        for name, index, always, encode in _WRITE[self.kind]:
            value = self[index]
            if value is not None:
                out[name] = encode(value) if encode is not None else value
            elif always:
                out[name] = None
        return out

    def to_line(self) -> str:
        """Its line of events.jsonl: compact JSON and a newline."""
        return _ENCODE(self.to_json()) + "\n"

    @classmethod
    def from_json(cls, obj: object, line: int = 0) -> PriestEvent:
        """The event a decoded JSON line holds; RecordError if it holds none."""
        if type(obj) is not dict:
            raise RecordError("not a JSON object")
        get = obj.get
        t, kind_text, priest = get("t"), get("kind"), get("priest")
        if type(t) is not int:
            raise RecordError("'t' is not an int", "t")
        if type(kind_text) is not str:
            raise RecordError("'kind' is not a string", "kind")
        kind = _KIND_OF.get(kind_text)
        if kind is None:
            raise RecordError(f"unknown kind {kind_text!r}", "kind")
        if type(priest) is not str:
            raise RecordError(f"'priest' is not a string: {priest!r}", "priest")
        if obj.keys() <= _COMMON:
            # The fast path: the fields of almost every line, checked inline.
            ballot, decree, peer = get("ballot"), get("decree"), get("peer")
            if ballot is not None:
                cached = _BALLOTS.get(ballot) if type(ballot) is str else None
                ballot = cached if cached is not None else _ballot("ballot", ballot)
            if decree is not None and type(decree) is not int:
                _wrong("decree", decree)
            if peer is not None and type(peer) is not str:
                _wrong("peer", peer)
            pid, text, msg, vote = get("pid"), get("text"), get("msg"), get("vote")
            if pid is not None and type(pid) is not int:
                _wrong("pid", pid)
            if text is not None and type(text) is not str:
                _wrong("text", text)
            if msg is not None and type(msg) is not str:
                _wrong("msg", msg)
            if vote is not None:
                vote = _vote("vote", vote)
            # tuple.__new__ skips the generated __new__ and its defaults: a third faster.
            event = _make(cls, (t, priest, kind, pid, ballot, decree, peer, text, msg, vote,
                                *_UNCOMMON, line))
        else:
            fields: dict[str, Any] = {}
            for name, value in obj.items():
                decode = _READ.get(name)
                if decode is None:
                    if name not in _HEADER:
                        raise RecordError(f"unknown field {name!r}", name)
                elif value is not None:
                    fields[name] = decode(name, value)
            event = cls(t, priest, kind, line=line, **fields)
        required = _REQUIRED[kind]
        if required:
            for index, name in required:
                if event[index] is None:
                    raise RecordError(f"a {kind} event without a {name}", name)
        return event

    @classmethod
    def from_line(cls, text: str, line: int = 0) -> PriestEvent:
        """`from_json` of one line of text; RecordError if it is not JSON either."""
        try:
            obj = json.loads(text)
        except (ValueError, RecursionError):
            raise RecordError("not a JSON line") from None
        return cls.from_json(obj, line)


# --- the kinds and their fields ----------------------------------------------------


@dataclass(frozen=True)
class KindSpec:
    """What an event of one kind carries beside `t`, `priest`, `pid` and `kind`."""

    source: str  # "core" (a Record effect of node.synod) or "runtime" (node.runtime)
    fields: tuple[str, ...]  # always written, null when unset
    optional: tuple[str, ...] = ()  # written only when set
    required: tuple[str, ...] = ()  # never null: the checker relies on them


_CORE = ("ballot", "decree", "peer", "text")
_MESSAGE = ("peer", "msg", "ballot")
KINDS: dict[EventKind, KindSpec] = {
    EventKind.BALLOT_STARTED: KindSpec("core", _CORE, required=("ballot",)),
    EventKind.PROMISED: KindSpec("core", _CORE, required=("ballot",)),
    EventKind.PROPOSED: KindSpec("core", _CORE, ("quorum",), required=("ballot", "decree")),
    EventKind.VOTED: KindSpec("core", _CORE, required=("ballot", "decree")),
    EventKind.LEARNED: KindSpec("core", _CORE, required=("decree",)),
    EventKind.BALLOT_ABANDONED: KindSpec("core", _CORE, ("gave_up",)),
    EventKind.IGNORED: KindSpec("core", _CORE, ("promised", "conflict")),
    EventKind.REMINDED: KindSpec("core", _CORE),
    EventKind.STARTED: KindSpec("runtime", ("last_tried", "next_bal", "prev_vote", "decree", "text"),
                                ("wall",)),
    EventKind.SENT: KindSpec("runtime", _MESSAGE, ("decree", "vote")),
    EventKind.RECEIVED: KindSpec("runtime", _MESSAGE, ("decree", "vote")),
    EventKind.DROPPED: KindSpec("runtime", ("reason", "detail", "addr", "suppressed")),
    EventKind.STOPPED: KindSpec("runtime", ("text", "dropped")),
}
# The fields of a line, in the order of PriestEvent (`line` is not written).
FIELDS: tuple[str, ...] = tuple(f for f in PriestEvent._fields if f != "line")
# The fields of `started` that hold the ledger the priest recovered.
LEDGER_FIELDS = ("last_tried", "next_bal", "prev_vote")


# --- encoding and decoding, one function per field type -----------------------------




def _compact_encoder() -> Callable[[object], str]:
    """json.dumps(obj, separators=(",", ":")), without building a new C encoder per call.

    `JSONEncoder.encode` builds one at every call: a third of the cost of a line.
    """
    encoder = json.JSONEncoder(separators=(",", ":"))
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # no C speed-ups: the plain way
        return encoder.encode
    scan = make(None, encoder.default, json.encoder.encode_basestring_ascii, None, ":", ",",
                False, False, True)
    return lambda obj: "".join(scan(obj, 0))


_ENCODE = _compact_encoder()
_make = tuple.__new__
_KIND_OF: dict[str, EventKind] = {k.value: k for k in EventKind}
_KIND_TEXT: dict[EventKind, str] = {k: k.value for k in EventKind}  # plain str: to_json is pure JSON
_HEADER = frozenset({"t", "priest", "kind"})
_COMMON = _HEADER | {"pid", "ballot", "decree", "peer", "text", "msg", "vote"}
# None for every field after `vote` but `line`: what the fast path leaves unset.
_UNCOMMON = (None,) * (len(PriestEvent._fields) - PriestEvent._fields.index("vote") - 2)
_BALLOTS: dict[str, Ballot] = {}  # a history names few ballots, many times
_VOTES: dict[str, Vote] = {}


def _wrong(name: str, value: object) -> NoReturn:
    kind = {"pid": "an int", "decree": "an int", "suppressed": "an int",
            "gave_up": "a bool", "conflict": "a bool", "quorum": "a list of names",
            "dropped": "an object of counts"}
    raise RecordError(f"{name!r} is not {kind.get(name, 'a string')}: {value!r}", name)


def _ballot(name: str, value: object) -> Ballot:
    if type(value) is not str:
        _wrong(name, value)
    ballot = _BALLOTS.get(value)
    if ballot is None:
        try:
            ballot = Ballot.parse(value)
        except ValueError:
            raise RecordError(f"{name!r} is not a ballot: {value!r}", name) from None
        if len(_BALLOTS) < 100_000:
            _BALLOTS[value] = ballot
    return ballot


def _vote(name: str, value: object) -> Vote:
    """A vote as the ledger writes it ("none" or "DECREE@BALLOT"), read by the ledger's parser."""
    if type(value) is not str:
        _wrong(name, value)
    vote = _VOTES.get(value)
    if vote is None:
        try:
            vote = parse_vote(value)
        except ValueError as exc:
            raise RecordError(f"{name!r} is not a vote: {exc}", name) from None
        if len(_VOTES) < 100_000:
            _VOTES[value] = vote
    return vote


def _int(name: str, value: object) -> int:
    if type(value) is not int:
        _wrong(name, value)
    return value


def _str(name: str, value: object) -> str:
    if type(value) is not str:
        _wrong(name, value)
    return value


def _bool(name: str, value: object) -> bool:
    if type(value) is not bool:
        _wrong(name, value)
    return value


def _names(name: str, value: object) -> tuple[str, ...]:
    if type(value) is not list or not all(type(v) is str for v in value):
        _wrong(name, value)
    return tuple(value)


def _counts(name: str, value: object) -> tuple[tuple[str, int], ...]:
    if type(value) is not dict or not all(type(k) is str and type(n) is int
                                          for k, n in value.items()):
        _wrong(name, value)
    return tuple(sorted(value.items()))


def _list(value: tuple[str, ...]) -> list[str]:
    return list(value)


_BALLOT_FIELDS = ("ballot", "last_tried", "next_bal", "promised")
_READ: dict[str, Any] = {
    "pid": _int, "decree": _int, "suppressed": _int, "wall": _int,
    "peer": _str, "text": _str, "msg": _str, "reason": _str, "detail": _str, "addr": _str,
    "vote": _vote, "prev_vote": _vote, "quorum": _names, "gave_up": _bool, "conflict": _bool,
    "dropped": _counts,
    **dict.fromkeys(_BALLOT_FIELDS, _ballot),
}
_TO_TEXT = {**dict.fromkeys(_BALLOT_FIELDS, str), "vote": str, "prev_vote": str, "quorum": _list,
            "dropped": dict}
_INDEX = {name: i for i, name in enumerate(PriestEvent._fields)}
# Per kind: (name, index, always written, encoder or None) for each field it carries.
_WRITE: dict[EventKind, tuple[tuple[str, int, bool, Any], ...]] = {
    kind: tuple((name, _INDEX[name], name in spec.fields, _TO_TEXT.get(name))
                for name in spec.fields + spec.optional)
    for kind, spec in KINDS.items()
}
_REQUIRED: dict[EventKind, tuple[tuple[int, str], ...]] = {
    kind: tuple((_INDEX[name], name) for name in spec.required) for kind, spec in KINDS.items()
}


# --- what writers record ------------------------------------------------------------------


def recorded(r: Record, t: int, priest: str, pid: int | None, line: int = 0) -> PriestEvent:
    """The event a `Record` effect of the core becomes (ballot ZERO is written as null)."""
    ballot = None if r.ballot.is_zero() else r.ballot
    # Every field in order, through tuple.__new__ (as from_json's fast path): this is built
    # for every step a priest takes, and the generated __new__ would cost a third more.
    return _make(PriestEvent, (t, priest, r.kind, pid, ballot, r.decree, r.peer, r.text, None, None,
                               None, None, None, None, None, None, None, r.quorum, r.gave_up,
                               r.promised, r.conflict, None, None, line))


def message_event(kind: EventKind, m: Message, peer: str, t: int, priest: str,
                  pid: int | None) -> PriestEvent:
    """A `sent` or `received` event: the message's type, ballot, and decree or vote."""
    decree = m.decree if isinstance(m, (BeginBallot, Success)) else None
    vote = m.vote if isinstance(m, LastVote) else None
    return PriestEvent(t, priest, kind, pid, m.ballot, decree, peer, None, type(m).__name__, vote)


def started_event(t: int, priest: str, pid: int | None, ledger: LedgerState, decree: int | None,
                  text: str | None = None, line: int = 0, wall: int | None = None) -> PriestEvent:
    """A `started` event: the ledger and decree the priest recovered from disk.

    `wall`, time.time_ns() taken with `t`, maps this process's `t` to the clock
    priest.log prints (None in a simulation, which has no such clock).
    """
    return PriestEvent(t, priest, EventKind.STARTED, pid, decree=decree, text=text,
                       last_tried=ledger.last_tried, next_bal=ledger.next_bal,
                       prev_vote=ledger.prev_vote, line=line, wall=wall)

