"""Rows about processes: start to ready (forked, exec'd, `up --detach`) and resident memory.

`paxos-harness up --detach` is timed only when the supervisor is installed
(`python -m harness up --help` works); otherwise those figures are reported
as not measured, never guessed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]

from bench.ballots import fresh_cluster
from bench.cluster import REPO, BenchError, write_config
from bench.stats import Figure, Target, median

HARNESS = [sys.executable, "-m", "harness"]
NO_SUPERVISOR = "not measured (supervisor not available)"
UP_TARGETS = {4: Target(0.150, text="< 0.15 s"), 64: Target(1.0, text="< 1 s")}


@dataclass
class Skipped:
    """A figure that could not be measured in this run, and why."""

    row: str
    name: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"row": self.row, "name": self.name, "skipped": self.reason}


@dataclass
class Supervised:
    """A cluster brought up by `up --detach`: its config and the pids it reported."""

    config: Path
    supervisor: int | None = None
    priests: dict[str, int] = field(default_factory=dict)


def supervisor_available() -> bool:
    """True when `python -m harness up --help` works on this checkout."""
    try:
        done = subprocess.run([*HARNESS, "up", "--help"], capture_output=True, cwd=REPO,
                              env=_env(), timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "NO_COLOR": "1"}


def _harness(*args: str, cwd: Path, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HARNESS, *args], capture_output=True, text=True, cwd=cwd, env=_env(),
                          timeout=timeout)


def _up(config: Path) -> tuple[float, Supervised]:
    """Time `up CONFIG --detach`; then read the pids it left with `status --json` (untimed)."""
    t0 = time.perf_counter()
    done = _harness("up", str(config), "--detach", cwd=config.parent)
    took = time.perf_counter() - t0
    up = Supervised(config)
    status = _harness("status", str(config), "--json", cwd=config.parent)
    try:
        report = json.loads(status.stdout)
        up.supervisor = report.get("supervisor")
        up.priests = {p["priest"]: p["pid"] for p in report["priests"] if p.get("pid")}
    except (ValueError, KeyError, TypeError):
        pass
    if done.returncode != 0:
        _down(up)
        raise BenchError(f"up --detach failed ({done.returncode}): {done.stderr.strip()[-300:]}")
    return took, up


def _down(up: Supervised) -> None:
    """`down CONFIG`, then SIGKILL by pid whatever it reported and is still there."""
    try:
        _harness("down", str(up.config), cwd=up.config.parent)
    finally:
        for pid in [up.supervisor, *up.priests.values()]:
            if pid is not None and psutil.pid_exists(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def up_detach(workdir: Path, sizes: list[int], samples: int) -> list[Figure]:
    """`paxos-harness up CONFIG --detach` until it returns with every priest ready."""
    figures = []
    for n in sizes:
        times = []
        for i in range(samples):
            directory = workdir / f"up{n}-{i}"
            config = write_config(directory, n, "bench")
            up: Supervised | None = None
            try:
                took, up = _up(config)
                times.append(took)
            finally:
                if up is not None:
                    _down(up)
                shutil.rmtree(directory, ignore_errors=True)
        figures.append(Figure("start", f"up --detach, {n} priests", "s", times, None,
                              f"exec_start + {n} x fork_start", UP_TARGETS.get(n)))
    return figures


def forked_start(workdir: Path, sizes: list[int], samples: int) -> list[Figure]:
    """n priests forked the supervisor's way, until every one said ready (no CLI, no supervisor)."""
    figures = []
    for n in sizes:
        times = []
        for i in range(samples):
            with fresh_cluster(workdir, n, f"fork{n}-{i}") as cluster:
                t0 = time.perf_counter()
                cluster.start_forked()
                times.append(time.perf_counter() - t0)
        figures.append(Figure("start", f"fork {n} priests to ready", "s", times,
                              None, f"{n} x fork_start"))
    return figures


