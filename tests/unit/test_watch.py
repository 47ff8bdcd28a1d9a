"""The promise watch: which armed priests promised since they were armed, read from their files.

Real files in a temporary directory, written by the test: no priest, no sleep.
"""

from __future__ import annotations

import select
import sys
from pathlib import Path

import pytest

from harness.supervisor.watch import POLL, PromiseWatch
from node.messages import Ballot, EventKind
from node.record import PriestEvent


def line(kind: EventKind, pid: int, ballot: Ballot | None = None) -> str:
    return PriestEvent(1, "gamma", kind, pid, ballot=ballot).to_line()


def promise(pid: int, ballot: Ballot = Ballot(1, "beta")) -> str:  # noqa: B008 (frozen)
    return line(EventKind.PROMISED, pid, ballot)


@pytest.fixture(params=[True, False], ids=["inotify", "polling"])
def setup(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[PromiseWatch, Path]:
    events = tmp_path / "gamma" / "events.jsonl"
    events.parent.mkdir()
    events.write_text(promise(7, Ballot(9, "alpha")))  # before the arming: passed over
    watch = PromiseWatch(lambda name: tmp_path / name / "events.jsonl", inotify=request.param)
    yield watch, events
    watch.close()


def append(path: Path, text: str) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(text)


def test_nothing_fires_until_the_armed_process_promises(setup) -> None:
    watch, events = setup
    assert watch.fired() == []
    watch.arm("gamma", 7)
    assert watch.fired() == []  # the promise already in the file came before the arming
    append(events, line(EventKind.RECEIVED, 7) + promise(6))  # another process of gamma
    assert watch.fired() == []
    append(events, promise(7, Ballot(2, "beta")))
    [(name, event)] = watch.fired()
    assert (name, event.kind, event.ballot, event.pid) == ("gamma", "promised", Ballot(2, "beta"), 7)


def test_a_line_is_read_only_once_it_is_whole_and_junk_is_passed_over(setup) -> None:
    watch, events = setup
    watch.arm("gamma", 7)
    text = promise(7)
    append(events, '{"kind":"promised", not json\n' + text[:20])
    assert watch.fired() == []
    append(events, text[20:])
    assert [name for name, _ in watch.fired()] == ["gamma"]


def test_a_disarmed_priest_fires_nothing(setup) -> None:
    watch, events = setup
    watch.arm("gamma", 7)
    watch.disarm("gamma")
    append(events, promise(7))
    assert watch.fired() == [] and watch.waitables() == [] and watch.wait_timeout() is None


def test_a_priest_without_an_events_file_yet_is_armed_all_the_same(tmp_path: Path) -> None:
    watch = PromiseWatch(lambda name: tmp_path / name / "events.jsonl", inotify=False)
    watch.arm("delta", 3)
    assert watch.fired() == [] and watch.wait_timeout() == POLL
    (tmp_path / "delta").mkdir()
    append(tmp_path / "delta" / "events.jsonl", promise(3))
    assert [name for name, _ in watch.fired()] == ["delta"]


def test_the_loop_waits_on_inotify_or_polls_only_while_something_is_armed(
        setup, request: pytest.FixtureRequest) -> None:
    watch, events = setup
    assert watch.waitables() == [] and watch.wait_timeout() is None
    watch.arm("gamma", 7)
    inotify = "inotify" in request.node.callspec.id
    assert bool(watch.waitables()) == (inotify and sys.platform == "linux")
    if watch.waitables():  # inotify: the descriptor becomes readable when the file grows
        assert watch.wait_timeout() is None
        [fd] = watch.waitables()
        assert select.select([fd], [], [], 0)[0] == []
        append(events, promise(7))
        assert select.select([fd], [], [], 0)[0] == [fd]
        assert [name for name, _ in watch.fired()] == ["gamma"]
        assert select.select([fd], [], [], 0)[0] == []  # drained
    else:
        assert watch.wait_timeout() == POLL
