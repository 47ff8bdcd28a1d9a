"""The harness's run record: one typed definition of each line of `<data_dir>/harness.jsonl`.

Whoever writes a line (the supervisor: `harness.supervisor`; the chaos verb:
`harness.chaos`) builds one of the records below and appends `to_json()`;
whoever reads the file (the checker: `harness.check`) gets the same records
back from `from_json`. The kinds are `Kind`; each kind is one frozen class
(`RECORDS`), sharing `Record`'s `t` (CLOCK_MONOTONIC in ns: the clock of the
priests' events.jsonl, so the two can be merged on one time line).

docs/formats.md documents every kind and field in a table that a test compares
with `RECORDS`, so the two cannot drift. Reading stays lenient where it is
cheap: keys a record does not know are ignored (a newer writer), and a field
that older files lack has a default (`ChaosAction.result` is then derived
from the outcome's text, the only place such text is read).

This module imports nothing from the harness, so every part of it can use it.
"""

from __future__ import annotations

import dataclasses
import os
import time
import types
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar, Union, get_args, get_origin, get_type_hints


class Kind(StrEnum):
    """Every kind of line in harness.jsonl."""

    UP = "up"
    PRIEST_STARTED = "priest_started"
    PRIEST_EXITED = "priest_exited"
    CHAOS = "chaos"
    DOWN = "down"
    CHAOS_START = "chaos_start"
    CHAOS_END = "chaos_end"
    NETWORK = "network"
    RELAY_STARTED = "relay_started"
    RELAY_EXITED = "relay_exited"
    DECREE = "decree"
    GARBAGE = "garbage"
    PRIEST_FILES = "priest_files"


class Result(StrEnum):
    """What became of one chaos action."""

    DONE = "done"  # the signal was sent, or the process started
    REFUSED = "refused"  # it made no sense in the priest's state; nothing was done
    FAILED = "failed"  # it was tried and did not happen (a restart that could not start)


class RecordError(ValueError):
    """A JSON value that is not a harness record; the message says why."""


def now() -> int:
    """The time to stamp a record with: CLOCK_MONOTONIC in ns, as the priests' events use."""
    return time.monotonic_ns()


def fresh_seed() -> int:
    """A new seed (0 to 2**31 - 1) for a draw that a record then names: a random plan, the
    relay's faults, garbage. os.urandom, not `secrets`, which loads OpenSSL (3.8 MB that
    the supervisor, and every priest it forks, would then carry)."""
    return int.from_bytes(os.urandom(4), "big") & 0x7FFFFFFF


@dataclass(frozen=True, slots=True, kw_only=True)
class Record:
    """One line of harness.jsonl: its time, and (in each subclass) its kind and fields."""

    KIND: ClassVar[Kind]
    t: int  # CLOCK_MONOTONIC, ns

    def to_json(self) -> dict[str, Any]:
        """The line's JSON object: `t`, `kind`, then the fields in declared order."""
        obj: dict[str, Any] = {"t": self.t, "kind": self.KIND.value}
        for f in dataclasses.fields(self):
            if f.name != "t":
                obj[f.name] = _plain(getattr(self, f.name))
        return obj

    @staticmethod
    def from_json(obj: object) -> Record:
        """The record a decoded JSON line holds; RecordError saying why if it holds none."""
        if type(obj) is not dict:
            raise RecordError("not a JSON object")
        t, kind = obj.get("t"), obj.get("kind")
        if type(t) is not int:
            raise RecordError("'t' is not an int")
        cls = RECORDS.get(kind) if type(kind) is str else None
        if cls is None:
            raise RecordError(f"unknown kind {kind!r} (known: {', '.join(RECORDS)})")
        return cls._decode(obj)

    @classmethod
    def _decode(cls, obj: dict[str, Any]) -> Record:
        values: dict[str, Any] = {"t": obj["t"]}
        for name, (hint, required) in _fields(cls).items():
            if name not in obj:
                if required:
                    raise RecordError(f"no {name!r} (every {cls.KIND} record has one)")
                continue
            values[name] = _value(obj[name], hint, name)
        return cls(**values)


