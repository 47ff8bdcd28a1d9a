"""Foreign priests: any program, started from the config's `command`, under the same supervisor.

A foreign priest is a program the harness did not write (the original C++
priest, a student's, `examples/naive-priest/`). `ForeignLauncher` starts one
per name with `subprocess`: in its own process group (the terminal's Ctrl+C
and Ctrl+Z are the supervisor's), its working directory the data dir, stdin
from /dev/null, stdout and stderr into a pipe (or a pseudo-terminal with
`tty: true`, for a program that buffers its output when not on a terminal).
It counts as started once it is alive with a socket bound on its port (UDP,
or a listening TCP socket, as `transport` says) within `ready_timeout`;
otherwise it is stopped and the reason names the priest and shows its last
lines of output.

Its output goes to `<dir>/priest.log`, each line stamped as the harness's
own priests stamp their narration (`NAME | HH:MM:SS.mmm text`, colour codes
removed), and in the foreground to the terminal too. The supervisor's loop
reads it (`waitables`, `pump`): no thread.

`{config}` is the file written for it: the cluster config as YAML (or the
config itself when nothing needs changing), or the `legislators-json` of the
original; behind the relay its own entry gives the private port the relay
forwards to. `MixedLauncher` drives the harness's own priests and foreign
ones as one launcher.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import wait as mp_wait
from pathlib import Path
from typing import Any, TextIO, cast

import psutil
import yaml
from colorama import Style

from harness.errors import UserError
from harness.supervisor.core import KILL_WAIT, Launcher, PriestProc
from harness.supervisor.files import check_not_link, open_file, write_atomic
from harness.supervisor.launcher import code_to_name, create_time, signal_group
from node.config import Config, load_yaml
from node.errors import ConfigError
from node.output import priest_color

POLL = 0.01  # seconds between looks at a starting priest's sockets
TAIL_LINES = 8  # lines of output shown when a priest does not start
LONGEST_LINE = 4096  # bytes of output without a newline written as a line of their own
ANSI = re.compile(rb"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")
CONFIG_HEADER = "# written by paxos-harness for priest {name}: the cluster, as {name} sees it\n"


# --- the command and the config written for it ---------------------------------------


def priest_config_path(config: Config, name: str) -> Path:
    """Where the config written for foreign priest `name` goes: the data dir, beside its directory."""
    suffix = "json" if config.foreign.config_format == "legislators-json" else "yaml"
    return config.data_dir / f"{name}.config.{suffix}"


def config_for(config: Config, name: str, bind: int | None) -> str:
    """The text of `name`'s config: every priest's address, its own at `bind` behind the relay.

    As YAML it is the cluster config itself with the priest's own port changed and its
    paths made absolute (the priest runs in the data dir, not where `up` ran): `data_dir`,
    and `key_file` (relative to the config file). Every other setting is kept.
    """
    ports = {n: (bind if n == name and bind is not None else p.port)
             for n, p in config.priests.items()}
    if config.foreign.config_format == "legislators-json":
        legislators = [{"ip": p.host, "port": ports[n], "name": n}
                       for n, p in config.priests.items()]
        return json.dumps({"legislators": legislators}, indent=2) + "\n"
    raw = _raw_config(config)
    doc: dict[str, Any] = {**raw, "cluster": config.cluster,
                           "data_dir": str(config.data_dir.resolve())}
    if config.key_file is not None:
        doc["key_file"] = str(config.key_file.resolve())
    given = raw.get("priests")
    priests: dict[str, Any] = given if isinstance(given, dict) else {}
    listed: dict[str, Any] = {}
    for n, p in config.priests.items():
        entry = priests.get(n)
        listed[n] = {**(entry if isinstance(entry, dict) else {}), "host": p.host,
                     "port": ports[n]}
    doc["priests"] = listed
    return CONFIG_HEADER.format(name=name) + yaml.safe_dump(doc, sort_keys=False)


def _raw_config(config: Config) -> dict[str, Any]:
    """The cluster config file as it was parsed (empty if it cannot be read again now)."""
    try:
        raw = load_yaml(config.path)
    except ConfigError:
        return {}
    return raw if isinstance(raw, dict) else {}


def write_config(config: Config, name: str, bind: int | None) -> Path:
    """Write `name`'s config file (atomically, never through a link); its path."""
    path = priest_config_path(config, name)
    write_atomic(path, config_for(config, name, bind))
    return path


