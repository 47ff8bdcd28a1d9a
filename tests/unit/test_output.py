"""Narration: priest.log always gets every line; a terminal that is /dev/null gets none built."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import TextIO

from node.messages import EventKind
from node.output import Narrator


def narrate(tmp_path: Path, out: TextIO, **kw: bool) -> tuple[Narrator, Path]:
    log = tmp_path / "priest.log"
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    n = Narrator("alpha", 1, out, False, fd, **kw)
    n.say("begins ballot 1.alpha", kind=EventKind.BALLOT_STARTED)
    n.say("-> NextBallot(1.alpha) to beta", kind=EventKind.SENT)
    n.close()
    return n, log


def test_every_line_goes_to_the_log_and_the_terminal(tmp_path: Path) -> None:
    out = io.StringIO()
    _, log = narrate(tmp_path, out)
    assert log.read_text().count("\n") == 2
    assert out.getvalue().splitlines() == log.read_text().splitlines()


def test_without_messages_the_terminal_shows_only_the_steps(tmp_path: Path) -> None:
    out = io.StringIO()
    _, log = narrate(tmp_path, out, messages=False)
    assert log.read_text().count("\n") == 2 and out.getvalue().count("\n") == 1


def test_a_terminal_that_is_dev_null_gets_no_lines_built(tmp_path: Path) -> None:
    with open(os.devnull, "w") as out:
        narrator, log = narrate(tmp_path, out)
    assert not narrator.shows and log.read_text().count("\n") == 2
