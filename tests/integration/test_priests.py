"""Real priests, real UDP, real signals: the original's demo and its failure modes."""

from __future__ import annotations

import io
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from node.config import Config, load_config
from node.errors import StartupError
from node.ledger import Ledger
from node.runtime import Runtime
from tests.integration.priests import REPO, Priests, datagram, signed

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


@pytest.fixture
def cluster(make_config, tmp_path: Path, no_leaks):
    priests = Priests(load_config(make_config(4)), tmp_path)
    yield priests
    priests.stop_all()


def test_the_original_demo(cluster: Priests) -> None:
    """3 of 4 agree; the 4th joins and learns the same decree at the next ballot; it never changes."""
    for name in ("alpha", "beta", "gamma"):
        cluster.start(name)
    cluster.ballot("alpha")
    held = cluster.wait_decrees(["alpha", "beta", "gamma"])
    assert len(set(held.values())) == 1 and None not in held.values(), held
    decree = held["alpha"]
    assert cluster.decree("delta") is None
    cluster.start("delta")
    cluster.ballot("beta")
    assert cluster.wait_decrees(["delta"]) == {"delta": decree}
    for name in ("delta", "gamma", "alpha", "beta", "delta"):
        cluster.ballot(name)
        time.sleep(0.05)
    time.sleep(0.3)
    assert {n: cluster.decree(n) for n in cluster.config.names} == dict.fromkeys(cluster.config.names, decree)


def test_the_fourth_learns_from_a_ballot_it_starts_itself(cluster: Priests) -> None:
    for name in ("alpha", "beta", "gamma"):
        cluster.start(name)
    cluster.ballot("gamma")
    decree = cluster.wait_decrees(["gamma"])["gamma"]
    cluster.start("delta")
    cluster.ballot("delta")
    assert cluster.wait_decrees(["delta"]) == {"delta": decree}


def test_all_four_ballot_at_once_repeatedly_and_still_agree(cluster: Priests) -> None:
    for name in cluster.config.names:
        cluster.start(name)
    for _ in range(5):
        for name in cluster.config.names:
            cluster.ballot(name)
    held = cluster.wait_decrees(cluster.config.names)
    assert None not in held.values() and len(set(held.values())) == 1, held
    for name in cluster.config.names:
        cluster.ballot(name)
    time.sleep(0.3)
    assert {n: cluster.decree(n) for n in cluster.config.names} == held


def test_a_killed_and_restarted_priest_keeps_its_decree_and_promises(cluster: Priests) -> None:
    for name in cluster.config.names:
        cluster.start(name)
    cluster.ballot("alpha")
    held = cluster.wait_decrees(cluster.config.names)
    ledger_before = (cluster.config.priest_dir("beta") / "ledger.log").read_text().splitlines()[-1]
    cluster.kill("beta")
    cluster.start("beta")
    ledger_after = (cluster.config.priest_dir("beta") / "ledger.log").read_text().splitlines()[-1]
    assert ledger_after == ledger_before
    cluster.ballot("beta")
    time.sleep(0.3)
    assert {n: cluster.decree(n) for n in cluster.config.names} == held
    started = [json.loads(line) for line in
               (cluster.config.priest_dir("beta") / "events.jsonl").read_text().splitlines()
               if '"started"' in line]
    assert started[-1]["decree"] == held["beta"]


def test_a_majority_crash_stops_progress_but_not_safety(cluster: Priests) -> None:
    for name in ("alpha", "beta"):
        cluster.start(name)
    cluster.ballot("alpha")  # 2 of 4 cannot form a quorum of 3
    time.sleep(1.5)
    assert cluster.decree("alpha") is None and cluster.decree("beta") is None
    cluster.start("gamma")
    cluster.ballot("beta")
    held = cluster.wait_decrees(["alpha", "beta", "gamma"])
    assert len(set(held.values())) == 1 and None not in held.values()


