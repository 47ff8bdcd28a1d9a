"""The harness under attack: racing commands, planted links, a deleted data dir, a full disk.

Every test runs the CLI as a user would (`python -m harness`, in its own
directory), with real processes and real signals on free ports; the `harness`
fixture fails it if any process survives.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from harness.supervisor import control

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def fds(pid: int, name: str = "") -> list[str]:
    """What each open descriptor of `pid` points at: a kind (pipe, socket) or a path.

    Paths in the priest `name`'s own directory read `<priest>/FILE`, so that two
    priests' descriptors compare equal.
    """
    found = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            continue  # closed while we looked
        kind = target.split(":[", 1)[0] if ":[" in target else target
        found.append(re.sub(f"/{name}(/|$)", r"/<priest>\1", kind) if name else kind)
    return sorted(found)


def running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# --- (12) a restarted priest holds no descriptor of its siblings ------------------


def test_a_restarted_priest_holds_what_a_first_started_one_holds(harness) -> None:
    config = harness.config(4)
    assert harness.run("up", str(config), "--detach").returncode == 0
    sock = harness.state()["socket"]
    assert control.request(sock, "kill", "delta")["outcome"].startswith("killed")
    restarted = control.request(sock, "restart", "delta")["pid"]
    harness.remember()
    first = harness.pids()["alpha"]
    # Same kinds of descriptor, as many: nothing of the supervisor's or the siblings'.
    assert fds(restarted, "delta") == fds(first, "alpha")
    pipes = [t for t in fds(restarted) if t == "pipe"]
    # Its own: the readiness pipe, and multiprocessing's two (parent alive, child alive).
    assert len(pipes) <= 3, pipes
    assert harness.run("down").returncode == 0


# --- (1, 11) racing `up`s: one wins, the others change nothing and say why --------


def start(harness, *args: str) -> subprocess.Popen[str]:
    """`python -m harness ARGS` in the test's directory, not waited for."""
    return subprocess.Popen([sys.executable, "-m", "harness", *args], cwd=harness.cwd,
                            env={**os.environ, "NO_COLOR": "1"}, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def deleted_files(pid: int) -> list[str]:
    """Files `pid` holds open that have been removed since it opened them."""
    return [t for t in fds(pid) if t.endswith(" (deleted)")]


@pytest.mark.parametrize("fresh", [["--fresh"], []], ids=["fresh", "plain"])
def test_racing_ups_one_wins_its_files_survive_each_loser_says_why(harness,
                                                                   fresh: list[str]) -> None:
    config = harness.config(3)
    racers = [start(harness, "up", str(config), "--detach", *fresh) for _ in range(6)]
    results = []
    for p in racers:
        out, err = p.communicate(timeout=90)
        results.append((p.returncode, out, err))
        harness.remember()
    winners = [r for r in results if r[0] == 0]
    assert len(winners) == 1, results
    for code, out, err in results:
        if code == 0:
            continue
        assert code == 1 and out == "" and err.count("\n") == 1, (code, out, err)
        assert "already up" in err or "another `paxos-harness up`" in err, err
        assert "No such file" not in err and "internal error" not in err, err
    pids = harness.pids()
    assert sorted(pids) == ["alpha", "beta", "gamma", "supervisor"]
    data = harness.cwd / "data"
    for who, pid in pids.items():
        assert running(pid), who
        assert not deleted_files(pid), (who, deleted_files(pid))
    for name in ("alpha", "beta", "gamma"):
        for file in ("ledger.log", "events.jsonl", "priest.log", "priest.lock"):
            assert (data / name / file).is_file(), f"{name}/{file}"
    for file in ("supervisor.json", "harness.jsonl", "supervisor.log"):
        assert (data / file).is_file(), file
    # The survivors still work: a ballot is decided and written by every priest.
    control.request(harness.state()["socket"], "ballot", "alpha")
    harness.wait_until(lambda: all((data / n / "decree.txt").exists()
                                   for n in ("alpha", "beta", "gamma")), what="a decree")
    assert harness.run("down").returncode == 0


class Stop(Exception):
    """Ends an in-process `up` right after its wipe, before it would start anything."""


def test_an_up_that_comes_between_the_check_and_the_wipe_of_another_changes_nothing(
        harness, monkeypatch) -> None:
    """The interleaving that lost data: B is checked "not up", then A comes up, then B wipes."""
    from harness.cli import build_parser
    from harness.verbs import up as up_verb

    config = harness.config(3)  # data dir absolute: this process need not work there
    data = harness.cwd / "data"
    other: dict[str, object] = {}
    real_wipe = up_verb.wipe_data_dir

    def wipe_after_another_up(cfg):  # type: ignore[no-untyped-def]
        done = harness.run("up", str(config), "--detach")
        other.update(code=done.returncode, err=done.stderr, pids=harness.pids(),
                     files=sorted(p.relative_to(data) for p in data.rglob("*")))
        real_wipe(cfg)
        raise Stop

    monkeypatch.setattr(up_verb, "wipe_data_dir", wipe_after_another_up)
    args = build_parser().parse_args(["up", str(config), "--detach", "--fresh"])
    with pytest.raises((Stop, Exception)) as caught:
        up_verb.run(args)
    if other["code"] == 0:
        # The other `up` came up: this one must have removed none of its files.
        pids = other["pids"]
        assert all(running(pid) for pid in pids.values())
        assert sorted(p.relative_to(data) for p in data.rglob("*")) == other["files"]
        assert not [f for pid in pids.values() for f in deleted_files(pid)]
        assert "already up" in str(caught.value), caught.value
    else:
        # Or the other `up` was refused while this one held the cluster, and said why.
        assert caught.type is Stop
        err = str(other["err"])
        assert other["code"] == 1 and err.count("\n") == 1, err
        assert "another `paxos-harness up`" in err and "nothing was changed" in err, err
    assert harness.run("down").returncode == 0


# --- (7) the data dir deleted under a running cluster ---------------------------


def test_status_and_down_find_a_cluster_whose_data_dir_was_deleted(harness) -> None:
    import shutil

    config = harness.config(3)
    assert harness.run("up", str(config), "--detach").returncode == 0
    pids = harness.pids()
    shutil.rmtree(harness.cwd / "data")
    status = harness.run("status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert "is up" in status.stdout and "data dir" in status.stdout, status.stdout
    again = harness.run("up", str(config), "--detach")  # still up: refused, nothing started
    assert again.returncode == 1 and "already up" in again.stderr, again.stderr
    down = harness.run("down", str(config))
    assert down.returncode == 0, down.stderr
    assert "is down" in down.stdout, down.stdout
    assert not [who for who, pid in pids.items() if running(pid)]
    assert "not up" in harness.run("status").stdout


# --- (6) a link planted where the harness writes one of its files -------------------


def planted(harness, which: str) -> Path:
    from harness.supervisor.files import private_path
    from harness.supervisor.state import socket_path

    data = harness.cwd / "data"
    return {"supervisor.json": data / "supervisor.json",
            "supervisor.log": data / "supervisor.log",
            "harness.jsonl": data / "harness.jsonl",
            "current.json": harness.cwd / "logs" / "current.json",
            "control.sock": socket_path(data),
            "run record": private_path(data, ".json"),
            "run lock": private_path(data, ".lock")}[which]


@pytest.mark.parametrize("which", ["supervisor.json", "supervisor.log", "harness.jsonl",
                                   "current.json", "control.sock", "run record", "run lock"])
@pytest.mark.parametrize("dangling", [False, True], ids=["to-a-file", "dangling"])
def test_a_link_planted_at_a_run_file_is_refused_in_one_line_naming_it(
        harness, which: str, dangling: bool) -> None:
    config = harness.config(2)
    victim = harness.cwd / "victim.txt"
    if not dangling:
        victim.write_text("precious\n")
    link = planted(harness, which)
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(victim)
    try:
        racer = start(harness, "up", str(config), "--detach")  # not harness.run: it reads the link
        out, err = racer.communicate(timeout=60)
        up = subprocess.CompletedProcess(racer.args, racer.returncode, out, err)
        assert up.returncode in (1, 2), up.stdout + up.stderr
        named = str(link) in up.stderr or str(link.relative_to(harness.cwd)) in up.stderr
        assert up.stderr.count("\n") == 1 and named, up.stderr
        assert "link" in up.stderr and "internal error" not in up.stderr, up.stderr
        assert link.is_symlink()  # refused, not removed
        assert (victim.read_text() == "precious\n") if not dangling else not victim.exists()
        assert not harness.strays()
        assert which == "supervisor.json" or harness.state() is None
    finally:
        link.unlink()


# --- (9) chaos against a frozen supervisor --------------------------------------


@pytest.mark.timeout(90)
def test_chaos_against_a_frozen_supervisor_says_so_after_the_ack_timeout(harness) -> None:
    config = harness.config(3)
    assert harness.run("up", str(config), "--detach").returncode == 0
    pids = harness.pids()
    supervisor = psutil.Process(pids["supervisor"])
    supervisor.suspend()
    try:
        # Well under the 60 s an action may take: a frozen supervisor never acknowledges.
        chaos = harness.run("chaos", "--kill", "alpha", timeout=20)
    finally:
        supervisor.resume()
    assert chaos.returncode == 1, chaos.stdout + chaos.stderr
    lines = chaos.stderr.strip().splitlines()
    assert len(lines) == 1 and "stopped" in lines[0] and str(pids["supervisor"]) in lines[0], lines
    assert "paxos-harness down" in lines[0] and "kill -CONT" in lines[0], lines
    assert running(pids["alpha"])  # nothing was done
    records = [json.loads(x) for x in (harness.cwd / "data" / "harness.jsonl").read_text()
               .splitlines()]
    assert records[-1]["kind"] == "chaos_end" and records[-1]["outcome"] == "interrupted"
    assert harness.run("down").returncode == 0


# --- (4) a full disk ------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 4 MB tmpfs mounted at tmp_path/disk (root only: skipped where mount is not permitted)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs",
                              str(disk)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip() or 'mount failed'}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def fill(disk: Path) -> Path:
    """Write a file until the disk is full; the file, to free the space again."""
    filler = disk / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError as e:
            assert e.errno == 28, e  # ENOSPC
    return filler


@pytest.mark.timeout(120)
def test_a_full_disk_neither_kills_the_supervisor_nor_loses_the_cluster(harness,
                                                                         small_disk: Path) -> None:
    from tests.conftest import write_config

    config = write_config(small_disk, 3)  # data dir on the small disk
    data = small_disk / "data"
    assert harness.run("up", str(config), "--detach").returncode == 0
    state = json.loads((data / "supervisor.json").read_text())
    supervisor = state["supervisor"]["pid"]
    harness.seen.update(psutil.Process(p) for p in
                        [supervisor, *(i["pid"] for i in state["priests"].values())])
    filler = fill(small_disk)

    # The state write after this kill fails: the supervisor says so and supervises on.
    kill = harness.run("chaos", str(config), "--kill", "gamma")
    assert kill.returncode == 0, kill.stdout + kill.stderr
    status = harness.run("status", str(config))
    assert status.returncode == 0 and running(supervisor), status.stdout + status.stderr
    assert "No space left on device" in status.stdout and "supervisor.json" in status.stdout
    assert "killed" in status.stdout
    ballot = harness.run("chaos", str(config), "--ballot", "alpha", "--sleep", "0.5")
    assert "internal error" not in ballot.stderr and running(supervisor), ballot.stderr

    # Space is back: what stopped can be restarted, the cluster decides, nothing is lost.
    filler.unlink()
    status = json.loads(harness.run("status", str(config), "--json").stdout)
    stopped = [p["priest"] for p in status["priests"] if p["state"] not in ("running", "paused")]
    assert "gamma" in stopped
    for name in stopped:
        again = harness.run("chaos", str(config), "--restart", name)
        assert again.returncode == 0, again.stdout + again.stderr
    harness.remember()
    assert harness.run("chaos", str(config), "--ballot", "beta").returncode == 0
    verify = harness.run("verify", str(config), "--wait", "10")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    status = json.loads(harness.run("status", str(config), "--json").stdout)
    assert status["problems"] == [] and all(p["state"] == "running" for p in status["priests"])
    down = harness.run("down", str(config))
    assert down.returncode == 0, down.stderr
    log = (data / "supervisor.log").read_text()
    assert "Traceback" not in log and "cannot write the run state" in log, log
