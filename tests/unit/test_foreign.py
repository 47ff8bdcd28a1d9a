"""Foreign priests, piece by piece: their config keys, the config written for them, the
decree watch, the garbage, what `verify` finds from what the supervisor saw, and --fresh."""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import socket
import subprocess
from pathlib import Path

import pytest
import yaml

from harness.chaos.plan import plan_random
from harness.check.history import load_history
from harness.check.rules import check
from harness.errors import RefusedError, RunFilesError, UsageError
from harness.record import DecreeSeen, Garbage, PriestExited, PriestFiles, PriestStarted, Record, Up
from harness.report.run import judged_run
from harness.supervisor.core import PriestProc
from harness.supervisor.decrees import DecreeWatch, parse_foreign_decree
from harness.supervisor.foreign import (
    ForeignHandle,
    ForeignLauncher,
    Output,
    ProgramError,
    config_for,
    find_program,
)
from harness.supervisor.garbage import escaped, inputs, send_garbage
from harness.supervisor.garbage import outcome as garbage_outcome
from harness.supervisor.state import record_event
from harness.supervisor.watch import PromiseWatch
from harness.supervisor.wipe import wipe_data_dir
from node.config import parse_config
from node.errors import ConfigError

NAMES = ["l1", "l2", "l3"]


def raw(**top: object) -> dict[str, object]:
    return {"data_dir": "data", "command": ["./p", "{config}", "{name}"],
            "priests": {n: {"port": 7000 + i} for i, n in enumerate(NAMES, 1)}, **top}


def config_in(tmp_path: Path, **top: object):
    return parse_config(raw(data_dir=str(tmp_path / "data"), **top), str(tmp_path / "c.yaml"))


# --- config ---------------------------------------------------------------------------


def test_a_command_makes_every_priest_foreign_with_the_defaults(tmp_path: Path) -> None:
    c = config_in(tmp_path)
    assert c.foreign_names == NAMES and c.is_foreign("l1")
    assert c.priests["l1"].command == (str(tmp_path / "p"), "{config}", "{name}")  # from the file
    assert (c.foreign.config_format, c.foreign.transport, c.foreign.stop_signal,
            c.foreign.ready_timeout, c.foreign.tty) == ("yaml", "udp", signal.SIGTERM, 5.0, False)
    assert c.network == "relay"


def test_a_priest_of_its_own_and_the_rest_foreign(tmp_path: Path) -> None:
    r = raw()
    del r["command"]
    r["priests"]["l2"]["command"] = ["naive", "{port}"]  # type: ignore[index]
    c = parse_config(r, "c.yaml")
    assert c.foreign_names == ["l2"] and c.priests["l2"].command == ("naive", "{port}")


def test_tcp_means_no_relay(tmp_path: Path) -> None:
    c = parse_config(raw(transport="tcp", stop_signal="int"), "c.yaml")
    assert c.network == "direct" and c.foreign.stop_signal == signal.SIGINT


