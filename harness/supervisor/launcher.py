"""The real priest processes: `ForkLauncher` and the priest child's entry.

Each priest is a forked multiprocessing child in its own process group; it
counts as started only once it says "ready" on its pipe. The supervisor's core
(`harness.supervisor.core`) drives it through the `Launcher` protocol.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as mp_wait
from multiprocessing.process import BaseProcess
from typing import cast

import psutil

from harness.errors import UserError
from harness.supervisor.core import KILL_WAIT, PriestProc
from harness.supervisor.state import Identity
from node.config import Config


class ForkLauncher:
    """Priests as forked multiprocessing children: no fresh interpreter, so starting is fast.

    Each child moves to its own process group first, so the terminal's Ctrl+C and
    Ctrl+Z reach the supervisor only, and closes every descriptor it inherited
    but its standard streams and its own pipe (not the supervisor's sockets,
    files and locks, nor its siblings' pipes). A child counts as started when it
    sends "ready" on its pipe (socket bound, signal handlers installed), never earlier.
    """

    def __init__(self, config: Config, *, quiet: bool, color: bool | None,
                 ready_timeout: float = 10.0, messages: bool = True,
                 bind: dict[str, int] | None = None) -> None:
        from node.runtime import serve  # imported before forking: children start warm

        self.config, self.quiet, self.color = config, quiet, color
        self.ready_timeout = ready_timeout
        self.bind = bind or {}  # name -> private port behind the relay (none: the configured one)
        self._serve = functools.partial(serve, messages=messages)
        self._ctx = multiprocessing.get_context("fork")

    def spawn(self, names: Sequence[str]) -> tuple[dict[str, PriestProc], dict[str, str]]:
        sys.stdout.flush()  # or the children would print the parent's buffered lines again
        sys.stderr.flush()
        waiting: dict[Connection, tuple[str, BaseProcess]] = {}
        for name in names:
            r, w = self._ctx.Pipe(duplex=False)
            close = [fd for fd in _open_fds() if fd > 2 and fd != w.fileno()]
            proc = self._ctx.Process(
                target=_priest_main, name=f"priest {name}", daemon=True,
                args=(self._serve, self.config, name, w, os.getpid(), self.quiet, self.color,
                      close, self.bind.get(name)))
            proc.start()
            w.close()  # only the child holds the write end: its death shows as EOF
            assert proc.pid is not None
            _setpgid(proc.pid)
            waiting[r] = (name, proc)
        return self._await_ready(waiting)

    def _await_ready(self, waiting: dict[Connection, tuple[str, BaseProcess]]
                     ) -> tuple[dict[str, PriestProc], dict[str, str]]:
        started: dict[str, PriestProc] = {}
        failed: dict[str, str] = {}
        deadline = time.monotonic() + self.ready_timeout
        while waiting and (left := deadline - time.monotonic()) > 0:
            for ready in mp_wait(list(waiting), left):
                conn = cast(Connection, ready)
                name, proc = waiting.pop(conn)
                message = _receive(conn)
                if message == "ready":
                    assert proc.pid is not None
                    started[name] = PriestProc(name, proc.pid, create_time(proc.pid), proc)
                else:
                    failed[name] = message or _died(proc)
                    _finish(proc)
        for conn, (name, proc) in waiting.items():
            conn.close()
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
            ended[p.name] = p.handle.exitcode
            p.handle.close()
        return ended


def signal_group(proc: PriestProc, sig: int) -> bool:
    """Send `sig` to the priest's process group; False if it is already gone.

    Our own unreaped child cannot have its pid recycled; the start-time check is the
    rule anyway, and it also tells a zombie (already dead) apart. After SIGSTOP or
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


def _priest_main(serve: Callable[..., int], config: Config, name: str, conn: Connection,
                 parent: int, quiet: bool, color: bool | None, close: list[int],
                 bind: int | None = None) -> None:
    """The priest child: own process group, the supervisor's descriptors closed, then serve."""
    os.setpgid(0, 0)
    signal.set_wakeup_fd(-1)
    # Until the runtime installs its own handlers (before it says ready), a stray
    # Ctrl+C or SIGTSTP must neither kill nor suspend it.
    for sig in (signal.SIGINT, signal.SIGTSTP):
        signal.signal(sig, signal.SIG_IGN)
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_DFL)
    for fd in close:
        try:
            os.close(fd)
        except OSError:
            pass
    out = open(os.devnull, "w") if quiet else None  # noqa: SIM115 - lives as long as the priest
    try:
        code = serve(config, name, out=out, color=color, watch_parent=parent,
                     on_ready=lambda: conn.send("ready"), bind=bind)
    except UserError as e:
        _send(conn, e.message)
        code = e.exit_status
    except OSError as e:
        # It could not write (a full disk): it stops here, with one line, not a traceback.
        # Its ledger is crash-safe, so `chaos --restart` brings it back once space is back.
        reason = f"priest {name} stopped: cannot write: {_describe(e)}"
        _send(conn, reason)
        _tell(f"{reason}; restart it once that is fixed")
        code = 1
    except BaseException as e:
        _send(conn, f"crashed (this is a bug): {type(e).__name__}: {e}")
        raise
    sys.exit(code)


def _open_fds() -> list[int]:
    """Every descriptor this process has open, as the kernel lists them.

    The priest child closes all of them but its own pipe: a list of what to
    close (the control socket, a client's connection, a sibling's pipe, a lock)
    always misses something; a snapshot of everything cannot. Taken just
    before the fork, it leaves alone what multiprocessing opens during the fork
    itself (the pipe by which the supervisor sees the child end).
    """
    return [int(fd) for fd in os.listdir("/proc/self/fd")]


def _describe(e: OSError) -> str:
    where = f"{os.fsdecode(e.filename)}: " if e.filename is not None else ""
    return f"{where}{e.strerror or e}"


def _tell(line: str) -> None:
    """One line on stderr, if stderr can take it (it may be on the full disk too)."""
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def _send(conn: Connection, message: str) -> None:
    try:
        conn.send(("error", message))
    except OSError:
        pass


def _receive(conn: Connection) -> str | None:
    """'ready', an error message, or None if the child died without a word."""
    try:
        message = conn.recv()
    except (EOFError, OSError):
        message = None
    finally:
        conn.close()
    if message == "ready":
        return "ready"
    if isinstance(message, tuple) and len(message) == 2:
        return str(message[1])
    return None


def _died(proc: BaseProcess) -> str:
    proc.join(KILL_WAIT)
    code = proc.exitcode
    if code is not None and code < 0:
        return f"killed by signal {code_to_name(-code)} before it was ready"
    return f"exited with status {code} before it was ready"


def _finish(proc: BaseProcess) -> None:
    """Make sure a priest that failed to start is gone and reaped."""
    proc.join(1.0)
    if proc.is_alive():
        proc.kill()
        proc.join(KILL_WAIT)


def _setpgid(pid: int) -> None:
    # Also done by the child; doing it here too closes the race in which the
    # parent signals the group before the child has moved into it.
    try:
        os.setpgid(pid, pid)
    except OSError:
        pass


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
