"""A foreground `paxos-harness up` in a real terminal (a pty).

Ctrl+Z asks the next priest for a ballot, Ctrl+C stops everything (exit 130),
and so does Ctrl+\\ (SIGQUIT, exit 131).

The keys are written to the pty's master side, so the terminal's line
discipline turns them into SIGTSTP and SIGINT for its foreground process
group, exactly as when a person presses them.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time

import psutil
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

# Make the pty the controlling terminal of a new session, then become the CLI.
IN_TERMINAL = ("import fcntl, os, sys, termios; os.setsid(); fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
               "os.execv(sys.executable, [sys.executable, '-m', 'harness'] + sys.argv[1:])")


class Terminal:
    def __init__(self, args: list[str], cwd: str) -> None:
        self.master, slave = os.openpty()
        env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
        self.proc = subprocess.Popen([sys.executable, "-c", IN_TERMINAL, *args], cwd=cwd, env=env,
                                     stdin=slave, stdout=slave, stderr=slave, close_fds=True)
        os.close(slave)
        self.screen = b""

    def read_until(self, predicate, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self.screen.decode(errors="replace")):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"terminal never showed it; screen:\n{self.screen.decode()}")
            self.pump(min(left, 0.1))

    def pump(self, timeout: float) -> None:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if ready:
            try:
                self.screen += os.read(self.master, 65536)
            except OSError:  # EIO: the other side is closed
                time.sleep(0.01)

    def press(self, key: bytes) -> None:
        os.write(self.master, key)

    def wait_exit(self, timeout: float) -> None:
        """Keep reading the screen until the CLI exits or `timeout` seconds pass."""
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            self.pump(0.1)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)


def test_foreground_up_ctrl_z_starts_a_ballot_and_ctrl_c_stops_everything(harness) -> None:
    config = harness.config(3)
    term = Terminal(["up", str(config)], str(harness.cwd))
    try:
        term.read_until(lambda s: "cluster test is up" in s)
        harness.remember()
        pids = harness.pids()
        supervisor = psutil.Process(pids.pop("supervisor"))
        assert supervisor.pid == term.proc.pid
        priests = [psutil.Process(pid) for pid in pids.values()]
        # The terminal's keys reach the supervisor's group only, never a priest's.
        fg = os.tcgetpgrp(term.master)
        assert fg == os.getpgid(supervisor.pid)
        assert all(os.getpgid(p.pid) != fg for p in priests)
        assert "\x1b[" in term.screen.decode()  # colour on a terminal

        term.press(b"\x1a")  # Ctrl+Z
        term.read_until(lambda s: "Ctrl+Z: priest alpha starts a ballot" in s)
        decree = harness.cwd / "data" / "alpha" / "decree.txt"
        harness.wait_until(decree.exists, what="alpha's decree.txt after Ctrl+Z")
        assert supervisor.status() != psutil.STATUS_STOPPED
        assert all(p.status() != psutil.STATUS_STOPPED for p in priests)
        term.read_until(lambda s: "the decree is" in s)  # the priests' narration streams here

        term.press(b"\x1a")  # the next priest in turn
        term.read_until(lambda s: "Ctrl+Z: priest beta starts a ballot" in s)

        term.press(b"\x03")  # Ctrl+C
        term.wait_exit(15)
        assert term.proc.returncode == 130, term.screen.decode()
        _gone, alive = psutil.wait_procs(priests, timeout=1)
        assert not alive
        assert harness.state() is None
        events = [json.loads(line) for line in
                  (harness.cwd / "data" / "harness.jsonl").read_text().splitlines()]
        assert [e["priest"] for e in events if e["kind"] == "chaos"] == ["alpha", "beta"]
        assert events[-1]["kind"] == "down"
    finally:
        term.close()


def test_foreground_up_ctrl_backslash_stops_everything_cleanly(harness) -> None:
    config = harness.config(3)
    term = Terminal(["up", str(config)], str(harness.cwd))
    try:
        term.read_until(lambda s: "cluster test is up" in s)
        harness.remember()
        pids = harness.pids()
        socket_path = harness.state()["socket"]
        priests = [psutil.Process(pid) for n, pid in pids.items() if n != "supervisor"]
        term.press(b"\x1c")  # Ctrl+\: SIGQUIT to the foreground group
        term.wait_exit(15)
        assert term.proc.returncode == 131, term.screen.decode()
        _gone, alive = psutil.wait_procs(priests, timeout=1)
        assert not alive
        assert harness.state() is None and not os.path.exists(socket_path)
        events = [json.loads(line) for line in
                  (harness.cwd / "data" / "harness.jsonl").read_text().splitlines()]
        assert events[-1]["kind"] == "down"
    finally:
        term.close()


def test_foreground_up_quiet_no_color_shows_plain_steps_only(harness) -> None:
    config = harness.config(3)
    term = Terminal(["up", str(config), "--fresh", "--quiet", "--no-color"], str(harness.cwd))
    try:
        term.read_until(lambda s: "cluster test is up" in s)
        harness.remember()
        term.press(b"\x1a")  # Ctrl+Z: a ballot at alpha
        term.read_until(lambda s: "the decree is" in s)
        term.pump(0.5)  # the rest of the ballot's lines, if any were to come
        screen = term.screen.decode()
        assert "\x1b[" not in screen  # no colour although this is a terminal
        assert "begins ballot 1.alpha" in screen and " -> " not in screen and " <- " not in screen
        log = (harness.cwd / "data" / "alpha" / "priest.log").read_text()
        assert " -> NextBallot(1.alpha)" in log  # priest.log keeps the messages
        term.press(b"\x03")
        term.wait_exit(15)
        assert term.proc.returncode == 130
    finally:
        term.close()
