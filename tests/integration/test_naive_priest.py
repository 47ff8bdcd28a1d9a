"""The naive example priest as real processes: it agrees when nothing goes wrong, and dies of bad input.

`examples/naive-priest/naive_priest.py` stands in for a student's priest, so
these tests pin the behaviour the harness relies on: its command line, its
files, its signals, and that malformed input kills it (the harness is meant
to find that, not the priest to survive it).
"""

from __future__ import annotations

import ast
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from bench.cluster import free_for_both
from tests.integration.priests import REPO

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

SCRIPT = REPO / "examples" / "naive-priest" / "naive_priest.py"
NAMES = ["l1", "l2", "l3"]


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


class Cluster:
    """Naive priests of one legislators config in one directory, tracked by pid."""

    def __init__(self, workdir: Path, tcp: bool = False) -> None:
        self.workdir, self.tcp = workdir, tcp
        self.ports = dict(zip(NAMES, free_for_both(len(NAMES)), strict=True))
        self.config = workdir / "legislators.json"
        self.config.write_text(json.dumps({"legislators": [
            {"ip": "127.0.0.1", "port": port, "name": name} for name, port in self.ports.items()]}))
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str) -> subprocess.Popen[bytes]:
        """Start a priest and wait until it listens on its port."""
        argv = [sys.executable, str(SCRIPT), str(self.config), name, *(["--tcp"] if self.tcp else [])]
        with open(self.workdir / f"{name}.out", "wb") as out, open(self.workdir / f"{name}.err", "wb") as err:
            proc = subprocess.Popen(argv, cwd=self.workdir, stdout=out, stderr=err)
        self.procs[name] = proc
        wait_until(lambda: self.listening(name), f"{name} to listen on port {self.ports[name]}")
        return proc

    def listening(self, name: str) -> bool:
        proc = self.procs[name]
        if proc.poll() is not None:
            raise AssertionError(f"{name} exited {proc.returncode}: {self.stderr(name)}")
        kind = "tcp4" if self.tcp else "udp4"
        try:
            sockets = psutil.Process(proc.pid).net_connections(kind=kind)
        except psutil.NoSuchProcess:
            return False
        return any(s.laddr and s.laddr.port == self.ports[name] for s in sockets)

    def decree(self, name: str) -> int | None:
        try:
            return int((self.workdir / name / "decree.txt").read_text())
        except (FileNotFoundError, ValueError):
            return None

    def decrees(self) -> list[int | None]:
        return [self.decree(name) for name in NAMES]

    def send(self, name: str, data: bytes) -> None:
        """Bytes to a priest, as a datagram or as one connection."""
        address = ("127.0.0.1", self.ports[name])
        if self.tcp:
            with socket.create_connection(address, timeout=5) as conn:
                conn.sendall(data)
        else:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.sendto(data, address)

    def wait_exit(self, name: str, timeout: float = 10.0) -> int:
        return self.procs[name].wait(timeout)

    def stdout(self, name: str) -> str:
        return (self.workdir / f"{name}.out").read_text()

    def stderr(self, name: str) -> str:
        return (self.workdir / f"{name}.err").read_text()

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs.values():
            proc.wait(5)


@pytest.fixture
def cluster(tmp_path: Path, no_leaks: None) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def tcp_cluster(tmp_path: Path, no_leaks: None) -> Iterator[Cluster]:
    c = Cluster(tmp_path, tcp=True)
    try:
        yield c
    finally:
        c.close()


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=20)


# --- it agrees when nothing goes wrong ----------------------------------------------------


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_three_priests_agree_on_one_decree_after_ctrl_z(request: pytest.FixtureRequest, transport: str) -> None:
    c: Cluster = request.getfixturevalue("cluster" if transport == "udp" else "tcp_cluster")
    for name in NAMES:
        c.start(name)
    os.kill(c.procs["l2"].pid, signal.SIGTSTP)
    wait_until(lambda: None not in c.decrees() and len(set(c.decrees())) == 1, "every priest to hold the same decree")
    assert c.decree("l1") == c.ports["l2"]  # nobody had voted: the proposer's port is the decree
    for name in NAMES:
        assert c.procs[name].poll() is None, c.stderr(name)
        os.kill(c.procs[name].pid, signal.SIGTERM)
        assert c.wait_exit(name) == 0, c.stderr(name)
    # Block-buffered into a file: the lines appear at exit, all of them.
    assert "l2 is initiating ballot 0" in c.stdout("l2")
    assert f"Received success, the new decree is now: {c.ports['l2']}" in c.stdout("l1")
    assert "\033[" not in c.stdout("l2"), "no colour off a terminal"


def test_a_second_ballot_proposes_the_decree_already_voted(cluster: Cluster) -> None:
    for name in NAMES:
        cluster.start(name)
    os.kill(cluster.procs["l1"].pid, signal.SIGTSTP)
    decree = cluster.ports["l1"]
    wait_until(lambda: cluster.decrees() == [decree] * 3, "l1's decree everywhere")
    os.kill(cluster.procs["l3"].pid, signal.SIGTSTP)
    votes = [cluster.workdir / n / f for n in NAMES for f in ("prev-vote-id.txt", "prev-vote-decree.txt")]
    wait_until(lambda: [p.read_text() for p in votes] == ["1", str(decree)] * 3,
               "everyone to vote l1's decree again in ballot 1")
    assert cluster.decrees() == [decree] * 3