def command_for(config: Config, name: str, config_file: Path, port: int) -> list[str]:
    """The command line of foreign priest `name`: placeholders filled in, the program found.

    StartupError-worthy problems (no such program, not executable) are raised
    as ProgramError with one line naming the priest and the program.
    """
    p = config.priests[name]
    assert p.command is not None
    values = {"config": str(config_file), "name": name, "host": p.host, "port": str(port),
              "dir": str(config.priest_dir(name))}
    argv = [arg.format_map(values) for arg in p.command]
    argv[0] = find_program(argv[0], config.path)
    return argv


class ProgramError(Exception):
    """A foreign priest's program cannot be run: the message says why."""


def find_program(program: str, config_path: str) -> str:
    """The program's path: a path with a `/` as it is (the config made it absolute), a bare
    name looked up on PATH; ProgramError if it is missing or not executable."""
    if "/" not in program:
        found = shutil.which(program)
        if found is None:
            raise ProgramError(f"no program {program!r} on PATH (the command in {config_path})")
        return found
    path = Path(program)
    if not path.exists():
        raise ProgramError(f"no such program: {program} (a relative path in the command is "
                           f"taken from the directory of {config_path})")
    if path.is_dir():
        raise ProgramError(f"{program} is a directory, not a program")
    if not os.access(path, os.X_OK):
        raise ProgramError(f"{program} is not executable (chmod +x {program}, or put its "
                           f"interpreter first in the command)")
    return program


# --- its output -------------------------------------------------------------------------


class Output:
    """A foreign priest's stdout and stderr: stamped lines to priest.log, and to `out` if any."""

    def __init__(self, name: str, index: int, fd: int, log_fd: int, out: TextIO | None,
                 color: bool) -> None:
        self.name, self.fd, self.log_fd, self.out, self.color = name, fd, log_fd, out, color
        self.prefix = f"{priest_color(index)}{name:>8}{Style.RESET_ALL}" if color else f"{name:>8}"
        self.partial = b""
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self.open = True
        os.set_blocking(fd, False)

    def read(self) -> None:
        """Take what is there; at its end (EOF, or EIO from a terminal whose program is gone),
        write the last partial line and close."""
        while self.open:
            try:
                data = os.read(self.fd, 65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:
                self.close()
                return
            self._take(data)

    def _take(self, data: bytes) -> None:
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        if len(self.partial) > LONGEST_LINE:
            lines.append(self.partial)
            self.partial = b""
        if lines:
            self._write(lines)

    def _write(self, lines: list[bytes]) -> None:
        now = time.time()
        stamp = time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now * 1000) % 1000:03d}"
        plain, shown = [], []
        for raw in lines:
            line = raw.rstrip(b"\r")
            text = ANSI.sub(b"", line).decode("utf-8", "replace")
            self.tail.append(text)
            plain.append(f"{self.name:>8} | {stamp} {text}\n")
            if self.color:
                shown.append(f"{self.prefix} | {Style.DIM}{stamp}{Style.RESET_ALL} "
                             f"{line.decode('utf-8', 'replace')}{Style.RESET_ALL}\n")
        with contextlib.suppress(OSError):
            os.write(self.log_fd, "".join(plain).encode())
        if self.out is not None:
            try:
                self.out.write("".join(shown if self.color else plain))
                self.out.flush()
            except (OSError, ValueError):
                pass  # nobody watches the terminal any more; priest.log still has it

    def close(self) -> None:
        if not self.open:
            return
        if self.partial:
            self._write([self.partial])
            self.partial = b""
        self.open = False
        os.close(self.fd)
        os.close(self.log_fd)

    def last_lines(self) -> str:
        """Its last lines of output, indented, for an error message; '' if it wrote none."""
        if not self.tail:
            return ""
        return "; its last lines of output:\n" + "\n".join(f"    {t}" for t in self.tail)


