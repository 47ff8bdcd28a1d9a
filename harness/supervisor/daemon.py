"""The running supervisor: its event loop, detaching, and cleaning up after one that died.

`Daemon` joins the core (`harness.supervisor.Supervisor`), the real processes
(`harness.supervisor.launcher.ForkLauncher`), the control socket and `harness.jsonl` in one
loop; `run` is the foreground supervisor, `start_detached` forks a background one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from multiprocessing.connection import wait as mp_wait
from pathlib import Path
from typing import Any, NoReturn, TextIO

import psutil

from harness.errors import (
    BUG_STATUS,
    AlreadyUpError,
    InternalError,
    NotUpError,
    StartupError,
    UserError,
    from_wire,
    to_wire,
)
from harness.network.process import NETWORK_FILE, RelayNetwork, RelayProcess, private_ports
from harness.output import Say, use_color
from harness.record import Down, Up, now
from harness.supervisor.control import ControlServer
from harness.supervisor.core import DEFAULT_GRACE, KILL_WAIT, Supervisor, _nothing, did_not_start
from harness.supervisor.launcher import ForkLauncher, code_to_name
from harness.supervisor.state import (
    HARNESS_FILE,
    EventFile,
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

# --- the event loop ------------------------------------------------------------

# Each ends the cluster cleanly; Ctrl+\\ (SIGQUIT) too, rather than dumping the supervisor.
SIGNAL_EXITS = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGHUP: 129, signal.SIGQUIT: 131}


class Daemon:
    """One running supervisor: signals, the control socket and priest exits, in one loop."""

    def __init__(self, config: Config, state: RunState, say: Say, *, detached: bool,
                 color: bool | None, extra_fds: Sequence[int] = (), messages: bool = True) -> None:
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
        self.events = EventFile(Path(state.data_dir) / HARNESS_FILE)
        fds = [self.wake_r.fileno(), self.wake_w.fileno(), self.server.fileno(), self.events.fd,
               *extra_fds]
        self.relay, bind = self._relay(config, Path(state.data_dir))
        self.launcher = ForkLauncher(config, quiet=detached, color=color, bind=bind,
                                     messages=messages,
                                     private_fds=lambda: fds + self._client_fds()
                                     + (self.relay.process.fds() if self.relay else []))
        self.sup = Supervisor(config.names, self.launcher, clock=time.monotonic,
                              record=self.events.record, on_change=self._save,
                              network=self.relay)

    # --- the relay (network: relay): its own process, started first, stopped last ---

    def _relay(self, config: Config, data_dir: Path) -> tuple[RelayNetwork | None, dict[str, int]]:
        """The relay and the private port of each priest behind it; (None, {}) when direct."""
        if config.network != "relay":
            return None, {}
        bind = private_ports(config)
        process = RelayProcess(config, bind, log=data_dir / NETWORK_FILE)
        return RelayNetwork(process, record=self.events.record,
                            seeds=lambda: secrets.randbelow(2**31)), bind

    def _relay_turn(self, ready: Sequence[object]) -> None:
        """After a wait: note a relay that died, and restart it when its back-off is over."""
        if self.relay is None:
            return
        if any(fd in ready for fd in self.relay.waitables()):
            self.relay.readable()
        line = self.relay.restart_if_due()
        if line is not None:
            self.say(line, warn=True)

    def _client_fds(self) -> list[int]:
        # A priest started now must not hold another client's connection open.
        return [c.fileno() for c in self.server.clients]

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.pending.append(signum)

    def _save(self) -> None:
        if self.closing:
            return  # teardown: the file goes away in a moment; skip one write per exit
        self.state.priests = {p.name: Identity(p.pid, p.create_time) for p in self.sup.alive()}
        save_state(self.state)

    def start(self, names: Sequence[str]) -> dict[str, int]:
        """Start the priests; StartupError (after stopping the others) if one cannot start."""
        self.events.record(Up(t=now(), cluster=self.config.cluster, priests=tuple(names),
                              supervisor=os.getpid(), detached=self.state.detached,
                              network=self.config.network))
        if self.relay is not None:
            self.relay.start()  # binds every public address: a taken port stops `up` here
        failed = self.sup.start(names)
        if failed:
            name, reason = next(iter(failed.items()))
            raise StartupError(did_not_start(name, reason))
        return {p.name: p.pid for p in self.sup.alive()}

    def loop(self) -> int:
        """Serve until `down` (0) or a signal (128 + signal); Ctrl+Z asks for a ballot."""
        while True:
            alive = {p.handle.sentinel: p for p in self.sup.alive()}
            relay = self.relay.waitables() if self.relay is not None else []
            relay_due = self.relay.wait_timeout() if self.relay is not None else None
            timeouts = [t for t in (self.server.wait_timeout(), relay_due) if t is not None]
            ready = mp_wait([self.wake_r, *self.server.waitables(), *alive, *relay],
                            min(timeouts) if timeouts else None)
            status = self._signals()
            if status is not None:
                return status
            self._relay_turn(ready)
            ended = [alive[s] for s in ready if isinstance(s, int) and s in alive]
            if ended:
                self.sup.reap(ended, 0)
            if self._serve():
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

    def _serve(self) -> bool:
        """Answer the control requests that have arrived whole; True if one was `down`."""
        for conn, req in self.server.poll():
            if self.down_conn is not None:
                self.server.reply(conn, to_wire(NotUpError("the cluster is going down")))
            elif req["op"] == "down":
                self.down_conn = conn  # answered once every priest is gone
                self.say("down requested: stopping every priest")
            else:
                self._answer(conn, req)
        return self.down_conn is not None

    def _answer(self, conn: socket.socket, req: dict[str, Any]) -> None:
        answer = self.sup.handle(req)
        if req["op"] != "status":
            what = req.get("priest") or ("" if req.get("arg") is None else str(req["arg"]))
            if answer["ok"]:
                self.say(f"{req['op']} {what}: {answer['result']['outcome']}")
            else:
                self.say(f"{req['op']} {what}: {answer['error']}", warn=True)
        self.server.reply(conn, answer)

    def close(self) -> None:
        """Stop every priest, record `down`, remove the run state, answer a waiting `down`."""
        self.closing = True
        outcomes = self.sup.teardown()
        if self.relay is not None:
            self.relay.stop()
        self.events.record(Down(t=now(), cluster=self.config.cluster, supervisor=os.getpid(),
                                stopped=tuple(sorted(outcomes))))
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
        messages: bool = True,
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
        daemon = Daemon(config, state, say, detached=detached, color=color, extra_fds=extra_fds,
                        messages=messages)
        pids = daemon.start(names)
        write_current(config)
        relay = daemon.relay.process.pid if daemon.relay is not None else None
        report({"ok": True, "supervisor": os.getpid(), "priests": pids, "relay": relay})
        listed = ", ".join(f"{n} (pid {pid})" for n, pid in pids.items())
        network = f"; network: relay (pid {relay})" if relay is not None else "; network: direct"
        say(f"cluster {config.cluster} is up: {listed}{network}")
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
        raise from_wire(answer)
    return answer


def _detached_main(config: Config, names: Sequence[str], fd: int, log: Path) -> NoReturn:
    report = _Report(fd)
    code = BUG_STATUS
    try:
        os.setsid()  # no terminal: its Ctrl+C, Ctrl+Z and hangup no longer reach us
        _redirect_stdio(log)
        code = run(config, names, detached=True, color=False, report=report, extra_fds=[fd])
    except UserError as e:
        report(to_wire(e))
        code = e.exit_status
    except BaseException:  # noqa: BLE001 - the detached supervisor's last word: a bug, reported
        traceback.print_exc()
        report(to_wire(InternalError(f"the supervisor failed (this is a bug); traceback in {log}")))
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
