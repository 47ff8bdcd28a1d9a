"""The supervisor's core: which priests run, and every action on them.

Theory of operation: `Supervisor` keeps one `Priest` record per name in the
config (state: not started, running, paused, killed, exited) and acts on them
only through a `Launcher` (start processes, signal them, wait for them) and a
clock, both passed in: tests drive it with fakes and a scripted history, no
sleeps. The real launcher (`ForkLauncher`: multiprocessing children, each in
its own process group) and the event loop around the core (signals, the
control socket, process exits: `run`) follow it in this module.

Rules kept here:
- An action that makes no sense in a priest's state is refused with the reason
  and the fix (RefusedError); an unknown name is an UnknownPriestError.
- A priest found already gone when signalled is "already dead", not an error.
- A paused priest is resumed (SIGCONT) before it is asked to stop (SIGTERM);
  after `grace` seconds a priest still alive gets SIGKILL.
- Every action, refused or done, is recorded (`record("chaos", ...)`).
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as mp_wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, NoReturn, Protocol, TextIO, cast

import psutil

from harness.control import ControlServer
from harness.errors import (
    BUG_STATUS,
    AlreadyUpError,
    RefusedError,
    StartupError,
    UnknownPriestError,
    UserError,
)
from harness.output import Say, use_color
from harness.state import (
    Identity,
    RunState,
    create_state,
    read_state,
    remove_state,
    save_state,
    socket_path,
    write_current,
)
from node.config import Config

NOT_STARTED, RUNNING, PAUSED = "not started", "running", "paused"
KILLED, EXITED = "killed", "exited"  # ended by a signal / ended with an exit status
ALIVE = (RUNNING, PAUSED)
DEFAULT_GRACE = 3.0  # seconds between SIGTERM and SIGKILL
KILL_WAIT = 5.0  # a SIGKILLed process is gone long before this; only a bound


@dataclass
class PriestProc:
    """A priest process the launcher started; `handle` is the launcher's own object."""

    name: str
    pid: int
    create_time: float
    handle: Any = field(default=None, repr=False, compare=False)


class Launcher(Protocol):
    """Process control, as the supervisor needs it."""

    def spawn(self, names: Sequence[str]) -> tuple[dict[str, PriestProc], dict[str, str]]:
        """Start priests, wait until each is ready: (started, failed name -> reason)."""
        ...

    def signal(self, proc: PriestProc, sig: int) -> bool:
        """Send `sig` to the priest's process group; False if it is already gone."""
        ...

    def wait(self, procs: Sequence[PriestProc], timeout: float) -> dict[str, int]:
        """Reap those of `procs` that end within `timeout`: name -> exit status (-N: signal N)."""
        ...


Record = Callable[..., None]


def _nothing(*_args: object, **_kw: object) -> None:
    return None


@dataclass
class Priest:
    name: str
    state: str = NOT_STARTED
    proc: PriestProc | None = None
    exit_status: int | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None


# Which states each action applies to.
ALLOWED = {
    "ballot": (RUNNING,),
    "kill": ALIVE,
    "stop": ALIVE,
    "pause": (RUNNING,),
    "resume": (PAUSED,),
    "restart": (NOT_STARTED, KILLED, EXITED),
}


