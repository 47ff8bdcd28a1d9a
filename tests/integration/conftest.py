"""Running the real `paxos-harness` in a throwaway directory, and proving nothing outlives a test.

A detached supervisor and its priests are not descendants of the test, so
`no_leaks` cannot see them. `Harness` remembers every pid it learns from the
run state, and also finds any process whose working directory is the test's
own; at teardown it kills survivors and fails the test if there were any.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import write_config


def working_under(root: Path) -> list[psutil.Process]:
    """Live processes (not this one) whose working directory is `root` or under it."""
    found = []
    for p in psutil.process_iter(["cwd"]):
        try:
            cwd = p.info["cwd"] or ""
            if (cwd == str(root) or cwd.startswith(f"{root}/")) and p.pid != os.getpid() \
                    and p.status() != psutil.STATUS_ZOMBIE:
                found.append(p)
        except psutil.Error:
            pass
    return found


def kill_all(procs: list[psutil.Process]) -> None:
    """SIGKILL each of `procs` still there, and wait for them to go."""
    for p in procs:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=3)


class Harness:
    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.seen: set[psutil.Process] = set()

    def config(self, n: int = 4, **kw: object) -> Path:
        return write_config(self.cwd, n, **kw)  # type: ignore[arg-type]

    def run(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """`python -m harness ARGS` in the test's directory; remembers the pids it started."""
        env = {**os.environ, "NO_COLOR": "1"}
        done = subprocess.run([sys.executable, "-m", "harness", *args], cwd=self.cwd, env=env,
                              capture_output=True, text=True, timeout=timeout)
        self.remember()
        return done

    def state(self) -> dict | None:
        path = self.cwd / "data" / "supervisor.json"
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            return None

    def pids(self) -> dict[str, int]:
        """Pids in the run state: 'supervisor' -> pid, and priest name -> pid."""
        state = self.state() or {"supervisor": None, "priests": {}}
        pids = {n: i["pid"] for n, i in state["priests"].items()}
        if state["supervisor"]:
            pids["supervisor"] = state["supervisor"]["pid"]
        return pids

    def remember(self) -> None:
        for pid in self.pids().values():
            try:
                self.seen.add(psutil.Process(pid))
            except psutil.NoSuchProcess:
                pass
        self.seen.update(self.strays())

    def strays(self) -> list[psutil.Process]:
        """Live processes working in the test's directory (priests and supervisors)."""
        found = []
        for p in psutil.process_iter(["cwd"]):
            try:
                if p.info["cwd"] == str(self.cwd) and p.status() != psutil.STATUS_ZOMBIE:
                    found.append(p)
            except psutil.Error:
                pass
        return found

    def alive(self) -> list[psutil.Process]:
        out = []
        for p in set(self.seen) | set(self.strays()):
            try:
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    out.append(p)
            except psutil.NoSuchProcess:
                pass
        return out

    def wait_until(self, predicate, timeout: float = 10.0, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.02)


@pytest.fixture
def harness(tmp_path: Path):
    """A Harness in tmp_path; fails the test if any process it started survives."""
    h = Harness(tmp_path)
    yield h
    h.remember()
    survivors = h.alive()
    kill_all(survivors)
    assert not survivors, f"processes survived the test: {[p.pid for p in survivors]}"
