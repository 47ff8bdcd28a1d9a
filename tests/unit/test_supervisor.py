"""The supervisor's core against a fake clock and fake processes: scripted histories, no sleeps."""

from __future__ import annotations

import signal
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from harness.errors import RefusedError, StartupError, UnknownPriestError
from harness.record import ChaosAction, PriestExited, Record, Result
from harness.supervisor.actions import State
from harness.supervisor.core import PriestProc, Supervisor
from node.messages import Ballot

EXITED, KILLED, NOT_STARTED, PAUSED, RUNNING = (State.EXITED, State.KILLED, State.NOT_STARTED,
                                                State.PAUSED, State.RUNNING)

NAMES = ["alpha", "beta", "gamma", "delta"]


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeProcess:
    name: str
    pid: int
    term_delay: float | None  # seconds from SIGTERM to exit; None: ignores SIGTERM
    stopped: bool = False
    term_pending: bool = False
    exit_at: float | None = None
    status: int | None = None
    reaped: bool = False


@dataclass
class FakeLauncher:
    """Process control with scripted behaviour; signals it sends are kept in `sent`."""

    clock: FakeClock
    fail: dict[str, str] = field(default_factory=dict)
    term_delay: dict[str, float | None] = field(default_factory=dict)
    sent: list[tuple[str, str]] = field(default_factory=list)
    procs: dict[int, FakeProcess] = field(default_factory=dict)
    next_pid: int = 100

    def spawn(self, names: Sequence[str]) -> tuple[dict[str, PriestProc], dict[str, str]]:
        started, failed = {}, {}
        for name in names:
            if name in self.fail:
                failed[name] = self.fail[name]
                continue
            self.next_pid += 1
            fp = FakeProcess(name, self.next_pid, self.term_delay.get(name, 0.1))
            self.procs[fp.pid] = fp
            started[name] = PriestProc(name, fp.pid, 1000.0 + fp.pid, fp)
        return started, failed

    def _ended(self, fp: FakeProcess) -> bool:
        return fp.exit_at is not None and fp.exit_at <= self.clock.now

    def signal(self, proc: PriestProc, sig: int) -> bool:
        fp: FakeProcess = proc.handle
        if self._ended(fp):
            return False
        self.sent.append((proc.name, signal.Signals(sig).name))
        if sig == signal.SIGKILL:
            self.die(proc.name, -signal.SIGKILL)
        elif sig == signal.SIGSTOP:
            fp.stopped = True
        elif sig == signal.SIGCONT:
            fp.stopped = False
            if fp.term_pending:
                self._term(fp)
        elif sig == signal.SIGTERM:
            if fp.stopped:
                fp.term_pending = True  # a stopped process holds it until continued
            else:
                self._term(fp)
        return True

    def _term(self, fp: FakeProcess) -> None:
        if fp.term_delay is not None and fp.exit_at is None:
            fp.exit_at, fp.status = self.clock.now + fp.term_delay, 0

    def die(self, name: str, status: int) -> None:
        """The process ends now, whatever the supervisor thinks."""
        fp = next(p for p in self.procs.values() if p.name == name and p.exit_at is None)
        fp.exit_at, fp.status = self.clock.now, status

    def wait(self, procs: Sequence[PriestProc], timeout: float) -> dict[str, int]:
        fps = [p.handle for p in procs if not p.handle.reaped]
        due = [fp.exit_at for fp in fps if fp.exit_at is not None
               and fp.exit_at <= self.clock.now + timeout]
        # Like a real wait: return at the first exit, or when the timeout ends.
        self.clock.now = max(self.clock.now, min(due)) if due else self.clock.now + timeout
        ended = {}
        for fp in fps:
            if self._ended(fp):
                fp.reaped = True
                ended[fp.name] = fp.status
        return ended


class Events(list[tuple[str, dict[str, Any]]]):
    """The records the supervisor made, as (kind, fields without `t` and `kind`)."""

    def __call__(self, record: Record) -> None:
        fields = record.to_json()
        del fields["t"], fields["kind"]
        self.append((record.KIND.value, fields))

    def kinds(self, kind: str) -> list[dict[str, Any]]:
        return [f for k, f in self if k == kind]


