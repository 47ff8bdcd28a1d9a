"""Headless Chromium for tests and the bench: load a file, dump its DOM, take a screenshot.

The browser runs in its own session and is killed with its whole process group
when done, so no browser process outlives a call. `chromium()` is None when
there is no Chromium to run (Debian: `apt-get install chromium`; `.ci/run`
installs it).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import zlib
from pathlib import Path

import psutil

NAMES = ("chromium", "chromium-browser", "google-chrome")


def chromium() -> str | None:
    return next((p for p in map(shutil.which, NAMES) if p), None)


def run_browser(binary: str, url: str, *args: str, timeout: float = 60.0
                ) -> subprocess.CompletedProcess[str]:
    """One headless run on a throwaway profile; every process of it is gone on return."""
    with tempfile.TemporaryDirectory(prefix="paxos-chromium-") as profile:
        cmd = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
               "--disable-extensions", "--disable-crash-reporter", "--disable-breakpad",
               "--enable-logging=stderr", "--v=0", f"--user-data-dir={profile}", *args, url]
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