class Supervisor:
    """The priests of one cluster and the actions on them."""

    def __init__(self, names: Sequence[str], launcher: Launcher, *, clock: Callable[[], float],
                 record: Record = _nothing, on_change: Callable[[], None] = _nothing,
                 say: Callable[[str], None] = _nothing, grace: float = DEFAULT_GRACE) -> None:
        self.priests = {n: Priest(n) for n in names}
        self.launcher, self.clock, self.record = launcher, clock, record
        self.on_change, self.say, self.grace = on_change, say, grace
        self._turn = -1  # the last priest Ctrl+Z asked for a ballot

    # --- queries ---------------------------------------------------------

    def alive(self) -> list[PriestProc]:
        """Processes of running or paused priests."""
        return [p.proc for p in self.priests.values() if p.state in ALIVE and p.proc is not None]

    def status(self) -> list[dict[str, Any]]:
        """One row per priest, in config order."""
        return [{"priest": p.name, "pid": p.pid, "state": p.state, "exit_status": p.exit_status}
                for p in self.priests.values()]

    def require(self, name: str) -> Priest:
        if name not in self.priests:
            raise UnknownPriestError(f"no priest named {name!r} in this cluster "
                                     f"(known: {', '.join(self.priests)})")
        return self.priests[name]

    # --- starting and ending ---------------------------------------------

    def start(self, names: Sequence[str]) -> dict[str, str]:
        """Start `names` (each not running); returns the failures, name -> reason."""
        started, failed = self.launcher.spawn(names)
        for name, proc in started.items():
            p = self.priests[name]
            p.proc, p.state, p.exit_status = proc, RUNNING, None
            self.record("priest_started", priest=name, pid=proc.pid)
        if started:
            self.on_change()
        return failed

    def exited(self, name: str, status: int) -> None:
        """A priest's process ended with `status` (negative: killed by that signal)."""
        p = self.priests[name]
        p.state = KILLED if status < 0 else EXITED
        p.exit_status = status
        self.record("priest_exited", priest=name, pid=p.pid, status=status)
        self.on_change()

    def teardown(self) -> dict[str, str]:
        """Stop every priest still alive: SIGCONT, SIGTERM, grace, SIGKILL."""
        return self._stop([p.name for p in self.priests.values() if p.state in ALIVE])

    def _stop(self, names: Sequence[str]) -> dict[str, str]:
        outcomes: dict[str, str] = {}
        pending: dict[str, PriestProc] = {}
        for name in names:
            p = self.priests[name]
            assert p.proc is not None
            if p.state == PAUSED:  # a stopped process would hold SIGTERM until continued
                self.launcher.signal(p.proc, signal.SIGCONT)
                p.state = RUNNING
            if self.launcher.signal(p.proc, signal.SIGTERM):
                pending[name] = p.proc
            else:
                outcomes[name] = "already dead"
                self.reap([p.proc], KILL_WAIT)
        deadline = self.clock() + self.grace
        while pending and (left := deadline - self.clock()) > 0:
            for name, status in self.launcher.wait(list(pending.values()), left).items():
                del pending[name]
                outcomes[name] = f"stopped (exit status {status})"
                self.exited(name, status)
        for name, proc in pending.items():
            self.launcher.signal(proc, signal.SIGKILL)
            outcomes[name] = f"killed after the {self.grace:g} s grace period"
        self.reap(list(pending.values()), KILL_WAIT)
        return outcomes

    def reap(self, procs: Sequence[PriestProc], timeout: float) -> None:
        """Record the exits of those of `procs` that end within `timeout`."""
        if not procs:
            return
        for name, status in self.launcher.wait(procs, timeout).items():
            self.exited(name, status)

    # --- actions ---------------------------------------------------------

    def act(self, action: str, name: str) -> dict[str, Any]:
        """Do `action` on priest `name`; RefusedError if it makes no sense now."""
        if action not in ALLOWED:
            raise UserError(f"unknown action {action!r} (known: {', '.join(ALLOWED)})")
        p = self.require(name)
        pid = p.pid
        if p.state not in ALLOWED[action]:
            reason = _refusal(action, p)
            self.record("chaos", action=action, priest=name, pid=pid, outcome=f"refused: {reason}")
            raise RefusedError(reason)
        try:
            outcome = getattr(self, f"_do_{action}")(p)
        except UserError as e:
            self.record("chaos", action=action, priest=name, pid=pid, outcome=f"failed: {e}")
            raise
        result = {"action": action, "priest": name, "pid": p.pid if action == "restart" else pid,
                  "outcome": outcome}
        self.record("chaos", **result)
        return result

    def _signal(self, p: Priest, sig: int, state: str, outcome: str) -> str:
        assert p.proc is not None
        if not self.launcher.signal(p.proc, sig):
            self.reap([p.proc], KILL_WAIT)
            return "already dead"
        p.state = state
        return outcome

    def _do_ballot(self, p: Priest) -> str:
        return self._signal(p, signal.SIGTSTP, RUNNING, "ballot requested (SIGTSTP)")

    def _do_pause(self, p: Priest) -> str:
        return self._signal(p, signal.SIGSTOP, PAUSED, "paused (SIGSTOP)")

    def _do_resume(self, p: Priest) -> str:
        return self._signal(p, signal.SIGCONT, RUNNING, "resumed (SIGCONT)")

    def _do_kill(self, p: Priest) -> str:
        outcome = self._signal(p, signal.SIGKILL, p.state, "killed (SIGKILL)")
        if p.state in ALIVE and p.proc is not None:
            self.reap([p.proc], KILL_WAIT)  # so `status` right after shows it killed
        return outcome

    def _do_stop(self, p: Priest) -> str:
        return self._stop([p.name])[p.name]

    def _do_restart(self, p: Priest) -> str:
        failed = self.start([p.name])
        if p.name in failed:
            raise StartupError(did_not_start(p.name, failed[p.name]))
        return f"started (pid {p.pid})"

    def ballot_next(self) -> str | None:
        """Ask the next running priest in turn for a ballot (Ctrl+Z); its name, or None."""
        names = list(self.priests)
        for step in range(1, len(names) + 1):
            i = (self._turn + step) % len(names)
            if self.priests[names[i]].state == RUNNING:
                self._turn = i
                self.act("ballot", names[i])
                return names[i]
        return None

    # --- the control protocol ---------------------------------------------

    def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        """Answer one control request (not `down`, which the event loop owns)."""
        try:
            if req["op"] == "status":
                return {"ok": True, "result": {"priests": self.status()}}
            return {"ok": True, "result": self.act(req["op"], req["priest"])}
        except UserError as e:
            return {"ok": False, "error": str(e), "exit_status": e.exit_status}


