"""Narration: one human line per step, on the terminal (coloured) and in priest.log (plain)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from functools import cache
from typing import TextIO

from node.messages import EventKind

MESSAGE_KINDS = frozenset({EventKind.SENT, EventKind.RECEIVED})  # `->`/`<-` lines; the rest are steps


@dataclass(frozen=True)
class Palette:
    priests: list[str]  # one colour per priest, by position in the config
    kinds: dict[EventKind, str]  # the style of each kind of step
    dim: str
    red: str
    reset: str


@cache
def palette() -> Palette:
    """The terminal's colours; colorama is loaded only by a priest that colours its lines."""
    from colorama import Fore, Style

    priests = [Fore.CYAN, Fore.MAGENTA, Fore.YELLOW, Fore.BLUE, Fore.GREEN, Fore.RED,
               Fore.LIGHTCYAN_EX, Fore.LIGHTMAGENTA_EX, Fore.LIGHTYELLOW_EX, Fore.LIGHTBLUE_EX]
    kinds = {
        EventKind.SENT: Style.DIM,
        EventKind.RECEIVED: Style.DIM,
        EventKind.BALLOT_STARTED: Style.BRIGHT,
        EventKind.PROMISED: Fore.CYAN,
        EventKind.PROPOSED: Style.BRIGHT + Fore.YELLOW,
        EventKind.VOTED: Fore.YELLOW,
        EventKind.LEARNED: Style.BRIGHT + Fore.GREEN,
        EventKind.BALLOT_ABANDONED: Fore.RED,
        EventKind.IGNORED: Style.DIM + Fore.YELLOW,
        EventKind.REMINDED: Fore.GREEN,
    }
    return Palette(priests, kinds, Style.DIM, Fore.RED, Style.RESET_ALL)


def use_color(out: TextIO) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set."""
    return "NO_COLOR" not in os.environ and hasattr(out, "isatty") and out.isatty()


def _is_devnull(out: TextIO) -> bool:
    """Whether `out` writes to /dev/null (what a quiet forked priest is given)."""
    try:
        mine, null = os.fstat(out.fileno()), os.stat(os.devnull)
    except (AttributeError, OSError, ValueError):
        return False  # no descriptor (a StringIO in tests): it shows what it is given
    return (mine.st_dev, mine.st_ino) == (null.st_dev, null.st_ino)


def priest_color(index: int) -> str:
    priests = palette().priests
    return priests[(index - 1) % len(priests)]


class Narrator:
    """Writes `NAME | HH:MM:SS.mmm text` lines; colour only when asked.

    Lines are buffered and written by `flush()`: the runtime flushes before a
    message leaves and before a durable write, so the narration is in
    priest.log before what it narrates, in one write(2) per batch.
    """

    def __init__(self, name: str, index: int, out: TextIO, color: bool, log_fd: int, *,
                 messages: bool = True) -> None:
        self.name, self.out, self.color = name, out, color
        self.messages = messages  # False: message lines go to priest.log only, not to `out`
        # A forked priest's terminal is often /dev/null: build no lines for it.
        self.shows = not _is_devnull(out)
        self.prefix = f"{priest_color(index)}{name:>8}{palette().reset}" if color else f"{name:>8}"
        self.log_fd = log_fd  # priest.log, opened by the runtime (never through a link)
        self.plain: list[str] = []
        self.shown: list[str] = []
        self._second = -1
        self._clock = ""

    def _stamp(self) -> str:
        now = time.time()
        second = int(now)
        if second != self._second:  # strftime once a second, not once a line
            self._second, self._clock = second, time.strftime("%H:%M:%S", time.localtime(now))
        return f"{self._clock}.{int(now * 1000) % 1000:03d}"

    def say(self, text: str, *, kind: EventKind | None = None, warn: bool = False) -> None:
        stamp = self._stamp()
        plain = f"{self.name:>8} | {stamp} {text}\n"
        self.plain.append(plain)
        if not self.shows or (not self.messages and kind in MESSAGE_KINDS):
            return
        if self.color:
            colors = palette()
            style = colors.red if warn else (colors.kinds.get(kind, "") if kind else "")
            plain = (f"{self.prefix} | {colors.dim}{stamp}{colors.reset} "
                     f"{style}{text}{colors.reset}\n")
        self.shown.append(plain)

    def flush(self) -> None:
        if not self.plain:
            return
        os.write(self.log_fd, "".join(self.plain).encode())
        shown = "".join(self.shown)
        self.plain.clear()
        self.shown.clear()
        if not shown:
            return
        try:
            self.out.write(shown)
            self.out.flush()
        except (BrokenPipeError, ValueError, OSError):
            pass  # nobody is watching the terminal any more; priest.log still has it

    def close(self) -> None:
        self.flush()
        os.close(self.log_fd)
