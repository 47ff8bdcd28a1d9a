"""Rows timed on real priests: ballot latency, contention, fail-over, crash and restart.

A decree is written once, so every sample gets a fresh cluster: new ports, a
new data dir, priests forked the way the supervisor forks them. Only the part
being measured is timed: from the signal to the `learned` events (written the
moment each priest's decree.txt is durable), on the shared monotonic clock.
"""

from __future__ import annotations

import shutil
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.cluster import BenchError, Cluster, write_config
from bench.stats import Figure, Target, median

NS = 1e-9
MAX_RETRIES = 20  # samples spoilt by a race (decided before the crash) are retried
REFERENCE = "reference"  # the floor of a ballot's critical path (resolved by bench.__main__)
APPEND_ONLY = "append-only path"  # every durable write an fdatasync'd append (the floor)
_between: list[Callable[[], None]] = []


def between_samples(hook: Callable[[], None]) -> None:
    """Run `hook` after every cluster is gone (untimed): the disk floors are sampled there."""
    _between[:] = [hook]


@contextmanager
def fresh_cluster(workdir: Path, n: int, tag: str) -> Iterator[Cluster]:
    """n priests in a new directory; after, every priest killed and the directory gone."""
    directory = workdir / tag
    cluster = Cluster(write_config(directory, n, "bench"))
    try:
        yield cluster
    finally:
        cluster.close()
        shutil.rmtree(directory, ignore_errors=True)
        for hook in _between:
            hook()


def _phases(cluster: Cluster, proposer: str, t0: int, learned: dict[str, int]) -> dict[str, float]:
    """Where one ballot's time went, in seconds from the signal."""
    def first(kind: str) -> float | None:
        found = cluster.events(proposer, kind, t0)
        return (found[0].t - t0) * NS if found else None

    return {"ballot_started": first("ballot_started") or 0.0, "proposed": first("proposed") or 0.0,
            "proposer_learned": (learned[proposer] - t0) * NS,
            "all_learned": (max(learned.values()) - t0) * NS}


def _work(cluster: Cluster) -> dict[str, float]:
    """CPU seconds and page faults of all the cluster's priests so far (steadier than latency
    on a shared machine: what a ballot costs, whoever else runs)."""
    cpu, faults = 0, 0
    for pid in cluster.pids().values():
        with open(f"/proc/{pid}/schedstat") as f:  # ns on the CPU, ns waiting, slices
            cpu += int(f.read().split()[0])
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        faults += int(fields[7]) + int(fields[9])  # minflt, majflt
    return {"cpu_all_priests": cpu * NS, "page_faults_all_priests": float(faults)}


def ballot_latency(workdir: Path, sizes: list[int], samples: int) -> list[Figure]:
    """SIGTSTP at one priest until every priest has decree.txt, on fresh clusters of each size."""
    figures = []
    for n in sizes:
        times: list[float] = []
        phases: list[dict[str, float]] = []
        for i in range(samples):
            with fresh_cluster(workdir, n, f"ballot{n}-{i}") as cluster:
                cluster.start_forked()
                proposer = cluster.names[0]
                before = _work(cluster)
                t0 = time.monotonic_ns()
                cluster.signal(proposer, signal.SIGTSTP)
                learned = cluster.learned_at(cluster.names, t0)
                after = _work(cluster)
                times.append((max(learned.values()) - t0) * NS)
                phases.append(_phases(cluster, proposer, t0, learned)
                              | {k: after[k] - before[k] for k in after})
        notes = {f"median_{k}": median([p[k] for p in phases]) for k in phases[0]}
        target = Target(2.0, text="median <= 2x floor", of_ratio=True) if n == 4 else None
        figures.append(Figure("ballot", f"ballot, {n} priests", "s", times, None, APPEND_ONLY,
                              target, notes))
    return figures


