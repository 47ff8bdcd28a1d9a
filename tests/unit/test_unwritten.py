"""A run file the supervisor cannot write (a full disk) is said, never fatal: fakes, no disk."""

from __future__ import annotations

import errno

from harness.supervisor.daemon import Unwritten


class FakeDisk:
    """A writer that fails with ENOSPC while `full`."""

    def __init__(self) -> None:
        self.full = False
        self.written = 0

    def write(self) -> None:
        if self.full:
            raise OSError(errno.ENOSPC, "No space left on device", "supervisor.json")
        self.written += 1


def test_a_full_disk_is_said_once_listed_while_it_lasts_and_its_end_is_said() -> None:
    said: list[tuple[str, bool]] = []
    unwritten = Unwritten(lambda text, warn=False: said.append((text, warn)))
    disk = FakeDisk()
    assert unwritten.attempt("supervisor.json", disk.write) and said == []
    disk.full = True
    assert not unwritten.attempt("supervisor.json", disk.write)
    assert not unwritten.attempt("supervisor.json", disk.write)  # not said again
    assert said == [("cannot write supervisor.json: No space left on device; supervising on",
                     True)]
    assert unwritten.problems() == ["cannot write supervisor.json: No space left on device"]
    disk.full = False
    assert unwritten.attempt("supervisor.json", disk.write)
    assert said[-1] == ("supervisor.json is written again", False)
    assert unwritten.problems() == [] and disk.written == 2


def test_a_lost_event_names_its_kind_and_other_errors_still_raise() -> None:
    said: list[str] = []
    unwritten = Unwritten(lambda text, warn=False: said.append(text))

    def full() -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    assert not unwritten.attempt("harness.jsonl", full, " (a chaos event is lost)")
    assert said == [("cannot write harness.jsonl (a chaos event is lost): No space left on "
                     "device; supervising on")]

    def bug() -> None:
        raise ZeroDivisionError

    try:
        unwritten.attempt("harness.jsonl", bug)
    except ZeroDivisionError:
        pass
    else:
        raise AssertionError("a bug is not a full disk")