@pytest.fixture
def world() -> tuple[Supervisor, FakeLauncher, FakeClock, Events]:
    clock = FakeClock()
    launcher = FakeLauncher(clock)
    events = Events()
    sup = Supervisor(NAMES, launcher, clock=clock, record=events, grace=3.0)
    return sup, launcher, clock, events


def states(sup: Supervisor) -> dict[str, str]:
    return {row["priest"]: row["state"] for row in sup.status()}


def test_start_marks_priests_running_and_records_each(world) -> None:
    sup, launcher, _, events = world
    assert sup.start(["alpha", "beta", "gamma"]) == {}
    assert states(sup) == {"alpha": RUNNING, "beta": RUNNING, "gamma": RUNNING,
                           "delta": NOT_STARTED}
    assert [e["priest"] for e in events.kinds("priest_started")] == ["alpha", "beta", "gamma"]
    assert {p.pid for p in sup.alive()} == set(launcher.procs)


def test_a_priest_that_fails_to_start_is_reported_and_not_running(world) -> None:
    sup, launcher, _, _ = world
    launcher.fail["beta"] = "127.0.0.1:7102 is in use"
    assert sup.start(NAMES) == {"beta": "127.0.0.1:7102 is in use"}
    assert states(sup)["beta"] == NOT_STARTED
    assert sorted(p.name for p in sup.alive()) == ["alpha", "delta", "gamma"]


def test_teardown_terms_then_kills_a_priest_that_ignores_sigterm_after_the_grace(world) -> None:
    sup, launcher, clock, events = world
    launcher.term_delay["gamma"] = None
    sup.start(NAMES)
    outcomes = sup.teardown()
    assert outcomes["alpha"].startswith("stopped")
    assert outcomes["gamma"].startswith("killed after the 3 s grace")
    assert ("gamma", "SIGKILL") in launcher.sent
    assert [s for n, s in launcher.sent if n == "alpha"] == ["SIGTERM"]
    assert clock.now == pytest.approx(3.0)  # SIGKILL exactly when the grace ran out
    assert states(sup) == {"alpha": EXITED, "beta": EXITED, "gamma": KILLED, "delta": EXITED}
    assert sup.alive() == []
    assert len(events.kinds("priest_exited")) == 4


def test_a_stops_grace_period_ticks_so_the_loops_duties_go_on() -> None:
    clock = FakeClock()
    launcher = FakeLauncher(clock)
    ticks: list[float] = []
    sup = Supervisor(NAMES, launcher, clock=clock, grace=3.0, tick=lambda: ticks.append(clock.now))
    launcher.term_delay["gamma"] = None
    sup.start(NAMES)
    sup.teardown()
    assert clock.now == pytest.approx(3.0) and len(ticks) >= 3.0 / 0.02 - 1
    assert max(b - a for a, b in zip([0.0, *ticks], ticks, strict=False)) <= 0.02 + 1e-9


def test_teardown_does_not_wait_the_grace_when_everyone_exits_at_once(world) -> None:
    sup, _, clock, _ = world
    sup.start(NAMES)
    sup.teardown()
    assert clock.now == pytest.approx(0.1)


def test_a_paused_priest_is_resumed_before_it_is_asked_to_stop(world) -> None:
    sup, launcher, _, _ = world
    sup.start(NAMES)
    sup.act("pause", "beta")
    outcomes = sup.teardown()
    assert [s for n, s in launcher.sent if n == "beta"] == ["SIGSTOP", "SIGCONT", "SIGTERM"]
    assert outcomes["beta"].startswith("stopped")  # not killed: it could act on SIGTERM


