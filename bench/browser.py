"""Headless Chromium for tests and the bench: load a file, dump its DOM, take a screenshot,
time how long a page takes to be shown.

The browser runs in its own session and is killed with its whole process group
when done, so no browser process outlives a call. `chromium()` is None when
there is no Chromium to run (Debian: `apt-get install chromium`; `.ci/run`
installs it).
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

NAMES = ("chromium", "chromium-browser", "google-chrome")


def chromium() -> str | None:
    return next((p for p in map(shutil.which, NAMES) if p), None)


def run_browser(binary: str, url: str, *args: str, timeout: float = 60.0,
                under: Path | None = None) -> subprocess.CompletedProcess[str]:
    """One headless run on a throwaway profile (in `under`, default the temp dir); every
    process of it is gone on return. `strays(str(under))` finds what is left of runs there."""
    with tempfile.TemporaryDirectory(prefix="paxos-chromium-", dir=under) as profile:
        cmd = [binary, *FLAGS, "--enable-logging=stderr", "--v=0", f"--user-data-dir={profile}",
               *args, url]
        env = {**os.environ, MARK: profile}  # inherited by every process of the run
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True, env=env)
        try:
            out, err = proc.communicate(timeout=timeout)
        finally:
            kill_group(proc.pid)
            proc.wait()
            kill_strays(profile)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


MARK = "PAXOS_HARNESS_BROWSER_RUN"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
         "--disable-crash-reporter", "--disable-breakpad")


@dataclass(frozen=True)
class PageTimes:
    """When a page was ready, in ms after its navigation began (the page's own clock)."""

    ready: float  # its script ran to the end (its `data-ready`; 0 if it has none)
    shown: float  # two frames after its load event: laid out and painted


# After the load event: wait for two animation frames (the first is painted before the
# second begins), then read the clock and the page's own data-ready.
_SHOWN = ("new Promise(function(done){requestAnimationFrame(function(){requestAnimationFrame("
          "function(){done([performance.now(), Number(document.documentElement"
          ".getAttribute('data-ready')) || 0]);});});})")


def page_times(binary: str, url: str, *, size: str = "1400,1000", timeout: float = 60.0) -> PageTimes:
    """Open `url` in a fresh headless Chromium and time it, through the DevTools protocol on a
    pipe (`--remote-debugging-pipe`: JSON messages ended by NUL, commands in on fd 3, answers
    out on fd 4); no browser process outlives the call."""
    with tempfile.TemporaryDirectory(prefix="paxos-chromium-") as profile:
        to_child, commands = _high(os.pipe())
        answers, from_child = _high(os.pipe())
        devnull = (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0)
        quiet = [(os.POSIX_SPAWN_OPEN, fd, os.devnull, os.O_WRONLY, 0) for fd in (1, 2)]
        cmd = [binary, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe",
               f"--window-size={size}", "about:blank"]
        # posix_spawn, not fork: it puts the pipe ends on fds 3 and 4 without running Python
        # in the child; setsid: its own session, killed as one group.
        pid = os.posix_spawn(binary, cmd, {**os.environ, MARK: profile}, setsid=True, file_actions=[
            devnull, *quiet, (os.POSIX_SPAWN_DUP2, to_child, 3), (os.POSIX_SPAWN_DUP2, from_child, 4)])
        os.close(to_child)
        os.close(from_child)
        try:
            link = _Pipe(commands, answers, time.monotonic() + timeout)
            page = next(t for t in link.call("Target.getTargets")["targetInfos"] if t["type"] == "page")
            session = link.call("Target.attachToTarget", targetId=page["targetId"], flatten=True)["sessionId"]
            link.call("Page.enable", session=session)
            link.call("Page.navigate", session=session, url=url)
            link.wait("Page.loadEventFired")
            shown, ready = link.call("Runtime.evaluate", session=session, expression=_SHOWN,
                                     awaitPromise=True, returnByValue=True)["result"]["value"]
            return PageTimes(float(ready), float(shown))
        finally:
            os.close(commands)
            os.close(answers)
            kill_group(pid)
            os.waitpid(pid, 0)
            kill_strays(profile)


def _high(fds: tuple[int, int]) -> tuple[int, int]:
    """The pipe's ends moved to fds above 4 (close-on-exec), so putting one on 3 or 4 in the
    child never lands on itself."""
    out = []
    for fd in fds:
        out.append(fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 5))
        os.close(fd)
    return out[0], out[1]


class _Pipe:
    """The DevTools protocol over Chromium's two pipes: a call waits for its own answer."""

    def __init__(self, out: int, into: int, deadline: float) -> None:
        self.out, self.into, self.deadline = out, into, deadline
        self.buffer, self.count = b"", 0

    def call(self, method: str, *, session: str | None = None, **params: Any) -> dict[str, Any]:
        self.count += 1
        message: dict[str, Any] = {"id": self.count, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        os.write(self.out, json.dumps(message).encode() + b"\0")
        while True:
            answer = self._next()
            if answer.get("id") == self.count:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                result: dict[str, Any] = answer["result"]
                return result

    def wait(self, event: str) -> None:
        while self._next().get("method") != event:
            pass

    def _next(self) -> dict[str, Any]:
        while b"\0" not in self.buffer:
            left = self.deadline - time.monotonic()
            if left <= 0 or not select.select([self.into], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self.into, 1 << 16)
            if not chunk:
                raise EOFError("Chromium closed its DevTools pipe")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\0", 1)
        message: dict[str, Any] = json.loads(line)
        return message


def strays(profile: str) -> list[psutil.Process]:
    """Live processes of one browser run, found by the mark in their environment (a crash
    handler leaves the process group, so the group alone does not find it)."""
    found = []
    for p in psutil.process_iter():
        try:
            if p.environ().get(MARK, "").startswith(profile) and p.status() != psutil.STATUS_ZOMBIE:
                found.append(p)
        except psutil.Error:
            pass
    return found


def kill_strays(profile: str) -> None:
    """Kill, by pid, what is left of the run that used `profile`, and wait for it to go."""
    left = strays(profile)
    for p in left:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(left, timeout=5)


def kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def console_lines(stderr: str) -> list[str]:
    """The page's console messages and uncaught errors, as Chromium logs them."""
    return [line for line in stderr.splitlines() if ":CONSOLE(" in line or "Uncaught" in line]


def png_colours(path: Path) -> int:
    """How many distinct byte values the PNG's pixel data holds: 1-3 for a blank page."""
    data = path.read_bytes()
    pos, chunks = 8, []
    while pos < len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind = data[pos + 4:pos + 8]
        if kind == b"IDAT":
            chunks.append(data[pos + 8:pos + 8 + length])
        pos += 12 + length
    return len(set(zlib.decompress(b"".join(chunks))))
