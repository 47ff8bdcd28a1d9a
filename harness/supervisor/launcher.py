"""The real priest processes: `ForkLauncher`, and its end of `node.forkserver`.

Each priest is forked by a lean process, `python -m node.forkserver`, that the
launcher starts once and that imports only what a priest runs: forked from the
supervisor itself, every priest would carry the supervisor's whole image (its
CLI, psutil) in its resident memory. Each priest runs in its own process group
and counts as started only once it says "ready" on its pipe. The supervisor's
core (`harness.supervisor.core`) drives it through the `Launcher` protocol.
"""

from __future__ import annotations

import os
import pickle
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from multiprocessing.connection import wait as mp_wait
from pathlib import Path
from typing import Any, cast

import psutil

from harness.supervisor.core import KILL_WAIT, PriestProc
from harness.supervisor.state import Identity
from node.config import Config
from node.forkserver import ERROR, EXITED, FAILED, MAX_REQUEST, READY, STARTED, Request

NODE_ROOT = str(Path(__file__).resolve().parents[2])  # the directory that holds node/
# The server answers a request with a fork (after its own start, the first time): no
# answer in this long means it is stuck, and the priest is reported as not started.
START_TIMEOUT = 30.0


class ForkServer:
    """The supervisor's end of `python -m node.forkserver`: ask it for priests, hear their exits.

    The server is this process's child in its own process group (the terminal's
    Ctrl+C and Ctrl+Z are the supervisor's); it dies with this process (a
    parent-death signal, and EOF on its socket), and its priests with it.
    """

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = {**os.environ,
               "PYTHONPATH": os.pathsep.join(p for p in (NODE_ROOT, os.environ.get("PYTHONPATH"))
                                             if p)}
        # -OO: a priest never reads a docstring, so none is kept in memory (0.4 MB less
        # resident per priest); it also skips node's two asserts (type narrowing only).
        with theirs:
            self.proc = subprocess.Popen(
                [sys.executable, "-OO", "-m", "node.forkserver", str(theirs.fileno()),
                 str(os.getpid())],
                pass_fds=[theirs.fileno()], process_group=0, env=env)
        self.sock = ours
        self.exits: dict[int, int] = {}  # pid -> exit code, heard and not yet asked for

    def start(self, request: Request, ready: int) -> int | str:
        """Fork a priest that will say ready on descriptor `ready`: its pid, or why not."""
        try:
            socket.send_fds(self.sock, [pickle.dumps(request)], [ready])
            while True:
                message = self._next(START_TIMEOUT)  # a fork: answered at once, or never
                if message is None:
                    why = self.gone()
                    if self.alive():
                        # Stuck: a late answer must never be taken for the next request's.
                        # Its priests end with it; the launcher starts a new one when asked.
                        self.proc.kill()
                        self.proc.wait()
                    return why
                if message[0] == STARTED:
                    return int(message[1])
                if message[0] == FAILED:
                    return f"the fork server could not start it: {message[1]}"
        except OSError:
            return self.gone()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def gone(self) -> str:
        """Why the server answers no more, in words."""
        code = self.proc.poll()
        if code is None:
            return f"the fork server (pid {self.proc.pid}) did not answer in {START_TIMEOUT:g} s"
        how = f"killed by signal {code_to_name(-code)}" if code < 0 else f"exited with status {code}"
        return f"the fork server (pid {self.proc.pid}) is gone: {how}"

    def exitcode(self, pid: int, timeout: float) -> int | None:
        """How priest `pid` ended (-N: signal N), once the server has reaped it; None if unknown."""
        deadline = time.monotonic() + timeout
        while pid not in self.exits:
            message = self._next(max(0.0, deadline - time.monotonic()))
            if message is None:
                return None
        return self.exits.pop(pid)

    def _next(self, timeout: float | None) -> tuple[Any, ...] | None:
        """The next message (exits are kept as they come); None on timeout or EOF."""
        try:
            self.sock.settimeout(timeout)
            data = self.sock.recv(MAX_REQUEST)
        except (TimeoutError, OSError):
            return None
        if not data:
            return None
        message = pickle.loads(data)  # noqa: S301 - our own child
        if message[0] == EXITED:
            self.exits[int(message[1])] = int(message[2])
        return cast(tuple[Any, ...], message)

    def close(self) -> None:
        """Let the server go (it exits at EOF) and reap it."""
        self.sock.close()
        try:
            self.proc.wait(KILL_WAIT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Forked:
    """The launcher's handle on one forked priest: its pid, and a sentinel readable once it ended.

    The sentinel is the read end of the priest's "ready" pipe: the priest holds
    the write end until it ends, so EOF there means it is gone.
    """

    def __init__(self, pid: int, sentinel: int, server: ForkServer) -> None:
        self.pid, self.sentinel, self.server = pid, sentinel, server
        self.exitcode: int | None = None

    def ended(self, timeout: float | None = None) -> bool:
        return bool(mp_wait([self.sentinel], timeout))

    def join(self, timeout: float | None = None) -> None:
        """Wait (up to `timeout`) until it ended; then `exitcode` is set if the server knows it."""
        if self.exitcode is None and self.ended(timeout):
            self.exitcode = self.server.exitcode(self.pid, KILL_WAIT)

    def kill(self) -> None:
        """SIGKILL it, if it is still there: while its pipe is open the pid is surely its own
        (the server reaps it the moment it ends, and the pid may then be another's)."""
        if self.ended(0):
            return
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def close(self) -> None:
        try:
            os.close(self.sentinel)
        except OSError:
            pass


class ForkLauncher:
    """Priests forked by `node.forkserver`: no fresh interpreter, so starting is fast.

    Each child moves to its own process group first, so the terminal's Ctrl+C and
    Ctrl+Z reach the supervisor only, and closes every descriptor it inherited but
    its standard streams and its own pipe (the server never has the supervisor's
    sockets, files and locks). A child counts as started when it says "ready" on
    its pipe (socket bound, signal handlers installed), never earlier.
    """

    def __init__(self, config: Config, *, quiet: bool, color: bool | None,
                 ready_timeout: float = 10.0, messages: bool = True,
                 bind: dict[str, int] | None = None) -> None:
        self.config, self.quiet, self.color = config, quiet, color
        self.ready_timeout = ready_timeout
        self.messages = messages
        self.bind = bind or {}  # name -> private port behind the relay (none: the configured one)
        # Started now: it imports what a priest runs (~70 ms) while the caller gets on
        # with its own start (the relay's), not at the first spawn.
        self._server: ForkServer | None = ForkServer()
        self._retired: list[ForkServer] = []  # servers that died, kept for their priests' exits

    @property
    def server(self) -> ForkServer:
        if self._server is None:
            self._server = ForkServer()
        elif not self._server.alive():
            # It died (killed by hand, say): its priests ended with it, the next ones need a
            # new server. The old one stays open for its priests' handles: the exits it
            # reported before it died can still be read; closed with the launcher.
            self._retired.append(self._server)
            self._server = ForkServer()
        return self._server

    def spawn(self, names: Sequence[str]) -> tuple[dict[str, PriestProc], dict[str, str]]:
        waiting: dict[int, tuple[str, Forked]] = {}
        failed: dict[str, str] = {}
        for name in names:
            r, w = os.pipe()
            request = Request(self.config, name, quiet=self.quiet, color=self.color,
                              messages=self.messages, bind=self.bind.get(name))
            pid = self.server.start(request, w)
            os.close(w)  # only the child holds the write end: its death shows as EOF
            if isinstance(pid, str):
                os.close(r)
                failed[name] = pid
                continue
            waiting[r] = (name, Forked(pid, r, self.server))
        started, not_ready = self._await_ready(waiting)
        return started, {**failed, **not_ready}

    def _await_ready(self, waiting: dict[int, tuple[str, Forked]]
                     ) -> tuple[dict[str, PriestProc], dict[str, str]]:
        started: dict[str, PriestProc] = {}
        failed: dict[str, str] = {}
        deadline = time.monotonic() + self.ready_timeout
        while waiting and (left := deadline - time.monotonic()) > 0:
            for ready in mp_wait(list(waiting), left):
                name, proc = waiting.pop(cast(int, ready))
                message = _receive(proc.sentinel)
                if message == READY:
                    started[name] = PriestProc(name, proc.pid, create_time(proc.pid), proc)
                else:
                    failed[name] = message or _died(proc)
                    _finish(proc)
        for name, proc in waiting.values():
            failed[name] = f"not ready after {self.ready_timeout:g} s"
            _finish(proc)
        return started, failed

    def signal(self, proc: PriestProc, sig: int) -> bool:
        return signal_group(proc, sig)

    def wait(self, procs: Sequence[PriestProc], timeout: float) -> dict[str, int]:
        by_sentinel = {p.handle.sentinel: p for p in procs}
        ended: dict[str, int] = {}
        if not by_sentinel:
            return ended  # mp_wait([]) would sleep the whole timeout
        for sentinel in mp_wait(list(by_sentinel), max(timeout, 0.0)):
            p = by_sentinel[cast(int, sentinel)]
            p.handle.join()
            ended[p.name] = _code(p.handle)
            p.handle.close()
        return ended

    def close(self) -> None:
        """Stop the fork server (priests still running end with it), and reap dead ones."""
        for server in [*self._retired, *([self._server] if self._server is not None else [])]:
            server.close()
        self._retired.clear()
        self._server = None


def signal_group(proc: PriestProc, sig: int) -> bool:
    """Send `sig` to the priest's process group; False if it is already gone.

    A priest is the fork server's child, reaped the moment it ends, so its pid may be
    recycled: the start-time check (Identity) tells ours apart, and a zombie too. After SIGSTOP or
    SIGCONT it waits until the kernel shows the change, so the answer is then true.
    """
    if not Identity(proc.pid, proc.create_time).alive():
        return False
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        return False
    if sig in (signal.SIGSTOP, signal.SIGCONT):
        settle(proc.pid, stopped=sig == signal.SIGSTOP)
    return True


def settle(pid: int, *, stopped: bool, timeout: float = 1.0) -> None:
    """Wait briefly until the kernel shows the process (not) stopped: the answer is then true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if (psutil.Process(pid).status() == psutil.STATUS_STOPPED) == stopped:
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.001)


def _receive(fd: int) -> str | None:
    """'ready', an error message, or None if the child died without a word."""
    try:
        line = os.read(fd, 4096).decode("utf-8", "replace").strip()
    except OSError:
        return None
    if line == READY:
        return READY
    if line.startswith(ERROR):
        return line.removeprefix(ERROR)
    return None


def _code(proc: Forked) -> int:
    # None only if the fork server died first; its priests then got SIGTERM.
    return proc.exitcode if proc.exitcode is not None else -signal.SIGTERM


def _died(proc: Forked) -> str:
    proc.join(KILL_WAIT)
    code = proc.exitcode
    if code is not None and code < 0:
        return f"killed by signal {code_to_name(-code)} before it was ready"
    return f"exited with status {code} before it was ready"


def _finish(proc: Forked) -> None:
    """Make sure a priest that failed to start is gone and reaped."""
    proc.join(1.0)
    if proc.exitcode is None:
        proc.kill()
        proc.join(KILL_WAIT)
    proc.close()


def create_time(pid: int) -> float:
    try:
        return float(psutil.Process(pid).create_time())
    except psutil.NoSuchProcess:
        return 0.0  # it died already; signal() will find it gone


def code_to_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return str(sig)
