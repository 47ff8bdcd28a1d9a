"""The supervisor's core: which priests run, and every action on them.

Theory of operation: `Supervisor` keeps one `Priest` record per name in the
config (state: not started, running, paused, killed, exited) and acts on them
only through a `Launcher` (start processes, signal them, wait for them) and a
clock, both passed in: tests drive it with fakes and a scripted history, no
sleeps. The real launcher is `harness.supervisor.launcher.ForkLauncher`; the event loop
around the core (signals, the control socket, process exits) is
`harness.supervisor.daemon`. This module does no I/O of its own.

Rules kept here:
- An action that makes no sense in a priest's state is refused with the reason
  and the fix (RefusedError); an unknown name is an UnknownPriestError.
- A priest found already gone when signalled is "already dead", not an error.
- A paused priest is resumed (SIGCONT) before it is asked to stop (SIGTERM);
  after `grace` seconds a priest still alive gets SIGKILL.
- Every action, refused, failed or done, is recorded as a `ChaosAction`
  (`harness.record`), stamped with the clock's time when it began.
- A network action changes the network's faults (`harness.network.faults`)
  through a `Network` (the relay) passed in, and is recorded as a
  `NetworkChange`; with no network (`network: direct`) it is refused.
- `kill-after-promise` arms a running priest: a `Watch` passed in
  (`harness.supervisor.watch`) follows its process, and when the event loop
  reports its promise (`promised`) the priest gets SIGKILL, recorded as a
  `kill` whose outcome says what fired it. A restart asked of a priest still
  armed kills it first (the state the arming promised the next action); an
  exit of the priest, for whatever reason, disarms it.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from harness.errors import RefusedError, StartupError, UnknownPriestError, UserError, to_wire
from harness.network.faults import Faults, change, parse_value
from harness.record import ChaosAction, NetworkChange, PriestExited, PriestStarted, Record, Result
from harness.supervisor.actions import (
    ACTIONS,
    ALIVE,
    DEFAULT_GARBAGE,
    KILL_AFTER_PROMISE,
    MAX_GARBAGE,
    NETWORK_ACTIONS,
    State,
    allows,
)
from node.messages import Ballot

DEFAULT_GRACE = 3.0  # seconds between SIGTERM and SIGKILL
KILL_WAIT = 5.0  # a SIGKILLed process is gone long before this; only a bound
TICK = 0.02  # seconds between the `tick`s of a long wait


@dataclass
class PriestProc:
    """A priest process the launcher started; `handle` is the launcher's own object."""

    name: str
    pid: int
    create_time: float
    handle: Any = field(default=None, repr=False, compare=False)
    stop_signal: int = signal.SIGTERM  # how `stop` and `down` ask it to end


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


class Injector(Protocol):
    """Sends malformed input to a priest (`chaos --garbage`), as the supervisor needs it."""

    def __call__(self, name: str, proc: PriestProc, count: int) -> str:
        """Send `count` malformed inputs to priest `name`; the outcome in words."""
        ...


class Network(Protocol):
    """The relay, as the supervisor needs it."""

    def set(self, faults: Faults, seed: int | None) -> str:
        """Apply `faults` (reseeding its random draws if `seed`); a note for the outcome."""
        ...

    def status(self) -> dict[str, Any]:
        """The relay's process and counters, for `status`."""
        ...


class Watch(Protocol):
    """Who is armed for a kill at its next promise, as the supervisor tells it."""

    def arm(self, name: str, pid: int) -> None:
        """Watch priest `name`'s process `pid` for its next promise, from now on."""
        ...

    def disarm(self, name: str) -> None:
        ...


class _NoWatch:
    def arm(self, name: str, pid: int) -> None:
        pass

    def disarm(self, name: str) -> None:
        pass


Recorder = Callable[[Record], None]


def _nothing(*_args: object, **_kw: object) -> None:
    return None


@dataclass
class Priest:
    name: str
    state: State = State.NOT_STARTED
    proc: PriestProc | None = None
    exit_status: int | None = None
    ending: bool = False  # the harness asked it to end (kill, stop, down): its exit is no crash
    armed: bool = False  # kill-after-promise: SIGKILL at its next promise

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None


