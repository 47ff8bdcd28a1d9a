"""The running supervisor: its event loop, detaching, and cleaning up after one that died.

`Daemon` joins the core (`harness.supervisor.Supervisor`), the real processes
(`harness.supervisor.launcher.ForkLauncher`), the control socket and `harness.jsonl` in one
loop; `run` is the foreground supervisor, `start_detached` forks a background one.
"""

from __future__ import annotations

import dataclasses
import json
import os
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
from harness.record import Down, PriestExited, PriestFiles, Record, Up, fresh_seed, now
from harness.supervisor.control import ControlServer
from harness.supervisor.core import (
    DEFAULT_GRACE,
    KILL_WAIT,
    Launcher,
    PriestProc,
    Supervisor,
    _nothing,
    did_not_start,
)
from harness.supervisor.decrees import PERIOD as DECREE_PERIOD
from harness.supervisor.decrees import DecreeWatch
from harness.supervisor.files import RunLock, open_file
from harness.supervisor.foreign import ForeignHandle, ForeignLauncher, MixedLauncher, snapshot
from harness.supervisor.garbage import outcome as garbage_outcome
from harness.supervisor.garbage import send_garbage
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
from harness.supervisor.watch import PromiseWatch
from harness.supervisor.wipe import SUPERVISOR_LOG_HEADER
from node.config import Config
from node.runtime import EVENTS

# --- the event loop ------------------------------------------------------------

# Each ends the cluster cleanly; Ctrl+\\ (SIGQUIT) too, rather than dumping the supervisor.
SIGNAL_EXITS = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGHUP: 129, signal.SIGQUIT: 131}


class Unwritten:
    """What the supervisor could not write (a full disk, a deleted data dir): said, never fatal.

    A run file that cannot be written is an expected condition: the supervisor
    keeps supervising, says once what it could not write and why (and again
    when the reason changes), says when writing works again, and lists what is
    failing in every `status` answer.
    """

    def __init__(self, say: Say) -> None:
        self.say = say
        self.failing: dict[str, str] = {}  # what -> why

    def attempt(self, what: str, write: Callable[[], None], lost: str = "") -> bool:
        """Run `write`; on an OSError or a refused file, say so (once) and return False."""
        try:
            write()
        except (OSError, UserError) as e:
            why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            if self.failing.get(what) != why:
                self.failing[what] = why
                self.say(f"cannot write {what}{lost}: {why}; supervising on", warn=True)
            return False
        if self.failing.pop(what, None) is not None:
            self.say(f"{what} is written again")
        return True

    def problems(self) -> list[str]:
        return [f"cannot write {what}: {why}" for what, why in self.failing.items()]


