"""The fork server: forked priests carry only a priest's image, and die with their supervisor.

A loaded C extension shows in /proc/PID/maps, so a priest's maps tell which
heavy modules it holds without any debug hook in the priest.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from harness.supervisor.core import PriestProc
from harness.supervisor.launcher import ForkLauncher
from node.config import load_config
from node.forkserver import FAILED, start

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

# Extensions the supervisor (or this test process) holds and a priest needs not.
NOT_IN_A_PRIEST = ("_psutil_linux", "yaml/_yaml", "_ssl")


def mapped(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


def gone(pids: list[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
                   for p in pids):
            return True
        time.sleep(0.05)
    return False


def test_forked_priest_is_lean_and_not_our_child(make_config, no_leaks) -> None:
    config = load_config(make_config(3))
    import yaml  # noqa: F401 - make sure this process holds what the priest must not

    launcher = ForkLauncher(config, quiet=True, color=False)
    started: dict[str, PriestProc] = {}
    try:
        started, failed = launcher.spawn(config.names)
        assert not failed
        for proc in started.values():
            maps = mapped(proc.pid)
            assert all(ext not in maps for ext in NOT_IN_A_PRIEST), proc.name
            parent = psutil.Process(proc.pid).ppid()
            assert parent != os.getpid()
            assert "node.forkserver" in " ".join(psutil.Process(parent).cmdline())
            assert "-OO" in psutil.Process(proc.pid).cmdline()  # no docstrings in memory
            assert psutil.Process(proc.pid).name() == f"priest {proc.name}"[:15]
            assert psutil.Process(parent).name() == "fork server"
        assert "_psutil_linux" in mapped(os.getpid())  # the check above can see a module
        name, proc = next(iter(started.items()))
        os.kill(proc.pid, signal.SIGKILL)
        assert launcher.wait([proc], 5) == {name: -signal.SIGKILL}
    finally:
        for proc in started.values():
            launcher.signal(proc, signal.SIGKILL)
        launcher.close()


OWNER = """
import json, sys
from harness.supervisor.core import PriestProc
from harness.supervisor.launcher import ForkLauncher
from node.config import load_config
from node.forkserver import FAILED, start
config = load_config(sys.argv[1])
launcher = ForkLauncher(config, quiet=True, color=False)
started, failed = launcher.spawn(config.names)
print(json.dumps({"server": launcher.server.proc.pid,
                  "priests": [p.pid for p in started.values()]}), flush=True)
sys.stdin.read()
"""


def test_priests_and_fork_server_die_with_a_killed_owner(make_config, no_leaks) -> None:
    owner = subprocess.Popen([sys.executable, "-c", OWNER, str(make_config(3))],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    pids: list[int] = []
    try:
        assert owner.stdout is not None
        line = json.loads(owner.stdout.readline())
        pids = [line["server"], *line["priests"]]
        assert len(line["priests"]) == 3
        owner.kill()
        owner.wait()
        assert gone(pids, 2.0), "a priest or the fork server outlived its SIGKILLed owner"
    finally:
        owner.kill()
        owner.wait()
        kill_left(pids)


def kill_left(pids: list[int]) -> None:
    """SIGKILL those of `pids` still running as what we started (not a recycled pid): a fork
    server or a priest (whose command line is its server's, or the stand-in's below)."""
    for pid in pids:
        try:
            p = psutil.Process(pid)
            if any(mark in " ".join(p.cmdline()) for mark in ("node.forkserver", "fork_priest")):
                p.kill()
        except psutil.Error:
            pass


STAND_IN = """
import os, sys
from node.config import load_config
from node.forkserver import Request, fork_priest
config = load_config(sys.argv[1])
r, w = os.pipe()
priest, pid = fork_priest(Request(config, config.names[0], quiet=True, color=False,
                                  messages=True), w)
print(pid, flush=True)
os._exit(0)  # gone at once, before the priest has armed its parent-death signal
"""


def test_a_priest_whose_server_dies_as_it_forks_it_stops(make_config, no_leaks) -> None:
    """The priest watches the pid its server had, not what getppid() says once it is gone."""
    pids: list[int] = []
    try:
        for _ in range(5):  # the race is in the first milliseconds: try it a few times
            out = subprocess.run([sys.executable, "-c", STAND_IN, str(make_config(3))],
                                 capture_output=True, text=True, timeout=30, check=True)
            pids.append(int(out.stdout))
            assert gone(pids[-1:], 5.0), "an orphaned priest kept running"
    finally:
        kill_left(pids)


def test_a_request_that_fails_fails_alone(tmp_path: Path) -> None:
    r, w = os.pipe()
    os.close(r)
    children: dict[int, object] = {}
    answer = start(b"not a pickled request", [w], children)  # type: ignore[arg-type]
    assert answer[0] == FAILED and "UnpicklingError" in str(answer[1])
    assert not children
    with pytest.raises(OSError):
        os.fstat(w)  # its descriptor closed all the same


def test_a_dead_fork_server_is_replaced_for_the_next_priests(make_config, no_leaks) -> None:
    config = load_config(make_config(3))
    launcher = ForkLauncher(config, quiet=True, color=False)
    started: dict[str, PriestProc] = {}
    try:
        started, failed = launcher.spawn(config.names[:1])
        assert not failed
        server = launcher.server
        first = server.proc.pid
        os.kill(first, signal.SIGKILL)
        server.proc.wait(5)  # (launcher.server would now start a new one)
        assert gone([p.pid for p in started.values()], 5.0)  # they end with their server
        more, failed = launcher.spawn(config.names[1:])
        assert not failed and len(more) == 2
        assert launcher.server.proc.pid != first
        # The first priest's handle still answers (its server is gone: its code is presumed).
        assert set(launcher.wait(list(started.values()), 5)) == {config.names[0]}
        started = more
    finally:
        for proc in started.values():
            launcher.signal(proc, signal.SIGKILL)
        launcher.close()