def test_actions_send_their_signals_and_update_the_state(world) -> None:
    sup, launcher, _, events = world
    sup.start(NAMES)
    assert sup.act("ballot", "alpha")["outcome"].startswith("ballot requested")
    sup.act("pause", "beta")
    assert states(sup)["beta"] == PAUSED
    sup.act("resume", "beta")
    assert states(sup)["beta"] == RUNNING
    result = sup.act("kill", "gamma")
    assert result["outcome"].startswith("killed") and result["pid"] == 103
    assert states(sup)["gamma"] == KILLED  # reaped at once: status shows it right away
    assert sup.status()[2]["exit_status"] == -signal.SIGKILL
    assert launcher.sent == [("alpha", "SIGTSTP"), ("beta", "SIGSTOP"), ("beta", "SIGCONT"),
                             ("gamma", "SIGKILL")]
    assert [e["action"] for e in events.kinds("chaos")] == ["ballot", "pause", "resume", "kill"]


def test_stop_reports_the_exit_status(world) -> None:
    sup, _, _, _ = world
    sup.start(NAMES)
    assert sup.act("stop", "delta")["outcome"] == "stopped (exit status 0)"
    assert states(sup)["delta"] == EXITED


@pytest.mark.parametrize(("setup", "action", "name", "words"), [
    ("kill", "kill", "gamma", "it is killed; restart it first"),
    ("kill", "ballot", "gamma", "it is killed; restart it first"),
    ("pause", "pause", "gamma", "already paused"),
    ("pause", "ballot", "gamma", "it is paused; resume it first"),
    (None, "resume", "gamma", "is not paused"),
    (None, "restart", "gamma", "stop or kill it first"),
    (None, "kill", "delta", "it is not started"),
])
def test_actions_that_make_no_sense_are_refused_and_recorded(
        world, setup: str | None, action: str, name: str, words: str) -> None:
    sup, launcher, _, events = world
    sup.start(["alpha", "beta", "gamma"])
    if setup:
        sup.act(setup, name)
    sent = list(launcher.sent)
    with pytest.raises(RefusedError, match=words):
        sup.act(action, name)
    assert launcher.sent == sent  # nothing was signalled
    assert events.kinds("chaos")[-1]["outcome"].startswith("refused: ")


def test_an_unknown_priest_is_named_with_the_known_ones(world) -> None:
    sup, _, _, _ = world
    with pytest.raises(UnknownPriestError, match=r"'omega'.*alpha, beta, gamma, delta"):
        sup.act("kill", "omega")


def test_a_priest_already_gone_is_already_dead_not_an_error(world) -> None:
    sup, launcher, _, events = world
    sup.start(NAMES)
    launcher.die("beta", -signal.SIGSEGV)
    assert sup.act("kill", "beta")["outcome"] == "already dead"
    assert states(sup)["beta"] == KILLED
    assert events.kinds("priest_exited")[-1] == {"priest": "beta", "pid": 102,
                                                 "status": -signal.SIGSEGV, "by_harness": False}
    assert ("beta", "SIGKILL") not in launcher.sent


def test_restart_starts_a_new_process_for_a_killed_or_never_started_priest(world) -> None:
    sup, _launcher, _, _ = world
    sup.start(["alpha", "beta", "gamma"])
    old = sup.priests["gamma"].pid
    sup.act("kill", "gamma")
    result = sup.act("restart", "gamma")
    assert result["pid"] != old and result["outcome"] == f"started (pid {result['pid']})"
    sup.act("restart", "delta")
    assert all(s == RUNNING for s in states(sup).values())


def test_a_restart_that_cannot_start_fails_with_the_reason(world) -> None:
    sup, launcher, _, events = world
    launcher.fail["delta"] = "port taken"
    with pytest.raises(StartupError, match="priest delta did not start: port taken"):
        sup.act("restart", "delta")
    assert events.kinds("chaos")[-1]["outcome"].startswith("failed: ")