def _garbage(config: Config) -> list[bytes]:
    """Hostile datagrams: raw junk, unsigned JSON, and JSON signed with the key but wrong."""
    rng = random.Random(7)
    valid = {"v": 1, "cluster": "test", "type": "Success", "src": "beta", "ballot": [1, "beta"],
             "decree": 666}
    return [
        b"", b"\x00" * 64, bytes(rng.getrandbits(8) for _ in range(200)), b"{" * 400,
        b"x" * 70000, b"[]", b"null", b'{"v":1}',
        json.dumps(valid).encode(),  # no tag: forged by someone without the key
        datagram(config, {**valid, "decree": "666"}),
        datagram(config, {**valid, "decree": True}),
        datagram(config, {**valid, "type": "Prepare"}),
        datagram(config, {**valid, "src": "mallory"}),
        datagram(config, {**valid, "cluster": "other"}),
        datagram(config, {**valid, "ballot": [-1, "beta"]}),
        signed(config, b"{" * 300), signed(config, b"\xff\xfe"),
        datagram(config, valid),  # forged: sent from a socket that is not beta's address
    ]


def test_garbage_datagrams_leave_a_priest_alive_and_its_decree_unchanged(cluster: Priests) -> None:
    for name in ("alpha", "beta", "gamma"):
        cluster.start(name)
    cluster.ballot("alpha")
    held = cluster.wait_decrees(["alpha", "beta", "gamma"])
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    addr = cluster.config.address_of("gamma")
    for _ in range(3):
        for data in _garbage(cluster.config):
            try:
                sock.sendto(data, addr)
            except OSError:
                pass  # oversized for UDP: the kernel refuses it, which is fine too
    sock.close()
    time.sleep(0.3)
    assert cluster.procs["gamma"].poll() is None
    assert cluster.decree("gamma") == held["gamma"]
    events = (cluster.config.priest_dir("gamma") / "events.jsonl").read_text()
    dropped = [json.loads(line) for line in events.splitlines() if '"dropped"' in line]
    reasons = {str(e["reason"]) for e in dropped}
    assert {"forged_sender", "unknown_sender", "not_json", "bad_tag"} <= reasons, reasons
    details = " ".join(str(e["detail"]) for e in dropped)
    assert "forged sender" in details and "unknown sender" in details and "not JSON" in details
    # and it still takes part in a ballot
    cluster.ballot("gamma")
    time.sleep(0.2)
    assert cluster.procs["gamma"].poll() is None


def test_a_second_priest_on_the_same_ledger_or_port_refuses_to_start(cluster: Priests, tmp_path) -> None:
    cluster.start("alpha")
    with pytest.raises(AssertionError, match="exited 1"):
        cluster.start("alpha")
    out = (tmp_path / "alpha.out").read_text()
    assert "another priest is already running" in out or "cannot bind" in out
    assert "Traceback" not in out


def test_a_corrupt_ledger_is_refused_not_reset(cluster: Priests, tmp_path) -> None:
    cluster.start("alpha")
    cluster.stop_all()
    ledger = cluster.config.priest_dir("alpha") / "ledger.log"
    ledger.write_text("# paxos-harness ledger v1\nv1 last_tried=zzz crc=0\nv1 more\n")
    with pytest.raises(AssertionError, match="exited 1"):
        cluster.start("alpha")
    out = (tmp_path / "alpha.out").read_text()
    assert "ledger.log" in out and "Traceback" not in out
    assert "zzz" in ledger.read_text()  # not reset


def test_sigterm_stops_cleanly(cluster: Priests) -> None:
    proc = cluster.start("alpha")
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(5) == 0


# --- refusing to start: one line, no traceback, nothing held -----------------------


def _run_priest(config: Path, name: str, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-m", "node", str(config), name, *extra],
                          capture_output=True, text=True, env=env, timeout=30, check=False)


@pytest.mark.parametrize("what", ["data_dir is a file", "ledger.log", "events.jsonl",
                                  "priest.log", "decree.txt"])
