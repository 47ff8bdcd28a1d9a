"""Watching foreign priests' decree.txt: each appearance, change or disappearance, recorded.

A foreign priest writes no events.jsonl, so what `verify` knows of it is what
the supervisor saw: it reads every foreign priest's `<dir>/decree.txt` (a
few bytes; a stat would miss a rewrite of the same size within one tick of
the file system's clock) at least every `PERIOD` seconds, and at every chaos action, and records in harness.jsonl a
`decree` record (`harness.record.DecreeSeen`) whenever what the file holds
differs from what it last held: absent, a decree, or text that is not one.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

from harness.record import DecreeSeen, Record, now

PERIOD = 0.02  # seconds: the longest a change goes unseen while the supervisor runs
DECREE_FILE = "decree.txt"
TEXT_SHOWN = 40
# An int, with or without one newline (the original writes none); nothing else.
FOREIGN_DECREE = re.compile(rb"-?[0-9]+(\r?\n)?")


def parse_foreign_decree(raw: bytes) -> int | None:
    """The decree a foreign priest's decree.txt holds, or None if it holds no decree."""
    if FOREIGN_DECREE.fullmatch(raw) is None:
        return None
    value = int(raw)
    return value if -(2**63) <= value < 2**63 else None


def shown(raw: bytes) -> str:
    text = repr(raw[: TEXT_SHOWN + 1])[2:-1]
    return text if len(raw) <= TEXT_SHOWN else text[:TEXT_SHOWN] + "..."


Seen = tuple[bool, int | None, str | None]  # (present, value, text)
ABSENT: Seen = (False, None, None)


def look(path: Path) -> Seen:
    """What the file holds now: (present, value, text when not a decree)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return ABSENT
    except OSError as e:
        return (True, None, f"<cannot read: {e.strerror or e}>")
    try:
        raw = os.read(fd, 4096)
    except OSError as e:
        return (True, None, f"<cannot read: {e.strerror or e}>")
    finally:
        os.close(fd)
    value = parse_foreign_decree(raw)
    return (True, value, None) if value is not None else (True, None, shown(raw))


class DecreeWatch:
    """The decree.txt of each of `names` under `data_dir`; `poll` records what changed."""

    def __init__(self, data_dir: Path, names: Sequence[str],
                 record: Callable[[Record], None]) -> None:
        self.paths = {n: data_dir / n / DECREE_FILE for n in names}
        self.record = record
        self.seen: dict[str, Seen] = {}  # absent: not yet seen (taken as no file)

    def poll(self) -> None:
        for name, path in self.paths.items():
            seen = look(path)
            if seen == self.seen.get(name, ABSENT):
                continue
            self.seen[name] = seen
            present, value, text = seen
            self.record(DecreeSeen(t=now(), priest=name, present=present, value=value, text=text))