class Daemon:
    """One running supervisor: signals, the control socket and priest exits, in one loop."""

    def __init__(self, config: Config, state: RunState, say: Say, *, detached: bool,
                 color: bool | None, messages: bool = True) -> None:
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
        self.unwritten = Unwritten(say)
        self.relay, self.bind = self._relay(config, Path(state.data_dir))
        self.forks: ForkLauncher | None = None  # the fork server of the harness's own priests
        self.foreign: ForeignLauncher | None = None
        self.decrees: DecreeWatch | None = None
        self.launcher = self._launcher(detached=detached, color=color, messages=messages)
        self.watch = PromiseWatch(lambda name: config.priest_dir(name) / EVENTS,
                                  foreign=config.foreign_names)
        no_network = ("cannot {action}: these priests talk TCP (transport: tcp), and the relay "
                      "carries UDP datagrams only; process faults and --garbage still work"
                      if config.foreign_names and config.foreign.transport == "tcp" else "")
        self.sup = Supervisor(config.names, self.launcher, clock=time.monotonic,
                              record=self._record, on_change=self._save, network=self.relay,
                              no_network=no_network, inject=self._garbage, watch=self.watch,
                              tick=self._keep_up if config.foreign_names else None)

    def _launcher(self, *, detached: bool, color: bool | None, messages: bool) -> Launcher:
        """The fork launcher for the harness's own priests, with foreign ones beside it if any."""
        config = self.config
        own = None
        if len(config.foreign_names) < len(config.names):
            own = self.forks = ForkLauncher(config, quiet=detached, color=color, bind=self.bind,
                               messages=messages)
        if not config.foreign_names:
            assert own is not None
            return own
        self.foreign = ForeignLauncher(config, out=None if detached else self.say.out,
                                       color=bool(self.say.color), bind=self.bind,
                                       failed_run=self._files, tick=self._keep_up)
        self.decrees = DecreeWatch(Path(self.state.data_dir), config.foreign_names, self._record)
        return MixedLauncher(config, own, self.foreign)

    def _garbage(self, name: str, proc: PriestProc, count: int) -> str:
        """`chaos --garbage`: malformed input to the priest's own socket; recorded; the outcome."""
        p = self.config.priests[name]
        transport = self.config.foreign.transport if self.config.is_foreign(name) else "udp"
        address = (p.host, self.bind.get(name, p.port))
        sent = send_garbage(name, proc.pid, address, transport, count, self.config.names,
                            seed=fresh_seed(), between=self._keep_up,
                            create_time=proc.create_time)
        self._record(sent)
        return garbage_outcome(sent)

    def _keep_up(self) -> None:
        """What the loop cannot leave undone while an action takes a while: the foreign
        priests' output read (a full pipe would stall them) and their decree.txt watched."""
        if self.foreign is not None:
            self.foreign.pump(self.foreign.waitables())
        if self.decrees is not None:
            self.decrees.poll()

    # --- the relay (network: relay): its own process, started first, stopped last ---

    def _relay(self, config: Config, data_dir: Path) -> tuple[RelayNetwork | None, dict[str, int]]:
        """The relay and the private port of each priest behind it; (None, {}) when direct."""
        if config.network != "relay":
            return None, {}
        bind = private_ports(config)
        process = RelayProcess(config, bind, log=data_dir / NETWORK_FILE)
        return RelayNetwork(process, record=self._record,
                            seeds=fresh_seed), bind

    def _relay_turn(self, ready: Sequence[object]) -> None:
        """After a wait: note a relay that died, and restart it when its back-off is over."""
        if self.relay is None:
            return
        if any(fd in ready for fd in self.relay.waitables()):
            self.relay.readable()
        line = self.relay.restart_if_due()
        if line is not None:
            self.say(line, warn=True)

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.pending.append(signum)

    def _save(self) -> None:
        if self.closing:
            return  # teardown: the file goes away in a moment; skip one write per exit
        self.state.priests = {p.name: Identity(p.pid, p.create_time) for p in self.sup.alive()}
        self.unwritten.attempt("the run state (supervisor.json)", lambda: save_state(self.state))

    def _record(self, record: Record) -> None:
        if isinstance(record, PriestExited) and self.decrees is not None \
                and self.config.is_foreign(record.priest):
            self.decrees.poll()  # its last decree.txt, before its end
        self.unwritten.attempt(HARNESS_FILE, lambda: self.events.record(record),
                               f" (a {record.KIND} record is lost)")
        if isinstance(record, PriestExited) and self.decrees is not None:
            self._created(record.priest)

    def _created(self, name: str) -> None:
        """Record what a foreign priest's run created (`up --fresh` removes only that)."""
        proc = self.sup.priests[name].proc
        if proc is None or not isinstance(proc.handle, ForeignHandle):
            return
        self._files(name, proc.handle.before)

    def _files(self, name: str, before: frozenset[str]) -> None:
        """Record what `name`'s run created: in its snapshot now, and not `before` it."""
        created = tuple(sorted(snapshot(self.config, name) - before))
        if created:
            self._record(PriestFiles(t=now(), priest=name, created=created))

    def start(self, names: Sequence[str]) -> dict[str, int]:
        """Start the priests; StartupError (after stopping the others) if one cannot start."""
        self._record(Up(t=now(), cluster=self.config.cluster, priests=tuple(names),
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
            output = self.foreign.waitables() if self.foreign is not None else []
            decrees_due = DECREE_PERIOD if self.decrees is not None else None
            timeouts = [t for t in (self.server.wait_timeout(), relay_due, decrees_due,
                                    self.watch.wait_timeout()) if t is not None]
            ready = mp_wait([self.wake_r, *self.server.waitables(), *alive, *relay, *output,
                             *self.watch.waitables()], min(timeouts) if timeouts else None)
            if self.foreign is not None:
                self.foreign.pump(ready)
            if self.decrees is not None:
                self.decrees.poll()
            status = self._signals()
            if status is not None:
                return status
            self._relay_turn(ready)
            ended = [alive[s] for s in ready if isinstance(s, int) and s in alive]
            if ended:
                self.sup.reap(ended, 0)
            self._kill_promised()
            if self._serve():
                return 0

    def _kill_promised(self) -> None:
        """Kill each armed priest whose promise shows in its events.jsonl (kill-after-promise)."""
        for name, event in self.watch.fired():
            outcome = self.sup.promised(name, event.ballot)
            if outcome is not None:
                self.say(f"kill {name}: {outcome}")

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
        if self.decrees is not None:
            self.decrees.poll()  # what the decrees were just before the action
        answer = self.sup.handle(req)
        if self.decrees is not None:
            self.decrees.poll()
        if req["op"] == "status" and answer["ok"]:
            answer["result"]["problems"] = self.unwritten.problems()
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
        if self.forks is not None:
            self.forks.close()
        if self.decrees is not None:
            self.decrees.poll()
        if self.relay is not None:
            self.relay.stop()
        self._record(Down(t=now(), cluster=self.config.cluster, supervisor=os.getpid(),
                                stopped=tuple(sorted(outcomes))))
        remove_state(self.state)
        if self.down_conn is not None:
            self.server.reply(self.down_conn, {"ok": True, "result": {"stopped": outcomes}})
        self.server.close()
        self.events.close()
        self.watch.close()
        signal.set_wakeup_fd(-1)
        self.wake_r.close()
        self.wake_w.close()


def run(config: Config, names: Sequence[str], *, detached: bool = False, out: TextIO | None = None,
        color: bool | None = None, report: Callable[[dict[str, Any]], None] = _nothing,
        messages: bool = True, lock: RunLock | None = None) -> int:
    """Be the supervisor of `names`: start them, then serve until `down` or a signal.

    Holds the cluster's run `lock` (taken here if not given) until it has
    removed its run state. Raises AlreadyUpError if the cluster is up,
    StartupError if a priest cannot start (nothing is left running then).
    """
    from harness.supervisor.cluster import take_run_lock

    held = lock if lock is not None else take_run_lock(config)
    try:
        return _supervise(config, names, detached=detached, out=out, color=color, report=report,
                          messages=messages)
    finally:
        held.release()


def _supervise(config: Config, names: Sequence[str], *, detached: bool, out: TextIO | None,
               color: bool | None, report: Callable[[dict[str, Any]], None],
               messages: bool = True) -> int:
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
        daemon = Daemon(config, state, say, detached=detached, color=color, messages=messages)
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


def start_detached(config: Config, names: Sequence[str], lock: RunLock) -> dict[str, Any]:
    """Fork a background supervisor for `names`; its report once every priest is ready.

    The supervisor inherits the run `lock` and holds it for its life. Raises
    the supervisor's own error, of its own type (already up, a priest that
    cannot start).
    """
    data_dir = config.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir / "supervisor.log"
    log_fd = open_supervisor_log(log)
    r, w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the supervisor
        os.close(r)
        _detached_main(config, names, w, log, log_fd, lock)
    os.close(w)
    os.close(log_fd)
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


def _detached_main(config: Config, names: Sequence[str], fd: int, log: Path, log_fd: int,
                   lock: RunLock) -> NoReturn:
    report = _Report(fd)
    code = BUG_STATUS
    try:
        os.setsid()  # no terminal: its Ctrl+C, Ctrl+Z and hangup no longer reach us
        lock.claim()  # the lock file names the supervisor now
        _redirect_stdio(log_fd)
        code = run(config, names, detached=True, color=False, report=report, lock=lock)
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


def open_supervisor_log(path: Path) -> int:
    """supervisor.log for appending: created with its header, or one that starts with it.

    The header is how `--fresh` knows the file is ours; a supervisor.log
    without it is someone else's, and neither written to nor removed.
    """
    fd = open_file(path, os.O_RDWR | os.O_APPEND | os.O_CREAT)  # a planted link: refused
    header = SUPERVISOR_LOG_HEADER.encode()
    try:
        if os.fstat(fd).st_size == 0:
            os.write(fd, header)
        elif os.pread(fd, len(header), 0) != header:
            raise UserError(f"{path}: not a log paxos-harness wrote (it does not start with "
                            f"its header), where a detached supervisor writes its output; "
                            f"move it away")
    except BaseException:
        os.close(fd)
        raise
    return fd


def _redirect_stdio(log_fd: int) -> None:
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)


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
