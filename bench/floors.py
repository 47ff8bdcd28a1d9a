"""Floors: the cheapest way to do each thing a priest must do, timed on this disk and host.

Every figure of the benchmark is reported beside one of these, measured in the
same run, so a noisy machine moves both together.
"""

from __future__ import annotations

import multiprocessing
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path

from node.codec import Codec
from node.ledger import Ledger
from node.messages import Ballot, LastVote, LedgerState, Vote

FORK = multiprocessing.get_context("fork")


def _timed(n: int, step: Callable[[int], object]) -> list[float]:
    samples = []
    for i in range(n):
        t0 = time.perf_counter()
        step(i)
        samples.append(time.perf_counter() - t0)
    return samples


def _atomic_write(directory: Path, i: int) -> None:
    """Temp file + write + fsync + rename + directory fsync, with nothing else around it."""
    target, temp = directory / "atomic.txt", directory / "atomic.txt.tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, f"{i}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(temp, target)
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


class DiskFloors:
    """The three durable writes, sampled in bursts all through the run (disks are the noisiest).

    - ledger_persist: one `Ledger.persist`, exactly as a priest makes a promise or a vote durable;
    - atomic_write: temp file + fsync + rename + directory fsync, bare;
    - fdatasync_append: one line appended and fdatasync'd, bare: the cheapest crash-safe write.
    """

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.ledger = Ledger.open(directory / "ledger-floor")
        self.fd = os.open(directory / "append.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.round = 0
        self.samples: dict[str, list[float]] = {
            "ledger_persist": [], "atomic_write": [], "fdatasync_append": []}

    def sample(self, n: int) -> None:
        """n more samples of each write."""
        line = b"v1 last_tried=1.alpha next_bal=0 prev_vote=none crc=00000000\n"
        self.samples["ledger_persist"] += _timed(n, self._persist)
        self.samples["atomic_write"] += _timed(n, lambda i: _atomic_write(self.directory, i))
        self.samples["fdatasync_append"] += _timed(n, lambda i: self._append(line))

    def _append(self, line: bytes) -> None:
        os.write(self.fd, line)
        os.fdatasync(self.fd)

    def _persist(self, _: int) -> None:
        self.round += 1
        self.ledger.persist(LedgerState(last_tried=Ballot(self.round, "alpha")))

    def close(self) -> None:
        self.ledger.close()
        os.close(self.fd)


def _echo(sock: socket.socket, ready: Connection) -> None:
    ready.send(sock.getsockname())
    while True:
        data, addr = sock.recvfrom(2048)
        if data == b"stop":
            return
        sock.sendto(data, addr)


def udp_round_trip(n: int) -> list[float]:
    """A datagram to another process on 127.0.0.1 and its echo back."""
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.1", 0))
    client.settimeout(5.0)
    r, w = FORK.Pipe(duplex=False)
    echo = FORK.Process(target=_echo, args=(server, w), daemon=True)
    echo.start()
    address: tuple[str, int] | None = None
    try:
        w.close()
        server.close()
        address = r.recv()
        payload = b"x" * 64  # about the size of a BeginBallot datagram
        for _ in range(20):  # warm both sides' caches and the scheduler
            client.sendto(payload, address)
            client.recvfrom(2048)
        return _timed(n, lambda i: (client.sendto(payload, address), client.recvfrom(2048)))
    finally:
        if address is not None and echo.is_alive():
            client.sendto(b"stop", address)
        echo.join(1.0)
        if echo.is_alive():
            echo.kill()
            echo.join()
        client.close()
        r.close()


def _say_ready(conn: Connection) -> None:
    conn.send("ready")


def fork_start(n: int) -> list[float]:
    """A multiprocessing fork child (the supervisor's method) that says "ready" on a pipe."""

    def step(_: int) -> None:
        r, w = FORK.Pipe(duplex=False)
        proc = FORK.Process(target=_say_ready, args=(w,), daemon=True)
        proc.start()
        w.close()
        try:
            r.recv()
        finally:
            r.close()
            proc.join()

    return _timed(n, step)


def exec_start(n: int) -> list[float]:
    """A fresh interpreter (`python -c ''`), started and exited: the floor of `python -m node`."""
    return _timed(n, lambda i: subprocess.run([sys.executable, "-c", ""], check=True))


def datagram_tag(n: int) -> list[float]:
    """Signing one datagram and verifying it (HMAC-SHA256 tag, hmac.compare_digest), as a
    priest's sender and receiver do; each sample is the mean of 1,000, as one is ~1 us."""
    codec = Codec("four", {"beta": ("127.0.0.1", 7102)}, key=secrets.token_bytes(32))
    body = codec.encode(LastVote("beta", Ballot(3, "beta"), Vote(Ballot(2, "beta"), 2002)))[:-65]
    per_sample = 1000

    def step(_: int) -> None:
        for _ in range(per_sample):
            codec.verify(codec.sign(body))  # verify: the decoder's first step, exactly

    return [sample / per_sample for sample in _timed(n, step)]


def _appender(path: Path, go: Connection, done: Connection) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    line = b"v1 learned=1001 crc=00000000\n"
    while go.recv_bytes() == b"go":
        os.write(fd, line)
        os.fdatasync(fd)
        done.send_bytes(b"done")
    os.close(fd)


def concurrent_appends(directory: Path, n: int, k: int = 4) -> list[float]:
    """k processes each append a line to its own file and fdatasync it, all at once, as k
    priests do at each step of a ballot: from the go to the last one done (the slowest)."""
    directory.mkdir(parents=True, exist_ok=True)
    procs, gos, dones = [], [], []
    try:
        for i in range(k):
            go_r, go_w = FORK.Pipe(duplex=False)
            done_r, done_w = FORK.Pipe(duplex=False)
            proc = FORK.Process(target=_appender, args=(directory / f"append{i}.log", go_r, done_w),
                                daemon=True)
            proc.start()
            go_r.close()
            done_w.close()
            procs.append(proc)
            gos.append(go_w)
            dones.append(done_r)

        def step(_: int) -> None:
            for go in gos:
                go.send_bytes(b"go")
            for done in dones:
                done.recv_bytes()

        for _ in range(3):  # warm the files and the scheduler
            step(0)
        return _timed(n, step)
    finally:
        for go in gos:
            try:
                go.send_bytes(b"stop")
            except OSError:
                pass
        for proc in procs:
            proc.join(2.0)
            if proc.is_alive():
                proc.kill()
                proc.join()


def process_floors(n: int, directory: Path | None = None) -> dict[str, list[float]]:
    """UDP round trip (n samples), the datagram tag, the two ways to start a process
    (fewer: slow and steady), and, given a directory on the disk under test, 4 fdatasync'd
    appends at once."""
    starts = max(3, n // 10)
    out = {"udp_rtt": udp_round_trip(n), "datagram_tag": datagram_tag(max(3, n // 10)),
           "fork_start": fork_start(starts), "exec_start": exec_start(starts)}
    if directory is not None:
        out["fdatasync_append_x4"] = concurrent_appends(directory, max(3, n // 3))
    return out