def did_not_start(name: str, reason: str) -> str:
    """One line: which priest did not start and why (the runtime may name it already)."""
    return f"priest {name} did not start: {reason.removeprefix(f'priest {name}: ')}"


def _refusal(action: str, p: Priest) -> str:
    """Why `action` makes no sense for `p`, and what to do instead."""
    who = f"priest {p.name}" + (f" (pid {p.pid})" if p.state in ALIVE else "")
    if action == "restart":
        return f"cannot restart {who}: it is {p.state}; stop or kill it first"
    if p.state == PAUSED and action == "pause":
        return f"{who} is already paused; resume it with --resume {p.name}"
    if p.state == RUNNING and action == "resume":
        return f"{who} is not paused: it is running"
    if p.state == PAUSED:
        return f"cannot {action} {who}: it is paused; resume it first"
    return f"cannot {action} {who}: it is {p.state}; restart it first"


# --- the real processes ------------------------------------------------------


class EventFile:
    """`<data_dir>/harness.jsonl`: the supervisor's own events, one JSON object a line."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def record(self, kind: str, **fields: object) -> None:
        line = json.dumps({"t": time.monotonic_ns(), "kind": kind, **fields}) + "\n"
        os.write(self.fd, line.encode())

    def close(self) -> None:
        os.close(self.fd)


class ForkLauncher:
    """Priests as forked multiprocessing children: no fresh interpreter, so starting is fast.

    Each child moves to its own process group first, so the terminal's Ctrl+C and
    Ctrl+Z reach the supervisor only. A child counts as started when it sends
    "ready" on its pipe (socket bound, signal handlers installed), never earlier.
    """

    def __init__(self, config: Config, *, quiet: bool, color: bool | None,
                 private_fds: Callable[[], list[int]], ready_timeout: float = 10.0) -> None:
        from node.runtime import serve  # imported before forking: children start warm

        self.config, self.quiet, self.color = config, quiet, color
        self.private_fds, self.ready_timeout = private_fds, ready_timeout
        self._serve = serve
        self._ctx = multiprocessing.get_context("fork")

    def spawn(self, names: Sequence[str]) -> tuple[dict[str, PriestProc], dict[str, str]]:
        sys.stdout.flush()  # or the children would print the parent's buffered lines again
        sys.stderr.flush()
        waiting: dict[Connection, tuple[str, BaseProcess]] = {}
        for name in names:
            r, w = self._ctx.Pipe(duplex=False)
            close = self.private_fds() + [c.fileno() for c in waiting] + [r.fileno()]
            proc = self._ctx.Process(
                target=_priest_main, name=f"priest {name}", daemon=True,
                args=(self._serve, self.config, name, w, os.getpid(), self.quiet, self.color,
                      close))
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
                    started[name] = PriestProc(name, proc.pid, _create_time(proc.pid), proc)
                else:
                    failed[name] = message or _died(proc)
                    _finish(proc)
        for conn, (name, proc) in waiting.items():
            conn.close()
            failed[name] = f"not ready after {self.ready_timeout:g} s"
            _finish(proc)
        return started, failed

    def signal(self, proc: PriestProc, sig: int) -> bool:
        # Our own unreaped child cannot have its pid recycled; the start-time check
        # is the rule anyway, and it also tells a zombie (already dead) apart.
        if not Identity(proc.pid, proc.create_time).alive():
            return False
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return False
        if sig in (signal.SIGSTOP, signal.SIGCONT):
            _settle(proc.pid, stopped=sig == signal.SIGSTOP)
        return True

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


def _settle(pid: int, *, stopped: bool, timeout: float = 1.0) -> None:
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
                 parent: int, quiet: bool, color: bool | None, close: list[int]) -> None:
    """The priest child: own process group, the supervisor's plumbing closed, then serve."""
    os.setpgid(0, 0)
    signal.set_wakeup_fd(-1)
    # Until the runtime installs its own handlers (before it says ready), a stray
    # Ctrl+C or SIGTSTP must neither kill nor suspend it.
    for sig in (signal.SIGINT, signal.SIGTSTP):
        signal.signal(sig, signal.SIG_IGN)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    for fd in close:
        try:
            os.close(fd)
        except OSError:
            pass
    out = open(os.devnull, "w") if quiet else None  # noqa: SIM115 - lives as long as the priest
    try:
        code = serve(config, name, out=out, color=color, watch_parent=parent,
                     on_ready=lambda: conn.send("ready"))
    except UserError as e:
        _send(conn, e.message)
        code = e.exit_status
    except BaseException as e:
        _send(conn, f"crashed (this is a bug): {type(e).__name__}: {e}")
        raise
    sys.exit(code)


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