@dataclass(frozen=True, slots=True, kw_only=True)
class Up(Record):
    """The supervisor started: which priests it was asked to start."""

    KIND = Kind.UP
    cluster: str
    priests: tuple[str, ...]
    supervisor: int  # its pid
    detached: bool
    network: str = "relay"  # the config's `network:` (relay, or direct)


@dataclass(frozen=True, slots=True, kw_only=True)
class PriestStarted(Record):
    """A priest process started and said it is ready."""

    KIND = Kind.PRIEST_STARTED
    priest: str
    pid: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PriestExited(Record):
    """A priest process ended: its exit status, or minus the signal that ended it."""

    KIND = Kind.PRIEST_EXITED
    priest: str
    pid: int | None
    status: int
    # True when the harness had asked it to end (kill, stop, down): not a crash of its own.
    by_harness: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ChaosAction(Record):
    """One action on a priest (kill, kill-after-promise, stop, restart, pause, resume, ballot),
    done or not; a kill-after-promise that fires is a `kill` of its own.

    `t` is when the supervisor began it (before the signal or the new process),
    `pid` the process it acted on (after a restart: the new one).
    """

    KIND = Kind.CHAOS
    action: str
    priest: str
    pid: int | None
    outcome: str  # what happened, in words ("killed (SIGKILL)", "refused: ...")
    result: Result = Result.DONE

    @property
    def applied(self) -> bool:
        return self.result is Result.DONE

    @classmethod
    def _decode(cls, obj: dict[str, Any]) -> Record:
        if "result" not in obj and type(obj.get("outcome")) is str:
            # Files written before `result` existed: their outcome text said it.
            outcome: str = obj["outcome"]
            obj = {**obj, "result": next((r.value for r in (Result.REFUSED, Result.FAILED)
                                          if outcome.startswith(f"{r.value}: ")), "done")}
        return super(ChaosAction, cls)._decode(obj)


@dataclass(frozen=True, slots=True, kw_only=True)
class Down(Record):
    """The supervisor stopped its priests and is about to exit."""

    KIND = Kind.DOWN
    cluster: str
    supervisor: int
    stopped: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ChaosStart(Record):
    """A `chaos` run began: where its plan came from, and what replays a random one."""

    KIND = Kind.CHAOS_START
    source: str  # "the command line", the schedule's path, or "the random nemesis"
    seed: int | None  # a random plan's seed
    steps: int
    duration: float | None  # a random plan's --duration
    rate: float | None  # a random plan's --rate


@dataclass(frozen=True, slots=True, kw_only=True)
class ChaosEnd(Record):
    """A `chaos` run ended: how many actions were done and refused, in how long."""

    KIND = Kind.CHAOS_END
    source: str
    seed: int | None
    done: int
    refused: int
    elapsed: float  # seconds
    outcome: str  # "done", "refused" (it stopped at a refusal) or "interrupted"


@dataclass(frozen=True, slots=True, kw_only=True)
class NetworkChange(Record):
    """One network action (partition, isolate, drop, duplicate, delay, heal), done or not.

    `value` is the action's argument as given, then as parsed when it was
    done; `faults` the network's faults after it (`harness.network.faults`).
    """

    KIND = Kind.NETWORK
    action: str
    value: Any
    seed: int | None  # the relay's new seed for its random draws, when one was given
    outcome: str
    faults: dict[str, Any] | None = None
    result: Result = Result.DONE

    @property
    def applied(self) -> bool:
        return self.result is Result.DONE


@dataclass(frozen=True, slots=True, kw_only=True)
class RelayStarted(Record):
    """The relay started (again, after `restarts` deaths), with its seed and the faults in force."""

    KIND = Kind.RELAY_STARTED
    pid: int
    seed: int
    restarts: int
    faults: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class RelayExited(Record):
    """The relay ended: its exit status (minus the signal), or why it could not be started."""

    KIND = Kind.RELAY_EXITED
    pid: int | None
    status: int | None
    error: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DecreeSeen(Record):
    """A foreign priest's decree.txt as the supervisor saw it change: appear, change, vanish.

    The supervisor reads it at least every 20 ms and at every chaos action;
    `present` False: no file; `value` None with `present`: not a decree, and
    `text` shows what it held (at most 40 characters, escaped).
    """

    KIND = Kind.DECREE
    priest: str
    present: bool
    value: int | None = None
    text: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Garbage(Record):
    """Malformed input sent to a priest (`chaos --garbage`): each input, when, and what it was.

    `inputs` is a list of {"t": ns, "kind": what sort of garbage, "data": the
    bytes, escaped, at most 80 characters}; `died_after` the 0-based index of
    the input after which the priest was found dead (None: it survived them).
    """

    KIND = Kind.GARBAGE
    priest: str
    transport: str  # udp or tcp
    port: int
    inputs: Any
    died_after: int | None = None
    seed: int | None = None  # the inputs' draw: the same seed, the same inputs
    note: str | None = None  # why fewer than asked were sent, if so


