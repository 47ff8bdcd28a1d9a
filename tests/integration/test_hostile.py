"""Real priests against a hostile process on the same host: forged rounds, floods, planted links."""

from __future__ import annotations

import hmac
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
            data = f"garbage {i} ".encode() * 3 if i % 7 == 6 else datagram(cluster.config, kinds[i % len(kinds)](i))
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


# --- (8) authenticated datagrams ----------------------------------------------------


def with_key(key: bytes, body: bytes) -> bytes:
    """`body` signed with some key (not the cluster's)."""
    return body + b" " + hmac.digest(key, body, "sha256").hex().encode()


def _success(decree: int, src: str = "gamma") -> dict[str, object]:
    return {"v": 1, "cluster": "test", "type": "Success", "src": src,
            "ballot": [1, src], "decree": decree}


def test_a_forged_success_from_a_dead_priests_port_is_dropped(cluster: Priests) -> None:
    """Any process that binds a down priest's port could once make every priest adopt a decree."""
    for name in ("alpha", "beta"):
        cluster.start(name)
    body = json.dumps(_success(666), separators=(",", ":")).encode()
    forged = [body, with_key(bytes(32), body), body + b" " + b"0" * 64]
    for data in forged:
        for dst in ("alpha", "beta"):
            send_as(cluster.config, "gamma", dst, data)
    cluster.ballot("alpha")
    held = cluster.wait_decrees(["alpha", "beta"])
    assert held["alpha"] == held["beta"] and held["alpha"] != 666, held
    for name in ("alpha", "beta"):
        drops = [e for e in _events(cluster, name) if e["kind"] == "dropped"]
        assert drops and {e["reason"] for e in drops} == {"bad_tag"}
        assert not any(e["kind"] == "learned" and e["decree"] == 666
                       for e in _events(cluster, name))


def test_replayed_datagrams_of_a_real_ballot_change_nothing(cluster: Priests) -> None:
    """Capture every datagram alpha sends in a real ballot (at gamma's address), then replay
    them all, in order, reversed and repeated, from alpha's address: beta, which took part,
    changes nothing; gamma, which did not, only learns the decree that was chosen."""
    config = cluster.config
    for name in ("alpha", "beta"):
        cluster.start(name)
    tap = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tap.bind(config.address_of("gamma"))  # gamma's address: alpha's datagrams to gamma land here
    tap.settimeout(0.5)
    try:
        cluster.ballot("alpha")
        held = cluster.wait_decrees(["alpha", "beta"])
        captured: list[bytes] = []
        while True:
            try:
                data, addr = tap.recvfrom(4096)
            except TimeoutError:
                break
            if addr == config.address_of("alpha"):
                captured.append(data)
    finally:
        tap.close()
    kinds = {json.loads(d.rsplit(b" ", 1)[0])["type"] for d in captured}
    assert {"NextBallot", "BeginBallot", "Success"} <= kinds, kinds
    beta = config.priest_dir("beta")
    before = {f: (beta / f).read_bytes() for f in ("ledger.log", "decree.txt")}
    cluster.signal("alpha", 15)  # frees alpha's address for the replay
    assert cluster.procs.pop("alpha").wait(10) == 0
    cluster.start("gamma")
    replay = captured + captured[::-1] + captured
    for data in replay:
        for dst in ("beta", "gamma"):
            send_as(config, "alpha", dst, data)
    assert cluster.wait_decrees(["gamma"]) == {"gamma": held["alpha"]}
    time.sleep(0.3)  # let beta handle every replayed datagram
    assert {f: (beta / f).read_bytes() for f in before} == before  # an idempotent receiver
    for name in ("beta", "gamma"):
        assert cluster.procs[name].poll() is None
        assert cluster.decree(name) == held["alpha"]
        assert not any(e["kind"] == "dropped" for e in _events(cluster, name))
    # and the cluster goes on as before: a new ballot, the same decree everywhere
    cluster.start("alpha")
    cluster.ballot("gamma")
    time.sleep(0.3)
    assert {n: cluster.decree(n) for n in config.names} == dict.fromkeys(config.names, held["alpha"])


def test_priests_started_at_the_same_moment_share_one_key(make_config, tmp_path: Path,
                                                          no_leaks) -> None:
    config = load_config(make_config(5))
    env = {**os.environ, "PYTHONPATH": str(REPO), "NO_COLOR": "1"}
    outs = [open(tmp_path / f"{name}.out", "wb") for name in config.names]  # noqa: SIM115
    procs = [subprocess.Popen([sys.executable, "-m", "node", config.path, name],
                              stdout=out, stderr=subprocess.STDOUT, env=env)
             for name, out in zip(config.names, outs, strict=True)]
    try:
        deadline = time.monotonic() + 30
        key = config.data_dir / "cluster.key"
        while time.monotonic() < deadline and not all(
                b"ready on" in (tmp_path / f"{n}.out").read_bytes() for n in config.names):
            assert all(p.poll() is None for p in procs)
            time.sleep(0.05)
        assert key.stat().st_mode & 0o777 == 0o600 and len(key.read_text()) == 65
        assert [p.name for p in config.data_dir.iterdir() if p.is_file()] == ["cluster.key"]
        priests = Priests(config, tmp_path)
        priests.procs = dict(zip(config.names, procs, strict=True))
        priests.ballot("gamma")
        held = priests.wait_decrees(config.names)
        assert len(set(held.values())) == 1 and None not in held.values(), held
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(10)
        for out in outs:
            out.close()


@pytest.mark.parametrize("problem", ["malformed", "mode 0640", "link", "directory"])
def test_an_untrustworthy_key_file_is_refused_in_one_line(make_config, tmp_path: Path,
                                                          no_leaks, problem: str) -> None:
    config = load_config(make_config(3))
    config.data_dir.mkdir()
    key = config.data_dir / "cluster.key"
    if problem == "malformed":
        key.write_text("not a key\n")
        key.chmod(0o600)
    elif problem == "mode 0640":
        key.write_text("ab" * 32 + "\n")
        key.chmod(0o640)
    elif problem == "link":
        (tmp_path / "elsewhere.key").write_text("ab" * 32 + "\n")
        key.symlink_to(tmp_path / "elsewhere.key")
    else:
        key.mkdir()
    result = _run_priest(Path(config.path), "alpha")
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert str(key) in line, line


def test_key_file_in_the_config_is_relative_to_the_config_file(
        make_config, tmp_path: Path, no_leaks) -> None:
    (tmp_path / "keys").mkdir()
    config = load_config(make_config(3, extra="key_file: keys/test.key\n"))
    assert config.key_file == tmp_path / "keys" / "test.key"
    cluster = Priests(config, tmp_path)
    try:
        for name in config.names:
            cluster.start(name)
        cluster.ballot("beta")
        held = cluster.wait_decrees(config.names)
        assert None not in held.values() and len(set(held.values())) == 1
    finally:
        cluster.stop_all()
    assert (tmp_path / "keys" / "test.key").stat().st_mode & 0o777 == 0o600
    assert not (config.data_dir / "cluster.key").exists()