def test_it_makes_a_directory_for_every_legislator_and_writes_only_in_its_own(cluster: Cluster) -> None:
    cluster.start("l1")
    os.kill(cluster.procs["l1"].pid, signal.SIGTSTP)  # alone it writes last-tried and next-bal, never a decree
    wait_until((cluster.workdir / "l1" / "next-bal.txt").exists, "l1 to promise its own ballot")
    assert all((cluster.workdir / name).is_dir() for name in NAMES)
    assert not any((cluster.workdir / "l2").iterdir()) and not any((cluster.workdir / "l3").iterdir())
    assert (cluster.workdir / "l1" / "last-tried.txt").read_text() == "0"  # one int, no newline
    assert cluster.decree("l1") is None
    os.kill(cluster.procs["l1"].pid, signal.SIGINT)
    assert cluster.wait_exit("l1") == 0


def test_it_reads_a_missing_file_as_minus_one_and_an_empty_one_as_zero(cluster: Cluster) -> None:
    (cluster.workdir / "l1").mkdir()
    (cluster.workdir / "l1" / "next-bal.txt").write_text("")  # as a crash in the middle of a write leaves it
    cluster.start("l1")
    os.kill(cluster.procs["l1"].pid, signal.SIGTSTP)
    last_tried = cluster.workdir / "l1" / "last-tried.txt"
    wait_until(lambda: last_tried.exists() and last_tried.read_text() == "1", "l1 to begin ballot 1 = max(-1, 0) + 1")


# --- it dies of bad input -----------------------------------------------------------------


GARBAGE = {
    "no from": b"Success\r\n\r\n",
    "unknown sender": b"NextBallot\r\nfrom: nobody\r\nballot: 3\r\n\r\n",
    "not a number": b"NextBallot\r\nfrom: l2\r\nballot: three\r\n\r\n",
    "missing field": b"BeginBallot\r\nfrom: l2\r\nballot: 0\r\n\r\n",
    "unknown method": b"Hello\r\nfrom: l2\r\n\r\n",
    "no header separator": b"Success\r\nfrom l2\r\n\r\n",
    "random bytes": bytes(random.Random(12).randrange(128, 256) for _ in range(64)),
}


@pytest.mark.parametrize("garbage", GARBAGE.values(), ids=GARBAGE.keys())
def test_garbage_kills_it_with_a_traceback(cluster: Cluster, garbage: bytes) -> None:
    cluster.start("l1")
    cluster.send("l1", garbage)
    assert cluster.wait_exit("l1") == 1
    assert "Traceback" in cluster.stderr("l1")


def test_garbage_over_tcp_kills_it_too(tcp_cluster: Cluster) -> None:
    tcp_cluster.start("l1")
    tcp_cluster.send("l1", b"")  # a connection that carries nothing is no message: ignored
    tcp_cluster.send("l1", GARBAGE["no from"])
    assert tcp_cluster.wait_exit("l1") == 1
    assert "KeyError: 'from'" in tcp_cluster.stderr("l1")


# --- its command line -----------------------------------------------------------------------


@pytest.mark.parametrize("args", [[], ["only-one"], ["a", "b", "c"], ["--udp", "x"], ["{config}", "l1", "--verbose"]])
def test_wrong_arguments_exit_2_with_one_line(tmp_path: Path, args: list[str]) -> None:
    config = tmp_path / "legislators.json"
    config.write_text(json.dumps({"legislators": [{"ip": "127.0.0.1", "port": 1, "name": "l1"}]}))
    result = run(*(a.format(config=config) for a in args), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("usage: naive_priest.py CONFIG NAME [--tcp]")
    assert len(result.stderr.splitlines()) == 1 and result.stdout == ""


@pytest.mark.parametrize("config", ['{"legislators": [{"ip": "127.0.0.1", "port": 1, "name": "l1"}]}',
                                    '{"priests": []}', "not json", None])
def test_a_name_not_in_the_config_or_a_bad_config_exits_2_with_one_line(tmp_path: Path, config: str | None) -> None:
    path = tmp_path / "legislators.json"
    if config is not None:
        path.write_text(config)
    result = run(str(path), "l9", cwd=tmp_path)
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr, result.stderr
    assert list(tmp_path.iterdir()) == ([path] if config is not None else [])


def test_it_is_an_executable_python3_script() -> None:
    assert os.access(SCRIPT, os.X_OK)
    assert SCRIPT.read_text().startswith("#!/usr/bin/env python3\n")


def test_it_is_foreign_it_imports_neither_node_nor_harness() -> None:
    tree = ast.parse(SCRIPT.read_text())
    imported: set[str] = set()
    for stmt in ast.walk(tree):
        if isinstance(stmt, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in stmt.names)
        elif isinstance(stmt, ast.ImportFrom):
            imported.add((stmt.module or "").split(".")[0])
    assert imported, "the AST walk found the imports"
    assert not imported & {"node", "harness", "bench", "tests"}
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported - set(sys.stdlib_module_names)
