"""`paxos-harness up/status/down` for real: processes, UDP sockets, signals, files.

Every test runs the CLI as a user would (`python -m harness`, in its own
directory) and the `harness` fixture fails it if any process survives.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
from pathlib import Path

import psutil
import pytest

from harness.errors import RefusedError
from harness.supervisor import control
from harness.supervisor.files import RunLock

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def procs(pids) -> list[psutil.Process]:
    return [psutil.Process(pid) for pid in pids]


def running(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_up_detach_status_down(harness) -> None:
    config = harness.config(4)
    up = harness.run("up", str(config), "--detach")
    assert up.returncode == 0, up.stderr
    assert "is up: 4 priests" in up.stdout and "flaw" not in up.stderr
    pids = harness.pids()
    assert sorted(pids) == ["alpha", "beta", "delta", "gamma", "supervisor"]
    priests = procs(pids[n] for n in ("alpha", "beta", "gamma", "delta"))
    # Each priest leads its own process group; all are children of the supervisor's
    # fork server (node/forkserver.py), itself the supervisor's child.
    assert all(os.getpgid(p.pid) == p.pid for p in priests)
    servers = {p.parent() for p in priests}
    assert len(servers) == 1
    server = servers.pop()
    assert server is not None and server.ppid() == pids["supervisor"]
    assert "node.forkserver" in " ".join(server.cmdline())
    # Once `up` has returned, the relay listens on every configured port and
    # each priest on a private port of its own behind it.
    status = harness.run("status", "--json")
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    relay = psutil.Process(report["network"]["relay"])
    assert relay.ppid() == pids["supervisor"] and os.getpgid(relay.pid) == relay.pid
    listening = {c.laddr.port for p in priests for c in p.net_connections(kind="udp4")}
    ports = {int(line.split("port: ")[1].rstrip("}")) for line in config.read_text().splitlines()
             if "port:" in line}
    assert {c.laddr.port for c in relay.net_connections(kind="udp4")} == ports
    assert len(listening) == 4 and not listening & ports
    assert report["up"] and report["supervisor"] == pids["supervisor"]
    assert {p["priest"]: (p["pid"], p["state"]) for p in report["priests"]} == {
        n: (pids[n], "running") for n in ("alpha", "beta", "gamma", "delta")}
    table = harness.run("status", str(config))
    assert table.returncode == 0
    assert "priest" in table.stdout and table.stdout.count("running") == 4

    sock = Path(harness.state()["socket"])
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600

    everyone = procs([*pids.values(), relay.pid])
    down = harness.run("down")
    assert down.returncode == 0, down.stderr
    assert "is down" in down.stdout
    assert not [p for p in everyone if running(p)]
    assert harness.state() is None and not sock.exists()
    kinds = [json.loads(line)["kind"] for line in (harness.cwd / "data" / "harness.jsonl")
             .read_text().splitlines()]
    assert kinds[0] == "up" and kinds[-1] == "down" and kinds.count("priest_started") == 4

    again = harness.run("down")  # idempotent
    assert again.returncode == 0 and "not up" in again.stdout
    after = harness.run("status")
    assert after.returncode == 1 and "not up" in after.stdout


def test_a_second_up_is_refused_naming_the_fix(harness) -> None:
    config = harness.config(3)
    assert harness.run("up", str(config), "--detach").returncode == 0
    before = harness.pids()
    second = harness.run("up", str(config), "--detach")
    assert second.returncode == 1
    assert "already up" in second.stderr and "paxos-harness down" in second.stderr
    assert len(second.stderr.strip().splitlines()) == 1
    assert harness.pids() == before  # the running cluster is untouched
    assert all(p.is_running() for p in procs(before.values()))
    assert harness.run("down").returncode == 0


def test_a_port_already_taken_fails_up_and_leaves_nothing_running(harness) -> None:
    config = harness.config(3)
    port = int(config.read_text().split("beta: {host: 127.0.0.1, port: ")[1].split("}")[0])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", port))
        up = harness.run("up", str(config), "--detach")
    assert up.returncode == 1
    lines = up.stderr.strip().splitlines()
    assert len(lines) == 1 and "beta" in lines[0] and str(port) in lines[0], up.stderr
    assert harness.state() is None
    harness.wait_until(lambda: not harness.strays(), timeout=5, what="no process left")


BAD_CONFIGS = {
    "unknown key": ("cluster: t\ncolour: red\npriests:\n  alpha: {port: 7001}\n", "colour"),
    "bad port": ("priests:\n  alpha: {host: 127.0.0.1, port: 70000}\n", "priests.alpha.port"),
    "duplicate name": ("priests:\n  alpha: {port: 7001}\n  alpha: {port: 7002}\n", "duplicate"),
    "duplicate address": ("priests:\n  alpha: {port: 7001}\n  beta: {port: 7001}\n",
                          "priests.beta.port"),
    "bad name": ("priests:\n  Alpha!: {port: 7001}\n", "priests.Alpha!"),
    "no priests": ("cluster: t\n", "priests"),
    "not loopback": ("priests:\n  alpha: {host: 10.0.0.1, port: 7001}\n", "priests.alpha.host"),
    "not yaml": ("priests: [\n", "not valid YAML"),
}


@pytest.mark.parametrize("kind", sorted(BAD_CONFIGS))
def test_a_bad_config_is_one_line_exit_2_and_nothing_started(harness, kind: str) -> None:
    text, words = BAD_CONFIGS[kind]
    path = harness.cwd / "bad.yaml"
    path.write_text(text)
    up = harness.run("up", str(path), "--detach")
    assert up.returncode == 2
    lines = up.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and words in lines[0], up.stderr
    assert "Traceback" not in up.stderr
    assert not (harness.cwd / "logs").exists() and not harness.strays()


def test_a_missing_config_and_an_unknown_only_name_are_usage_errors(harness) -> None:
    missing = harness.run("up", "nowhere.yaml")
    assert missing.returncode == 2 and "nowhere.yaml" in missing.stderr
    config = harness.config(3)
    only = harness.run("up", str(config), "--only", "alpha,omega", "--detach")
    assert only.returncode == 2 and "omega" in only.stderr and not harness.strays()


def test_priests_exit_when_the_supervisor_is_sigkilled_and_up_clears_the_stale_state(
        harness) -> None:
    config = harness.config(3)
    assert harness.run("up", str(config), "--detach").returncode == 0
    pids = harness.pids()
    # A ballot first, so there is something to recover.
    control.request(harness.state()["socket"], "ballot", "alpha")
    decree = harness.cwd / "data" / "alpha" / "decree.txt"
    harness.wait_until(decree.exists, what="a decree")
    os.kill(pids.pop("supervisor"), signal.SIGKILL)
    _gone, alive = psutil.wait_procs(procs(pids.values()), timeout=2.0)
    assert not alive, f"priests outlived their supervisor by 2 s: {alive}"

    status = harness.run("status")
    assert status.returncode == 1 and "died" in status.stdout

    up = harness.run("up", str(config), "--detach")
    assert up.returncode == 0, up.stderr
    assert "cleared the run state" in up.stdout
    report = json.loads(harness.run("status", "--json").stdout)
    # Recovered from their ledgers: the decree is still known to every priest that held it.
    assert report["priests"][0]["decree"] == int(decree.read_text())
    assert all(p["state"] == "running" for p in report["priests"])
    assert harness.run("down").returncode == 0


def test_down_clears_the_state_a_sigkilled_supervisor_left(harness) -> None:
    config = harness.config(2)
    assert harness.run("up", str(config), "--detach").returncode == 0
    pids = harness.pids()
    sup = psutil.Process(pids["supervisor"])
    sup.kill()
    sup.wait(5)
    down = harness.run("down", str(config))
    assert down.returncode == 0 and "cleared the run state" in down.stdout
    assert harness.state() is None


def test_down_leaves_a_dead_supervisors_state_alone_while_an_up_holds_the_run_lock(
        harness) -> None:
    config = harness.config(2)
    assert harness.run("up", str(config), "--detach").returncode == 0
    sup = psutil.Process(harness.pids()["supervisor"])
    sup.kill()
    sup.wait(5)
    lock = RunLock.take(harness.cwd / "data")  # as an `up` starting right now holds it
    assert lock is not None
    try:
        down = harness.run("down", str(config))
        assert down.returncode == 1 and "bringing cluster test up right now" in down.stderr
        assert harness.state() is not None  # nothing was changed
    finally:
        lock.release()
    down = harness.run("down", str(config))
    assert down.returncode == 0 and "cleared the run state" in down.stdout
    assert harness.state() is None


def test_only_a_subset_then_restart_the_rest_over_the_control_channel(harness) -> None:
    config = harness.config(4)
    up = harness.run("up", str(config), "--only", "alpha,beta,gamma", "--detach")
    assert up.returncode == 0, up.stderr
    sock = harness.state()["socket"]
    states = {p["priest"]: p["state"] for p in control.request(sock, "status")["priests"]}
    assert states == {"alpha": "running", "beta": "running", "gamma": "running",
                      "delta": "not started"}
    result = control.request(sock, "restart", "delta")
    harness.remember()
    server = psutil.Process(result["pid"]).parent()  # the supervisor's fork server
    assert server is not None and server.ppid() == harness.pids()["supervisor"]
    with pytest.raises(RefusedError, match="running"):
        control.request(sock, "restart", "delta")
    delta = psutil.Process(result["pid"])
    assert control.request(sock, "kill", "delta")["outcome"].startswith("killed")
    assert not running(delta)
    paused = control.request(sock, "pause", "beta")
    assert psutil.Process(paused["pid"]).status() == psutil.STATUS_STOPPED
    down = harness.run("down")  # resumes beta first, so it stops cleanly
    assert down.returncode == 0
    exits = [json.loads(line) for line in (harness.cwd / "data" / "harness.jsonl")
             .read_text().splitlines() if '"priest_exited"' in line]
    assert {e["priest"]: e["status"] for e in exits}["beta"] == 0


def test_fresh_removes_what_the_priests_wrote_and_nothing_else(harness) -> None:
    config = harness.config(3)
    data = harness.cwd / "data"
    (data / "photos").mkdir(parents=True)
    (data / "photos" / "cat.jpg").write_text("meow")
    (data / "notes.txt").write_text("not the harness's")
    assert harness.run("up", str(config), "--detach").returncode == 0
    control.request(harness.state()["socket"], "ballot", "beta")
    decree = data / "beta" / "decree.txt"
    harness.wait_until(decree.exists, what="a decree")
    assert harness.run("down").returncode == 0
    key = (data / "cluster.key").read_text()  # made by the first priest the supervisor forked

    # Something that no priest writes in a priest's directory: refused, nothing removed.
    (data / "gamma" / "thesis.tex").write_text("years of work")
    refused = harness.run("up", str(config), "--detach", "--fresh")
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert "thesis.tex" in refused.stderr and str(data / "gamma") in refused.stderr
    assert decree.exists() and harness.state() is None and not harness.strays()
    (data / "gamma" / "thesis.tex").unlink()

    assert harness.run("up", str(config), "--detach", "--fresh").returncode == 0
    assert not decree.exists()
    assert (data / "photos" / "cat.jpg").read_text() == "meow"
    assert (data / "notes.txt").exists()
    assert (data / "cluster.key").read_text() == key  # --fresh keeps the cluster's key
    control.request(harness.state()["socket"], "ballot", "alpha")  # and the priests agree on it
    harness.wait_until((data / "gamma" / "decree.txt").exists, what="a decree after --fresh")
    assert harness.run("down").returncode == 0


def test_down_after_the_config_was_moved_or_deleted(harness) -> None:
    config = harness.config(3)
    assert harness.run("up", str(config), "--detach").returncode == 0
    everyone = procs(harness.pids().values())
    moved = config.rename(harness.cwd / "moved.yaml")
    status = harness.run("status")  # may not show the priests, but says why
    assert status.returncode == 2 and str(config) in status.stderr
    assert "paxos-harness down" in status.stderr and status.stderr.count("\n") == 1
    down = harness.run("down")  # logs/current.json names a config that is gone
    assert down.returncode == 0, down.stderr
    assert "is down" in down.stdout and "alpha" in down.stdout
    assert not [p for p in everyone if running(p)] and harness.state() is None

    assert harness.run("up", str(moved), "--detach").returncode == 0
    everyone = procs(harness.pids().values())
    moved.unlink()
    down = harness.run("down", str(moved))  # the recorded config, gone
    assert down.returncode == 0, down.stderr
    assert not [p for p in everyone if running(p)] and harness.state() is None
    other = harness.run("down", str(harness.cwd / "never.yaml"))  # not the recorded one
    assert other.returncode == 2 and "never.yaml" in other.stderr


@pytest.mark.timeout(45)
def test_down_of_a_sigstopped_supervisor_falls_back_to_signals(harness) -> None:
    config = harness.config(3)
    assert harness.run("up", str(config), "--detach").returncode == 0
    pids = harness.pids()
    everyone = procs(pids.values())
    supervisor = psutil.Process(pids["supervisor"])
    supervisor.suspend()
    try:
        down = harness.run("down", str(config), timeout=30)
    finally:
        if running(supervisor):
            supervisor.resume()
    assert down.returncode == 0, down.stderr
    assert "did not answer" in down.stderr and "stopping it by signal" in down.stderr
    # It names the priests that ran: the supervisor, resumed, stopped them itself.
    assert "stopped: alpha, beta, gamma" in down.stdout, down.stdout
    assert not [p for p in everyone if running(p)]
    assert harness.state() is None
    exits = [json.loads(line) for line in (harness.cwd / "data" / "harness.jsonl")
             .read_text().splitlines() if '"priest_exited"' in line]
    assert sorted(e["priest"] for e in exits) == ["alpha", "beta", "gamma"]


def test_status_into_a_closed_pipe_is_quiet(harness) -> None:
    import subprocess
    import sys
    config = harness.config(3)
    r, w = os.pipe()
    os.close(r)  # the reader is gone before a byte is written: `status | head -0`
    try:
        done = subprocess.run([sys.executable, "-m", "harness", "status", str(config)],
                              cwd=harness.cwd, stdout=w, stderr=subprocess.PIPE, text=True,
                              timeout=30)
    finally:
        os.close(w)
    assert done.stderr == "" and done.returncode == 141


def test_down_with_nothing_ever_brought_up_here_is_harmless(harness) -> None:
    down = harness.run("down")
    assert down.returncode == 0 and "nothing is up here" in down.stdout and down.stderr == ""


def test_up_says_when_it_resumes_a_history_and_fresh_does_not(harness) -> None:
    config = str(harness.config(3))
    first = harness.run("up", config, "--detach", "--fresh")
    assert first.returncode == 0 and "resuming" not in first.stdout
    try:
        assert harness.run("chaos", "--ballot", "alpha").returncode == 0
        assert harness.run("verify", "--wait", "10").returncode == 0
    finally:
        assert harness.run("down").returncode == 0
    decree = (harness.cwd / "data" / "alpha" / "decree.txt").read_text().strip()
    again = harness.run("up", config, "--detach")
    try:
        assert again.returncode == 0, again.stderr
        assert (f"resuming the history in {harness.cwd / 'data'}: decree {decree} (alpha, beta, gamma)"
                in again.stdout), again.stdout
        assert "--fresh" in again.stdout
    finally:
        assert harness.run("down").returncode == 0
    fresh = harness.run("up", config, "--detach", "--fresh")
    assert fresh.returncode == 0 and "resuming" not in fresh.stdout
    assert harness.run("down").returncode == 0