@dataclass(frozen=True, slots=True, kw_only=True)
class PriestFiles(Record):
    """What a foreign priest's run created in its directory (for `up --fresh` to remove)."""

    KIND = Kind.PRIEST_FILES
    priest: str
    created: tuple[str, ...]  # paths relative to the data dir


RECORDS: dict[str, type[Record]] = {
    cls.KIND.value: cls
    for cls in (Up, PriestStarted, PriestExited, ChaosAction, Down, ChaosStart, ChaosEnd,
                NetworkChange, RelayStarted, RelayExited, DecreeSeen, Garbage, PriestFiles)
}
assert set(RECORDS) == {k.value for k in Kind}, "every kind has its record class"


def field_names(cls: type[Record]) -> tuple[str, ...]:
    """A record's fields as they appear in its JSON object, after `t` and `kind`."""
    return tuple(f.name for f in dataclasses.fields(cls) if f.name != "t")


# --- decoding by the declared types ----------------------------------------------

_FIELDS: dict[type[Record], dict[str, tuple[Any, bool]]] = {}


def _fields(cls: type[Record]) -> dict[str, tuple[Any, bool]]:
    """name -> (type hint, required) of every field but `t`; computed once per class."""
    found = _FIELDS.get(cls)
    if found is None:
        hints = get_type_hints(cls)
        found = _FIELDS[cls] = {
            f.name: (hints[f.name], f.default is dataclasses.MISSING)
            for f in dataclasses.fields(cls) if f.name != "t"}
    return found


def _value(value: object, hint: Any, name: str) -> Any:
    """`value` as the type `hint` names (int, float, str, bool, an enum, tuple[str, ...],
    dict[str, Any], Any, X | None)."""
    if hint is Any:
        return value
    origin = get_origin(hint)
    if origin is dict:
        if type(value) is not dict:
            raise RecordError(f"{name!r} is not an object: {value!r}")
        return value
    if origin in (Union, types.UnionType):
        options = get_args(hint)
        if value is None and type(None) in options:
            return None
        (hint,) = [o for o in options if o is not type(None)]
        return _value(value, hint, name)
    if origin is tuple:
        if type(value) is not list or any(type(x) is not str for x in value):
            raise RecordError(f"{name!r} is not a list of strings: {value!r}")
        return tuple(value)
    if isinstance(hint, type) and issubclass(hint, StrEnum):
        try:
            return hint(value) if type(value) is str else hint("")  # "" is no member's value
        except ValueError:
            known = ", ".join(m.value for m in hint)
            raise RecordError(f"{name!r} is {value!r}, not one of {known}") from None
    if hint is float and type(value) is int:
        return float(value)
    if type(value) is not hint:  # exact: a bool is not an int here
        raise RecordError(f"{name!r} is not {_article(hint)}: {value!r}")
    return value


def _article(hint: Any) -> str:
    return {int: "an int", float: "a number", str: "a string", bool: "true or false"}.get(
        hint, str(hint))


def _plain(value: object) -> object:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, StrEnum):
        return value.value
    return value


__all__ = ["Kind", "Result", "Record", "RecordError", "Up", "PriestStarted", "PriestExited",
           "ChaosAction", "Down", "ChaosStart", "ChaosEnd", "NetworkChange", "RelayStarted",
           "RelayExited", "DecreeSeen", "Garbage", "PriestFiles", "RECORDS", "field_names", "fresh_seed", "now"]
