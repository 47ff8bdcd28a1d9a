"""Crash-test writer: persists states `ledger_state(i)` for ever-increasing i and
rewrites decree.txt and a large file atomically, until it is killed.

    python ledger_writer.py DIRECTORY            write until killed
    python ledger_writer.py --fork DIRECTORY     for each line on stdin, fork a writer,
                                                 print its pid, reap it, print its wait status

--fork lets a test kill hundreds of real writer processes without paying for a
Python start-up and the imports each time.
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path

from node.ledger import Ledger, atomic_write_text
from node.messages import Ballot, LedgerState, Vote

BLOB = "blob.txt"
BLOB_LINES = 2000
COMPACT_AFTER = 3


def ledger_state(i: int) -> LedgerState:
    """The i-th state of the sequence; i is recoverable from last_tried.round."""
    return LedgerState(Ballot(i, "alpha"), Ballot(i, "beta"), Vote(Ballot(i, "gamma"), -i))


def blob_text(i: int) -> str:
    """A file large enough that a torn write would show: BLOB_LINES copies of i."""
    return f"{i}\n" * BLOB_LINES


def write_forever(directory: Path) -> None:
    """Resume after the recovered state and write until killed."""
    # A short log, so kills land in compactions (an atomic rewrite) as well as in appends.
    ledger = Ledger.open(directory, lock=True, compact_after=COMPACT_AFTER)
    i = ledger.state.last_tried.round
    while True:
        # Step i: its record is durable; finish it (again, after a restart) with the
        # files, so decree.txt and the blob always hold step i-1 or i.
        if i > 0:
            # Not Ledger.write_decree: that refuses to change a decree, by design.
            atomic_write_text(directory / "decree.txt", f"{i}\n")
            atomic_write_text(directory / BLOB, blob_text(i))
        i += 1
        ledger.persist(ledger_state(i))


def fork_writers(directory: Path) -> None:
    """One writer per line of stdin; report its pid, then its wait status."""
    for _ in sys.stdin:
        pid = os.fork()
        if pid == 0:
            try:
                write_forever(directory)
            except BaseException:  # noqa: BLE001 - the writer reports whatever ends it
                traceback.print_exc()
            finally:
                os._exit(1)
        print(pid, flush=True)
        print(os.waitpid(pid, 0)[1], flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "--fork":
        fork_writers(Path(sys.argv[2]))
    else:
        write_forever(Path(sys.argv[1]))