class Supervisor:
    """The priests of one cluster and the actions on them."""

    def __init__(self, names: Sequence[str], launcher: Launcher, *, clock: Callable[[], float],
                 record: Recorder = _nothing, on_change: Callable[[], None] = _nothing,
                 grace: float = DEFAULT_GRACE, network: Network | None = None,
                 no_network: str = "", inject: Injector | None = None,
                 watch: Watch | None = None, tick: Callable[[], None] | None = None) -> None:
        self.priests = {n: Priest(n) for n in names}
        self.network, self.faults = network, Faults()
        self.no_network = no_network  # why network actions are refused without a relay
        self.inject = inject
        self.watch: Watch = watch if watch is not None else _NoWatch()
        self.tick = tick  # what must still happen every TICK s while it waits (a stop's grace)
        self.launcher, self.clock, self.record = launcher, clock, record
        self.on_change, self.grace = on_change, grace
        self._turn = -1  # the last priest Ctrl+Z asked for a ballot

    # --- queries ---------------------------------------------------------

    def alive(self) -> list[PriestProc]:
        """Processes of running or paused priests."""
        return [p.proc for p in self.priests.values() if p.state in ALIVE and p.proc is not None]

    def status(self) -> list[dict[str, Any]]:
        """One row per priest, in config order."""
        return [{"priest": p.name, "pid": p.pid, "state": p.state, "exit_status": p.exit_status,
                 "armed": KILL_AFTER_PROMISE if p.armed else None}
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
            p.proc, p.state, p.exit_status, p.ending = proc, State.RUNNING, None, False
            self.record(PriestStarted(t=self._now(), priest=name, pid=proc.pid))
        if started:
            self.on_change()
        return failed

    def exited(self, name: str, status: int) -> None:
        """A priest's process ended with `status` (negative: killed by that signal)."""
        p = self.priests[name]
        p.state = State.KILLED if status < 0 else State.EXITED
        p.exit_status = status
        self._disarm(p)  # its promise can no longer come
        self.record(PriestExited(t=self._now(), priest=name, pid=p.pid, status=status,
                                 by_harness=p.ending))
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
            p.ending = True
            if p.state == State.PAUSED:  # a stopped process would hold SIGTERM until continued
                self.launcher.signal(p.proc, signal.SIGCONT)
                p.state = State.RUNNING
            if self.launcher.signal(p.proc, p.proc.stop_signal):
                pending[name] = p.proc
            else:
                p.ending = False  # it ended before it was asked to
                outcomes[name] = "already dead"
                self.reap([p.proc], KILL_WAIT)
        deadline = self.clock() + self.grace
        while pending and (left := deadline - self.clock()) > 0:
            if self.tick is not None:  # the loop's duties go on during the grace period
                left = min(left, TICK)
            for name, status in self.launcher.wait(list(pending.values()), left).items():
                del pending[name]
                outcomes[name] = f"stopped (exit status {status})"
                self.exited(name, status)
            if self.tick is not None:
                self.tick()
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

    def act(self, action: str, name: str, value: object = None) -> dict[str, Any]:
        """Do `action` on priest `name` (`value`: its argument, if it takes one, e.g.
        garbage's count); RefusedError if it makes no sense now."""
        if action not in ACTIONS or action in NETWORK_ACTIONS:
            raise UserError(f"unknown action {action!r} (known: {', '.join(ACTIONS)})")
        p = self.require(name)
        first = ""
        promised = ACTIONS[KILL_AFTER_PROMISE].after  # the state an armed priest's next action finds
        if p.armed and promised and not allows(action, p.state) and allows(action, promised):
            # The arming promised this action a killed priest: keep that promise now.
            first = self._fire(p, "before any promise, for this " + action) + "; then "
        pid, began = p.pid, self._now()
        if not allows(action, p.state):
            reason = _refusal(action, p)
            self.record(ChaosAction(t=began, action=action, priest=name, pid=pid,
                                    outcome=f"refused: {reason}", result=Result.REFUSED))
            raise RefusedError(reason, pid=pid)
        try:
            do = getattr(self, f"_do_{action.replace('-', '_')}")
            outcome = do(p, value) if ACTIONS[action].value_metavar else do(p)
        except UserError as e:
            self.record(ChaosAction(t=began, action=action, priest=name, pid=pid,
                                    outcome=f"failed: {e}", result=Result.FAILED))
            raise
        result = {"action": action, "priest": name, "pid": p.pid if action == "restart" else pid,
                  "outcome": first + outcome}
        self.record(ChaosAction(t=began, action=action, priest=name, pid=result["pid"],
                                outcome=outcome))
        return result

    def act_network(self, action: str, value: object, seed: int | None = None) -> dict[str, Any]:
        """Change the network's faults by `action` with `value`; RefusedError without a relay."""
        names = list(self.priests)
        began = self._now()
        try:
            if self.network is None:
                raise RefusedError(self.no_network.format(action=action) or (
                    f"cannot {action}: this cluster runs with `network: direct`, so "
                    f"no relay carries its datagrams; remove that line from the "
                    f"config (or set network: relay) and bring the cluster up again"))
            parsed = parse_value(action, value, names)
            faults = change(self.faults, action, parsed, names)
            note = self.network.set(faults, seed)
        except UserError as e:
            self.record(NetworkChange(t=began, action=action, value=value, seed=seed,
                                      outcome=f"refused: {e}", result=Result.REFUSED))
            raise
        self.faults = faults
        outcome = f"network now: {faults.describe()}{note}"
        self.record(NetworkChange(t=began, action=action, value=parsed, seed=seed,
                                  outcome=outcome, faults=faults.to_wire()))
        return {"action": action, "priest": None, "value": parsed, "seed": seed, "pid": None,
                "outcome": outcome}

    def network_status(self) -> dict[str, Any]:
        """The network's mode, faults and (through the relay) counters."""
        if self.network is None:
            return {"mode": "direct", "faults": None, "describe": "direct (no relay)"}
        return {"mode": "relay", "faults": self.faults.to_wire(),
                "describe": self.faults.describe(), **self.network.status()}

    def _now(self) -> int:
        """The clock's time in ns: with the real clock (time.monotonic), the events' clock."""
        return round(self.clock() * 1e9)

    def _signal(self, p: Priest, sig: int, state: State, outcome: str) -> str:
        assert p.proc is not None
        if not self.launcher.signal(p.proc, sig):
            p.ending = False  # it ended before it was asked to
            self.reap([p.proc], KILL_WAIT)
            return "already dead"
        p.state = state
        return outcome

    def _do_ballot(self, p: Priest) -> str:
        return self._signal(p, signal.SIGTSTP, State.RUNNING, "ballot requested (SIGTSTP)")

    def _do_pause(self, p: Priest) -> str:
        return self._signal(p, signal.SIGSTOP, State.PAUSED, "paused (SIGSTOP)")

    def _do_resume(self, p: Priest) -> str:
        return self._signal(p, signal.SIGCONT, State.RUNNING, "resumed (SIGCONT)")

    def _do_kill(self, p: Priest) -> str:
        p.ending = True
        outcome = self._signal(p, signal.SIGKILL, p.state, "killed (SIGKILL)")
        if p.state in ALIVE and p.proc is not None:
            self.reap([p.proc], KILL_WAIT)  # so `status` right after shows it killed
        return outcome

    def _do_kill_after_promise(self, p: Priest) -> str:
        assert p.proc is not None
        if p.armed:
            return "already armed: killed (SIGKILL) right after its next promise"
        self.watch.arm(p.name, p.proc.pid)  # refused for a priest whose promises cannot be seen
        p.armed = True
        return "armed: killed (SIGKILL) right after its next promise"

    def promised(self, name: str, ballot: Ballot | None) -> str | None:
        """Priest `name` made a promise (of `ballot`) durable: if it is armed, kill it now.

        Returns what was done (for the supervisor's log), or None if it was not armed.
        """
        p = self.priests[name]
        if not (p.armed and p.state in ALIVE):
            self._disarm(p)
            return None
        return self._fire(p, f"right after it promised ballot {ballot}")

    def _fire(self, p: Priest, why: str) -> str:
        """The armed kill: SIGKILL, recorded as a `kill` that says what fired it."""
        began, pid = self._now(), p.pid
        self._disarm(p)
        outcome = f"{self._do_kill(p)} {why} ({KILL_AFTER_PROMISE})"
        self.record(ChaosAction(t=began, action="kill", priest=p.name, pid=pid, outcome=outcome))
        return outcome

    def _disarm(self, p: Priest) -> None:
        if p.armed:
            p.armed = False
            self.watch.disarm(p.name)

    def _do_stop(self, p: Priest) -> str:
        return self._stop([p.name])[p.name]

    def _do_garbage(self, p: Priest, value: object) -> str:
        count = DEFAULT_GARBAGE if value is None else value
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_GARBAGE:
            raise UserError(f"garbage: the count must be an integer 1-{MAX_GARBAGE}, got {count!r}")
        if self.inject is None:
            raise RefusedError("this supervisor cannot send input to its priests")
        assert p.proc is not None
        outcome = self.inject(p.name, p.proc, count)
        self.reap([p.proc], 0)  # a priest that died of it shows as ended at once
        return outcome

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
            if self.priests[names[i]].state == State.RUNNING:
                self._turn = i
                self.act("ballot", names[i])
                return names[i]
        return None

    # --- the control protocol ---------------------------------------------

    def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        """Answer one control request (not `down`, which the event loop owns)."""
        try:
            if req["op"] == "status":
                return {"ok": True, "result": {"priests": self.status(),
                                               "network": self.network_status()}}
            if req["op"] in NETWORK_ACTIONS:
                return {"ok": True, "result": self.act_network(req["op"], req.get("arg"),
                                                               req.get("seed"))}
            return {"ok": True, "result": self.act(req["op"], req["priest"], req.get("arg"))}
        except UserError as e:
            return to_wire(e)


def did_not_start(name: str, reason: str) -> str:
    """One line: which priest did not start and why (the runtime may name it already)."""
    return f"priest {name} did not start: {reason.removeprefix(f'priest {name}: ')}"


def _refusal(action: str, p: Priest) -> str:
    """Why `action` makes no sense for `p`, and what to do instead."""
    who = f"priest {p.name}" + (f" (pid {p.pid})" if p.state in ALIVE else "")
    if action == "restart":
        return f"cannot restart {who}: it is {p.state}; stop or kill it first"
    if p.state == State.PAUSED and action == "pause":
        return f"{who} is already paused; resume it with --resume {p.name}"
    if p.state == State.RUNNING and action == "resume":
        return f"{who} is not paused: it is running"
    if p.state == State.PAUSED:
        return f"cannot {action} {who}: it is paused; resume it first"
    return f"cannot {action} {who}: it is {p.state}; restart it first"
