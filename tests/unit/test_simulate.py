"""The simulate verb: seeded runs of the real Synod core, judged by verify's checks."""

from __future__ import annotations

import argparse
import io
import json

import pytest

import harness.simulate.runs
import node.runtime
import node.sim
import node.synod
from harness import cli
from harness.check.verdict import NO_PROGRESS
from harness.errors import UsageError
from harness.report.diagram import diagram, shorten
from harness.simulate.runs import (
    Setup,
    first_failing_seed,
    judge,
    run_seed,
    search,
    to_history,
)
from harness.verbs import simulate as simulate_verb
from node.flaws import FLAW_NAMES
from node.messages import Ballot, EventKind, LedgerState, Record, Vote
from node.sim import Faults, World

HARSH = Faults(drop=0.3, duplicate=0.2, crash=0.05, partition=1.0, ballots=6)
# Without a partition: a priest cut off through the whole faulty phase may fall more
# rounds behind the others' promises than its attempts can climb after the heal
# (acceptors ignore a low NextBallot without a word), so HARSH may end without progress.
LIVE = Faults(drop=0.3, duplicate=0.2, crash=0.05, partition=0.0, ballots=6)
SAFETY = {"learned_different", "decree_changed", "disagreement", "unproposed_decree",
          "promise_broken", "ballot_two_decrees", "ballot_reused", "chosen_changed",
          "unsound_learning"}


def parse(*argv: str) -> argparse.Namespace:
    return cli.build_parser().parse_args(["simulate", *argv])