def _create_time(pid: int) -> float:
    try:
        return float(psutil.Process(pid).create_time())
    except psutil.NoSuchProcess:
        return 0.0  # it died already; signal() will find it gone


def code_to_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return str(sig)


# --- the event loop ------------------------------------------------------------

SIGNAL_EXITS = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGHUP: 129}


class Daemon:
    """One running supervisor: signals, the control socket and priest exits, in one loop."""

    def __init__(self, config: Config, state: RunState, say: Say, *, detached: bool,
                 color: bool | None, extra_fds: Sequence[int] = ()) -> None:
        self.config, self.state, self.say = config, state, say
        self.pending: list[int] = []
        self.down_conn: socket.socket | None = None
        self.closing = False
        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self.wake_w.setblocking(False)
        signal.set_wakeup_fd(self.wake_w.fileno())
        for sig in (*SIGNAL_EXITS, signal.SIGTSTP):
            signal.signal(sig, self._on_signal)
        self.server = ControlServer(Path(state.socket))
        self.events = EventFile(Path(state.data_dir) / "harness.jsonl")
        fds = [self.wake_r.fileno(), self.wake_w.fileno(), self.server.fileno(), self.events.fd,
               *extra_fds]
        self.launcher = ForkLauncher(config, quiet=detached, color=color, private_fds=lambda: fds)
        self.sup = Supervisor(config.names, self.launcher, clock=time.monotonic,
                              record=self.events.record, on_change=self._save, say=say)

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.pending.append(signum)

    def _save(self) -> None:
        if self.closing:
            return  # teardown: the file goes away in a moment; skip one write per exit
        self.state.priests = {p.name: Identity(p.pid, p.create_time) for p in self.sup.alive()}
        save_state(self.state)

    def start(self, names: Sequence[str]) -> dict[str, int]:
        """Start the priests; StartupError (after stopping the others) if one cannot start."""
        self.events.record("up", cluster=self.config.cluster, priests=list(names),
                           supervisor=os.getpid(), detached=self.state.detached)
        failed = self.sup.start(names)
        if failed:
            name, reason = next(iter(failed.items()))
            raise StartupError(did_not_start(name, reason))
        return {p.name: p.pid for p in self.sup.alive()}

    def loop(self) -> int:
        """Serve until `down` (0) or a signal (128 + signal); Ctrl+Z asks for a ballot."""
        while True:
            alive = {p.handle.sentinel: p for p in self.sup.alive()}
            ready = mp_wait([self.wake_r, self.server.sock, *alive])
            status = self._signals()
            if status is not None:
                return status
            ended = [alive[s] for s in ready if isinstance(s, int) and s in alive]
            if ended:
                self.sup.reap(ended, 0)
            if self.server.sock in ready and self._serve_one():
                return 0

    def _signals(self) -> int | None:
        try:
            while self.wake_r.recv(512):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        pending, self.pending = self.pending, []
        for signum in pending:
            if signum in SIGNAL_EXITS:
                self.say(f"{code_to_name(signum)}: stopping every priest")
                return SIGNAL_EXITS[signal.Signals(signum)]
            self._ctrl_z()
        return None

    def _ctrl_z(self) -> None:
        try:
            name = self.sup.ballot_next()
        except UserError as e:
            self.say(f"Ctrl+Z: {e}", warn=True)
            return
        if name is None:
            self.say("Ctrl+Z: no priest is running, so no ballot (Ctrl+C stops the cluster)")
        else:
            self.say(f"Ctrl+Z: priest {name} starts a ballot (SIGTSTP); "
                     f"Ctrl+Z again asks the next one, Ctrl+C stops the cluster")

    def _serve_one(self) -> bool:
        """Answer one control request; True if it was `down`."""
        got = self.server.accept()
        if got is None:
            return False
        conn, req = got
        if req["op"] == "down":
            self.down_conn = conn  # answered once every priest is gone
            self.say("down requested: stopping every priest")
            return True
        answer = self.sup.handle(req)
        if req["op"] != "status":
            if answer["ok"]:
                r = answer["result"]
                self.say(f"{r['action']} {r['priest']}: {r['outcome']}")
            else:
                self.say(f"{req['op']} {req['priest']}: {answer['error']}", warn=True)
        self.server.reply(conn, answer)
        return False

    def close(self) -> None:
        """Stop every priest, record `down`, remove the run state, answer a waiting `down`."""
        self.closing = True
        outcomes = self.sup.teardown()
        self.events.record("down", cluster=self.config.cluster, supervisor=os.getpid(),
                           stopped=sorted(outcomes))
        remove_state(self.state)
        if self.down_conn is not None:
            self.server.reply(self.down_conn, {"ok": True, "result": {"stopped": outcomes}})
        self.server.close()
        self.events.close()
        signal.set_wakeup_fd(-1)
        self.wake_r.close()
        self.wake_w.close()