@pytest.mark.parametrize(("top", "key", "message"), [
    ({"command": "naive {config}"}, "command", "must be a list"),
    ({"command": []}, "command", "non-empty list of strings"),
    ({"command": ["p", "{conf}"]}, "command", "unknown placeholder {conf}"),
    ({"command": ["p", "{"]}, "command", "literal brace"),
    ({"command": ["p", "{port:d}"]}, "command", "a placeholder is a bare {port}"),
    ({"command": ["p", "{name!x}"]}, "command", "a placeholder is a bare {name}"),
    ({"config_format": "toml"}, "config_format", "yaml, legislators-json"),
    ({"transport": "quic"}, "transport", "udp, tcp"),
    ({"transport": "tcp", "network": "relay"}, "network", "UDP datagrams only"),
    ({"stop_signal": "SIGSTOP"}, "stop_signal", "must be one of"),
    ({"ready_timeout": 0}, "ready_timeout", "0.1-600"),
    ({"tty": "yes"}, "tty", "true or false"),
])
def test_bad_foreign_keys_name_the_key(top: dict[str, object], key: str, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_config(raw(**top), "c.yaml")
    assert e.value.key == key and message in str(e.value)


def test_foreign_keys_without_a_command_are_refused() -> None:
    r = raw(tty=True)
    del r["command"]
    with pytest.raises(ConfigError, match="applies to foreign priests only"):
        parse_config(r, "c.yaml")


# --- the config written for it, and its program ---------------------------------------------


def test_legislators_json_gives_its_own_entry_the_private_port(tmp_path: Path) -> None:
    c = config_in(tmp_path, config_format="legislators-json")
    doc = json.loads(config_for(c, "l2", 50002))
    assert doc == {"legislators": [{"ip": "127.0.0.1", "port": 7001, "name": "l1"},
                                   {"ip": "127.0.0.1", "port": 50002, "name": "l2"},
                                   {"ip": "127.0.0.1", "port": 7003, "name": "l3"}]}


def test_the_yaml_written_for_it_reads_back_as_a_cluster_config(tmp_path: Path) -> None:
    c = config_in(tmp_path)
    text = config_for(c, "l1", 50001)
    doc = yaml.safe_load(text)
    assert doc["priests"]["l1"] == {"host": "127.0.0.1", "port": 50001}
    assert parse_config(doc, "x.yaml").priests["l3"].port == 7003


def test_a_program_that_cannot_run_says_why(tmp_path: Path) -> None:
    script = tmp_path / "p"
    script.write_text("#!/bin/sh\n")
    with pytest.raises(ProgramError, match="not executable"):
        find_program(str(script), "c.yaml")
    with pytest.raises(ProgramError, match="no such program"):
        find_program(str(tmp_path / "q"), "c.yaml")
    with pytest.raises(ProgramError, match="on PATH"):
        find_program("no-such-program-anywhere", "c.yaml")
    script.chmod(0o700)
    assert find_program(str(script), "c.yaml") == str(script)


def test_a_start_that_fails_after_the_fork_leaves_nothing(tmp_path: Path, monkeypatch,
                                                          no_leaks) -> None:
    c = parse_config({"data_dir": str(tmp_path / "data"), "network": "direct",
                      "command": ["/bin/sleep", "30"], "priests": {"l1": {"port": 7001}}},
                     str(tmp_path / "c.yaml"))
    launcher = ForeignLauncher(c, out=None, color=False)

    real = os.pidfd_open

    def no_pidfd(pid: int, flags: int = 0) -> int:
        if pid == os.getpid():  # psutil asks whether pidfds work at all
            return real(pid, flags)
        raise OSError(errno.EMFILE, "Too many open files")
    monkeypatch.setattr(os, "pidfd_open", no_pidfd)
    started, failed = launcher.spawn(["l1"])
    assert started == {} and "Too many open files" in failed["l1"]
    assert launcher.waitables() == []  # its output's descriptor closed too


def test_an_output_that_ended_early_does_not_take_a_later_one_with_it(tmp_path: Path) -> None:
    """l1 closes its output, and a later priest's output gets the same descriptor number;
    l1's end must not stop the launcher from reading the later one."""
    c = config_in(tmp_path)
    launcher = ForeignLauncher(c, out=None, color=False)
    log = os.open(tmp_path / "log", os.O_WRONLY | os.O_CREAT)
    r, w = os.pipe()
    first = Output("l1", 1, r, os.dup(log), None, False)
    launcher.outputs[r] = first
    os.close(w)
    launcher.pump([r])  # its end of output: closed, forgotten
    assert launcher.waitables() == []
    r2, w2 = os.pipe()
    if r2 != r:  # the next output, on the number just freed
        os.dup2(r2, r)
        os.close(r2)
    later = Output("l2", 2, r, os.dup(log), None, False)
    launcher.outputs[r] = later
    true = subprocess.Popen(["true"])
    proc = PriestProc("l1", true.pid, 0.0, ForeignHandle(true, os.pidfd_open(true.pid), first))
    assert launcher.wait([proc], 5.0) == {"l1": 0}
    assert launcher.waitables() == [r]
    os.close(w2)
    launcher.pump([r])
    os.close(log)
    assert launcher.waitables() == [] and not later.open


# --- the decree watch --------------------------------------------------------------------


@pytest.mark.parametrize(("data", "value"), [
    (b"7", 7), (b"-3\n", -3), (b"12\r\n", 12), (b"", None), (b"1 2", None), (b"x", None),
    (b"1\n\n", None), (b"9" * 30, None),
])
def test_a_foreign_decree_is_an_int_with_or_without_a_newline(data: bytes, value: int | None) -> None:
    assert parse_foreign_decree(data) == value


def test_the_watch_records_each_appearance_change_and_disappearance(tmp_path: Path) -> None:
    got: list[Record] = []
    watch = DecreeWatch(tmp_path, ["l1"], got.append)
    path = tmp_path / "l1" / "decree.txt"
    path.parent.mkdir()
    watch.poll()
    assert got == []  # absent from the start: nothing to say
    for text in ("5", "5", "", "6", "6\n"):
        path.write_text(text)
        watch.poll()
    path.unlink()
    watch.poll()
    seen = [(r.present, r.value, r.text) for r in got if isinstance(r, DecreeSeen)]
    assert seen == [(True, 5, None), (True, None, ""), (True, 6, None), (False, None, None)]


# --- garbage -----------------------------------------------------------------------------


def test_garbage_covers_every_sort_and_is_seeded() -> None:
    first = inputs(10, NAMES, random.Random(3))
    assert len({i.kind for i in first}) == 10
    assert first == inputs(10, NAMES, random.Random(3))
    assert all(len(i.data) < 65000 for i in first)  # each fits one datagram
    assert escaped(b"\x00ab\r\n" * 40).endswith("...") and len(escaped(b"a" * 500)) == 80


# --- verify, from what the supervisor saw ---------------------------------------------------


def judge(tmp_path: Path, records: list[Record], files: dict[str, str], alive=None):
    c = config_in(tmp_path)
    for name in NAMES:
        (c.data_dir / name).mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (c.data_dir / name / "decree.txt").write_text(text)
    for r in records:
        record_event(c.data_dir, r)
    return check(c, load_history(c), alive)


def seen(t: int, priest: str, value: int | None, present: bool = True, text: str | None = None):
    return DecreeSeen(t=t, priest=priest, present=present, value=value, text=text)


UP = Up(t=1, cluster="c", priests=tuple(NAMES), supervisor=9, detached=True)


def test_foreign_priests_that_agree_pass_and_say_what_was_not_checked(tmp_path: Path) -> None:
    v = judge(tmp_path, [UP, seen(10, "l1", 7), seen(11, "l2", 7), seen(12, "l3", 7)],
              dict.fromkeys(NAMES, "7"))
    assert v.exit_status == 0 and v.decree == 7
    assert v.unchecked is not None and v.unchecked.priests == tuple(NAMES)
    assert "promise_broken" in v.unchecked.rules and "disagreement" not in v.unchecked.rules
    assert not v.problems  # no events.jsonl is expected of them


def test_a_decree_seen_changing_or_vanishing_is_caught(tmp_path: Path) -> None:
    v = judge(tmp_path, [UP, seen(10, "l1", 7), seen(20, "l1", 8), seen(11, "l2", 7),
                         seen(30, "l2", None, present=False), seen(12, "l3", 8)],
              {"l1": "8", "l3": "8"})
    kinds = sorted(x.kind for x in v.violations)
    assert kinds == ["decree_changed", "decree_lost", "learned_different"]
    changed = next(x for x in v.violations if x.kind == "decree_changed")
    assert changed.priests == ("l1",) and changed.decrees == (7, 8)


def test_a_decree_seen_empty_is_a_torn_write(tmp_path: Path) -> None:
    v = judge(tmp_path, [UP, seen(10, "l1", None, text=""), seen(11, "l1", 7)], {"l1": "7"},
              alive={"l1"})
    (bad,) = v.violations
    assert bad.kind == "malformed_decree" and "not atomic" in bad.message


def test_a_priest_that_dies_after_garbage_crashed_on_input(tmp_path: Path) -> None:
    sent = Garbage(t=10, priest="l2", transport="udp", port=7002,
                   inputs=[{"t": 10, "kind": "cut short", "data": "Next"},
                           {"t": 12, "kind": "empty", "data": ""}], died_after=None)
    v = judge(tmp_path, [UP, PriestStarted(t=2, priest="l2", pid=5), sent,
                         PriestExited(t=13, priest="l2", pid=5, status=-11)], {})
    (crash,) = v.violations
    assert crash.kind == "crashed_on_input"
    assert "killed by signal SIGSEGV" in crash.message and "input 2 of 2 (empty" in crash.message


def test_a_priest_that_survived_garbage_and_died_much_later_did_not_crash_of_it(
        tmp_path: Path) -> None:
    sent = Garbage(t=10, priest="l2", transport="udp", port=7002,
                   inputs=[{"t": 10, "kind": "empty", "data": ""}], died_after=None)
    later = PriestExited(t=10 + 30 * 10**9, priest="l2", pid=5, status=-9)  # kill -9, by hand
    v = judge(tmp_path, [UP, PriestStarted(t=2, priest="l2", pid=5), sent, later], {})
    assert not v.violations


def test_a_priest_the_harness_stopped_after_garbage_did_not_crash(tmp_path: Path) -> None:
    sent = Garbage(t=10, priest="l2", transport="udp", port=7002, inputs=[], died_after=None)
    v = judge(tmp_path, [UP, sent, PriestExited(t=13, priest="l2", pid=5, status=0,
                                                by_harness=True)], {})
    assert not v.violations


# --- --fresh -----------------------------------------------------------------------------------


def test_fresh_removes_what_foreign_runs_created_only(tmp_path: Path) -> None:
    c = config_in(tmp_path)
    (c.data_dir / "l1" / "sub").mkdir(parents=True)
    for rel in ("l1/decree.txt", "l1/sub/x"):
        (c.data_dir / rel).write_text("1")
    record_event(c.data_dir, PriestFiles(t=1, priest="l1", created=("l1/decree.txt", "l1/sub",
                                                                    "l1/sub/x")))
    (c.data_dir / "l2").mkdir()
    (c.data_dir / "l2" / "mine.txt").write_text("keep")
    with pytest.raises(UsageError, match=r"mine\.txt: no run of foreign priest l2 created it"):
        wipe_data_dir(c)
    assert (c.data_dir / "l1" / "sub" / "x").exists()  # nothing removed
    (c.data_dir / "l2" / "mine.txt").unlink()
    wipe_data_dir(c)
    assert not (c.data_dir / "l1").exists() and not (c.data_dir / "l2").exists()


def test_diagram_and_report_say_why_foreign_priests_have_nothing_to_draw(tmp_path: Path) -> None:
    c = config_in(tmp_path)
    c.data_dir.mkdir(parents=True)
    record_event(c.data_dir, UP)
    with pytest.raises(RunFilesError, match="priests are foreign programs: they write no events"
                       r".*holds no network\.jsonl"):
        judged_run(c, None)


def test_the_nemesis_never_arms_a_kill_after_promise_on_foreign_priests() -> None:
    names = ["a", "b", "c", "d", "e"]
    for seed in range(40):
        plan = plan_random(names, seed, 5.0, 4.0, faults=("process", "network"), watchable=False)
        assert "kill-after-promise" not in {s.action for s in plan.steps}
    drawn = {s.action for seed in range(40) for s in plan_random(
        names, seed, 5.0, 4.0, faults=("process", "network")).steps}
    assert "kill-after-promise" in drawn  # the test above could fail


def test_kill_after_promise_is_refused_for_a_foreign_priest(tmp_path: Path) -> None:
    watch = PromiseWatch(lambda name: tmp_path / name / "events.jsonl", inotify=False,
                         foreign=["l1"])
    with pytest.raises(RefusedError, match=r"foreign program, which writes no events\.jsonl"):
        watch.arm("l1", 123)
    watch.arm("l2", 124)
    assert set(watch.armed) == {"l2"}
    watch.close()


def test_garbage_stops_at_its_time_budget_and_sends_nothing_to_the_dead(tmp_path: Path) -> None:
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    child = subprocess.Popen(["sleep", "30"])
    try:
        record = send_garbage("l1", child.pid, sink.getsockname(), "udp", 500, NAMES, seed=5,
                              watch=0.001, budget=0.05)
        assert 1 <= len(record.inputs) < 500 and record.died_after is None
        assert record.note is not None and record.note.startswith(f"stopped after {len(record.inputs)} of 500")
        assert "it is still running" in garbage_outcome(record) and "(seed 5)" in garbage_outcome(record)
        child.kill()
        os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # ended, not yet reaped
        late = send_garbage("l1", child.pid, sink.getsockname(), "udp", 5, NAMES, seed=5)
        assert late.inputs == [] and late.note == "it had already ended: nothing was sent"
    finally:
        child.kill()
        child.wait()
        sink.close()


def test_fresh_refuses_while_a_process_runs_in_the_data_dir(tmp_path: Path) -> None:
    c = config_in(tmp_path)
    c.data_dir.mkdir(parents=True)
    child = subprocess.Popen(["sleep", "30"], cwd=c.data_dir)
    try:
        with pytest.raises(UsageError, match=rf"a process runs in it \(sleep, pid {child.pid}\)"):
            wipe_data_dir(c)
    finally:
        child.kill()
        child.wait()
    wipe_data_dir(c)  # once it is gone
