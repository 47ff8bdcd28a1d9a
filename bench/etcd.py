"""Row `etcd`: a peer beside the priests, a 3-member etcd (Raft, fsync on) on 127.0.0.1.

Figures: one committed write (a put, acknowledged only once a quorum has it in
its fsync'd log and the leader applied it), a client round trip that writes
nothing (the floor under the write), a linearizable read (a quorum round, no
disk), and a full crash of all three members to the first acknowledged write.
The client is the v3 JSON gateway over one keep-alive HTTP connection (stdlib
only). Measured only when `etcd` is on PATH (Debian: `apt-get install
etcd-server`); otherwise one line says so. Every member is started in its own
session, tracked by pid and SIGKILLed in a `finally`; its data dir is removed.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.cluster import BenchError, free_ports
from bench.report import Entry
from bench.starts import Skipped
from bench.stats import Figure, Target, median

ROW = "etcd"
INSTALL = "apt-get install etcd-server"
NOT_INSTALLED = f"not measured: etcd is not installed (Debian: {INSTALL})"
WRITE = "committed write, 3-member etcd"
READ = "linearizable read, 3-member etcd"
ROUND_TRIP = "client round trip, no write"
CRASH = "full crash to first write, 3-member etcd"
BALLOT = "ballot, 3 priests"  # the ballot row's figure the moonshot is stated against
PRIEST_CRASH = "crash all 4 to first decision"  # the restart row's figure, beside CRASH
HEALTH_TIMEOUT = 30.0  # a 3-member cluster elects a leader in about a second when idle
WRITE_TIMEOUT = 30.0
WARM_UP = 5  # untimed puts first: the connection, the leader's caches
KEY = base64.b64encode(b"paxos-bench").decode()
MISSING = base64.b64encode(b"paxos-bench-missing").decode()


def etcd_binary() -> str | None:
    return shutil.which("etcd")


@dataclass(frozen=True)
class Member:
    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    log: Path

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    @property
    def client_url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"


class Client:
    """One keep-alive HTTP connection to a member's v3 JSON gateway."""

    def __init__(self, member: Member, timeout: float = WRITE_TIMEOUT) -> None:
        self.member = member
        self.conn = http.client.HTTPConnection("127.0.0.1", member.client_port, timeout=timeout)

    def post(self, path: str, body: bytes) -> dict[str, Any]:
        """POST a JSON body; the decoded answer, or BenchError on anything but 200."""
        self.conn.request("POST", path, body, {"Content-Type": "application/json"})
        response = self.conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise BenchError(f"etcd {self.member.name} {path}: HTTP {response.status}: "
                             f"{data[:200]!r}")
        answer: dict[str, Any] = json.loads(data)
        return answer

    def close(self) -> None:
        self.conn.close()


def put_body(i: int) -> bytes:
    value = base64.b64encode(str(i).encode()).decode()
    return json.dumps({"key": KEY, "value": value}).encode()


RANGE_SERIALIZABLE = json.dumps({"key": MISSING, "serializable": True}).encode()
RANGE_LINEARIZABLE = json.dumps({"key": MISSING, "serializable": False}).encode()