def run(config: Config, names: Sequence[str], *, detached: bool = False, out: TextIO | None = None,
        color: bool | None = None, report: Callable[[dict[str, Any]], None] = _nothing,
        extra_fds: Sequence[int] = ()) -> int:
    """Be the supervisor of `names`: start them, then serve until `down` or a signal.

    Raises AlreadyUpError if a run state exists, StartupError if a priest cannot start
    (nothing is left running then).
    """
    stream = out if out is not None else sys.stdout
    say = Say(stream, use_color(stream) if color is None else color)
    data_dir = config.data_dir.resolve()
    config = dataclasses.replace(config, data_dir=data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    state = RunState(config.cluster, str(Path(config.path).resolve()), str(data_dir),
                     Identity.of(os.getpid()), str(socket_path(data_dir)), detached=detached)
    try:
        create_state(state)
    except FileExistsError:
        raise AlreadyUpError(already_up(config, read_state(data_dir))) from None
    daemon: Daemon | None = None
    try:
        daemon = Daemon(config, state, say, detached=detached, color=color, extra_fds=extra_fds)
        pids = daemon.start(names)
        write_current(config)
        report({"ok": True, "supervisor": os.getpid(), "priests": pids})
        listed = ", ".join(f"{n} (pid {pid})" for n, pid in pids.items())
        say(f"cluster {config.cluster} is up: {listed}")
        if not detached:
            say("Ctrl+Z: a ballot at the next priest in turn; Ctrl+C: stop every priest")
        return daemon.loop()
    finally:
        if daemon is not None:
            daemon.close()
        remove_state(state)


def already_up(config: Config, state: RunState | None) -> str:
    """The refusal of a second `up`, naming the fix."""
    pid = f" (supervisor pid {state.supervisor.pid})" if state is not None else ""
    return (f"cluster {config.cluster} is already up{pid}, data in {config.data_dir}; "
            f"stop it first with `paxos-harness down {config.path}`")


# --- detaching, and cleaning up after a supervisor that died -----------------


class _Report:
    """The detached supervisor's one message to the `up` that forked it."""

    def __init__(self, fd: int) -> None:
        self.fd: int | None = fd

    def __call__(self, message: dict[str, Any]) -> None:
        if self.fd is None:
            return
        try:
            os.write(self.fd, json.dumps(message).encode() + b"\n")
        except OSError:
            pass  # `up` was interrupted; the supervisor carries on
        os.close(self.fd)
        self.fd = None


def start_detached(config: Config, names: Sequence[str]) -> dict[str, Any]:
    """Fork a background supervisor for `names`; its report once every priest is ready.

    Raises the supervisor's own error (already up, a priest that cannot start).
    """
    data_dir = config.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir / "supervisor.log"
    r, w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the supervisor
        os.close(r)
        _detached_main(config, names, w, log)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        line = f.readline()
    try:
        answer: dict[str, Any] = json.loads(line)
    except ValueError:
        os.waitpid(pid, 0)
        raise StartupError(f"the supervisor exited before it was ready; see {log}") from None
    if not answer.get("ok"):
        os.waitpid(pid, 0)
        error = str(answer.get("error"))
        status = int(answer.get("exit_status", 1))
        raise (AlreadyUpError if status == 1 and "already up" in error else StartupError)(error)
    return answer


def _detached_main(config: Config, names: Sequence[str], fd: int, log: Path) -> NoReturn:
    report = _Report(fd)
    code = BUG_STATUS
    try:
        os.setsid()  # no terminal: its Ctrl+C, Ctrl+Z and hangup no longer reach us
        _redirect_stdio(log)
        code = run(config, names, detached=True, color=False, report=report, extra_fds=[fd])
    except UserError as e:
        report({"ok": False, "error": e.message, "exit_status": e.exit_status})
        code = e.exit_status
    except BaseException:
        traceback.print_exc()
        report({"ok": False, "exit_status": BUG_STATUS,
                "error": f"the supervisor failed (this is a bug); traceback in {log}"})
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _redirect_stdio(log: Path) -> None:
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    out = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(out)


def stop_orphans(priests: dict[str, Identity], grace: float = DEFAULT_GRACE) -> list[str]:
    """Stop priests a dead supervisor left (SIGCONT, SIGTERM, grace, SIGKILL); the names found."""
    procs: dict[psutil.Process, str] = {}
    for name, ident in priests.items():
        if not ident.alive():
            continue
        try:
            p = psutil.Process(ident.pid)
            p.send_signal(signal.SIGCONT)  # psutil refuses a pid reused since create_time
            p.send_signal(signal.SIGTERM)
            procs[p] = name
        except psutil.NoSuchProcess:
            pass
    _gone, alive = psutil.wait_procs(list(procs), timeout=grace)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=KILL_WAIT)
    return sorted(procs.values())


def stop_supervisor(ident: Identity, timeout: float = 10.0) -> bool:
    """SIGTERM a supervisor that does not answer (SIGKILL after `timeout`); True if it ran."""
    if not ident.alive():
        return False
    try:
        p = psutil.Process(ident.pid)
        p.send_signal(signal.SIGCONT)
        p.send_signal(signal.SIGTERM)
        p.wait(timeout)
    except psutil.TimeoutExpired:
        p.kill()
        p.wait(KILL_WAIT)
    except psutil.NoSuchProcess:
        pass
    return True
