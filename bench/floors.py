"""Floors: the cheapest way to do each thing a priest must do, timed on this disk and host.

Every figure of the benchmark is reported beside one of these, measured in the
same run, so a noisy machine moves both together.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import subprocess
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path

from node.ledger import Ledger
from node.messages import Ballot, LedgerState

FORK = multiprocessing.get_context("fork")


def _timed(n: int, step: object) -> list[float]:
    samples = []
    for i in range(n):
        t0 = time.perf_counter()
        step(i)  # type: ignore[operator]
        samples.append(time.perf_counter() - t0)
    return samples


def ledger_persist(directory: Path, n: int) -> list[float]:
    """One durable ledger write exactly as a priest does it: `Ledger.persist`."""
    with Ledger.open(directory / "ledger-floor") as ledger:
        return _timed(n, lambda i: ledger.persist(LedgerState(last_tried=Ballot(i + 1, "alpha"))))


def atomic_write(directory: Path, n: int) -> list[float]:
    """Temp file + write + fsync + rename + directory fsync, with nothing else around it."""
    target, temp = directory / "atomic.txt", directory / "atomic.txt.tmp"

    def step(i: int) -> None:
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

    return _timed(n, step)


def fdatasync_append(directory: Path, n: int) -> list[float]:
    """The cheapest crash-safe durable write: one line appended, then fdatasync."""
    fd = os.open(directory / "append.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        line = b"v1 last_tried=1.alpha next_bal=0 prev_vote=none crc=00000000\n"
        return _timed(n, lambda i: (os.write(fd, line), os.fdatasync(fd)))
    finally:
        os.close(fd)


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


def measure(directory: Path, n: int) -> dict[str, list[float]]:
    """All floors, `n` samples each (process starts: fewer, they are slow and steady)."""
    directory.mkdir(parents=True, exist_ok=True)
    starts = max(3, n // 10)
    return {
        "ledger_persist": ledger_persist(directory, n),
        "atomic_write": atomic_write(directory, n),
        "fdatasync_append": fdatasync_append(directory, n),
        "udp_rtt": udp_round_trip(n),
        "fork_start": fork_start(starts),
        "exec_start": exec_start(starts),
    }