def contention(workdir: Path, samples: int, n: int = 4) -> Figure:
    """SIGTSTP to every priest at once: time until all hold the same decree."""
    times: list[float] = []
    for i in range(samples):
        with fresh_cluster(workdir, n, f"contention-{i}") as cluster:
            cluster.start_forked()
            t0 = time.monotonic_ns()
            for name in cluster.names:
                cluster.signal(name, signal.SIGTSTP)
            learned = cluster.learned_at(cluster.names, t0, timeout=20.0)
            if len({cluster.decree(p) for p in cluster.names}) != 1:
                raise BenchError(f"{cluster.path}: priests disagree under contention")
            times.append((max(learned.values()) - t0) * NS)
    return Figure("contention", f"all {n} ballot at once", "s", times, None, REFERENCE)


def _wait_event(cluster: Cluster, name: str, kind: str, since: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cluster.events(name, kind, since):
        if time.monotonic() > deadline:
            raise BenchError(f"{cluster.path}: priest {name} never logged {kind!r}")
        time.sleep(0.0001)


def failover(workdir: Path, samples: int, n: int = 4) -> Figure:
    """The proposer SIGKILLed mid-ballot, another priest balloting at once: all survivors learn."""
    times: list[float] = []
    stages: dict[str, int] = {}
    for i in range(samples):
        with fresh_cluster(workdir, n, f"failover-{i}") as cluster:
            cluster.start_forked()
            victim, other = cluster.names[0], cluster.names[1]
            start = time.monotonic_ns()
            cluster.signal(victim, signal.SIGTSTP)
            _wait_event(cluster, victim, "ballot_started", start)  # its ballot is under way
            t0 = time.monotonic_ns()
            cluster.kill([victim])
            cluster.signal(other, signal.SIGTSTP)
            survivors = cluster.names[1:]
            learned = cluster.learned_at(survivors, start)
            times.append((max(learned.values()) - t0) * NS)
            stage = next((k for k in ("learned", "proposed") if cluster.events(victim, k, start)),
                         "polling")
            stages[stage] = stages.get(stage, 0) + 1
    notes: dict[str, Any] = {"victim_reached": stages,
                             "killed_when": "the proposer logged ballot_started"}
    return Figure("failover", f"proposer killed, {n} priests", "s", times, None, REFERENCE,
                  Target(0.050, text="< 50 ms"), notes)


def _crash_mid_ballot(cluster: Cluster) -> int:
    """Start all, begin a ballot, SIGKILL all; monotonic ns of the crash, or -1 if decided."""
    cluster.start_forked()
    proposer = cluster.names[0]
    start = time.monotonic_ns()
    cluster.signal(proposer, signal.SIGTSTP)
    _wait_event(cluster, proposer, "ballot_started", start)
    t0 = time.monotonic_ns()
    cluster.kill()
    if any(cluster.decree(p) is not None for p in cluster.names):
        return -1
    return t0


def crash_restart(workdir: Path, samples: int, n: int = 4) -> list[Figure]:
    """Every priest SIGKILLed mid-ballot, all restarted from their ledgers: time to a decision."""
    times: list[float] = []
    ready: list[float] = []
    spoilt = 0
    while len(times) < samples:
        with fresh_cluster(workdir, n, f"restart-{len(times)}-{spoilt}") as cluster:
            t0 = _crash_mid_ballot(cluster)
            if t0 < 0:
                spoilt += 1
                if spoilt > MAX_RETRIES:
                    raise BenchError("every crash came after the decision; cannot time a restart")
                continue
            cluster.start_forked()
            ready.append((time.monotonic_ns() - t0) * NS)
            cluster.signal(cluster.names[0], signal.SIGTSTP)
            learned = cluster.learned_at(cluster.names, t0)
            times.append((min(learned.values()) - t0) * NS)
    notes = {"spoilt_decided_before_crash": spoilt,
             "method": "multiprocessing fork, as the supervisor"}
    return [
        Figure("restart", f"crash all {n}, restart: all ready", "s", ready, None,
               f"{n} x fork_start", None, notes),
        Figure("restart", f"crash all {n} to first decision", "s", times, None,
               f"{n} x fork_start + {REFERENCE}", Target(0.150, text="< 0.15 s"), notes),
    ]