# --- the processes -----------------------------------------------------------------------


@dataclass
class ForeignHandle:
    """The launcher's own record of a foreign priest's process."""

    popen: subprocess.Popen[bytes]
    sentinel: int  # a pidfd: readable once the process has ended
    output: Output
    before: frozenset[str] = field(default_factory=frozenset)  # paths there before it started


def snapshot(config: Config, name: str) -> frozenset[str]:
    """What foreign priest `name` may create, as paths relative to the data dir: everything
    under its own directory, and the other priests' directories themselves (the original
    makes one for every priest of its config), not what is in them."""
    found: set[str] = set()
    for other in config.names:
        top = config.priest_dir(other)
        if top.is_dir() and not top.is_symlink():
            found.add(other)
    top = config.priest_dir(name)
    if name in found:
        for root, dirs, files in os.walk(top):
            rel = os.path.relpath(root, config.data_dir)
            found.update(os.path.join(rel, f) for f in (*dirs, *files))
    return frozenset(found)


class ForeignLauncher:
    """Foreign priests as processes of their own program (see the module's docstring)."""

    def __init__(self, config: Config, *, out: TextIO | None, color: bool,
                 bind: dict[str, int] | None = None,
                 failed_run: Callable[[str, frozenset[str]], None] | None = None,
                 tick: Callable[[], None] | None = None) -> None:
        self.config, self.out, self.color = config, out, color
        self.tick = tick  # what must still happen while it waits for a priest to be ready
        self.bind = bind or {}
        # Told of each priest that did not start, with what was there before it ran: its
        # files are its run's as much as those of a priest that started.
        self.failed_run = failed_run
        self.outputs: dict[int, Output] = {}  # fd -> output still open

    # --- start ---

    def spawn(self, names: Sequence[str]) -> tuple[dict[str, PriestProc], dict[str, str]]:
        waiting: dict[str, PriestProc] = {}
        failed: dict[str, str] = {}
        try:
            for name in names:
                try:
                    waiting[name] = self._start(name)
                except (ProgramError, OSError, UserError) as e:  # UserError: a planted link
                    failed[name] = _why(e)
        except BaseException:
            for proc in waiting.values():  # nobody else knows of them yet
                self._finish(proc)
            raise
        started = self._await_ready(waiting, failed)
        return started, failed

    def _start(self, name: str) -> PriestProc:
        config = self.config
        directory = config.priest_dir(name)
        check_not_link(directory)
        directory.mkdir(parents=True, exist_ok=True)
        before = snapshot(config, name)
        bind = self.bind.get(name)
        port = bind if bind is not None else config.priests[name].port
        config_file = write_config(config, name, bind)
        argv = command_for(config, name, config_file, port)
        log_fd = open_file(directory / "priest.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            if config.foreign.tty:
                read_fd, write_fd = os.openpty()
            else:
                read_fd, write_fd = os.pipe()
        except OSError:
            os.close(log_fd)
            raise
        try:
            popen = subprocess.Popen(  # the user's own command, from their config
                argv, cwd=config.data_dir, stdin=subprocess.DEVNULL, stdout=write_fd,
                stderr=write_fd, process_group=0, close_fds=True,
                # The supervisor is single-threaded: a function between fork and exec is safe.
                preexec_fn=_death_signal(config.foreign.stop_signal))  # noqa: PLW1509
        except BaseException:
            os.close(read_fd)
            os.close(log_fd)
            raise
        finally:
            os.close(write_fd)
        try:
            sentinel = os.pidfd_open(popen.pid)
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(popen.pid, signal.SIGKILL)
            popen.wait()
            os.close(read_fd)
            os.close(log_fd)
            raise
        output = Output(name, config.priests[name].index, read_fd, log_fd, self.out, self.color)
        self.outputs[read_fd] = output
        handle = ForeignHandle(popen, sentinel, output, before)
        return PriestProc(name, popen.pid, create_time(popen.pid), handle,
                          stop_signal=config.foreign.stop_signal)

    def _await_ready(self, waiting: dict[str, PriestProc], failed: dict[str, str]
                     ) -> dict[str, PriestProc]:
        started: dict[str, PriestProc] = {}
        transport = self.config.foreign.transport
        deadline = time.monotonic() + self.config.foreign.ready_timeout
        while waiting:
            for name, proc in list(waiting.items()):
                handle = cast(ForeignHandle, proc.handle)
                handle.output.read()
                port = self.bind.get(name, self.config.priests[name].port)
                status = handle.popen.poll()
                if status is not None:
                    del waiting[name]
                    failed[name] = (f"{_exit_text(status)} before it was ready (it must bind "
                                    f"{transport.upper()} port {port})"
                                    f"{self._finish(proc)}")
                elif _bound(proc.pid, port, transport):
                    del waiting[name]
                    started[name] = proc
            if not waiting or time.monotonic() >= deadline:
                break
            time.sleep(POLL)
            if self.tick is not None:
                self.tick()
        for name, proc in waiting.items():
            port = self.bind.get(name, self.config.priests[name].port)
            other = "tcp" if transport == "udp" else "udp"
            hint = (f": it listens on {other.upper()} port {port}, but the config says "
                    f"transport: {transport}" if _bound(proc.pid, port, other) else
                    f": it never bound {transport.upper()} port {port}")
            failed[name] = (f"not ready after {self.config.foreign.ready_timeout:g} s{hint}"
                            f"{self._finish(proc)}")
        return started

    def _finish(self, proc: PriestProc) -> str:
        """A priest that failed to start: gone, reaped, its output read; its last lines."""
        handle = cast(ForeignHandle, proc.handle)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            handle.popen.wait(KILL_WAIT)
        self._close(handle)
        if self.failed_run is not None:
            self.failed_run(proc.name, handle.before)
        return handle.output.last_lines()

    def _close(self, handle: ForeignHandle) -> None:
        output = handle.output
        output.read()
        output.close()
        # Its output may have ended long before its process (a program that closes its
        # stdout), and that descriptor's number may now be another priest's output.
        if self.outputs.get(output.fd) is output:
            del self.outputs[output.fd]
        with contextlib.suppress(OSError):
            os.close(handle.sentinel)

    # --- signals, ends, output ---

    def signal(self, proc: PriestProc, sig: int) -> bool:
        # What it printed before this signal is shown before anything that follows it: read
        # now, while it is surely there (a terminal's buffer can be lost once its program ends).
        output = cast(ForeignHandle, proc.handle).output
        if output.open:
            output.read()
            if not output.open and self.outputs.get(output.fd) is output:
                del self.outputs[output.fd]
        return signal_group(proc, sig)

    def wait(self, procs: Sequence[PriestProc], timeout: float) -> dict[str, int]:
        by_sentinel = {cast(ForeignHandle, p.handle).sentinel: p for p in procs}
        ended: dict[str, int] = {}
        if not by_sentinel:
            return ended
        for sentinel in mp_wait(list(by_sentinel), max(timeout, 0.0)):
            p = by_sentinel[cast(int, sentinel)]
            handle = cast(ForeignHandle, p.handle)
            ended[p.name] = handle.popen.wait()
            self._close(handle)
        return ended

    def waitables(self) -> list[int]:
        """The output descriptors still open, for the supervisor's loop to wait on."""
        return list(self.outputs)

    def pump(self, ready: Sequence[object]) -> None:
        """Read the output of those of `ready` that are ours."""
        for fd in ready:
            output = self.outputs.get(fd) if isinstance(fd, int) else None
            if output is not None:
                output.read()
                if not output.open:
                    del self.outputs[output.fd]


class MixedLauncher:
    """The harness's own priests and foreign ones behind one `Launcher`."""

    def __init__(self, config: Config, own: Launcher | None, foreign: ForeignLauncher) -> None:
        self.config, self.own, self.foreign = config, own, foreign

    def _of(self, proc: PriestProc) -> Launcher:
        if isinstance(proc.handle, ForeignHandle):
            return self.foreign
        assert self.own is not None
        return self.own

    def spawn(self, names: Sequence[str]) -> tuple[dict[str, PriestProc], dict[str, str]]:
        started: dict[str, PriestProc] = {}
        failed: dict[str, str] = {}
        own = [n for n in names if not self.config.is_foreign(n)]
        if own:
            assert self.own is not None
            s, f = self.own.spawn(own)
            started.update(s)
            failed.update(f)
        foreign = [n for n in names if self.config.is_foreign(n)]
        if foreign:
            s, f = self.foreign.spawn(foreign)
            started.update(s)
            failed.update(f)
        return started, failed

    def signal(self, proc: PriestProc, sig: int) -> bool:
        return self._of(proc).signal(proc, sig)

    def wait(self, procs: Sequence[PriestProc], timeout: float) -> dict[str, int]:
        kinds = {id(self._of(p)) for p in procs}
        if len(kinds) <= 1:
            return self._of(procs[0]).wait(procs, timeout) if procs else {}
        by_sentinel: dict[int, PriestProc] = {p.handle.sentinel: p for p in procs}
        ended: dict[str, int] = {}
        for sentinel in mp_wait(list(by_sentinel), max(timeout, 0.0)):
            p = by_sentinel[cast(int, sentinel)]
            ended.update(self._of(p).wait([p], 0.0))
        return ended

    def waitables(self) -> list[int]:
        return self.foreign.waitables()

    def pump(self, ready: Sequence[object]) -> None:
        self.foreign.pump(ready)


# --- helpers -------------------------------------------------------------------------------


def _bound(pid: int, port: int, transport: str) -> bool:
    """True if the process (or one of its children) has a socket bound on `port`:
    a UDP one, or a listening TCP one."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return False
    for p in procs:
        try:
            conns = p.net_connections(kind=transport)
        except psutil.Error:
            continue
        for c in conns:
            if c.laddr and c.laddr.port == port and (
                    transport == "udp" or c.status == psutil.CONN_LISTEN):
                return True
    return False


def _death_signal(sig: int) -> Callable[[], None] | None:
    """What the child runs before exec: the kernel sends it `sig` if the supervisor dies,
    as the harness's own priests watch theirs (Linux; elsewhere nothing)."""
    if _PRCTL is None:
        return None
    prctl = _PRCTL

    def set_it() -> None:
        prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
    return set_it


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return cast(Callable[..., int], ctypes.CDLL(None, use_errno=True).prctl)
    except (OSError, AttributeError):
        return None


PR_SET_PDEATHSIG = 1
_PRCTL = _load_prctl()  # loaded here, in the parent: nothing is loaded between fork and exec


def _exit_text(status: int) -> str:
    if status < 0:
        return f"killed by signal {code_to_name(-status)}"
    return f"exited with status {status}"


def _why(e: BaseException) -> str:
    if isinstance(e, OSError):
        where = f"{os.fsdecode(e.filename)}: " if e.filename is not None else ""
        return f"cannot run it: {where}{e.strerror or e}"
    return str(e)


def describe(config: Config) -> dict[str, Any]:
    """How the foreign priests run, for `status` and the run record."""
    f = config.foreign
    return {"priests": config.foreign_names, "transport": f.transport,
            "config_format": f.config_format, "stop_signal": signal.Signals(f.stop_signal).name,
            "tty": f.tty}
