"""The CLI, run state and control channel in-process: parsing, errors, exit statuses, files.

Nothing here starts a priest; the real processes are in tests/integration.
"""

from __future__ import annotations

import importlib
import json
import os
import socket
import threading
from pathlib import Path

import pytest

from harness import cli
from harness.chaos.plan import ScheduleError
from harness.errors import (
    CODES,
    ControlError,
    NotUpError,
    RefusedError,
    UsageError,
    UserError,
    from_wire,
    to_wire,
)
from harness.supervisor import cluster, control
from harness.supervisor.state import (
    CURRENT,
    Identity,
    RunState,
    create_state,
    read_state,
    resolve_config,
    socket_path,
    write_current,
)
from harness.supervisor.wipe import SUPERVISOR_LOG_HEADER
from harness.verbs import VERBS
from harness.verbs import status as status_verb
from node.config import load_config
from node.ledger import HEADER, Ledger
from node.messages import Ballot, LedgerState, Vote
from tests.conftest import write_config


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NO_COLOR", "1")
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def a_state(config_path: Path, supervisor: Identity) -> RunState:
    config = load_config(config_path)
    return RunState(config.cluster, str(config_path), str(config.data_dir), supervisor,
                    str(config.data_dir / "control.sock"))


def test_version_and_help_of_every_verb(here: Path, capsys) -> None:
    status, out, _ = run(capsys, "--version")
    assert status == 0 and out.startswith("paxos-harness ")
    for verb in VERBS:
        func = importlib.import_module(f"harness.verbs.{verb}").run
        status, out, _ = run(capsys, verb, "--help")
        assert status == 0
        assert " ".join(func.__doc__.splitlines()[0].split()) in " ".join(out.split())  # the docstring is the help


def test_a_usage_error_is_exit_2(here: Path, capsys) -> None:
    status, _, err = run(capsys, "up")
    assert status == 2 and "CONFIG" in err


@pytest.mark.parametrize("text, words", [
    ("priests:\n  alpha: {port: 0}\n", "priests.alpha.port"),
    ("priests: {}\nextra: 1\n", "extra"),
])
def test_a_bad_config_is_one_line_on_stderr_with_exit_2(here: Path, capsys, text, words) -> None:
    (here / "bad.yaml").write_text(text)
    status, out, err = run(capsys, "up", "bad.yaml", "--detach")
    assert status == 2 and out == ""
    assert err.startswith("paxos-harness: error: bad.yaml: ") and words in err
    assert err.count("\n") == 1
    assert not (here / "logs").exists()


def test_only_keeps_config_order_and_names_unknown_priests(here: Path) -> None:
    config = load_config(write_config(here, 4))
    assert cluster.select_priests(config, "gamma, alpha") == ["alpha", "gamma"]
    assert cluster.select_priests(config, None) == ["alpha", "beta", "gamma", "delta"]
    with pytest.raises(UsageError, match=r"'omega'.*known: alpha, beta, gamma, delta"):
        cluster.select_priests(config, "alpha,omega")
    with pytest.raises(UsageError, match="at least one"):
        cluster.select_priests(config, " , ")


def test_status_and_down_with_nothing_brought_up_here(here: Path, capsys) -> None:
    status, _, err = run(capsys, "status")
    assert status == 1 and "no cluster has been brought up from this directory" in err
    # `down` is harmless when nothing is up, even without CONFIG or logs/current.json.
    status, out, err = run(capsys, "down")
    assert status == 0 and "nothing is up here" in out and err == ""


def test_status_of_a_cluster_that_is_down_shows_the_files_and_exits_1(here: Path, capsys) -> None:
    path = write_config(here, 3)
    config = load_config(path)
    with Ledger.open(config.priest_dir("beta")) as ledger:
        ledger.persist(LedgerState(Ballot(2, "alpha"), Ballot(3, "gamma"),
                                   Vote(Ballot(2, "alpha"), 7)))
        ledger.write_decree(7)
    config.priest_dir("gamma").mkdir(parents=True)
    (config.priest_dir("gamma") / "ledger.log").write_text("garbage\n")
    status, out, _ = run(capsys, "status", str(path))
    assert status == 1 and "is not up" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines()[2:5]}
    assert rows["alpha"] == ["alpha", "-", "down", "-", "-"]
    assert rows["beta"] == ["beta", "-", "down", "7", "3.gamma"]
    assert "ledger.log" in out.splitlines()[-1]  # gamma's unreadable ledger is named
    status, out, _ = run(capsys, "status", str(path), "--json")
    report = json.loads(out)
    assert status == 1 and report["up"] is False and report["priests"][1]["decree"] == 7


