"""Real priests against a hostile process on the same host: forged rounds, floods, planted links."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest

from node.config import load_config
from node.ledger import HEADER
from node.messages import MAX_ROUND
from tests.integration.priests import REPO, Priests, datagram, send_as

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


@pytest.fixture
def cluster(make_config, tmp_path: Path, no_leaks):
    priests = Priests(load_config(make_config(3)), tmp_path)
    yield priests
    priests.stop_all()


def _run_priest(config: Path, name: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-m", "node", str(config), name],
                          capture_output=True, text=True, env=env, timeout=30, check=False)


def _events(cluster: Priests, name: str) -> list[dict[str, object]]:
    path = cluster.config.priest_dir(name) / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


# --- (3) ballot rounds are bounded ------------------------------------------------


@pytest.mark.parametrize("round_", [2**62, MAX_ROUND + 1])
def test_a_forged_huge_round_is_dropped_and_the_cluster_still_decides(
        cluster: Priests, round_: int) -> None:
    """NextBallot(2^62) from a down member's address once wedged every priest for good."""
    for name in ("alpha", "beta"):
        cluster.start(name)
    forged = datagram(cluster.config, {"v": 1, "cluster": "test", "type": "NextBallot",
                                       "src": "gamma", "ballot": [round_, "gamma"]})
    for dst in ("alpha", "beta"):
        send_as(cluster.config, "gamma", dst, forged)  # gamma is down: its port is free
    cluster.ballot("alpha")
    held = cluster.wait_decrees(["alpha", "beta"])
    assert held["alpha"] is not None and held["alpha"] == held["beta"], held
    for name in ("alpha", "beta"):
        assert cluster.procs[name].poll() is None
        ledger = (cluster.config.priest_dir(name) / "ledger.log").read_text()
        assert str(round_) not in ledger
        assert any(e["kind"] == "dropped" for e in _events(cluster, name))
    cluster.start("gamma")  # restarts are fine too
    cluster.ballot("gamma")
    assert cluster.wait_decrees(["gamma"]) == {"gamma": held["alpha"]}


def test_a_ledger_holding_a_huge_round_is_refused_in_one_line(make_config, no_leaks) -> None:
    """A ledger written by an older version that promised 2^62: never a crash at every ballot."""
    config = load_config(make_config(3))
    directory = config.priest_dir("alpha")
    directory.mkdir(parents=True)
    text = f"v1 last_tried=0 next_bal={2**62}.beta prev_vote=none"
    record = f"{text} crc={zlib.crc32(text.encode()) & 0xFFFFFFFF:08x}\n"
    (directory / "ledger.log").write_text(HEADER + record)
    for _ in range(2):  # and again: the same one line, the ledger untouched
        result = _run_priest(Path(config.path), "alpha")
        assert result.returncode == 1, result.stderr
        assert "Traceback" not in result.stderr and result.stdout == ""
        (line,) = result.stderr.splitlines()
        assert f"{directory / 'ledger.log'}: line 2:" in line and str(2**62) in line
        assert (directory / "ledger.log").read_text() == HEADER + record


# --- (5) a flood of hostile datagrams cannot flood the logs -----------------------


def _flood(cluster: Priests, dst: str, n: int) -> None:
    """n distinct hostile datagrams, every field a peer chooses made unique, over real UDP."""
    kinds = [
        lambda i: {"v": 1, "cluster": f"other{i}", "type": "Success", "src": "beta",
                   "ballot": [1, "beta"], "decree": i},
        lambda i: {"v": 1, "cluster": "test", "type": "Success", "src": f"mallory{i}",
                   "ballot": [1, "beta"], "decree": i},
        lambda i: {"v": 1, "cluster": "test", "type": f"Type{i}", "src": "beta"},
        lambda i: {"v": 1, "cluster": "test", "type": "Voted", "src": "beta",
                   "ballot": [i + 2**60, "beta"]},
        lambda i: {"v": i + 2, "cluster": "test", "type": "Voted", "src": "beta"},
        lambda i: {"v": 1, "cluster": "test", "type": "Voted", "src": "beta",
                   "ballot": [1, "beta"], f"extra{i}": i},
    ]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        addr = cluster.config.address_of(dst)
        for i in range(n):
            if i % 7 == 6:
                data = f"garbage {i} ".encode() * 3
            else:
                data = datagram(cluster.config, kinds[i % len(kinds)](i))
            sock.sendto(data, addr)
            if i % 200 == 199:
                time.sleep(0.002)  # let the priest keep up, so it reads most of them