def test_each_action_is_one_typed_record_stamped_when_it_began() -> None:
    clock = FakeClock()
    launcher = FakeLauncher(clock, term_delay={"beta": 1.5})
    records: list[Record] = []
    sup = Supervisor(NAMES, launcher, clock=clock, record=records.append, grace=3.0)
    sup.start(["alpha", "beta"])
    clock.now = 2.0
    sup.act("stop", "beta")  # beta takes 1.5 s to exit: the record keeps the start, 2.0 s
    with pytest.raises(RefusedError):
        sup.act("pause", "gamma")
    actions = [r for r in records if isinstance(r, ChaosAction)]
    assert [(r.t, r.action, r.priest, r.result) for r in actions] == [
        (2_000_000_000, "stop", "beta", Result.DONE),
        (3_500_000_000, "pause", "gamma", Result.REFUSED)]
    assert actions[0].pid == 102 and actions[0].outcome.startswith("stopped (exit status")
    exited = next(r for r in records if isinstance(r, PriestExited))
    assert (exited.t, exited.priest, exited.pid) == (3_500_000_000, "beta", 102)


def test_ctrl_z_asks_the_next_running_priest_in_turn(world) -> None:
    sup, launcher, _, _ = world
    sup.start(NAMES)
    sup.act("pause", "beta")
    sup.act("kill", "gamma")
    turns = [sup.ballot_next() for _ in range(4)]
    assert turns == ["alpha", "delta", "alpha", "delta"]
    assert [n for n, s in launcher.sent if s == "SIGTSTP"] == turns


def test_ctrl_z_with_nobody_running_does_nothing(world) -> None:
    sup, launcher, _, _ = world
    assert sup.ballot_next() is None
    assert launcher.sent == []


def test_handle_answers_status_and_maps_refusals_to_exit_statuses(world) -> None:
    sup, _, _, _ = world
    sup.start(["alpha"])
    status = sup.handle({"op": "status"})
    assert status["ok"] and status["result"]["priests"][0]["pid"] == 101
    assert sup.handle({"op": "pause", "priest": "alpha"})["ok"]
    refused = sup.handle({"op": "pause", "priest": "alpha"})
    # A refusal names the pid of the priest it is about, so chaos can show it.
    assert refused == {"ok": False, "code": "refused", "error": refused["error"], "pid": 101}
    assert "(pid 101)" in refused["error"]
    assert sup.handle({"op": "kill", "priest": "nobody"})["code"] == "unknown_priest"


def test_on_change_follows_every_start_and_exit(world) -> None:
    _, launcher, clock, _ = world
    calls: list[int] = []
    sup = Supervisor(NAMES, launcher, clock=clock, on_change=lambda: calls.append(1))
    sup.start(NAMES)
    sup.act("kill", "alpha")
    assert len(calls) == 2


# --- kill-after-promise: a kill timed to the priest's own promise -------------------


@dataclass
class FakeWatch:
    """The watch the supervisor arms and disarms; the test says when a promise shows."""

    armed: dict[str, int] = field(default_factory=dict)  # name -> pid
    calls: list[tuple[str, str]] = field(default_factory=list)

    def arm(self, name: str, pid: int) -> None:
        self.armed[name] = pid
        self.calls.append(("arm", name))

    def disarm(self, name: str) -> None:
        if self.armed.pop(name, None) is not None:
            self.calls.append(("disarm", name))


@pytest.fixture
def armed_world() -> tuple[Supervisor, FakeLauncher, FakeWatch, Events]:
    clock = FakeClock()
    launcher = FakeLauncher(clock)
    events, watch = Events(), FakeWatch()
    sup = Supervisor(NAMES, launcher, clock=clock, record=events, grace=3.0, watch=watch)
    sup.start(NAMES)
    return sup, launcher, watch, events


def armed(sup: Supervisor) -> dict[str, str | None]:
    return {row["priest"]: row["armed"] for row in sup.status()}


def test_arming_sends_nothing_and_watches_that_process(armed_world) -> None:
    sup, launcher, watch, events = armed_world
    result = sup.act("kill-after-promise", "gamma")
    assert result["outcome"] == "armed: killed (SIGKILL) right after its next promise"
    assert launcher.sent == [] and states(sup)["gamma"] == RUNNING
    assert watch.armed == {"gamma": 103}
    assert armed(sup)["gamma"] == "kill-after-promise" and armed(sup)["alpha"] is None
    assert events.kinds("chaos")[-1]["action"] == "kill-after-promise"
    assert sup.act("kill-after-promise", "gamma")["outcome"].startswith("already armed")


