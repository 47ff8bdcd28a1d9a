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

from harness.supervisor.launcher import ForkLauncher
from node.config import load_config

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
from harness.supervisor.launcher import ForkLauncher
from node.config import load_config
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
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
