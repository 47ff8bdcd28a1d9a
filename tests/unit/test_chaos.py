"""Chaos plans and their executor, in-process: no priest is started, nothing sleeps.

Plans are checked against the real `Supervisor` core driven by a fake launcher:
a plan is sensible when the supervisor accepts every one of its steps.
"""

from __future__ import annotations

import argparse
import signal
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from harness import cli
from harness.chaos.executor import Executor, Live, load_schedule
from harness.chaos.plan import (
    HEAL,
    SPLIT_NOTE,
    WINDOW,
    WINDOW_NOTE,
    Plan,
    ScheduleError,
    Step,
    describe_plan,
    parse_schedule,
    plan_from_args,
    plan_random,
    steps_from_args,
)
from harness.errors import NotUpError, RefusedError, UnknownPriestError, UsageError
from harness.supervisor.actions import ACTIONS, State
from harness.supervisor.core import PriestProc, Supervisor
from harness.verbs import chaos as chaos_verb
from tests.conftest import priest_names, write_config

RUNNING, PAUSED, NOT_STARTED, KILLED = State.RUNNING, State.PAUSED, State.NOT_STARTED, State.KILLED
FOUR = ["alpha", "beta", "gamma", "delta"]
SHIPPED = Path(__file__).resolve().parents[2] / "configs" / "chaos"


# --- a supervisor with fake processes: the judge of what a plan asks ---------------


class FakeLauncher:
    """Processes that start at once and end when SIGKILLed or SIGTERMed."""

    def __init__(self) -> None:
        self.pid = 1000
        self.ending: dict[str, int] = {}

    def spawn(self, names: Sequence[str]) -> tuple[dict[str, PriestProc], dict[str, str]]:
        started = {}
        for name in names:
            self.pid += 1
            started[name] = PriestProc(name, self.pid, float(self.pid))
        return started, {}

    def signal(self, proc: PriestProc, sig: int) -> bool:
        if sig in (signal.SIGKILL, signal.SIGTERM):
            self.ending[proc.name] = -sig if sig == signal.SIGKILL else 0
        return True

    def wait(self, procs: Sequence[PriestProc], timeout: float) -> dict[str, int]:
        return {p.name: self.ending.pop(p.name) for p in procs if p.name in self.ending}


class FakeNetwork:
    """A relay that takes every change and remembers it."""

    def __init__(self) -> None:
        self.sets: list[tuple[Any, int | None]] = []

    def set(self, faults: Any, seed: int | None) -> str:
        self.sets.append((faults, seed))
        return ""

    def status(self) -> dict[str, Any]:
        return {"relay": 99, "state": "running", "totals": None, "links": {}}


def supervisor(names: Sequence[str], states: Mapping[str, str] | None = None) -> Supervisor:
    """A Supervisor whose priests are in `states` (default running; killed ones are killed)."""
    sup = Supervisor(names, FakeLauncher(), clock=lambda: 0.0, network=FakeNetwork())
    states = states or {}
    sup.start([n for n in names if states.get(n, RUNNING) != NOT_STARTED])
    for name in names:
        if states.get(name) == PAUSED:
            sup.act("pause", name)
        elif states.get(name) == KILLED:
            sup.act("kill", name)
    return sup


def replay(plan_steps: Sequence[Step], sup: Supervisor) -> list[dict[str, Any]]:
    """Apply every step to the supervisor; RefusedError at the first it does not accept."""
    return [sup.act_network(step.action, step.value, step.seed) if not step.priest
            else sup.act(step.action, step.priest) for step in plan_steps]


def states_of(sup: Supervisor) -> dict[str, str]:
    return {row["priest"]: row["state"] for row in sup.status()}


# --- the random nemesis -----------------------------------------------------------------


def test_the_same_seed_gives_the_same_plan_and_another_seed_another() -> None:
    names = priest_names(5)
    first = plan_random(names, 7, 10.0, 3.0)
    assert plan_random(names, 7, 10.0, 3.0) == first
    assert describe_plan(plan_random(names, 7, 10.0, 3.0)) == describe_plan(first)
    others = {plan_random(names, seed, 10.0, 3.0).steps for seed in range(8, 18)}
    assert first.steps not in others and len(others) == 10
    assert first.seed == 7 and any(str(7) in line for line in describe_plan(first)[:1])