def test_a_flood_of_distinct_hostile_datagrams_adds_little_to_the_logs(cluster: Priests) -> None:
    for name in ("alpha", "beta", "gamma"):
        cluster.start(name)
    cluster.ballot("alpha")
    held = cluster.wait_decrees(["alpha", "beta", "gamma"])
    directory = cluster.config.priest_dir("gamma")
    files = [directory / "priest.log", directory / "events.jsonl"]
    before = sum(f.stat().st_size for f in files)
    _flood(cluster, "gamma", 20_000)
    cluster.signal("gamma", 15)
    assert cluster.procs["gamma"].wait(10) == 0
    grown = sum(f.stat().st_size for f in files) - before
    assert grown <= 100_000, f"logs grew by {grown} bytes"
    stopped = [e for e in _events(cluster, "gamma") if e["kind"] == "stopped"][-1]
    counted = stopped["dropped"]
    assert isinstance(counted, dict) and sum(counted.values()) >= 1000, counted  # all counted
    reasons = {e["reason"] for e in _events(cluster, "gamma") if e["kind"] == "dropped"}
    assert reasons <= {"other_cluster", "unknown_sender", "unknown_type", "malformed",
                       "bad_version", "not_json", "bad_tag", "forged_sender"}, reasons
    assert cluster.decree("gamma") == held["gamma"]


# --- (6) planted symbolic links ---------------------------------------------------

PLANTED = ["events.jsonl", "priest.log", "ledger.log", "decree.txt", "priest.lock",
           "priest dir", "data dir"]


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() if p.is_file() else b"<dir>"
            for p in sorted(directory.rglob("*"))}


@pytest.mark.parametrize("dangling", [False, True], ids=["to a file", "dangling"])
@pytest.mark.parametrize("what", PLANTED)
def test_a_planted_link_is_refused_in_one_line_and_nothing_outside_is_written(
        make_config, tmp_path: Path, no_leaks, what: str, dangling: bool) -> None:
    config = load_config(make_config(3))
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.txt").write_text("precious\n")
    target = outside / ("new" if dangling else "victim.txt")
    if what == "data dir":
        link, target = config.data_dir, outside / ("newdir" if dangling else "")
    elif what == "priest dir":
        config.data_dir.mkdir()
        link, target = config.priest_dir("alpha"), outside / ("newdir" if dangling else "")
    else:
        config.priest_dir("alpha").mkdir(parents=True)
        link = config.priest_dir("alpha") / what
    link.symlink_to(target)
    before = _snapshot(outside)
    result = _run_priest(Path(config.path), "alpha")
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert f"{link}: is a symbolic link" in line, line
    assert _snapshot(outside) == before  # nothing written, created or truncated outside
    assert link.is_symlink()  # and the link itself left for the user to see


def test_a_link_planted_while_a_priest_runs_is_never_written_through(cluster: Priests) -> None:
    """decree.txt and the ledger's rewrite go by rename: a link planted there is replaced."""
    for name in ("alpha", "beta", "gamma"):
        cluster.start(name)
    outside = cluster.workdir / "outside"
    outside.mkdir()
    (outside / "victim.txt").write_text("precious\n")
    (cluster.config.priest_dir("gamma") / "decree.txt").symlink_to(outside / "victim.txt")
    cluster.ballot("alpha")
    held = cluster.wait_decrees(["alpha", "beta"])
    time.sleep(0.3)
    assert (outside / "victim.txt").read_text() == "precious\n"
    assert not (cluster.config.priest_dir("gamma") / "decree.txt").is_symlink()
    assert cluster.decree("gamma") == held["alpha"]
