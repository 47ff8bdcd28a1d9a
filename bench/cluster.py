"""Throwaway clusters of real priests for the benchmark: free ports, a temp data dir, pids tracked.

Priests are started the way the supervisor starts them (its `ForkLauncher`:
forked by a lean `node.forkserver` process that has imported only what a
priest runs, each in its own process group, "ready" on a pipe) or the way a
user does (`python -m node`).
Every process is tracked by pid and killed by `Cluster.close()`, which callers
run in a `finally`, so neither an error nor Ctrl+C leaves one behind.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from harness.supervisor.core import PriestProc
from harness.supervisor.launcher import ForkLauncher
from node.config import load_config
from node.record import PriestEvent, RecordError

REPO = Path(__file__).resolve().parents[1]
NAMES = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota",
         "kappa", "lambda", "mu", "nu", "xi", "omicron", "pi"]
READY_TIMEOUT = 20.0


class BenchError(RuntimeError):
    """A cluster did not do what the benchmark needs (not ready, never learned)."""


def free_ports(n: int, kind: socket.SocketKind) -> list[int]:
    """n distinct ports on 127.0.0.1 that were free a moment ago: UDP (socket.SOCK_DGRAM)
    or TCP (socket.SOCK_STREAM)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, kind)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def free_for_both(n: int) -> list[int]:
    """n loopback ports free for UDP and for TCP a moment ago (a priest may use either)."""
    from harness.campaign.run import free_ports as free_for_udp_and_tcp  # the one picker of it

    return free_for_udp_and_tcp(n)


def free_udp_ports(n: int) -> list[int]:
    """n free UDP ports: a cluster's priests'."""
    return free_ports(n, socket.SOCK_DGRAM)


def priest_names(n: int) -> list[str]:
    """Greek names for up to 16 priests, p1..pN beyond."""
    return NAMES[:n] if n <= len(NAMES) else [f"p{i}" for i in range(1, n + 1)]


def write_config(directory: Path, n: int, cluster: str) -> Path:
    """A config of n priests on free ports, data under directory/data."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = [f"cluster: {cluster}", f"data_dir: {directory / 'data'}", "priests:"]
    for name, port in zip(priest_names(n), free_udp_ports(n), strict=True):
        lines.append(f"  {name}: {{host: 127.0.0.1, port: {port}}}")
    path = directory / f"{cluster}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


class Cluster:
    """The priests of one config; `start`, signal by name, read their files, `close`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.config = load_config(path)
        self.forks: ForkLauncher | None = None  # started at the first start_forked
        self.forked: dict[str, PriestProc] = {}
        self.execed: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def names(self) -> list[str]:
        return self.config.names

    def pids(self) -> dict[str, int]:
        """Pids of the priests started and not yet killed."""
        pids = {n: p.pid for n, p in self.forked.items()}
        pids.update({n: p.pid for n, p in self.execed.items()})
        return pids

    # --- starting --------------------------------------------------------

    def start_forked(self, names: list[str] | None = None,
                     bind: dict[str, int] | None = None) -> None:
        """Fork the named priests (default: all) and wait until every one is ready.

        `bind`: private ports behind a relay (name -> port), as the supervisor passes them."""
        if self.forks is None:
            self.forks = ForkLauncher(self.config, quiet=True, color=False,
                                      ready_timeout=READY_TIMEOUT)
        self.forks.bind = bind or {}
        started, failed = self.forks.spawn(names or self.names)
        self.forked.update(started)
        if failed:
            name, reason = next(iter(failed.items()))
            raise BenchError(f"{self.path}: priest {name} did not start: {reason} "
                             f"(see {self.config.priest_dir(name)}/priest.log)")

    def start_execed(self, names: list[str] | None = None) -> None:
        """Start the named priests as `python -m node CONFIG NAME`; wait until each is ready."""
        env = {**os.environ, "PYTHONPATH": str(REPO), "NO_COLOR": "1"}
        outs: dict[str, Path] = {}
        for name in names or self.names:
            out = self.path.parent / f"{name}.out"
            with open(out, "ab") as sink:
                self.execed[name] = subprocess.Popen(
                    [sys.executable, "-m", "node", str(self.path), name],
                    stdout=sink, stderr=subprocess.STDOUT, env=env, start_new_session=True)
            outs[name] = out
        deadline = time.monotonic() + READY_TIMEOUT
        while outs:
            for name, out in list(outs.items()):
                if b"ready on" in out.read_bytes():
                    del outs[name]
                elif self.execed[name].poll() is not None:
                    raise BenchError(f"priest {name} exited: {out.read_text()[-300:]}")
            if time.monotonic() > deadline:
                raise BenchError(f"{self.path}: not ready after {READY_TIMEOUT:g} s: "
                                 f"{sorted(outs)}")
            time.sleep(0.002)

    # --- acting ----------------------------------------------------------

    def signal(self, name: str, sig: int) -> None:
        os.kill(self.pids()[name], sig)

    def kill(self, names: list[str] | None = None) -> None:
        """SIGKILL the named priests (default: all started) and reap them."""
        for name in names or list(self.pids()):
            if name in self.forked:
                proc = self.forked.pop(name).handle
                proc.kill()
                proc.join()
                proc.close()
            elif name in self.execed:
                popen = self.execed.pop(name)
                _kill_pid(popen.pid)
                popen.wait()

    def close(self) -> None:
        """Kill every priest still running, and the fork server; safe to call twice."""
        self.kill()
        if self.forks is not None:
            self.forks.close()

    # --- reading ---------------------------------------------------------

    def decree(self, name: str) -> int | None:
        path = self.config.priest_dir(name) / "decree.txt"
        try:
            return int(path.read_text())
        except (FileNotFoundError, ValueError):
            return None

    def events(self, name: str, kind: str | None = None, since: int = 0) -> list[PriestEvent]:
        """The priest's events.jsonl records (of `kind`, at or after monotonic ns `since`)."""
        path = self.config.priest_dir(name) / "events.jsonl"
        try:
            lines = path.read_text().splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            try:
                event = PriestEvent.from_line(line)
            except RecordError:
                continue  # a line being written right now
            if (kind is None or event.kind == kind) and event.t >= since:
                out.append(event)
        return out

    def learned_at(self, names: list[str], since: int, timeout: float = 10.0) -> dict[str, int]:
        """Wait until every named priest has decree.txt; monotonic ns of each one's `learned`.

        The `learned` event is written right after decree.txt is durable, so its
        time is when the priest learned, free of this process's polling delay.
        """
        deadline = time.monotonic() + timeout
        while any(self.decree(n) is None for n in names):
            if time.monotonic() > deadline:
                missing = [n for n in names if self.decree(n) is None]
                raise BenchError(f"{self.path}: no decree after {timeout:g} s at {missing}")
            time.sleep(0.002)
        times: dict[str, int] = {}
        while len(times) < len(names):
            for n in names:
                found = self.events(n, "learned", since)
                if found:
                    times[n] = found[0].t
            if len(times) < len(names):
                if time.monotonic() > deadline:
                    raise BenchError(f"{self.path}: decree.txt without a 'learned' event")
                time.sleep(0.002)
        return times


def _kill_pid(pid: int | None) -> None:
    if pid is None:
        return
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
