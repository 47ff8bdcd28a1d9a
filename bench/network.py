"""Rows timed through the relay (`harness.network`), each beside the direct path in the same run.

- a ballot of 4 priests through the relay, against the same ballot with the
  priests talking directly (samples interleaved, fresh clusters each);
- the relay's throughput: datagrams from one private address to another
  priest's public one, in bursts, against the same bursts sent directly;
- the latency it adds: a ping-pong between two processes through the relay
  (two relay hops per round trip), against the same ping-pong direct; the
  added latency per datagram is half the difference of the medians;
- the relay's resident memory after the throughput test.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import psutil

from bench.ballots import NS, fresh_cluster
from bench.stats import Figure, Target, median
from harness.network.process import RelayProcess, private_ports
from node.config import Config

BURST = 100  # datagrams in flight at once in the throughput test
PAYLOAD = b"x" * 120  # about the size of a priest's datagram


def _relay(config: Config, log: Path | None) -> tuple[RelayProcess, dict[str, int]]:
    bind = private_ports(config)
    relay = RelayProcess(config, bind, log=log)
    relay.start(seed=1)
    return relay, bind


def ballots(workdir: Path, samples: int, n: int = 4) -> list[Figure]:
    """SIGTSTP at one priest until all learned: direct and through the relay, interleaved."""
    direct: list[float] = []
    relayed: list[float] = []
    for i in range(samples):
        for via_relay, times in ((False, direct), (True, relayed)):
            with fresh_cluster(workdir, n, f"net-ballot{int(via_relay)}-{i}") as cluster:
                relay = None
                try:
                    bind = None
                    if via_relay:
                        relay, bind = _relay(cluster.config, cluster.config.data_dir.parent
                                             / "network.jsonl")
                    cluster.start_forked(bind=bind)
                    t0 = time.monotonic_ns()
                    cluster.signal(cluster.names[0], signal.SIGTSTP)
                    learned = cluster.learned_at(cluster.names, t0)
                    times.append((max(learned.values()) - t0) * NS)
                finally:
                    cluster.close()
                    if relay is not None:
                        relay.stop()
    floor = median(direct)
    return [
        Figure("network", f"ballot, {n} priests, direct", "s", direct),
        Figure("network", f"ballot, {n} priests, through the relay", "s", relayed, floor,
               "the same ballot, direct", Target(1.3, text="<= 1.3x direct", of_ratio=True)),
    ]


def _pair(config: Config, bind: dict[str, int] | None) -> tuple[socket.socket, socket.socket,
                                                                tuple[str, int]]:
    """Sockets for alpha and beta (private ports behind a relay, or their own), and beta's address."""
    a, b = (config.priests[n] for n in config.names[:2])
    sa = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sb = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sa.bind((a.host, bind["alpha"] if bind else a.port))
    sb.bind((b.host, bind["beta"] if bind else b.port))
    for s in (sa, sb):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    return sa, sb, (b.host, b.port)


def _throughput(sa: socket.socket, sb: socket.socket, to: tuple[str, int], total: int) -> float:
    """Datagrams per second received, sent in bursts of BURST and collected after each."""
    sb.settimeout(0.5)
    got = 0
    t0 = time.perf_counter()
    for _ in range(total // BURST):
        for _ in range(BURST):
            sa.sendto(PAYLOAD, to)
        try:
            for _ in range(BURST):
                sb.recv(2048)
                got += 1
        except TimeoutError:
            pass
    return got / (time.perf_counter() - t0)


def _echo(sock: socket.socket) -> None:
    """The forked echo: send every datagram back where it came from until SIGTERM."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    while True:
        data, addr = sock.recvfrom(2048)
        sock.sendto(data, addr)


def _rtts(sa: socket.socket, sb: socket.socket, to: tuple[str, int], count: int) -> list[float]:
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            sa.close()
            _echo(sb)
        finally:
            os._exit(0)
    try:
        sa.settimeout(2.0)
        times = []
        for _ in range(count):
            t0 = time.perf_counter_ns()
            sa.sendto(PAYLOAD, to)
            sa.recv(2048)
            times.append((time.perf_counter_ns() - t0) * NS)
        return times
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def forwarding(workdir: Path, samples: int) -> list[Figure]:
    """Throughput, added latency and memory of the relay, each beside the direct path."""
    from bench.cluster import write_config
    from node.config import load_config

    total = 20_000 if samples > 2 else 2_000
    rounds = max(samples // 6, 2)
    pings = max(samples * 20, 40)
    direct_rate: list[float] = []
    relay_rate: list[float] = []
    direct_rtt: list[float] = []
    relay_rtt: list[float] = []
    rss: list[float] = []
    for i in range(rounds):
        config = load_config(write_config(workdir / f"net-fwd-{i}", 2, "fwd"))
        sa, sb, to = _pair(config, None)
        try:
            direct_rate.append(_throughput(sa, sb, to, total))
            direct_rtt += _rtts(sa, sb, to, pings)
        finally:
            sa.close()
            sb.close()
        relay, bind = _relay(config, workdir / f"net-fwd-{i}" / "network.jsonl")
        try:
            sa, sb, to = _pair(config, bind)
            try:
                relay_rate.append(_throughput(sa, sb, to, total))
                relay_rtt += _rtts(sa, sb, to, pings)
            finally:
                sa.close()
                sb.close()
            assert relay.pid is not None
            rss.append(float(psutil.Process(relay.pid).memory_info().rss))
        finally:
            relay.stop()
    added = [max(r - median(direct_rtt), 0.0) / 2 for r in relay_rtt]
    return [
        Figure("network", "UDP bursts, direct", "/s", direct_rate),
        Figure("network", "UDP bursts through the relay", "/s", relay_rate, median(direct_rate),
               "the same bursts, direct", Target(20_000, below=False, text=">= 20,000/s")),
        Figure("network", "ping-pong round trip, direct", "s", direct_rtt),
        Figure("network", "ping-pong round trip through the relay", "s", relay_rtt,
               median(direct_rtt), "the same round trip, direct"),
        Figure("network", "added per datagram by the relay", "s", added, None, "",
               Target(100e-6, text="<= 100 us"),
               {"how": "(relay round trip - median direct round trip) / 2: two relay hops"}),
        Figure("network", "relay RSS after the bursts", "B", rss, None, "",
               Target(25e6, text="<= 25 MB")),
    ]