def test_an_unusable_priest_directory_is_one_line(make_config, tmp_path: Path, no_leaks,
                                                  what: str) -> None:
    config = load_config(make_config(3))
    if what == "data_dir is a file":
        config.data_dir.write_text("not a directory")
        named = str(config.priest_dir("alpha"))
    else:
        (config.priest_dir("alpha") / what).mkdir(parents=True)
        named = str(config.priest_dir("alpha") / what)
    result = _run_priest(Path(config.path), "alpha")
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("python -m node: error: ") and named in line


def test_a_refused_runtime_releases_its_port_and_lock(make_config) -> None:
    config = load_config(make_config(3))
    (config.priest_dir("alpha") / "priest.log").mkdir(parents=True)
    fds = set(os.listdir("/proc/self/fd"))
    with pytest.raises(StartupError, match=r"priest\.log"):
        Runtime(config, "alpha", out=io.StringIO(), color=False)
    assert set(os.listdir("/proc/self/fd")) <= fds  # every descriptor it opened is closed
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(config.address_of("alpha"))  # the port is free again
    with Ledger.open(config.priest_dir("alpha")) as ledger:  # and the lock
        assert ledger.decree is None


@pytest.mark.parametrize("decree", [str(2**63), str(-(2**63) - 1), str(10**30)])
def test_propose_out_of_range_is_refused_at_startup(make_config, no_leaks, decree: str) -> None:
    config = make_config(3)
    result = _run_priest(config, "alpha", "--propose", decree)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()
    assert "--propose" in line and decree in line
    assert not (config.parent / "data").exists()  # nothing started


def test_the_largest_decree_can_be_proposed(cluster: Priests) -> None:
    for name in ("alpha", "beta"):
        cluster.start(name)
    cluster.start("gamma", "--propose", str(2**63 - 1))
    cluster.ballot("gamma")
    assert cluster.wait_decrees(["alpha", "gamma"]) == {"alpha": 2**63 - 1, "gamma": 2**63 - 1}


def test_quiet_shows_the_steps_but_not_the_messages(cluster: Priests, tmp_path: Path) -> None:
    cluster.start("alpha", "--quiet")
    for name in ("beta", "gamma"):
        cluster.start(name)
    cluster.ballot("alpha")
    assert cluster.wait_decrees(["alpha", "beta", "gamma"])["alpha"] is not None
    cluster.stop_all()
    shown = (tmp_path / "alpha.out").read_text()
    logged = cluster.config.priest_dir("alpha").joinpath("priest.log").read_text()
    assert "begins ballot 1.alpha" in shown and "the decree is" in shown
    assert " -> " not in shown and " <- " not in shown
    assert " -> NextBallot(1.alpha)" in logged and " <- " in logged  # the log keeps everything
    assert " -> " in (tmp_path / "beta.out").read_text()  # without --quiet, messages show


def test_a_priest_rehearses_in_memory_only(cluster: Priests) -> None:
    """The rehearsal before `ready` writes no line, sends no datagram, changes no ledger."""
    listeners = []
    for name in cluster.config.names[1:]:  # the peers' ports, held here to catch any datagram
        me = cluster.config.priests[name]
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((me.host, me.port))
        sock.setblocking(False)
        listeners.append(sock)
    try:
        cluster.start("alpha")
        # Needed: a priest's flush writes its narration ("ready on") before it sends the
        # datagrams queued with it, so one queued at start would leave just after the line.
        time.sleep(0.3)
        for sock in listeners:
            with pytest.raises(BlockingIOError):
                sock.recvfrom(2048)
    finally:
        for sock in listeners:
            sock.close()
    directory = cluster.config.priest_dir("alpha")
    events = [json.loads(line) for line in (directory / "events.jsonl").read_text().splitlines()]
    assert [e["kind"] for e in events] == ["started"]
    assert (directory / "ledger.log").read_text().count("\n") == 1  # its header alone
    assert not (directory / "decree.txt").exists()
    assert "NextBallot" not in (directory / "priest.log").read_text()
