"""network.jsonl read back: what the relay did with each datagram (docs/formats.md).

The relay writes its lines by hand in its hot loop (`harness.network.relay`);
this is the reader's side of that format: `Datagram` for a `datagram` line,
`FaultsLine` for a `faults` line, `RelayLine` for a `relay_started` line. A
test writes lines with the relay and reads them back here, so the two agree.
Reading never fails: a line that is none of these is counted and skipped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

DATAGRAM, FAULTS, RELAY_STARTED = "datagram", "faults", "relay_started"
FORWARDED, DUPLICATED, DROPPED = "forwarded", "duplicated", "dropped"


class Datagram(NamedTuple):
    """One datagram that reached a priest's public address, and its fate."""

    t: int  # when the relay read it (CLOCK_MONOTONIC ns, the clock of events.jsonl)
    n: int  # its number since the relay started
    src: str | None  # the sending priest; None: not a priest's private address
    dst: str
    fate: str  # forwarded, duplicated or dropped
    reason: str | None = None  # why dropped: partition, loss, not a priest
    at: tuple[int, ...] = ()  # when each copy left the relay
    head: str | None = None  # its first bytes, one character each (latin-1); None: not recorded


class FaultsLine(NamedTuple):
    """The relay applies these faults from `t` on (`harness.network.faults.Faults.to_wire`)."""

    t: int
    faults: dict[str, Any]


class RelayLine(NamedTuple):
    """A relay process began at `t` (the first, or one restarted after a death)."""

    t: int
    pid: int | None
    seed: int | None


class NetworkLog(NamedTuple):
    """Everything read from network.jsonl.1 then network.jsonl, in the order written."""

    datagrams: list[Datagram]
    faults: list[FaultsLine]
    relays: list[RelayLine]
    skipped: int  # lines that were none of the above
    # `t` of the first line kept, when lines before it were rotated away (a first line that
    # is not a relay's start); None when the record is whole.
    cut_at: int | None = None


def read_network_log(data_dir: Path, name: str = "network.jsonl", *,
                     since: int | None = None) -> NetworkLog | None:
    """The relay's log in `data_dir` (the rotated `.1` first), or None when there is none;
    only the datagrams read at or after `since` (monotonic ns) are kept.

    Read a line at a time (the two files may hold 200,000 lines). A last line without its
    newline is one being written (or cut by a crash): not counted as unreadable.
    """
    paths = [data_dir / f"{name}.1", data_dir / name]
    if not any(p.exists() for p in paths):
        return None
    log = NetworkLog([], [], [], 0)
    skipped, first = 0, ""
    for path in paths:
        try:
            lines = open(path, encoding="utf-8", errors="replace")  # noqa: SIM115 - closed below
        except OSError:
            continue
        with lines:
            for line in lines:
                if not line.endswith("\n"):
                    break
                first = first or line
                if not _read_line(line, log, since):
                    skipped += 1
    return log._replace(skipped=skipped, cut_at=_cut_at(first))


def _cut_at(first: str) -> int | None:
    """Its `t` if the first line is not a relay's start: the lines before it were rotated away."""
    try:
        obj = json.loads(first) if first else None
    except ValueError:
        return None
    if type(obj) is not dict or obj.get("kind") == RELAY_STARTED or type(obj.get("t")) is not int:
        return None
    return int(obj["t"])


def _read_line(line: str, log: NetworkLog, since: int | None) -> bool:
    try:
        obj = json.loads(line)
    except ValueError:
        return False
    if type(obj) is not dict or type(obj.get("t")) is not int:
        return False
    kind, t = obj.get("kind"), obj["t"]
    if kind == DATAGRAM:
        src, dst, fate, at = obj.get("src"), obj.get("dst"), obj.get("fate"), obj.get("at", [])
        if (src is not None and type(src) is not str) or type(dst) is not str \
                or fate not in (FORWARDED, DUPLICATED, DROPPED) or type(at) is not list \
                or not all(type(a) is int for a in at):
            return False
        if since is not None and t < since:
            return True  # a datagram of an earlier run: read, not kept
        reason, head = obj.get("reason"), obj.get("head")
        log.datagrams.append(Datagram(t, _int(obj.get("n")) or 0, src, dst, fate,
                                      reason if type(reason) is str else None, tuple(at),
                                      head if type(head) is str else None))
        return True
    if kind == FAULTS and type(obj.get("faults")) is dict:
        log.faults.append(FaultsLine(t, obj["faults"]))
        return True
    if kind == RELAY_STARTED:
        log.relays.append(RelayLine(t, _int(obj.get("pid")), _int(obj.get("seed"))))
        return True
    return False


def printable(head: str) -> str:
    """A datagram's preview in one printable line: line breaks shown as ' / ', other bytes
    outside printable ASCII as \\xNN."""
    text = head.replace("\r\n", " / ").replace("\n", " / ")
    if text.endswith("\r"):  # a line break cut in two by the preview's end
        text = text[:-1] + " / "
    if text.isascii() and text.isprintable():
        return text
    return "".join(c if " " <= c <= "~" else f"\\x{ord(c):02x}" for c in text)


def _int(value: object) -> int | None:
    return value if type(value) is int else None


__all__ = ["Datagram", "FaultsLine", "RelayLine", "NetworkLog", "read_network_log", "printable",
           "DATAGRAM", "FAULTS", "RELAY_STARTED", "FORWARDED", "DUPLICATED", "DROPPED"]
