"""The harness under attack: racing commands, planted links, a deleted data dir, a full disk.

Every test runs the CLI as a user would (`python -m harness`, in its own
directory), with real processes and real signals on free ports; the `harness`
fixture fails it if any process survives.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from harness.supervisor import control

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def fds(pid: int, name: str = "") -> list[str]:
    """What each open descriptor of `pid` points at: a kind (pipe, socket) or a path.

    Paths in the priest `name`'s own directory read `<priest>/FILE`, so that two
    priests' descriptors compare equal.
    """
    found = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            continue  # closed while we looked
        kind = target.split(":[", 1)[0] if ":[" in target else target
        found.append(kind.replace(f"/{name}/", "/<priest>/") if name else kind)
    return sorted(found)


def running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# --- (12) a restarted priest holds no descriptor of its siblings ------------------


def test_a_restarted_priest_holds_what_a_first_started_one_holds(harness) -> None:
    config = harness.config(4)
    assert harness.run("up", str(config), "--detach").returncode == 0
    sock = harness.state()["socket"]
    assert control.request(sock, "kill", "delta")["outcome"].startswith("killed")
    restarted = control.request(sock, "restart", "delta")["pid"]
    harness.remember()
    first = harness.pids()["alpha"]
    # Same kinds of descriptor, as many: nothing of the supervisor's or the siblings'.
    assert fds(restarted, "delta") == fds(first, "alpha")
    pipes = [t for t in fds(restarted) if t == "pipe"]
    # Its own: the readiness pipe, and multiprocessing's two (parent alive, child alive).
    assert len(pipes) <= 3, pipes
    assert harness.run("down").returncode == 0