def test_down_of_a_cluster_that_is_down_is_exit_0(here: Path, capsys) -> None:
    path = write_config(here, 2)
    status, out, _ = run(capsys, "down", str(path))
    assert status == 0 and "not up; nothing to stop" in out


def test_up_is_refused_while_a_live_supervisor_owns_the_data_dir(here: Path, capsys) -> None:
    path = write_config(here, 2)
    state = a_state(path, Identity.of(os.getpid()))  # this very process: alive
    Path(state.data_dir).mkdir(parents=True)
    create_state(state)
    status, _, err = run(capsys, "up", str(path), "--detach")
    assert status == 1 and "already up" in err and "paxos-harness down" in err
    assert read_state(Path(state.data_dir)) == state


def test_stale_state_of_a_dead_supervisor_is_cleared_by_down(here: Path, capsys) -> None:
    path = write_config(here, 2)
    me = Identity.of(os.getpid())
    # Our own pid with another start time: a recycled pid, so that supervisor is gone.
    state = a_state(path, Identity(me.pid, me.create_time - 100))
    Path(state.data_dir).mkdir(parents=True)
    create_state(state)
    status, out, _ = run(capsys, "status", str(path))
    assert status == 1 and "died" in out
    status, out, _ = run(capsys, "down", str(path))
    assert status == 0 and "cleared the run state" in out
    assert read_state(Path(state.data_dir)) is None


def test_an_unexpected_exception_is_one_line_saying_bug_and_where_the_traceback_is(
        here: Path, capsys, monkeypatch) -> None:
    def broken(_args: object) -> int:
        """Show the status."""
        raise ZeroDivisionError("oops")
    monkeypatch.setattr(status_verb, "run", broken)
    status, _, err = run(capsys, "status")
    assert status == 70 and err.count("\n") == 1 and "this is a bug" in err
    trace = Path(err.rstrip().rsplit("traceback in ", 1)[1])
    try:
        assert "ZeroDivisionError: oops" in trace.read_text()
    finally:
        trace.unlink()


def a_priest_dir(directory: Path) -> None:
    """What a priest leaves in its directory, contents and all (and a crash's temp file)."""
    name = directory.name
    directory.mkdir(parents=True)
    files = {"decree.txt": "1001\n",
             "ledger.log": HEADER + "v1 last_tried=1.alpha next_bal=1.alpha prev_vote=none "
                                    "crc=00000000\n",
             "priest.log": f"{name:>8} | 12:00:00.000 begins ballot 1.{name}\n"
                           f"{name:>8} | 12:00:00.001 votes",  # torn by a crash
             "events.jsonl": f'{{"t":1,"priest":"{name}","pid":7,"kind":"started"}}\n{{"t":',
             "priest.lock": "4242\n",
             "ledger.log.tmpab12cd": HEADER[:9]}
    for file, text in files.items():
        (directory / file).write_text(text)


def run_files(directory: Path) -> None:
    """What the harness leaves in a data dir."""
    (directory / "harness.jsonl").write_text('{"t": 1, "kind": "up"}\n{"t": 2, "kind": "down"}\n')
    (directory / "supervisor.log").write_text(SUPERVISOR_LOG_HEADER + "anything at all\n")


def test_fresh_removes_only_what_the_harness_wrote(here: Path) -> None:
    victim = here / "victim"
    (victim / "photos").mkdir(parents=True)
    (victim / "photos" / "cat.jpg").write_text("meow")
    (victim / "notes.txt").write_text("keep me")
    (victim / "harness.jsonl.bak").write_text("mine")
    (victim / "ledger.log").write_text("not in a priest's directory: not ours")
    a_priest_dir(victim / "alpha")
    run_files(victim)
    (victim / "cluster.key").write_text("secret\n")
    (here / "c.yaml").write_text(f"data_dir: {victim}\npriests:\n  alpha: {{port: 7001}}\n"
                                 f"  beta: {{port: 7002}}\n")
    cluster.wipe_data_dir(load_config("c.yaml"))
    assert sorted(p.name for p in victim.iterdir()) == [
        "cluster.key", "harness.jsonl.bak", "ledger.log", "notes.txt", "photos"]
    assert (victim / "photos" / "cat.jpg").read_text() == "meow"