def simulate(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    status = simulate_verb.run(parse(*argv), out)
    return status, out.getvalue()


# --- determinism ------------------------------------------------------------------


@pytest.mark.parametrize("flaws", [(), ("forget-promises",)])
def test_same_seed_gives_the_same_trace_history_and_verdict(flaws: tuple[str, ...]) -> None:
    setup = Setup(5, HARSH, flaws)
    (a, va), (b, vb) = run_seed(setup, 1234), run_seed(setup, 1234)
    assert a.trace == b.trace and a.history == b.history and va == vb
    assert diagram(a.names, a.steps) == diagram(b.names, b.steps)
    c, _ = run_seed(setup, 1235)
    assert c.trace != a.trace


@pytest.mark.parametrize("faults", [Faults(), HARSH], ids=["default", "harsh"])
@pytest.mark.parametrize("flaws", [(), ("forget-promises",)])
def test_keeping_no_steps_plays_the_same_run(faults: Faults, flaws: tuple[str, ...]) -> None:
    """A search runs without steps and replays a broken run with them: it must be the same run."""
    setup, broken = Setup(5, faults, flaws), 0
    for seed in range(300):
        (a, va), (b, vb) = run_seed(setup, seed, steps=True), run_seed(setup, seed, steps=False)
        assert a.events_of == b.events_of, seed
        assert (a.stats, a.finished, a.decrees()) == (b.stats, b.finished, b.decrees()), seed
        assert va == vb, seed
        broken += bool(va)
    assert broken or not flaws  # the flaw's runs compare some verdicts that found something


def test_the_command_replays_a_seed_byte_for_byte() -> None:
    first = simulate("--seed", "77", "--trace", "--crash", "0.05", "--jobs", "1")
    second = simulate("--seed", "77", "--trace", "--crash", "0.05", "--jobs", "1")
    # Only the speed figures may differ between two replays.
    def strip(text: str) -> list[str]:
        return [line for line in text.splitlines() if "runs/s" not in line]
    assert first[0] == second[0] == 0
    assert strip(first[1]) == strip(second[1])


# --- the correct core ----------------------------------------------------------------


def test_the_correct_core_is_clean_over_hundreds_of_seeds() -> None:
    report = search(Setup(5), range(300))
    assert report.failed is None, report.failed
    assert report.runs == 300 and report.ballots > 300 and report.crashes > 0
    assert report.dropped > 0


@pytest.mark.parametrize("priests", [1, 2, 3, 4, 7])
def test_the_correct_core_is_safe_under_harsh_faults(priests: int) -> None:
    for seed in range(40):
        _, violations = run_seed(Setup(priests, HARSH), seed)
        assert not {v.kind for v in violations} & SAFETY, (seed, violations)


def test_after_the_heal_every_priest_holds_the_same_decree() -> None:
    for seed in range(150):
        world, violations = run_seed(Setup(5, LIVE), seed)
        decrees = set(world.decrees().values())
        assert world.finished and len(decrees) == 1 and None not in decrees, (seed, decrees)
        assert violations == ()


# --- the flaws ---------------------------------------------------------------------
# First seeds that caught each flaw on five priests with the default faults (when
# written): same-ballot-numbers 0 (ballot_reused), ignore-previous-votes 2
# (chosen_changed), forget-promises 48 (promise_broken).


@pytest.mark.parametrize("flaw", FLAW_NAMES)
def test_each_flaw_is_caught_within_2000_seeds_on_five_priests(flaw: str) -> None:
    found = first_failing_seed(Setup(5, flaws=(flaw,)), range(2000))
    assert found is not None, f"{flaw} was never caught"
    seed, violations = found
    assert {v.kind for v in violations} & SAFETY, (seed, violations)


def test_a_flaw_run_is_reported_with_its_seed_rule_replay_and_a_shortened_diagram() -> None:
    status, text = simulate("--seeds", "200", "--flaw", "ignore-previous-votes", "--jobs", "1")
    assert status == 1
    assert "WARNING: flaw ignore-previous-votes is ON" in text.splitlines()[0]
    found = first_failing_seed(Setup(5, flaws=("ignore-previous-votes",)), range(200))
    assert found is not None
    seed, violations = found
    assert f"VIOLATION (exit 1) in seed {seed}: " in text
    assert f"--seed {seed} --flaw ignore-previous-votes --trace" in text
    assert "rule: " in text and "steps that matter" in text
    assert " p1  p2  p3  p4  p5 " in text  # the diagram's lanes
    for ballot in violations[0].ballots:
        assert ballot in text


def test_the_shortened_trace_keeps_the_ballots_involved_and_drops_the_rest() -> None:
    setup = Setup(5, flaws=("forget-promises",))
    found = first_failing_seed(setup, range(2000))
    assert found is not None
    world, violations = run_seed(setup, found[0])
    short = shorten(world, violations)
    assert 0 < len(short) < len(world.steps)
    involved = {b for v in violations for b in v.ballots}
    shown = {str(s.what.ballot) for s in short if s.kind == "send"}  # type: ignore[attr-defined]
    # A proposer's promise of its own ballot is in the record that begins it, so a
    # ballot whose every NextBallot was lost is shown by that ledger write alone.
    shown |= {str(s.what.next_bal) for s in short if s.kind == "ledger"}  # type: ignore[attr-defined]
    assert involved <= shown
    assert not any(s.kind == "send" and s.fate == "lost" for s in short)
    assert any(s.kind == "crash" for s in short)  # forgetting needs a crash


def test_json_output_names_the_seed_and_the_violation() -> None:
    status, text = simulate("--seeds", "100", "--flaw", "same-ballot-numbers", "--json",
                            "--jobs", "1")
    data = json.loads(text)  # the warning goes to stderr: stdout is pure JSON
    assert status == data["exit_status"] == 1 and data["status"] == "violation"
    assert data["flaws"] == ["same-ballot-numbers"]
    seed = data["violation"]["seed"]
    assert data["runs"] == seed + 1
    assert data["violation"]["violations"][0]["kind"] in SAFETY
    assert data["trace"] and all(isinstance(line, str) for line in data["trace"])


def test_a_clean_search_prints_a_summary() -> None:
    status, text = simulate("--seeds", "30", "--priests", "3", "--jobs", "1")
    assert status == 0
    assert "CLEAN (exit 0): 30 runs" in text and "runs/s" in text and "ballots/s" in text
    assert "WARNING" not in text


@pytest.mark.timeout(60)
def test_worker_processes_give_the_same_results(no_leaks: None,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # The first POOL_MIN_SEEDS seeds run in this process, the rest in the workers.
    monkeypatch.setattr(harness.simulate.runs, "POOL_MIN_SEEDS", 2)
    for argv in (["--seeds", "300"], ["--seeds", "400", "--flaw", "forget-promises"]):
        one = simulate(*argv, "--json", "--jobs", "1")
        two = simulate(*argv, "--json", "--jobs", "2")
        a, b = json.loads(one[1]), json.loads(two[1])
        assert one[0] == two[0]
        for key in ("violation", "runs", "messages", "dropped", "crashes", "ballots"):
            assert a[key] == b[key], key
    assert a["violation"]["seed"] >= 2  # found by a worker


# --- usage errors --------------------------------------------------------------------


@pytest.mark.parametrize("argv", [["--drop", "2"], ["--priests", "0"], ["--seeds", "x"],
                                  ["--seed", "1", "--seeds", "2"], ["--flaw", "nonsense"],
                                  ["--crash", "-0.1"], ["--horizon", "0"], ["--horizon", "4000"],
                                  ["--ballots", "100001"]])
def test_bad_options_are_usage_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse(*argv)
    assert exc.value.code == 2


def test_first_seed_with_one_seed_is_a_usage_error() -> None:
    with pytest.raises(UsageError) as exc:
        simulate("--seed", "3", "--first-seed", "2")
    assert exc.value.exit_status == 2 and "--first-seed" in str(exc.value)


# --- the checks see what the ledger proves ---------------------------------------------


def _three_priests_one_vote_unrecorded(recovered: LedgerState) -> World:
    """p1's ballot passes with the votes of p1 and p3 (a quorum of 3); p3's vote was
    persisted, then a crash struck before it was recorded; p3 restarts with `recovered`."""
    world = World(3, 0)
    b = Ballot(1, "p1")
    world.record(0.1, "p1", Record(EventKind.BALLOT_STARTED, "", b))
    world.record(0.2, "p1", Record(EventKind.PROPOSED, "", b, 1001))
    world.record(0.3, "p1", Record(EventKind.VOTED, "", b, 1001))
    world.record(0.4, "p3", (recovered, None))
    world.record(0.5, "p1", Record(EventKind.LEARNED, "", b, 1001))
    for disk in world.disks.values():
        disk.decree = 1001
    world.finished = True
    return world


def test_a_vote_proven_by_the_recovered_ledger_counts_for_the_quorum() -> None:
    b1 = Ballot(1, "p1")
    voted = LedgerState(next_bal=b1, prev_vote=Vote(b1, 1001))
    assert judge(_three_priests_one_vote_unrecorded(voted)) == ()
    history = to_history(_three_priests_one_vote_unrecorded(voted))
    started = history.events["p3"][-1]
    assert started.kind == "started" and started.prev_vote == Vote(b1, 1001)
    # Without the ledger's evidence the learning is unsound: the check can fail.
    kinds = {v.kind for v in judge(_three_priests_one_vote_unrecorded(LedgerState()))}
    assert "unsound_learning" in kinds


# --- the simulator runs the priests' own core ------------------------------------------


def test_the_simulator_and_the_priests_share_one_core_class() -> None:
    assert node.sim.Priest is node.synod.Priest is node.runtime.Priest
    world, _ = run_seed(Setup(3), 0)
    assert all(type(p) is node.synod.Priest for p in world.priests.values())


def test_breaking_the_core_module_changes_the_simulation(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[object] = []
    handle = node.synod.Priest.handle

    def counting(self: node.synod.Priest, event: object) -> object:
        calls.append(event)
        return handle(self, event)  # type: ignore[arg-type]

    monkeypatch.setattr(node.synod.Priest, "handle", counting)
    world, violations = run_seed(Setup(5), 3)
    assert violations == () and len(calls) >= world.stats["messages"] - world.stats["dropped"]
    # Acceptors that never vote: nothing can pass, and the heal phase cannot help.
    monkeypatch.setattr(node.synod.Priest, "_on_begin_ballot", lambda self, m: [])
    world, violations = run_seed(Setup(5), 3)
    assert [v.kind for v in violations] == [NO_PROGRESS]
    short = shorten(world, violations)  # from the heal on, without retransmissions
    assert short[0].kind == "heal" and len(short) < len(world.steps)
    assert search(Setup(5), range(5)).failed is not None


def test_without_jobs_it_uses_one_worker_per_cpu() -> None:
    status, text = simulate("--seeds", "3")  # the default --jobs 0
    assert status == 0 and "CLEAN" in text


def test_until_searches_past_runs_that_break_only_other_rules() -> None:
    status, text = simulate("--seeds", "600", "--flaw", "same-ballot-numbers", "--until",
                            "disagreement", "--jobs", "1")
    assert status == 1
    verdict = next(line for line in text.splitlines() if line.startswith("VIOLATION"))
    assert "disagreement" in verdict and "seed 376" in verdict
    assert "passed over (--until disagreement)" in text and "ballot_reused in" in text
    # Without --until, the search stops at the first broken rule, a bookkeeping one.
    status, text = simulate("--seeds", "600", "--flaw", "same-ballot-numbers", "--jobs", "1")
    first = next(line for line in text.splitlines() if line.startswith("VIOLATION"))
    assert status == 1 and "disagreement" not in first


def test_until_a_rule_no_run_breaks_still_reports_the_others_with_exit_1() -> None:
    status, out = simulate("--seeds", "40", "--flaw", "same-ballot-numbers", "--until",
                           "disagreement", "--jobs", "1", "--json")
    data = json.loads(out)
    assert status == 1 and data["violation"] is None and data["passed_over"]["ballot_reused"] > 0
    assert data["status"] == "violation" and data["until"] == ["disagreement"]
    status, _ = simulate("--seeds", "5", "--until", "disagreement", "--jobs", "1")
    assert status == 0  # the correct core breaks nothing: clean


def test_the_verdict_comes_before_the_trace() -> None:
    status, text = simulate("--seeds", "50", "--flaw", "same-ballot-numbers", "--jobs", "1")
    lines = text.splitlines()
    verdict = next(i for i, line in enumerate(lines) if line.startswith("VIOLATION"))
    trace = next(i for i, line in enumerate(lines) if line.startswith("trace of seed"))
    assert status == 1 and verdict < trace


def test_the_trace_flags_the_steps_the_violation_rests_on_and_explains_its_notation() -> None:
    status, text = simulate("--seed", "10", "--flaw", "same-ballot-numbers", "--trace", "--jobs", "1")
    lines = text.splitlines()
    flagged = [line for line in lines if line.startswith("!")]
    assert status == 1 and len(flagged) == 2  # the two priests that began ballot 1.*
    assert all("ledger <- last_tried=1.*" in line for line in flagged)
    assert any(line.startswith("note: 1.* is round 1 numbered by the flawed") for line in lines)
    assert "None" not in text  # no Python notation in what a learner reads
    status, text = simulate("--seed", "10", "--trace", "--jobs", "1")  # the correct core
    assert not any(line.startswith(("!", "note: 1.*")) for line in text.splitlines())