def execed_start(workdir: Path, samples: int, n: int = 4) -> Figure:
    """n `python -m node` priests started at once, until every one printed "ready on"."""
    times = []
    for i in range(samples):
        with fresh_cluster(workdir, n, f"exec{n}-{i}") as cluster:
            t0 = time.perf_counter()
            cluster.start_execed()
            times.append(time.perf_counter() - t0)
    return Figure("start", f"python -m node x{n} to ready", "s", times, None, "exec_start")


def _rss(pids: list[int], kind: str = "rss") -> list[float]:
    """Resident memory of each pid still alive; kind "pss" counts shared pages pro rata."""
    out = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            info = proc.memory_full_info() if kind != "rss" else proc.memory_info()
            out.append(float(getattr(info, kind)))
        except psutil.NoSuchProcess:
            pass
    return out


def bare_interpreter_rss() -> float:
    """Resident memory of a Python interpreter that imported nothing: the memory floor."""
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                            stdin=subprocess.PIPE)
    try:
        time.sleep(0.3)  # let it finish starting
        return _rss([proc.pid])[0]
    finally:
        proc.kill()
        proc.wait()


def _settled_rss(cluster_pids: dict[str, int]) -> list[float]:
    time.sleep(0.2)  # after the ballot, nothing more to allocate
    return _rss(list(cluster_pids.values()))


def memory(workdir: Path, with_supervisor: bool, n: int = 4) -> list[Figure | Skipped]:
    """Resident memory per priest after a ballot (exec'd, forked) and of the supervisor."""
    floor = bare_interpreter_rss()
    out: list[Figure | Skipped] = []
    for how in ("exec", "fork"):
        with fresh_cluster(workdir, n, f"memory-{how}") as cluster:
            cluster.start_execed() if how == "exec" else cluster.start_forked()
            t0 = time.monotonic_ns()
            cluster.signal(cluster.names[0], signal.SIGTSTP)
            cluster.learned_at(cluster.names, t0)
            rss = _settled_rss(cluster.pids())
        name = "python -m node" if how == "exec" else "forked"
        out.append(Figure("memory", f"RSS per priest ({name})", "B", rss, floor, "bare python",
                          Target(15e6, text="< 15 MB")))
    if not with_supervisor:
        out.append(Skipped("memory", "RSS of the supervisor", NO_SUPERVISOR))
        return out
    directory = workdir / "memory-up"
    up: Supervised | None = None
    try:
        _, up = _up(write_config(directory, n, "bench"))
        if up.supervisor is None:
            raise BenchError("status --json did not name the supervisor's pid")
        sup = _rss([up.supervisor])
        priests = _settled_rss(up.priests)
        # The priests' parent: the supervisor's lean fork server (node/forkserver.py).
        server = _rss(sorted({psutil.Process(pid).ppid() for pid in up.priests.values()}))
        # Forked priests share the supervisor's pages: PSS is each one's fair share.
        shares = _rss(list(up.priests.values()), "pss")
        if not sup or not priests:
            raise BenchError("the supervisor or its priests were gone before they were measured")
    finally:
        if up is not None:
            _down(up)
        shutil.rmtree(directory, ignore_errors=True)
    out.append(Figure("memory", "RSS of the supervisor", "B", sup, floor, "bare python",
                      notes={"priests": n}))
    out.append(Figure("memory", "RSS of the fork server", "B", server, floor, "bare python",
                      notes={"meaning": "the lean process the supervisor forks its priests from"}))
    out.append(Figure("memory", "RSS per priest (under the supervisor)", "B", priests, floor,
                      "bare python", Target(15e6, text="< 15 MB"),
                      notes={"median_priest": median(priests) if priests else None}))
    out.append(Figure("memory", "PSS per priest (under the supervisor)", "B", shares, floor,
                      "bare python", Target(15e6, text="< 15 MB"),
                      notes={"meaning": "proportional set size: shared pages divided among sharers"}))
    return out