def test_a_plan_mixes_every_kind_of_fault_at_about_the_rate_asked() -> None:
    plan = plan_random(priest_names(5), 3, 60.0, 4.0)
    chaos = [s for s in plan.steps if s.note != HEAL]
    assert {s.action for s in chaos} == {"kill", "kill-after-promise", "restart", "pause",
                                         "resume", "ballot"}
    assert 150 < len(chaos) < 330  # Poisson with mean 240
    assert all(0 < s.at < 60.0 for s in chaos)
    assert [s.at for s in plan.steps] == sorted(s.at for s in plan.steps)


@settings(max_examples=150, deadline=None)
@given(n=st.integers(1, 7), seed=st.integers(0, 2**63 - 1),
       rate=st.floats(0.5, 20.0), duration=st.floats(0.1, 10.0),
       majority_loss=st.booleans(), data=st.data())
def test_every_planned_step_is_one_the_supervisor_accepts_and_the_plan_heals(
        n: int, seed: int, rate: float, duration: float, majority_loss: bool,
        data: st.DataObject) -> None:
    names = priest_names(n)
    initial = {name: data.draw(st.sampled_from([RUNNING, PAUSED, KILLED, NOT_STARTED])) for name in names}
    plan = plan_random(names, seed, duration, rate, initial=initial,
                       allow_majority_loss=majority_loss)
    sup = supervisor(names, initial)
    replay(plan.steps, sup)  # raises RefusedError on an action on a priest in the wrong state
    assert set(states_of(sup).values()) == {"running"}
    last = plan.steps[-1]
    assert last.action == "ballot" and last.note == HEAL and last.at == round(duration, 3)
    heal = [s for s in plan.steps if s.note == HEAL]
    assert plan.steps[-len(heal):] == tuple(heal)
    assert all(s.action in ("restart", "resume", "ballot") for s in heal)


@pytest.mark.parametrize("seed", range(40))
def test_without_majority_loss_a_quorum_keeps_running(seed: int) -> None:
    names = priest_names(5)
    plan = plan_random(names, seed, 20.0, 5.0)
    sup = supervisor(names)
    for step in plan.steps:
        sup.act(step.action, step.priest)
        running = sum(1 for s in states_of(sup).values() if s == "running")
        assert running >= 3, f"seed {seed}: {step} left {running} priests running"


def test_with_majority_loss_the_nemesis_may_take_a_majority_down() -> None:
    names = priest_names(5)
    lowest = 5
    for seed in range(40):
        sup = supervisor(names)
        for step in plan_random(names, seed, 20.0, 5.0, allow_majority_loss=True).steps:
            sup.act(step.action, step.priest)
            lowest = min(lowest, sum(1 for s in states_of(sup).values() if s == "running"))
    assert lowest < 3


def test_the_heal_restarts_the_down_resumes_the_paused_then_one_ballot() -> None:
    names = FOUR
    plan = plan_random(names, 1, 0.001, 0.001, initial={"alpha": KILLED, "beta": PAUSED})
    assert [(s.action, s.priest) for s in plan.steps[:-1]] == [("restart", "alpha"),
                                                              ("resume", "beta")]
    assert plan.steps[-1].action == "ballot" and plan.steps[-1].priest in names


@pytest.mark.parametrize("duration,rate", [(0.0, 1.0), (1.0, 0.0), (-1.0, 2.0),
                                           (1e9, 1e9), (float("inf"), 1.0)])
def test_a_plan_refuses_nonsense_durations_and_rates(duration: float, rate: float) -> None:
    with pytest.raises(UsageError):
        plan_random(FOUR, 1, duration, rate)


# --- the command line: ordered actions ---------------------------------------------------


def parse(*argv: str) -> argparse.Namespace:
    return cli.build_parser().parse_args(["chaos", *argv])


def test_actions_keep_their_command_line_order_and_sleeps_move_the_offsets() -> None:
    args = parse("--kill", "delta", "--sleep", "0.5", "--ballot", "alpha", "--restart", "delta",
                 "--sleep", "0.25", "--pause", "beta", "--resume", "beta", "--stop", "gamma")
    assert args.steps == [("kill", "delta"), ("sleep", 0.5), ("ballot", "alpha"),
                          ("restart", "delta"), ("sleep", 0.25), ("pause", "beta"),
                          ("resume", "beta"), ("stop", "gamma")]
    steps = steps_from_args(args.steps, FOUR, "four.yaml")
    assert [(s.at, s.action, s.priest) for s in steps] == [
        (0.0, "kill", "delta"), (0.5, "ballot", "alpha"), (0.5, "restart", "delta"),
        (0.75, "pause", "beta"), (0.75, "resume", "beta"), (0.75, "stop", "gamma")]
    assert parse("configs/four.yaml", "--kill", "a").config == "configs/four.yaml"