class EtcdCluster:
    """Three etcd members on free loopback ports, data under `directory`; `close` kills them."""

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary = binary
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        ports = free_ports(6, socket.SOCK_STREAM)
        self.members = [Member(f"m{i + 1}", ports[2 * i], ports[2 * i + 1],
                               directory / f"m{i + 1}.etcd", directory / f"m{i + 1}.log")
                        for i in range(3)]
        self.token = f"paxos-bench-{uuid.uuid4().hex}"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def command(self, m: Member) -> list[str]:
        """etcd's defaults otherwise: fsync on, heartbeat 100 ms, election 1000 ms."""
        initial = ",".join(f"{x.name}={x.peer_url}" for x in self.members)
        return [self.binary, "--name", m.name, "--data-dir", str(m.data_dir),
                "--listen-client-urls", m.client_url, "--advertise-client-urls", m.client_url,
                "--listen-peer-urls", m.peer_url, "--initial-advertise-peer-urls", m.peer_url,
                "--initial-cluster", initial, "--initial-cluster-token", self.token,
                "--initial-cluster-state", "new"]

    def start(self) -> None:
        """Spawn the three members (on their existing data dirs after a crash); no waiting."""
        # ETCD_* variables would override flags: the members see none of the caller's.
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
        for m in self.members:
            with open(m.log, "ab") as log:
                self.procs[m.name] = subprocess.Popen(
                    self.command(m), stdin=subprocess.DEVNULL, stdout=log,
                    stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs.values()]

    def kill(self) -> None:
        """SIGKILL every member started (by pid) and reap it; safe to call twice."""
        for name in list(self.procs):
            proc = self.procs.pop(name)
            try:
                os.kill(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()

    def close(self) -> None:
        self.kill()

    def log_tail(self, m: Member, lines: int = 8) -> str:
        try:
            text = m.log.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def failure(self, m: Member, what: str) -> BenchError:
        return BenchError(f"etcd member {m.name} {what}; last lines of {m.log}:\n"
                          f"{self.log_tail(m)}")

    def check_running(self) -> None:
        for m in self.members:
            proc = self.procs.get(m.name)
            if proc is not None and proc.poll() is not None:
                raise self.failure(m, f"exited with status {proc.returncode}")

    def healthy(self, m: Member) -> bool:
        conn = http.client.HTTPConnection("127.0.0.1", m.client_port, timeout=2.0)
        try:
            conn.request("GET", "/health")
            response = conn.getresponse()
            return response.status == 200 and json.loads(response.read()).get("health") == "true"
        except (OSError, http.client.HTTPException, ValueError):
            return False
        finally:
            conn.close()

    def wait_healthy(self, timeout: float = HEALTH_TIMEOUT) -> None:
        """Until every member answers /health with true (it has a leader and can read)."""
        deadline = time.monotonic() + timeout
        waiting = list(self.members)
        while waiting:
            self.check_running()
            waiting = [m for m in waiting if not self.healthy(m)]
            if waiting and time.monotonic() > deadline:
                raise self.failure(waiting[0], f"not healthy after {timeout:g} s")
            if waiting:
                time.sleep(0.01)

    def leader(self) -> Member:
        """The member that is leader now (maintenance/status reports the leader's id)."""
        by_id: dict[str, Member] = {}
        leader = ""
        for m in self.members:
            client = Client(m, timeout=5.0)
            try:
                status = client.post("/v3/maintenance/status", b"{}")
            finally:
                client.close()
            by_id[status["header"]["member_id"]] = m
            leader = status.get("leader", leader)
        if leader not in by_id:
            raise BenchError(f"etcd: no member is the leader it reports ({leader!r})")
        return by_id[leader]


@contextmanager
def etcd_cluster(binary: str, directory: Path) -> Iterator[EtcdCluster]:
    """A started, healthy cluster; after, every member killed and the directory gone."""
    cluster = EtcdCluster(binary, directory)
    try:
        cluster.start()
        cluster.wait_healthy()
        yield cluster
    finally:
        cluster.close()
        shutil.rmtree(directory, ignore_errors=True)


def _timed_post(client: Client, path: str, body: bytes) -> tuple[float, dict[str, Any]]:
    t0 = time.perf_counter()
    answer = client.post(path, body)
    return time.perf_counter() - t0, answer


def writes(cluster: EtcdCluster, samples: int) -> list[Figure]:
    """Puts to the leader on one keep-alive connection, interleaved with reads that write nothing."""
    leader = cluster.leader()
    client = Client(leader)
    puts: list[float] = []
    serial: list[float] = []
    linear: list[float] = []
    revision = 0
    try:
        for i in range(WARM_UP):
            client.post("/v3/kv/put", put_body(-i))
        for i in range(samples):
            took, answer = _timed_post(client, "/v3/kv/put", put_body(i))
            puts.append(took)
            now = int(answer["header"]["revision"])
            if now <= revision:
                raise BenchError(f"etcd: a put did not advance the revision ({revision} -> {now})")
            revision = now
            serial.append(_timed_post(client, "/v3/kv/range", RANGE_SERIALIZABLE)[0])
            linear.append(_timed_post(client, "/v3/kv/range", RANGE_LINEARIZABLE)[0])
    finally:
        client.close()
    committed = _committed_on_followers(cluster, leader, revision)
    floor = median(serial)
    notes = {"sent_to": "the leader", "api": "POST /v3/kv/put (JSON gateway, HTTP/1.1 keep-alive)",
             "fsync": "on (etcd's default)", "last_revision": revision,
             "followers_read_revision": committed}
    return [
        Figure(ROW, f"{ROUND_TRIP} (serializable range)", "s", serial, notes={
            "what": "a range of a missing key answered by the leader alone: HTTP, gateway, gRPC"}),
        Figure(ROW, READ, "s", linear, floor, "serializable range", notes={
            "what": "a range with serializable=false: the leader confirms its lead with a "
                    "quorum (ReadIndex), no disk write"}),
        Figure(ROW, WRITE, "s", puts, floor, "serializable range", None, notes),
    ]


def _committed_on_followers(cluster: EtcdCluster, leader: Member, revision: int) -> dict[str, int]:
    """Each follower's revision by a linearizable read: the last put is there, so it was committed."""
    seen = {}
    for m in cluster.members:
        if m == leader:
            continue
        client = Client(m, timeout=5.0)
        try:
            seen[m.name] = int(client.post("/v3/kv/range", RANGE_LINEARIZABLE)["header"]["revision"])
        finally:
            client.close()
        if seen[m.name] < revision:
            raise BenchError(f"etcd {m.name} reads revision {seen[m.name]} < {revision}: "
                             f"the last put was acknowledged but not committed")
    return seen


def first_write(cluster: EtcdCluster, began: float, timeout: float = WRITE_TIMEOUT) -> float:
    """Perf-counter time of the first put any member acknowledges after a restart.

    One thread per member puts until one is acknowledged: a put that arrives before
    there is a leader waits for one, a refused connection is retried at once."""
    done = threading.Event()
    acked: list[float] = []
    lock = threading.Lock()

    def keep_putting(m: Member) -> None:
        while not done.is_set() and time.perf_counter() - began < timeout:
            client = Client(m, timeout=max(0.1, timeout - (time.perf_counter() - began)))
            try:
                client.post("/v3/kv/put", put_body(0))
            except (OSError, http.client.HTTPException, BenchError, ValueError):
                time.sleep(0.001)
                continue
            finally:
                client.close()
            with lock:
                acked.append(time.perf_counter())
            done.set()

    threads = [threading.Thread(target=keep_putting, args=(m,), daemon=True)
               for m in cluster.members]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout + 1.0)
    finally:
        done.set()  # also on Ctrl+C: no thread keeps putting once the members are killed
    if not acked:
        cluster.check_running()
        raise cluster.failure(cluster.members[0], f"acknowledged no put {timeout:g} s after a restart")
    return min(acked)