def test_its_promise_kills_the_armed_priest_and_the_kill_is_recorded(armed_world) -> None:
    sup, launcher, watch, events = armed_world
    sup.act("kill-after-promise", "gamma")
    outcome = sup.promised("gamma", Ballot(1, "beta"))
    assert outcome == ("killed (SIGKILL) right after it promised ballot 1.beta "
                       "(kill-after-promise)")
    assert launcher.sent == [("gamma", "SIGKILL")]
    assert states(sup)["gamma"] == KILLED and armed(sup)["gamma"] is None
    assert watch.armed == {}
    kill = events.kinds("chaos")[-1]
    assert (kill["action"], kill["priest"], kill["pid"], kill["result"]) == (
        "kill", "gamma", 103, "done")
    assert kill["outcome"] == outcome
    assert events.kinds("priest_exited")[-1]["status"] == -signal.SIGKILL
    # Its next incarnation is not armed: a later promise of gamma kills nothing.
    sup.act("restart", "gamma")
    assert sup.promised("gamma", Ballot(2, "beta")) is None
    assert launcher.sent == [("gamma", "SIGKILL")]


def test_a_promise_of_a_priest_not_armed_does_nothing(armed_world) -> None:
    sup, launcher, _, events = armed_world
    assert sup.promised("alpha", Ballot(1, "alpha")) is None
    assert launcher.sent == [] and events.kinds("chaos") == []


def test_a_restart_of_a_priest_still_armed_kills_it_first(armed_world) -> None:
    sup, launcher, watch, events = armed_world
    sup.act("kill-after-promise", "gamma")
    result = sup.act("restart", "gamma")
    assert launcher.sent == [("gamma", "SIGKILL")]
    assert result["pid"] != 103 and states(sup)["gamma"] == RUNNING
    assert result["outcome"] == (f"killed (SIGKILL) before any promise, for this restart "
                                 f"(kill-after-promise); then started (pid {result['pid']})")
    assert [(e["action"], e["outcome"].split(" (")[0]) for e in events.kinds("chaos")] == [
        ("kill-after-promise", "armed: killed"), ("kill", "killed"), ("restart", "started")]
    assert watch.armed == {}


@pytest.mark.parametrize("action", ["ballot", "pause"])
def test_an_action_that_needs_it_running_leaves_it_armed(armed_world, action: str) -> None:
    sup, launcher, watch, _ = armed_world
    sup.act("kill-after-promise", "gamma")
    sup.act(action, "gamma")
    assert [n for n, _ in launcher.sent] == ["gamma"]  # SIGTSTP or SIGSTOP, no SIGKILL
    assert watch.armed == {"gamma": 103} and armed(sup)["gamma"] == "kill-after-promise"


def test_an_armed_priest_that_ends_otherwise_is_disarmed(armed_world) -> None:
    sup, launcher, watch, _ = armed_world
    sup.act("kill-after-promise", "gamma")
    sup.act("kill-after-promise", "delta")
    launcher.die("gamma", -signal.SIGSEGV)
    sup.reap(sup.alive(), 0)
    sup.act("kill", "delta")
    assert watch.calls[-2:] == [("disarm", "gamma"), ("disarm", "delta")]
    assert sup.promised("gamma", Ballot(1, "alpha")) is None
    assert launcher.sent == [("delta", "SIGKILL")]
    sup.act("kill-after-promise", "alpha")
    sup.teardown()
    assert watch.armed == {}


def test_only_a_running_priest_can_be_armed(armed_world) -> None:
    sup, _, watch, _ = armed_world
    sup.act("pause", "beta")
    sup.act("kill", "gamma")
    for name, words in (("beta", "it is paused"), ("gamma", "it is killed")):
        with pytest.raises(RefusedError, match=words):
            sup.act("kill-after-promise", name)
    assert watch.armed == {}