def test_an_unknown_priest_on_the_command_line_names_option_and_config() -> None:
    with pytest.raises(UnknownPriestError) as e:
        steps_from_args([("ballot", "alpha"), ("kill", "omega")], FOUR, "four.yaml")
    assert "--kill" in str(e.value) and "omega" in str(e.value) and "four.yaml" in str(e.value)
    assert e.value.exit_status == 2


@pytest.mark.parametrize("argv", [["--sleep", "-1"], ["--sleep", "soon"], ["--random", "--seed",
                                  "x"], ["--random", "--duration", "0"], ["--random", "--rate",
                                                                           "-2"]])
def test_bad_option_values_are_usage_errors(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as e:
        parse(*argv)
    assert e.value.code == 2


@pytest.mark.parametrize("argv,fragment", [
    ([], "give one-shot actions"),
    (["--sleep", "1"], "no action given"),
    (["--kill", "alpha", "--random"], "not actions and random"),
    (["--schedule", "s.yaml", "--random"], "not schedule and random"),
    (["--kill", "alpha", "--seed", "3"], "--seed goes with --random"),
    (["--schedule", "s.yaml", "--allow-majority-loss"], "goes with --random"),
])
def test_one_way_at_a_time(argv: list[str], fragment: str, tmp_path: Path) -> None:
    args = parse(str(write_config(tmp_path, 4)), *argv)
    with pytest.raises(UsageError) as e:
        chaos_verb.run(args)
    assert fragment in str(e.value) and e.value.exit_status == 2


# --- schedules -----------------------------------------------------------------------------

BAD_SCHEDULES = [
    ({"at": 0, "kill": "alpha"}, "s.yaml: must be a non-empty list"),
    ([], "s.yaml: must be a non-empty list"),
    (["kill alpha"], "s.yaml: entry 1: must be a mapping"),
    ([{"at": 0, "kill": "alpha"}, {"kill": "beta"}], "s.yaml: entry 2: at: missing"),
    ([{"at": -1, "kill": "alpha"}], "s.yaml: entry 1: at: must be a number of seconds >= 0"),
    ([{"at": "soon", "kill": "alpha"}], "s.yaml: entry 1: at: must be a number"),
    ([{"at": True, "kill": "alpha"}], "s.yaml: entry 1: at: must be a number"),
    ([{"at": float("nan"), "kill": "alpha"}], "entry 1: at: must be a number"),
    ([{"at": 0}], "s.yaml: entry 1: needs exactly one action"),
    ([{"at": 0, "kill": "alpha", "pause": "beta"}], (f"entry 1: needs exactly one action "
                                                    f"({', '.join(ACTIONS)}), found kill, pause")),
    ([{"at": 0, "explode": "alpha"}], "s.yaml: entry 1: explode: unknown key"),
    ([{"at": 0, "kill": 3}], "s.yaml: entry 1: kill: must be a priest's name"),
    ([{"at": 0, "kill": "alpha", "note": 5}], "s.yaml: entry 1: note: must be text"),
    ([{"at": 1, "kill": "alpha"}, {"at": 0.5, "restart": "alpha"}],
     "s.yaml: entry 2: at: 0.5 comes before the previous entry's 1"),
]


@pytest.mark.parametrize("raw,message", BAD_SCHEDULES)
def test_schedule_errors_name_file_entry_and_key(raw: object, message: str) -> None:
    with pytest.raises(ScheduleError) as e:
        parse_schedule(raw, "s.yaml", FOUR)
    assert message in str(e.value)
    assert "\n" not in str(e.value) and e.value.exit_status == 2


def test_an_unknown_priest_in_a_schedule_is_named_with_its_entry() -> None:
    raw = [{"at": 0, "ballot": "alpha"}, {"at": 1, "kill": "omega"}]
    with pytest.raises(UnknownPriestError) as e:
        parse_schedule(raw, "s.yaml", FOUR)
    assert str(e.value).startswith("s.yaml: entry 2: kill: no priest named 'omega'")
    assert "known: alpha, beta, gamma, delta" in str(e.value)


def test_a_schedule_parses_into_steps_in_time_order() -> None:
    raw = [{"at": 0, "pause": "gamma", "note": "freeze"}, {"at": 0, "ballot": "alpha"},
           {"at": 1.5, "resume": "gamma"}]
    assert parse_schedule(raw, "s.yaml", FOUR) == (
        Step(0.0, "pause", "gamma", "freeze"), Step(0.0, "ballot", "alpha"),
        Step(1.5, "resume", "gamma"))


@pytest.mark.parametrize("text,message", [
    ("- {at: 0, kill: alpha\n", "s.yaml: not valid YAML at line"),
    ("- {at: 0, kill: alpha, kill: beta}\n", "duplicate key 'kill'"),
    (None, "s.yaml: no such file"),
])
def test_schedule_files_that_cannot_be_read(text: str | None, message: str,
                                            tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    if text is not None:
        Path("s.yaml").write_text(text)
    with pytest.raises(UsageError) as e:
        load_schedule("s.yaml", FOUR)
    assert message in str(e.value) and e.value.exit_status == 2


SHIPPED_FILES = sorted(p.name for p in SHIPPED.glob("*.yaml"))


def test_the_schedules_are_shipped() -> None:
    assert SHIPPED_FILES == ["bound-by-vote.yaml", "crash-during-ballot.yaml", "demo.yaml",
                             "duel.yaml", "forgotten-promise.yaml", "majority-crash.yaml",
                             "partition.yaml",
                             "pause-proposer.yaml", "rolling-restart.yaml"]


@pytest.mark.parametrize("name", SHIPPED_FILES)
def test_each_shipped_schedule_is_accepted_step_by_step_by_the_supervisor(name: str) -> None:
    text = (SHIPPED / name).read_text()
    names = priest_names(5) if "# priests: 5" in text else FOUR
    steps = load_schedule(str(SHIPPED / name), names)
    # The demo starts with delta not started (`up --only alpha,beta,gamma`).
    sup = supervisor(names, {"delta": NOT_STARTED} if name == "demo.yaml" else None)
    if name == "demo.yaml":
        assert states_of(sup)["delta"] == NOT_STARTED
    replay(steps, sup)
    assert set(states_of(sup).values()) == {"running"}  # every priest back: it can converge


def test_a_schedule_that_makes_no_sense_is_refused_by_the_supervisor() -> None:
    # The judge used above does refuse: a kill of a dead priest.
    steps = parse_schedule([{"at": 0, "kill": "beta"}, {"at": 1, "kill": "beta"}], "s", FOUR)
    with pytest.raises(RefusedError):
        replay(steps, supervisor(FOUR))


# --- the executor, with a fake clock and a fake control channel ----------------------------


class Fake:
    """A clock that moves only when slept on, and a control channel that answers from a script."""

    def __init__(self, refuse: Mapping[tuple[str, str], Exception] | None = None) -> None:
        self.now = 100.0
        self.sent: list[tuple[float, str, str]] = []
        self.refuse = dict(refuse or {})

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.now += seconds

    def send(self, step: Step) -> dict[str, Any]:
        action, priest = step.action, step.priest
        self.sent.append((round(self.now - 100.0, 6), action, priest))
        self.now += 0.01  # each request takes a moment
        if (action, priest) in self.refuse:
            raise self.refuse[(action, priest)]
        return {"action": action, "priest": priest, "pid": 42, "outcome": f"{action} done"}


def plan_of(*steps: tuple[float, str, str]) -> Plan:
    return Plan(tuple(Step(at, a, n) for at, a, n in steps), "test")


def test_the_executor_applies_each_step_at_its_time_in_order() -> None:
    fake = Fake()
    plan = plan_of((0.0, "pause", "gamma"), (0.0, "ballot", "alpha"), (1.5, "resume", "gamma"),
                   (1.5, "kill", "beta"))
    results = Executor(fake.send, clock=fake.clock, sleep=fake.sleep).run(plan)
    assert [(a, n) for _, a, n in fake.sent] == [("pause", "gamma"), ("ballot", "alpha"),
                                                  ("resume", "gamma"), ("kill", "beta")]
    times = [t for t, _, _ in fake.sent]
    assert times[0] == 0.0 and times[1] == pytest.approx(0.01)  # behind time: at once
    assert times[2] == pytest.approx(1.5) and times[3] == pytest.approx(1.51)
    assert all(r.ok and r.pid == 42 for r in results)


def test_a_trailing_sleep_is_waited_out_and_shown() -> None:
    args = parse("--ballot", "alpha", "--sleep", "2", "--ballot", "beta", "--sleep", "1.5")
    plan = plan_from_args(args.steps, FOUR, "four.yaml")
    assert [s.at for s in plan.steps] == [0.0, 2.0] and plan.span == 3.5
    assert "over 3.5 s" in describe_plan(plan)[0] and "+3.500s" in describe_plan(plan)[-1]
    fake = Fake()
    Executor(fake.send, clock=fake.clock, sleep=fake.sleep).run(plan)
    assert fake.now - 100.0 >= 3.5  # the command returns only once the sleep is over
    fake = Fake({("ballot", "alpha"): RefusedError("no")})  # a refusal ends the run at once
    Executor(fake.send, clock=fake.clock, sleep=fake.sleep).run(plan)
    assert fake.now - 100.0 < 1.0


def test_the_executor_stops_at_a_refusal_unless_told_to_keep_going() -> None:
    refuse = {("kill", "beta"): RefusedError("cannot kill priest beta: it is killed")}
    plan = plan_of((0.0, "kill", "beta"), (0.1, "ballot", "alpha"))
    fake = Fake(refuse)
    results = Executor(fake.send, clock=fake.clock, sleep=fake.sleep).run(plan)
    assert len(results) == 1 and not results[0].ok and "it is killed" in results[0].outcome
    fake = Fake(refuse)
    executor = Executor(fake.send, clock=fake.clock, sleep=fake.sleep, keep_going=True)
    results = executor.run(plan)
    assert [r.ok for r in results] == [False, True] and executor.refused == 1


def test_the_executor_gives_up_when_the_supervisor_is_gone() -> None:
    fake = Fake({("ballot", "alpha"): NotUpError("no supervisor listens")})
    with pytest.raises(NotUpError):
        Executor(fake.send, clock=fake.clock, sleep=fake.sleep).run(
            plan_of((0.0, "ballot", "alpha"), (1.0, "kill", "beta")))
    assert len(fake.sent) == 1


class Screen:
    def __init__(self) -> None:
        self.text = ""

    def write(self, s: str) -> None:
        self.text += s

    def flush(self) -> None:
        pass


def test_live_output_one_line_per_action_and_a_progress_line_on_a_terminal() -> None:
    fake = Fake({("kill", "beta"): RefusedError("it is killed", pid=4301)})
    screen = Screen()
    live = Live(screen, color=True, progress=True)  # type: ignore[arg-type]
    plan = plan_of((0.0, "ballot", "alpha"), (3.0, "kill", "beta"))
    Executor(fake.send, clock=fake.clock, sleep=fake.sleep, live=live, keep_going=True).run(plan)
    lines = [line.rsplit("\r\x1b[K", 1)[-1] for line in screen.text.split("\n") if line]
    assert "ballot" in lines[0] and "alpha" in lines[0] and "ballot done" in lines[0]
    assert "kill" in lines[1] and "REFUSED: it is killed" in lines[1]
    assert "pid 4301" in lines[1]  # the refused priest's pid, as the supervisor gave it
    assert "\x1b[31m" in screen.text  # red for the kill
    assert "chaos: 1/2 actions" in screen.text  # the progress line, while waiting
    plain = Screen()
    Executor(Fake().send, clock=fake.clock, sleep=fake.sleep,
             live=Live(plain, color=False, progress=False)).run(plan)  # type: ignore[arg-type]
    assert "\x1b" not in plain.text and plain.text.count("\n") == 2


# --- dry runs through the verb -----------------------------------------------------------


def test_a_dry_run_prints_the_plan_needs_no_cluster_and_records_nothing(
        tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    config = str(write_config(tmp_path, 5))
    outputs = []
    for seed in ("11", "11", "12"):
        assert chaos_verb.run(parse(config, "--random", "--seed", seed, "--duration", "5",
                                      "--dry-run")) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1] != outputs[2]
    assert "seed 11" in outputs[0].splitlines()[0]
    assert outputs[0].rstrip().endswith("# heal")
    assert not (tmp_path / "data" / "harness.jsonl").exists()
    schedule = tmp_path / "s.yaml"
    schedule.write_text(yaml.safe_dump([{"at": 0, "kill": "epsilon"}, {"at": 1, "ballot": "beta"}]))
    assert chaos_verb.run(parse(config, "--schedule", str(schedule), "--dry-run")) == 0
    assert "kill       epsilon" in capsys.readouterr().out


def test_without_a_running_cluster_the_verb_says_so(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = str(write_config(tmp_path, 4))
    with pytest.raises(NotUpError) as e:
        chaos_verb.run(parse(config, "--kill", "alpha"))
    assert "is not up" in str(e.value) and "up" in str(e.value) and e.value.exit_status == 1
    with pytest.raises(UnknownPriestError):  # a name error wins: nothing is checked twice
        chaos_verb.run(parse(config, "--kill", "omega"))


@pytest.mark.parametrize("seed", range(30))
def test_a_random_plan_opens_with_the_decision_contended_and_faulted(seed: int) -> None:
    plan = plan_random(priest_names(5), seed, 5.0, 2.0)
    window = [s for s in plan.steps if s.at <= WINDOW and s.note == WINDOW_NOTE]
    ballots = [s.priest for s in window if s.action == "ballot"]
    assert len(ballots) >= 2 and len(set(ballots)) == len(ballots)  # contending proposers
    assert any(s.action != "ballot" for s in window)  # and faults among them
    assert plan.steps[0].note == WINDOW_NOTE and plan.window == WINDOW
    assert "decision window" in describe_plan(plan)[1]
    assert not any(s.note == WINDOW_NOTE for s in plan.steps if s.at > WINDOW)


def test_a_plan_too_short_for_a_window_has_none() -> None:
    plan = plan_random(priest_names(5), 1, 0.5, 2.0)
    assert plan.window == 0.0 and not any(s.note == WINDOW_NOTE for s in plan.steps)


def _split(plan) -> list:
    return [s for s in plan.steps if s.note == SPLIT_NOTE]


def test_a_share_of_windows_is_a_split_decision_with_a_timed_kill_in_the_minority() -> None:
    names = priest_names(5)
    splits = 0
    for seed in range(300):
        plan = plan_random(names, seed, 2.0, 2.0, faults=("process", "network"))
        steps = _split(plan)
        if not steps:
            continue
        splits += 1
        cut, arm, minority, restart, merge, majority = steps
        assert [s.action for s in steps] == ["partition", "kill-after-promise", "ballot",
                                             "restart", "heal", "ballot"]
        assert [s.at for s in steps] == sorted(s.at for s in steps) and merge.at <= WINDOW
        inside = set(cut.value.split("/")[0].split(","))  # the minority: its first group
        assert len(inside) <= 2 and {arm.priest, minority.priest} <= inside
        assert restart.priest == arm.priest and majority.priest not in inside
        assert "split" in describe_plan(plan)[1]
        assert not any(s.note == WINDOW_NOTE for s in plan.steps)
    assert 70 < splits < 130  # a third of 300


def test_only_a_mix_of_process_and_network_faults_splits_the_window() -> None:
    for seed in range(60):
        for faults in (("process",), ("network",)):
            assert not _split(plan_random(priest_names(5), seed, 2.0, 2.0, faults=faults))
        assert not _split(plan_random(priest_names(2), seed, 2.0, 2.0,
                                      faults=("process", "network")))


@settings(max_examples=100, deadline=None)
@given(n=st.integers(1, 7), seed=st.integers(0, 2**63 - 1), data=st.data())
def test_a_plan_with_network_faults_is_accepted_step_by_step_and_heals(
        n: int, seed: int, data: st.DataObject) -> None:
    names = priest_names(n)
    initial = {name: data.draw(st.sampled_from([RUNNING, PAUSED, KILLED, NOT_STARTED]))
               for name in names}
    plan = plan_random(names, seed, data.draw(st.floats(0.1, 4.0)), 3.0, initial=initial,
                       faults=("process", "network"))
    sup = supervisor(names, initial)
    replay(plan.steps, sup)
    assert set(states_of(sup).values()) == {"running"}
    assert sup.faults.describe() == "no faults"
