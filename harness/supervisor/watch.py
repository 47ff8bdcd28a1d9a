"""Kills timed to a priest's own step: each armed priest's events.jsonl, watched for its promise.

`kill-after-promise N` arms priest N (`harness.supervisor.core`); the core
tells a `PromiseWatch` to watch N's process, and the daemon's loop asks it,
after every wake-up, which armed priests have promised since: the core then
kills them. A priest records `promised` right after the ledger write that
made the promise durable, in the same write(2) as the `sent` of the LastVote
that answers it, and sends the datagram just after: so the kill lands after
the promise is durable, usually after its LastVote left, and before the
priest has done much else.

How it wakes: Linux inotify (through ctypes) makes the loop's wait return as
soon as an armed file grows; where inotify cannot be had (no libc symbol, a
file it cannot watch), the loop polls that file's size every POLL seconds
instead, and only while something is armed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

from harness.errors import RefusedError
from node.record import EventKind, PriestEvent, RecordError

POLL = 0.002  # seconds between size checks of an armed file that inotify does not watch
_IN_MODIFY = 0x2
_PROMISED = f'"kind":"{EventKind.PROMISED.value}"'.encode()  # a cheap test before parsing


@dataclass
class _Armed:
    """One armed priest: its process, its events file, and how far it has been read."""

    pid: int
    path: Path
    offset: int  # bytes of the file read (or there when it was armed)
    tail: bytes = b""  # an incomplete last line, kept until its newline comes
    wd: int | None = None  # its inotify watch, if any

    def promise(self) -> PriestEvent | None:
        """The first `promised` event of the armed process in what was appended since."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return None  # not there (yet): nothing promised
        self.offset += len(data)
        *lines, self.tail = (self.tail + data).split(b"\n")
        for line in lines:
            if _PROMISED not in line:
                continue
            try:
                event = PriestEvent.from_line(line.decode("utf-8", "replace"))
            except RecordError:
                continue  # not an event: the checker reports it, the watch passes over it
            if event.kind == EventKind.PROMISED and event.pid == self.pid:
                return event
        return None


class PromiseWatch:
    """The armed priests, and which of them have promised since they were armed."""

    def __init__(self, events_file: Callable[[str], Path], *, inotify: bool = True,
                 foreign: Collection[str] = ()) -> None:
        self.events_file = events_file  # a priest's name -> its events.jsonl
        self.foreign = frozenset(foreign)  # priests that write no events.jsonl
        self.armed: dict[str, _Armed] = {}
        self._inotify = _Inotify.open() if inotify else None

    def arm(self, name: str, pid: int) -> None:
        """Watch priest `name`'s process `pid` for its next promise, from now on;
        RefusedError for a foreign priest, whose promises nobody can see."""
        if name in self.foreign:
            raise RefusedError(f"cannot arm kill-after-promise on priest {name}: it is a foreign "
                               "program, which writes no events.jsonl, so its promises cannot "
                               "be seen; --kill it instead")
        self.disarm(name)
        path = self.events_file(name)
        try:
            offset = path.stat().st_size
        except OSError:
            offset = 0
        armed = _Armed(pid, path, offset)
        if self._inotify is not None:
            armed.wd = self._inotify.add(path)
        self.armed[name] = armed

    def disarm(self, name: str) -> None:
        armed = self.armed.pop(name, None)
        if armed is not None and armed.wd is not None and self._inotify is not None:
            self._inotify.remove(armed.wd)

    def waitables(self) -> list[int]:
        """What the loop waits on beside its own: the inotify descriptor, while one is armed."""
        if self._inotify is None or not any(a.wd is not None for a in self.armed.values()):
            return []
        return [self._inotify.fd]

    def wait_timeout(self) -> float | None:
        """POLL while an armed file has no inotify watch, else None (no need to wake)."""
        return POLL if any(a.wd is None for a in self.armed.values()) else None

    def fired(self) -> list[tuple[str, PriestEvent]]:
        """The armed priests that promised since they were armed, each with its promise."""
        if self._inotify is not None:
            self._inotify.drain()
        out = []
        for name, armed in list(self.armed.items()):
            event = armed.promise()
            if event is not None:
                out.append((name, event))
        return out

    def close(self) -> None:
        for name in list(self.armed):
            self.disarm(name)
        if self._inotify is not None:
            self._inotify.close()
            self._inotify = None


class _Inotify:
    """The few inotify calls the watch needs, from libc through ctypes."""

    def __init__(self, libc: ctypes.CDLL, fd: int) -> None:
        self.libc, self.fd = libc, fd

    @classmethod
    def open(cls) -> _Inotify | None:
        """An inotify instance (non-blocking, close-on-exec), or None where there is none."""
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
            fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        except (OSError, AttributeError):
            return None
        return cls(libc, fd) if fd >= 0 else None

    def add(self, path: Path) -> int | None:
        """A watch on `path` growing, or None if it cannot be watched (then it is polled)."""
        wd = self.libc.inotify_add_watch(self.fd, os.fsencode(path), _IN_MODIFY)
        return wd if wd >= 0 else None

    def remove(self, wd: int) -> None:
        self.libc.inotify_rm_watch(self.fd, wd)

    def drain(self) -> None:
        """Read away the pending notices: which file grew does not matter, each armed is read."""
        try:
            while os.read(self.fd, 4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    def close(self) -> None:
        os.close(self.fd)