def crashes(cluster: EtcdCluster, samples: int) -> Figure:
    """SIGKILL all three members (by pid), start them on the same dirs: restart to first write."""
    times: list[float] = []
    gaps: list[float] = []
    for _ in range(samples):
        cluster.wait_healthy()  # every member up and caught up before the crash
        crash = time.perf_counter()
        cluster.kill()
        began = time.perf_counter()
        cluster.start()
        acked = first_write(cluster, began)
        times.append(acked - began)
        gaps.append(began - crash)
    notes = {"from": "the restart (first member spawned) to the first put acknowledged by any "
                     "member; puts sent to all three, retried while refused",
             "median_kill_and_reap": median(gaps),
             "election": "etcd defaults: heartbeat 100 ms, election timeout 1000 ms"}
    return Figure(ROW, CRASH, "s", times, notes=notes)


def etcd_row(workdir: Path, samples: int, crash_samples: int) -> list[Entry]:
    """The row: the write and the crash figures, or one line saying etcd is not installed."""
    binary = etcd_binary()
    if binary is None:
        return [Skipped(ROW, "etcd", NOT_INSTALLED)]
    try:
        with etcd_cluster(binary, workdir / "etcd") as cluster:
            out: list[Entry] = [*writes(cluster, samples), crashes(cluster, crash_samples)]
    except (OSError, http.client.HTTPException, ValueError, KeyError) as e:
        raise BenchError(f"etcd: {type(e).__name__}: {e}") from e
    return out


def comparisons(entries: list[Entry]) -> list[Entry]:
    """The moonshot (a cold ballot of 3 priests against etcd's committed write) and the two
    full crashes, side by side; only from figures measured in this run."""
    found = {(e.row, e.name): e for e in entries if isinstance(e, Figure)}
    write = found.get((ROW, WRITE))
    if write is None:
        return []
    out: list[Entry] = []
    ballot = found.get(("ballot", BALLOT))
    moonshot = f"moonshot: cold {BALLOT} vs etcd write"
    if ballot is None:
        out.append(Skipped(ROW, moonshot, "not measured: needs the ballot row in the same run"))
    else:
        out.append(Figure(ROW, moonshot, "s", [ballot.median], write.median, WRITE,
                          Target(1.0, text="faster than etcd's write", of_ratio=True),
                          {"derived": True, "figure": f"median of {BALLOT!r}",
                           "floor": f"median of {WRITE!r}"}))
    crash = found.get((ROW, CRASH))
    priests = found.get(("restart", PRIEST_CRASH))
    if crash is not None and priests is not None:
        out.append(Figure(ROW, f"{PRIEST_CRASH} vs etcd", "s", [priests.median], crash.median,
                          CRASH, None,
                          {"derived": True, "figure": f"median of {PRIEST_CRASH!r} (row restart)",
                           "floor": f"median of {CRASH!r}",
                           "differs": "priests from the SIGKILL, 4 priests; etcd from the "
                                      "restart, 3 members"}))
    return out