def test_fresh_refuses_a_priest_dir_holding_anything_else_and_removes_nothing(
        here: Path, capsys) -> None:
    (here / "c.yaml").write_text("data_dir: .\npriests:\n  alpha: {port: 7001}\n"
                                 "  beta: {port: 7002}\n")
    a_priest_dir(here / "alpha")
    a_priest_dir(here / "beta")
    (here / "beta" / "thesis.tex").write_text("years of work")
    run_files(here)
    before = sorted(str(p) for p in here.rglob("*"))
    status, out, err = run(capsys, "up", "c.yaml", "--fresh", "--detach")
    assert status == 2 and out == "" and err.count("\n") == 1
    assert "beta" in err and "thesis.tex" in err and "refusing to remove" in err
    assert sorted(str(p) for p in here.rglob("*")) == before


USERS_FILES = {  # a file of the user's under a name the harness uses: path -> contents
    "supervisor.log": "my notes on the run\n",
    "harness.jsonl": '{"t": 1, "kind": "up"}\nmy own line\n',
    "beta/priest.log": "    beta | 12:00:00.000 begins\nthe day I ran it\n",
    "beta/events.jsonl": '{"t":1,"priest":"alpha","pid":7,"kind":"started"}\n',  # not beta's
    "beta/ledger.log": "v1 last_tried=1.beta\n",  # no header
    "beta/decree.txt": "1001 (the answer)\n",
    "beta/priest.lock": "mine\n",
    "beta/ledger.log.tmp1234": "draft\n",
}


@pytest.mark.parametrize("file", sorted(USERS_FILES))
def test_fresh_refuses_a_users_file_under_a_name_the_harness_uses(here: Path,
                                                                   file: str) -> None:
    (here / "c.yaml").write_text("data_dir: .\npriests:\n  alpha: {port: 7001}\n"
                                 "  beta: {port: 7002}\n")
    a_priest_dir(here / "alpha")
    a_priest_dir(here / "beta")
    run_files(here)
    (here / file).write_text(USERS_FILES[file])
    before = {str(p): p.read_bytes() for p in here.rglob("*") if p.is_file()}
    with pytest.raises(UsageError) as refused:  # the wipe alone: nothing could start here
        cluster.wipe_data_dir(load_config("c.yaml"))
    err = str(refused.value)
    assert "\n" not in err and file in err, err
    assert "refusing to remove" in err and "nothing was removed" in err, err
    assert {str(p): p.read_bytes() for p in here.rglob("*") if p.is_file()} == before


