"""What the harness prints: its own narration lines, tables, colour only on a terminal."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TextIO

from colorama import Fore, Style

from node.output import use_color

__all__ = ["STATE_STYLES", "Say", "table", "use_color"]

STATE_STYLES = {
    "running": Fore.GREEN,
    "paused": Fore.YELLOW,
    "killed": Fore.RED,
    "exited": Fore.RED,
    "down": Style.DIM,
    "not started": Style.DIM,
    "by hand": Fore.GREEN,
}


class Say:
    """Writes the supervisor's lines, shaped like the priests' (`harness | time text`)."""

    def __init__(self, out: TextIO, color: bool) -> None:
        self.out, self.color = out, color

    def __call__(self, text: str, *, warn: bool = False) -> None:
        now = time.time()
        stamp = time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now * 1000) % 1000:03d}"
        if self.color:
            style = Fore.RED if warn else Style.BRIGHT
            line = (f"{Style.BRIGHT}{'harness':>8}{Style.RESET_ALL} | {Style.DIM}{stamp}"
                    f"{Style.RESET_ALL} {style}{text}{Style.RESET_ALL}\n")
        else:
            line = f"{'harness':>8} | {stamp} {text}\n"
        try:
            self.out.write(line)
            self.out.flush()
        except (BrokenPipeError, ValueError, OSError):
            pass  # the terminal is gone; the supervisor carries on


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, color: bool = False,
          state_column: int | None = None) -> str:
    """A plain left-aligned text table; the state column coloured when `color`."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in rows:
        cells = []
        for i, (cell, w) in enumerate(zip(row, widths, strict=True)):
            text = cell.ljust(w)
            if color and i == state_column:
                text = f"{STATE_STYLES.get(cell, '')}{text}{Style.RESET_ALL}"
            cells.append(text)
        lines.append("  ".join(cells).rstrip())
    if color:
        lines[0] = f"{Style.BRIGHT}{lines[0]}{Style.RESET_ALL}"
    return "\n".join(lines) + "\n"