def test_fresh_refuses_while_a_priest_started_by_hand_holds_its_directory(here: Path) -> None:
    import fcntl
    import os

    (here / "c.yaml").write_text("data_dir: .\npriests:\n  alpha: {port: 7001}\n")
    a_priest_dir(here / "alpha")
    fd = os.open(here / "alpha" / "priest.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(UsageError, match="a priest is running on it"):
            cluster.wipe_data_dir(load_config("c.yaml"))
    finally:
        os.close(fd)
    assert (here / "alpha" / "ledger.log").exists()


def test_fresh_refuses_a_priest_name_that_is_a_file(here: Path) -> None:
    (here / "c.yaml").write_text("data_dir: .\npriests:\n  alpha: {port: 7001}\n")
    (here / "alpha").write_text("a file called alpha")
    with pytest.raises(UsageError, match="alpha: it is not a priest's directory"):
        cluster.wipe_data_dir(load_config("c.yaml"))
    assert (here / "alpha").read_text() == "a file called alpha"


# --- files in the way: one line naming the file, never "internal error" ---------


def one_line(err: str, *words: str) -> bool:
    return (err.count("\n") == 1 and err.startswith("paxos-harness: error: ")
            and "internal error" not in err and all(w in err for w in words))


@pytest.mark.parametrize("argv", [["up", "c.yaml", "--detach"], ["up", "c.yaml"],
                                  ["status", "c.yaml"], ["down", "c.yaml"],
                                  ["chaos", "c.yaml", "--kill", "alpha"],
                                  ["chaos", "c.yaml", "--random", "--dry-run"],
                                  ["verify", "c.yaml"]])
def test_a_data_dir_that_is_a_file(here: Path, capsys, argv: list[str]) -> None:
    (here / "c.yaml").write_text("data_dir: data\npriests:\n  alpha: {port: 7001}\n")
    (here / "data").write_text("a file")
    status, _, err = run(capsys, *argv)
    assert status in (1, 2) and one_line(err, "data", "not a directory"), err


@pytest.mark.parametrize("as_json", [False, True])
def test_verify_names_a_priest_directory_that_is_a_file(here: Path, capsys,
                                                        as_json: bool) -> None:
    (here / "c.yaml").write_text("data_dir: data\npriests:\n  alpha: {port: 7001}\n"
                                 "  beta: {port: 7002}\n")
    (here / "data" / "alpha").mkdir(parents=True)
    (here / "data" / "beta").write_text("a file where beta's directory belongs")
    argv = ["verify", "c.yaml", "--json"] if as_json else ["verify", "c.yaml"]
    status, out, err = run(capsys, *argv)
    assert status == 2 and out == "" and one_line(err, "data/beta", "not a directory"), err


def test_logs_that_is_a_file(here: Path, capsys) -> None:
    path = write_config(here, 2)
    (here / "logs").write_text("a file")
    status, _, err = run(capsys, "up", str(path), "--detach")
    assert status in (1, 2) and one_line(err, "logs"), err
    assert not (here / "data").exists()  # refused before anything started
    status, _, err = run(capsys, "status")
    assert status in (1, 2) and one_line(err, "logs/current.json"), err


@pytest.mark.parametrize("text", ['{"config": 5, "data_dir": "d"}',
                                  '{"config": "c.yaml", "data_dir": null}',
                                  '{"config": "c.yaml"}', "[1, 2]", "not json {", "\xff"])
def test_a_hand_edited_current_json_names_the_file_and_the_fix(here: Path, capsys,
                                                                text: str) -> None:
    write_config(here, 2)
    (here / "logs").mkdir()
    (here / "logs" / "current.json").write_text(text, encoding="latin-1")
    for verb in ("status", "down", "verify", "chaos"):
        argv = [verb, "--kill", "alpha"] if verb == "chaos" else [verb]
        status, _, err = run(capsys, *argv)
        assert status == 2 and one_line(err, "logs/current.json", "pass CONFIG", "delete"), err


@pytest.mark.parametrize("argv, words", [
    (["verify", "--wait", "nan"], "a number of seconds >= 0"),
    (["verify", "--wait", "-5"], "a number of seconds >= 0"),
    (["verify", "--wait", "inf"], "a number of seconds >= 0"),
    (["verify", "--wait", "soon"], "not a number of seconds"),
    (["chaos", "--random", "--rate", "-1"], "a number of actions per second > 0"),
    (["chaos", "--random", "--rate", "nan"], "a number of actions per second > 0"),
    (["chaos", "--random", "--duration", "0"], "a number of seconds > 0"),
    (["chaos", "--sleep", "-0.5", "--kill", "alpha"], "a number of seconds >= 0"),
])
def test_float_options_are_checked_by_the_parser(here: Path, capsys, argv, words) -> None:
    status, out, err = run(capsys, *argv)
    assert status == 2 and out == "" and words in err, err


def test_an_os_error_naming_a_file_is_one_line_not_a_bug(here: Path, capsys,
                                                          monkeypatch) -> None:
    def denied(_args: object) -> int:
        """Show the status."""
        raise PermissionError(13, "Permission denied", "data/alpha/ledger.log")
    monkeypatch.setattr(status_verb, "run", denied)
    status, _, err = run(capsys, "status")
    assert status == 1 and one_line(err, "data/alpha/ledger.log", "Permission denied")


def test_run_state_is_created_exclusively_and_round_trips(here: Path) -> None:
    path = write_config(here, 2)
    state = a_state(path, Identity(4242, 12.5))
    state.priests = {"alpha": Identity(4243, 13.0)}
    Path(state.data_dir).mkdir(parents=True)
    create_state(state)
    with pytest.raises(FileExistsError):
        create_state(state)
    assert read_state(Path(state.data_dir)) == state
    raw = json.loads((Path(state.data_dir) / "supervisor.json").read_text())
    assert raw["version"] == 1


def test_identity_tells_a_recycled_pid_from_the_process(here: Path) -> None:
    me = Identity.of(os.getpid())
    assert me.alive()
    assert not Identity(me.pid, me.create_time + 1).alive()


def test_the_socket_path_fits_sun_path_even_for_a_deep_data_dir(here: Path) -> None:
    short = Path("/tmp/d")
    assert socket_path(short) == Path("/tmp/d/control.sock")
    deep = here / ("x" * 60) / ("y" * 60)
    path = socket_path(deep)
    assert len(os.fsencode(path)) <= 107 and path != socket_path(here / "other")
    assert oct(path.parent.stat().st_mode & 0o777) == "0o700"


def test_commands_without_config_act_on_the_cluster_recorded_here(here: Path) -> None:
    (here / "rel.yaml").write_text("data_dir: somewhere\npriests:\n  alpha: {port: 7001}\n")
    write_current(load_config("rel.yaml"))
    assert json.loads(CURRENT.read_text())["cluster"] == "rel"
    config = resolve_config(None)
    assert config.cluster == "rel" and config.data_dir == here / "somewhere"


# --- the control channel over a real socket, answered by a thread -----------------


def serve_once(path: Path, answer: dict) -> threading.Thread:
    server = control.ControlServer(path)
    seen: list[dict] = []

    def loop() -> None:
        import select
        got: list = []
        while not got:
            select.select(server.waitables(), [], [], 5)
            got = server.poll()
        seen.append(got[0][1])
        server.reply(got[0][0], answer)
        server.close()

    t = threading.Thread(target=loop)
    t.seen = seen  # type: ignore[attr-defined]
    t.start()
    return t


def test_a_request_gets_its_answer(tmp_path: Path) -> None:
    path = tmp_path / "c.sock"
    t = serve_once(path, {"ok": True, "result": {"outcome": "paused (SIGSTOP)"}})
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert control.request(path, "pause", "beta") == {"outcome": "paused (SIGSTOP)"}
    t.join()
    assert t.seen == [{"op": "pause", "priest": "beta"}]  # type: ignore[attr-defined]


@pytest.mark.parametrize("code, error", sorted(CODES.items()))
def test_an_error_code_becomes_the_same_class_again(tmp_path: Path, code: str,
                                                   error: type[UserError]) -> None:
    t = serve_once(tmp_path / "c.sock", {"ok": False, "error": "no", "code": code})
    with pytest.raises(error, match=r"^no$") as e:
        control.request(tmp_path / "c.sock", "kill", "delta")
    t.join()
    assert type(e.value) is error and e.value.exit_status == error.exit_status


def test_every_error_class_has_its_own_code() -> None:
    import harness.errors
    import node.errors

    classes = {c for module in (harness.errors, node.errors) for c in vars(module).values()
               if isinstance(c, type) and issubclass(c, UserError)}
    assert classes == set(CODES.values())  # a new class without a code would lose its type


def test_every_error_of_the_harness_round_trips_through_its_code() -> None:
    for code, cls in CODES.items():
        sent = from_wire({"ok": False, "code": code, "error": f"{code} happened", "pid": 9})
        assert type(sent) is cls
        answer = json.loads(json.dumps(to_wire(sent)))
        assert answer["code"] == code
        back = from_wire(answer)
        assert type(back) is cls and str(back) == f"{code} happened"
    # A subclass the table does not name travels as its nearest named ancestor.
    assert to_wire(ScheduleError("s.yaml", 1, "at", "bad"))["code"] == "usage"
    # An answer with an unknown code (another version's supervisor) is a ControlError.
    assert type(from_wire({"ok": False, "code": "martian", "error": "?"})) is ControlError


def test_a_malformed_request_is_answered_with_an_error(tmp_path: Path) -> None:
    server = control.ControlServer(tmp_path / "c.sock")
    with socket.socket(socket.AF_UNIX) as client:
        client.connect(str(tmp_path / "c.sock"))
        client.sendall(b'{"op": "explode"}\n')
        assert server.poll() == []
        reply = json.loads(client.recv(4096))
    server.close()
    assert reply["ok"] is False and "unknown request" in reply["error"]


def test_a_silent_client_does_not_hold_up_the_others(tmp_path: Path) -> None:
    server = control.ControlServer(tmp_path / "c.sock", request_timeout=60)
    with socket.socket(socket.AF_UNIX) as silent, socket.socket(socket.AF_UNIX) as slow, \
            socket.socket(socket.AF_UNIX) as prompt:
        silent.connect(str(tmp_path / "c.sock"))
        slow.connect(str(tmp_path / "c.sock"))
        slow.sendall(b'{"op": "sta')  # half a request: the rest comes later
        prompt.connect(str(tmp_path / "c.sock"))
        prompt.sendall(b'{"op": "status"}\n')
        got = server.poll()  # returns at once: nothing waits for the silent one
        assert [req for _, req in got] == [{"op": "status"}]
        assert prompt.recv(16) == control.ACK  # taken: the answer may take its time
        server.reply(got[0][0], {"ok": True, "result": {}})
        assert len(server.clients) == 2
        slow.sendall(b'tus"}\n')
        assert [req for _, req in server.poll()] == [{"op": "status"}]
        server.request_timeout = 0  # the silent one's time is up: answered and dropped
        for client in server.clients.values():
            client.deadline = 0
        assert server.poll() == [] and not server.clients
        assert b"no complete request" in silent.recv(4096)
    server.close()


def test_a_supervisor_that_takes_no_request_is_a_control_error(tmp_path: Path) -> None:
    # A listening socket nobody accepts from: what a SIGSTOPped supervisor looks like.
    with socket.socket(socket.AF_UNIX) as frozen:
        frozen.bind(str(tmp_path / "c.sock"))
        frozen.listen(1)
        with pytest.raises(ControlError, match=r"did not take the request within 0\.2 s"):
            control.request(tmp_path / "c.sock", "down", ack_timeout=0.2)


def test_a_request_once_taken_may_take_longer_than_the_ack_timeout(tmp_path: Path) -> None:
    server = control.ControlServer(tmp_path / "c.sock")
    done = threading.Event()

    def slow_answer() -> None:
        import select
        got: list = []
        while not got:
            select.select(server.waitables(), [], [], 5)
            got = server.poll()
        done.wait(0.5)  # longer than the client's ack timeout: a restart waiting for ready
        server.reply(got[0][0], {"ok": True, "result": {"outcome": "started"}})

    t = threading.Thread(target=slow_answer)
    t.start()
    try:
        assert control.request(tmp_path / "c.sock", "restart", "beta", ack_timeout=0.1,
                               timeout=10) == {"outcome": "started"}
    finally:
        done.set()
        t.join()
        server.close()


def test_a_refusal_carries_the_pid_it_names(tmp_path: Path) -> None:
    t = serve_once(tmp_path / "c.sock", {"ok": False, "error": "no (pid 7)", "code": "refused",
                                         "pid": 7})
    with pytest.raises(RefusedError) as e:
        control.request(tmp_path / "c.sock", "kill", "delta")
    t.join()
    assert e.value.pid == 7


def test_nobody_listening_is_not_up(tmp_path: Path) -> None:
    with pytest.raises(NotUpError):
        control.request(tmp_path / "none.sock", "status")
    with pytest.raises(ControlError, match="not JSON"):
        control.decode_request(b"{")


def test_verify_with_no_cluster_to_check_is_its_own_status_not_a_violation(here: Path,
                                                                           capsys) -> None:
    status, out, err = run(capsys, "verify")
    assert status == 5 and out == "" and err.count("\n") == 1 and "logs/current.json" in err
    status, out, _ = run(capsys, "verify", str(write_config(here, 3)))  # nothing ran here
    assert status == 5 and "NOTHING TO CHECK (exit 5)" in out
