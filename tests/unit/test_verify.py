"""The checker behind `verify`: hand-made runs on disk, one per rule it enforces.

Every rule is shown to fail: a healthy run passes, and a mutation of it that
breaks exactly one rule is caught, with exactly the violation kinds expected.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness.check.history import load_history
from harness.check.rules import check, load_and_check, run
from harness.check.verdict import KINDS, Verdict, render
from harness.record import ChaosAction, Garbage, NetworkChange, PriestExited, Result, Up
from node.config import Config, parse_config
from node.ledger import HEADER, encode_record, parse_vote
from node.messages import NO_VOTE, ZERO, Ballot, LedgerState, Vote

NAMES = ["alpha", "beta", "gamma", "delta"]


class Run:
    """A run's files, built in memory, then written as a data directory."""

    def __init__(self, names: list[str] = NAMES) -> None:
        self.names = names
        self.events: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
        self.decrees: dict[str, str] = {}
        self.harness: list[dict[str, Any]] = []  # harness.jsonl's lines
        # ledger.log's text per priest, or None for no file; by default, what its events show
        self.ledgers: dict[str, str | None] = {}
        self.t = 5_000_000_000

    def add(self, priest: str, kind: str, ballot: str | None = None, decree: int | None = None,
            peer: str | None = None, **extra: Any) -> dict[str, Any]:
        """Append one event, 1 ms after the previous one."""
        self.t += 1_000_000
        record = {"t": self.t, "priest": priest, "pid": 100 + self.names.index(priest),
                  "kind": kind, "ballot": ballot, "decree": decree, "peer": peer,
                  "text": f"{kind} {ballot} {decree}", **extra}
        self.events[priest].append(record)
        return record

    def up(self) -> None:
        """The supervisor starts (a new run), 1 ms after the previous line."""
        self.t += 1_000_000
        self.harness.append(Up(t=self.t, cluster="four", priests=tuple(self.names),
                               supervisor=42, detached=True).to_json())

    def fault(self, action: str, priest: str, result: Result = Result.DONE) -> None:
        """The harness applies (or refuses) one action, 1 ms after the previous line."""
        self.t += 1_000_000
        self.harness.append(ChaosAction(t=self.t, action=action, priest=priest, pid=None,
                                        outcome="as planned", result=result).to_json())

    def network(self, action: str, value: object, result: Result = Result.DONE) -> None:
        """The harness changes (or refuses to change) the network, 1 ms after the previous line."""
        self.t += 1_000_000
        self.harness.append(NetworkChange(t=self.t, action=action, value=value, seed=None,
                                          outcome="as planned", result=result).to_json())

    def find(self, priest: str, kind: str, ballot: str | None = None) -> dict[str, Any]:
        return next(e for e in self.events[priest]
                    if e["kind"] == kind and (ballot is None or e["ballot"] == ballot))

    def remove(self, priest: str, kind: str, ballot: str | None = None) -> None:
        self.events[priest].remove(self.find(priest, kind, ballot))

    def write(self, data_dir: Path) -> None:
        for name in self.names:
            d = data_dir / name
            d.mkdir(parents=True, exist_ok=True)
            lines = "".join(json.dumps(e) + "\n" for e in self.events[name])
            (d / "events.jsonl").write_text(lines)
            if name in self.decrees:
                (d / "decree.txt").write_text(self.decrees[name])
            ledger = self.ledgers.get(name, ledger_text(self.events[name]))
            if ledger is not None:
                (d / "ledger.log").write_text(ledger)
        if self.harness:
            (data_dir / "harness.jsonl").write_text(
                "".join(json.dumps(r) + "\n" for r in self.harness))


def ledger_text(events: list[dict[str, Any]]) -> str:
    """The ledger.log a priest with these events holds: its highest promise and vote."""
    state = LedgerState()
    for e in sorted(events, key=lambda e: e["t"]):
        if e["kind"] == "started" and "next_bal" in e:  # a recovered ledger
            try:
                next_bal, vote = Ballot.parse(e["next_bal"]), parse_vote(e["prev_vote"])
            except (ValueError, TypeError):
                continue  # a test of a malformed one
            state = LedgerState(state.last_tried, max(state.next_bal, next_bal),
                                max(state.prev_vote, vote, key=lambda v: v.ballot))
        elif e["kind"] in ("promised", "voted"):
            ballot = Ballot.parse(e["ballot"])
            vote = Vote(ballot, e["decree"]) if e["kind"] == "voted" else NO_VOTE
            state = LedgerState(state.last_tried, max(state.next_bal, ballot),
                                max(state.prev_vote, vote, key=lambda v: v.ballot))
        elif e["kind"] == "ballot_started":
            state = LedgerState(max(state.last_tried, Ballot.parse(e["ballot"])), state.next_bal,
                                state.prev_vote)
    return HEADER + encode_record(state) + "\n"


def make_config(data_dir: Path, names: list[str] = NAMES) -> Config:
    priests = {n: {"host": "127.0.0.1", "port": 7101 + i} for i, n in enumerate(names)}
    return parse_config({"cluster": "four", "data_dir": str(data_dir), "priests": priests},
                        "four.yaml")


def healthy() -> Run:
    """Ballot 1.alpha gets two votes for 1001 and is abandoned; 2.gamma passes 1001."""
    r = Run()
    for n in NAMES:
        r.add(n, "started", None, None, last_tried="0", next_bal="0", prev_vote="none")
    r.add("alpha", "ballot_started", "1.alpha")
    for n in ["alpha", "beta", "gamma"]:
        r.add(n, "promised", "1.alpha", peer="alpha")
        r.add("alpha", "received", "1.alpha", peer=n, msg="LastVote")
    r.add("alpha", "proposed", "1.alpha", 1001, quorum=["alpha", "beta", "gamma"])
    for n in ["alpha", "beta"]:
        r.add(n, "voted", "1.alpha", 1001, peer="alpha")
    r.add("alpha", "ballot_abandoned", "1.alpha")
    r.add("gamma", "ballot_started", "2.gamma")
    for n in ["gamma", "delta", "beta"]:
        r.add(n, "promised", "2.gamma", peer="gamma")
    r.add("gamma", "proposed", "2.gamma", 1001, quorum=["beta", "delta", "gamma"])
    for n in ["gamma", "delta", "beta"]:
        r.add(n, "voted", "2.gamma", 1001, peer="gamma")
        r.add("gamma", "received", "2.gamma", peer=n, msg="Voted")
    r.add("gamma", "learned", "2.gamma", 1001)
    for n in ["alpha", "beta"]:
        r.add(n, "received", "2.gamma", 1001, peer="gamma", msg="Success")
        r.add(n, "learned", "2.gamma", 1001)
    # delta hears it from beta, who learned before a restart: ballot zero, recorded null.
    r.add("delta", "received", "0", 1001, peer="beta", msg="Success")
    r.add("delta", "learned", None, 1001)
    r.decrees = dict.fromkeys(NAMES, "1001\n")
    return r


def verdict_of(tmp_path: Path, r: Run, alive: set[str] | None = None) -> Verdict:
    data = tmp_path / "data"
    r.write(data)
    return load_and_check(make_config(data), alive)


def kinds(v: Verdict) -> set[str]:
    return {x.kind for x in v.violations}


# --- the healthy run -------------------------------------------------------------


def test_healthy_run_is_agreement(tmp_path: Path) -> None:
    v = verdict_of(tmp_path, healthy())
    assert v.violations == () and v.problems == ()
    assert v.exit_status == 0 and v.decree == 1001
    assert next(p.ballots for p in v.priests) == ("1.alpha", "2.gamma")


def test_healthy_run_with_live_subset_is_agreement(tmp_path: Path) -> None:
    v = verdict_of(tmp_path, healthy(), alive={"alpha", "gamma"})
    assert v.exit_status == 0
    assert [p.alive for p in v.priests] == [True, False, True, False]


# --- one mutation per rule: each is caught, and only by the rules it breaks ------


def tamper_delta(r: Run) -> None:
    r.decrees["delta"] = "1003\n"


def delta_crashed_after_writing_1003(r: Run) -> None:
    r.remove("delta", "learned")
    r.decrees["delta"] = "1003\n"


def delta_restarts_holding_1003(r: Run) -> None:
    r.add("delta", "stopped")
    r.add("delta", "started", None, 1003, pid=999)


def delta_file_garbled(r: Run) -> None:
    r.decrees["delta"] = "10x1\n"


def delta_decree_file_deleted(r: Run) -> None:
    del r.decrees["delta"]  # after delta recorded `learned`: only a deletion explains it


def delta_ledger_header_only(r: Run) -> None:
    r.ledgers["delta"] = HEADER  # while delta's events show its promise and vote in 2.gamma


def delta_ledger_deleted(r: Run) -> None:
    r.ledgers["delta"] = None


def delta_restarts_with_an_empty_ledger(r: Run) -> None:
    r.add("delta", "stopped")
    r.add("delta", "started", None, 1001, last_tried="0", next_bal="0", prev_vote="none",
          pid=999)


def nobody_proposed(r: Run) -> None:
    r.remove("alpha", "proposed")
    r.remove("gamma", "proposed")


def beta_votes_below_promise(r: Run) -> None:
    # beta's vote in 1.alpha is moved after its promise for 2.gamma.
    vote = r.find("beta", "voted", "1.alpha")
    vote["t"] = r.find("beta", "promised", "2.gamma")["t"] + 1


def second_decree_for_ballot(r: Run) -> None:
    r.add("gamma", "proposed", "2.gamma", 1003)


def ballot_begun_twice(r: Run) -> None:
    r.add("delta", "ballot_started", "2.gamma")


def later_ballot_votes_otherwise(r: Run) -> None:
    r.add("delta", "ballot_started", "3.delta")
    r.add("delta", "promised", "3.delta", peer="delta")
    r.add("delta", "proposed", "3.delta", 4004)
    r.add("delta", "voted", "3.delta", 4004, peer="delta")


def missing_third_vote(r: Run) -> None:
    r.remove("delta", "voted", "2.gamma")


def learned_before_quorum(r: Run) -> None:
    r.find("gamma", "learned")["t"] = r.find("delta", "voted", "2.gamma")["t"] - 1


def delta_dies_of_garbage(r: Run) -> None:
    r.t += 1_000_000
    r.harness.append(Garbage(t=r.t, priest="delta", transport="udp", port=7104, died_after=0,
                             inputs=[{"t": r.t, "kind": "empty", "data": ""}]).to_json())
    r.t += 1_000_000
    r.harness.append(PriestExited(t=r.t, priest="delta", pid=103, status=1).to_json())


MUTATIONS: list[tuple[str, Callable[[Run], None], set[str] | None, set[str]]] = [
    # (target kind, mutation, alive, every kind expected)
    ("disagreement", tamper_delta, None, {"disagreement", "decree_file_mismatch"}),
    ("learned_different", delta_crashed_after_writing_1003, {"alpha", "beta", "gamma"},
     {"learned_different", "unproposed_decree"}),
    ("decree_changed", delta_restarts_holding_1003, None, {"decree_changed"}),
    ("decree_file_mismatch", tamper_delta, {"alpha", "beta", "gamma"}, {"decree_file_mismatch"}),
    ("malformed_decree", delta_file_garbled, {"alpha", "beta", "gamma"}, {"malformed_decree"}),
    ("decree_lost", delta_decree_file_deleted, None, {"decree_lost"}),
    ("ledger_lost", delta_ledger_header_only, None, {"ledger_lost"}),
    ("ledger_lost", delta_ledger_deleted, None, {"ledger_lost"}),
    ("ledger_lost", delta_restarts_with_an_empty_ledger, None, {"ledger_lost"}),
    ("decree_lost", delta_decree_file_deleted, {"alpha", "beta", "gamma"}, {"decree_lost"}),
    ("unproposed_decree", nobody_proposed, None, {"unproposed_decree"}),
    ("promise_broken", beta_votes_below_promise, None, {"promise_broken"}),
    ("ballot_two_decrees", second_decree_for_ballot, None, {"ballot_two_decrees"}),
    ("ballot_reused", ballot_begun_twice, None, {"ballot_reused"}),
    ("chosen_changed", later_ballot_votes_otherwise, None, {"chosen_changed"}),
    ("unsound_learning", missing_third_vote, None, {"unsound_learning"}),
    ("unsound_learning", learned_before_quorum, None, {"unsound_learning"}),
    ("crashed_on_input", delta_dies_of_garbage, {"alpha", "beta", "gamma"}, {"crashed_on_input"}),
]


def test_every_kind_has_a_mutation() -> None:
    assert {m[0] for m in MUTATIONS} == set(KINDS)


@pytest.mark.parametrize("target, mutate, alive, expected", MUTATIONS,
                         ids=[f"{m[0]}-{m[1].__name__}" for m in MUTATIONS])
def test_mutation_is_caught(tmp_path: Path, target: str, mutate: Callable[[Run], None],
                            alive: set[str] | None, expected: set[str]) -> None:
    r = healthy()
    mutate(r)
    v = verdict_of(tmp_path, r, alive)
    assert kinds(v) == expected
    assert v.exit_status == 1
    assert target in render(v, color=False)
    for violation in v.violations:
        assert violation.priests, violation  # every violation names its priests


# --- the messages name priests, values, ballots and times -------------------------


def test_chosen_changed_names_the_evidence(tmp_path: Path) -> None:
    r = healthy()
    later_ballot_votes_otherwise(r)
    (x,) = verdict_of(tmp_path, r).violations
    assert "2.gamma" in x.message and "3.delta" in x.message
    assert "1001" in x.message and "4004" in x.message
    assert "delta/events.jsonl:" in x.message
    assert x.decrees == (1001, 4004) and x.ballots == ("2.gamma", "3.delta")
    assert x.times == (r.find("delta", "voted", "3.delta")["t"],)


def test_promise_broken_across_restarts(tmp_path: Path) -> None:
    r = Run(["alpha", "beta", "gamma"])
    r.add("beta", "started", None, None)
    r.add("beta", "promised", "5.gamma", peer="gamma")
    r.add("beta", "stopped")
    restarted = r.add("beta", "started", None, None)
    restarted["pid"] = 777
    vote = r.add("beta", "voted", "3.alpha", 3001, peer="alpha")
    vote["pid"] = 777
    data = tmp_path / "data"
    r.write(data)
    v = load_and_check(make_config(data, r.names), None)
    (x,) = [x for x in v.violations if x.kind == "promise_broken"]
    assert "5.gamma" in x.message and "3.alpha" in x.message
    assert "pid 101" in x.message and "pid 777" in x.message
    assert x.priests == ("beta",)


def test_promise_equal_to_vote_is_kept(tmp_path: Path) -> None:
    r = Run(["alpha"])
    r.add("alpha", "promised", "2.alpha")
    r.add("alpha", "voted", "2.alpha", 7)
    r.add("alpha", "promised", "1.alpha")  # lower promise recorded later: max still 2.alpha
    r.add("alpha", "voted", "3.alpha", 7)
    data = tmp_path / "data"
    r.write(data)
    v = load_and_check(make_config(data, ["alpha"]), None)
    assert "promise_broken" not in kinds(v)


def test_flawed_ballot_marker_is_a_ballot(tmp_path: Path) -> None:
    r = Run(["alpha", "beta", "gamma"])
    r.add("alpha", "ballot_started", "1.*")
    r.add("beta", "ballot_started", "1.*")
    r.add("alpha", "proposed", "1.*", 1001)
    r.add("beta", "proposed", "1.*", 2001)
    data = tmp_path / "data"
    r.write(data)
    v = load_and_check(make_config(data, r.names), set())
    assert kinds(v) == {"ballot_reused", "ballot_two_decrees"}
    reused = next(x for x in v.violations if x.kind == "ballot_reused")
    assert reused.ballots == ("1.*",) and set(reused.priests) == {"alpha", "beta"}
    assert v.problems == ()


def test_flawed_marker_used_once_is_healthy(tmp_path: Path) -> None:
    r = Run(["alpha", "beta", "gamma"])
    r.add("alpha", "ballot_started", "1.*")
    r.add("alpha", "proposed", "1.*", 1001)
    for n in r.names:
        r.add(n, "voted", "1.*", 1001)
    for n in r.names:
        r.add(n, "learned", "1.*", 1001)
    r.decrees = dict.fromkeys(r.names, "1001\n")
    data = tmp_path / "data"
    r.write(data)
    v = load_and_check(make_config(data, r.names), None)
    assert v.exit_status == 0, v.violations


def test_decree_changed_names_both_holdings(tmp_path: Path) -> None:
    r = healthy()
    delta_restarts_holding_1003(r)
    (x,) = verdict_of(tmp_path, r).violations
    # delta learned from a Success of ballot zero: no ballot to name for it.
    assert x.message.startswith("delta's decree changed: learned 1001 at +")
    assert "then started 1003 at +" in x.message and "in ballot" not in x.message
    assert x.decrees == (1001, 1003) and x.priests == ("delta",)


def test_nobody_running_is_vacuous_agreement(tmp_path: Path) -> None:
    v = verdict_of(tmp_path, healthy(), alive=set())
    assert v.exit_status == 0 and v.decree is None
    assert "no priest is running" in render(v, color=False)


def test_learned_different_names_both_decrees(tmp_path: Path) -> None:
    r = healthy()
    delta_crashed_after_writing_1003(r)
    v = verdict_of(tmp_path, r, alive={"alpha"})
    (x,) = [x for x in v.violations if x.kind == "learned_different"]
    assert x.decrees == (1001, 1003)
    assert "delta" in x.priests and "decree.txt" in x.message


def test_unsound_learning_says_how_many_votes(tmp_path: Path) -> None:
    r = healthy()
    missing_third_vote(r)
    (x,) = verdict_of(tmp_path, r).violations
    assert "3 of 4" in x.message and "at most 2 votes" in x.message
    assert set(x.priests) == set(NAMES)


# --- final state: tampering, garbage, survivors without a decree ------------------


def test_tampered_decree_file(tmp_path: Path) -> None:
    r = healthy()
    r.decrees["beta"] = "1002\n"
    v = verdict_of(tmp_path, r)
    assert v.exit_status == 1
    mismatch = next(x for x in v.violations if x.kind == "decree_file_mismatch")
    assert mismatch.priests == ("beta",) and "1002" in mismatch.message
    assert "1001" in mismatch.message
    dis = next(x for x in v.violations if x.kind == "disagreement")
    assert "1002 in beta" in dis.message and "1001 in alpha, gamma, delta" in dis.message


@pytest.mark.parametrize("text", ["", "abc\n", "1001\n1002\n", " 1001\n", "1.5\n", "\xff",
                                  "1001", "9223372036854775808\n", "01001\n", "+1001\n",
                                  "-0\n"])
def test_malformed_decree_file_is_a_violation(tmp_path: Path, text: str) -> None:
    r = healthy()
    r.decrees["gamma"] = text
    v = verdict_of(tmp_path, r)
    assert v.exit_status == 1
    (x,) = [x for x in v.violations if x.kind == "malformed_decree"]
    assert x.priests == ("gamma",) and "gamma/decree.txt" in x.message


def test_decree_file_without_newline_is_refused_as_the_priest_would(tmp_path: Path) -> None:
    r = healthy()
    r.decrees["gamma"] = "1001"
    v = verdict_of(tmp_path, r)
    assert [x.kind for x in v.violations] == ["malformed_decree"]
    assert "newline" in v.violations[0].message


def test_survivor_without_decree_is_not_yet(tmp_path: Path) -> None:
    r = healthy()
    del r.decrees["delta"]
    r.remove("delta", "learned")
    v = verdict_of(tmp_path, r)
    assert v.exit_status == 3 and v.waiting == ("delta",)
    assert "delta" in render(v, color=False).split("NOT YET")[1]


def test_dead_priest_without_decree_does_not_wait(tmp_path: Path) -> None:
    r = healthy()
    del r.decrees["delta"]
    r.remove("delta", "learned")
    v = verdict_of(tmp_path, r, alive={"alpha", "beta", "gamma"})
    assert v.exit_status == 0 and v.waiting == ()


def test_missing_directory_is_reported_not_fatal(tmp_path: Path) -> None:
    data = tmp_path / "data"
    healthy().write(data)
    config = make_config(data, NAMES + ["epsilon"])  # epsilon never started
    v = load_and_check(config, set(NAMES))
    assert v.exit_status == 0
    (problem,) = v.problems
    assert problem.path.endswith("epsilon") and "no directory" in problem.reason
    assert "epsilon" in render(v, color=False).split("could not read")[1]
    # Counted as surviving (cluster down) but without a directory: it has not learned.
    assert load_and_check(config, None).exit_status == 3


def test_lost_votes_are_missing_evidence(tmp_path: Path) -> None:
    data = tmp_path / "data"
    healthy().write(data)
    for f in (data / "delta").iterdir():
        f.unlink()
    (data / "delta").rmdir()
    v = load_and_check(make_config(data), {"alpha", "beta", "gamma"})
    # delta's vote completed the quorum: without it, learning cannot be shown sound,
    # nor shown unsound: delta's events are gone, not shown absent.
    assert v.violations == ()
    assert {x.kind for x in v.unverifiable} == {"unsound_learning"}
    assert v.exit_status == 4 and v.status == "unverifiable"
    text = render(v, color=False)
    assert "CANNOT VERIFY (exit 4)" in text and "could not read" in text
    assert "unsound_learning (unverifiable)" in text
    doc = v.to_json()
    assert doc["status"] == "unverifiable" and doc["violations"] == []
    assert [x["kind"] for x in doc["unverifiable"]] == ["unsound_learning"]


def garble(data: Path, priest: str) -> None:
    """Put one line that is not JSON into a priest's events.jsonl."""
    with (data / priest / "events.jsonl").open("a") as f:
        f.write("not json\n")


def test_unproposed_decree_with_unreadable_lines_is_unverifiable(tmp_path: Path) -> None:
    r = healthy()
    nobody_proposed(r)
    data = tmp_path / "data"
    r.write(data)
    config = make_config(data)
    assert kinds(load_and_check(config, None)) == {"unproposed_decree"}
    garble(data, "alpha")  # alpha may have proposed it in the line that was lost
    v = load_and_check(config, None)
    assert v.violations == () and [x.kind for x in v.unverifiable] == ["unproposed_decree"]
    assert v.exit_status == 4


def test_unsound_learning_stays_proven_when_missing_events_cannot_explain_it(
        tmp_path: Path) -> None:
    r = Run()
    for n in NAMES:
        r.add(n, "started", None, None, last_tried="0", next_bal="0", prev_vote="none")
    r.add("alpha", "ballot_started", "1.alpha")
    r.add("alpha", "proposed", "1.alpha", 7)
    r.add("alpha", "voted", "1.alpha", 7, peer="alpha")
    r.add("alpha", "learned", "1.alpha", 7)  # on its own vote: one of a quorum of three
    r.add("delta", "learned", None, 9)  # never proposed, never voted
    r.decrees = {"alpha": "7\n", "delta": "9\n"}
    data = tmp_path / "data"
    r.write(data)
    garble(data, "delta")
    v = load_and_check(make_config(data), {"alpha"})
    # Even if delta's lost line held a vote, 7 had two votes at most, and 9 one.
    assert sorted(x.kind for x in v.violations) == ["learned_different", "unsound_learning",
                                                    "unsound_learning"]
    assert [x.kind for x in v.unverifiable] == ["unproposed_decree"]
    assert v.exit_status == 1
    text = render(v, color=False)
    assert "VIOLATION (exit 1)" in text and "unproposed_decree (unverifiable)" in text


def test_agreement_with_unreadable_lines_says_what_it_covers(tmp_path: Path) -> None:
    data = tmp_path / "data"
    healthy().write(data)
    garble(data, "beta")
    v = load_and_check(make_config(data), None)
    assert v.exit_status == 0 and v.unverifiable == ()
    assert "covers only what was read" in render(v, color=False)


def test_corrupt_and_torn_lines_are_reported_and_skipped(tmp_path: Path) -> None:
    r = healthy()
    data = tmp_path / "data"
    r.write(data)
    path = data / "beta" / "events.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    lines.insert(2, "this is not json\n")
    path.write_text("".join(lines) + '{"t": 9, "priest": "beta", "ki')
    v = load_and_check(make_config(data), None)
    assert v.exit_status == 0
    where = sorted((p.line, p.reason.split(" ")[0]) for p in v.problems)
    assert where == [(3, "not"), (len(lines) + 1, "torn")]
    assert all(p.path.endswith("beta/events.jsonl") for p in v.problems)
    text = render(v, color=False)
    assert "beta/events.jsonl:3" in text


def test_empty_data_dir_is_nothing_to_check_not_a_violation(tmp_path: Path) -> None:
    v = load_and_check(make_config(tmp_path / "nothing"), None)
    assert v.exit_status == 5 and v.status == "nothing" and set(v.waiting) == set(NAMES)
    assert len(v.problems) == len(NAMES)
    assert "NOTHING TO CHECK (exit 5)" in render(v, color=False)
    r = healthy()  # one priest's directory is enough to judge what ran
    r.write(tmp_path / "data")
    for name in NAMES[1:]:
        for f in (tmp_path / "data" / name).iterdir():
            f.unlink()
        (tmp_path / "data" / name).rmdir()
    assert load_and_check(make_config(tmp_path / "data"), None).exit_status != 5


def test_check_is_pure_over_the_history(tmp_path: Path) -> None:
    r = healthy()
    data = tmp_path / "data"
    r.write(data)
    config = make_config(data)
    history = load_history(config)
    for name in NAMES:  # the files are gone; the verdict comes from the history alone
        for f in (data / name).iterdir():
            f.unlink()
    assert check(config, history, None).exit_status == 0
    assert check(config, history, {"alpha"}).exit_status == 0


# --- rendering and JSON ------------------------------------------------------------


def test_render_plain_names_priests_and_decree(tmp_path: Path) -> None:
    v = verdict_of(tmp_path, healthy(), alive={"alpha", "beta", "gamma"})
    text = render(v, color=False)
    assert "\x1b[" not in text
    for name in NAMES:
        assert name in text
    assert "AGREEMENT" in text and "1001" in text and "1.alpha, 2.gamma" in text
    delta_row = next(line for line in text.splitlines() if line.strip().startswith("delta"))
    assert " no " in delta_row


def test_render_colour_only_when_asked(tmp_path: Path) -> None:
    r = healthy()
    tamper_delta(r)
    v = verdict_of(tmp_path, r)
    assert "\x1b[" in render(v, color=True)
    assert "\x1b[" not in render(v, color=False)
    assert "VIOLATION" in render(v, color=False) and "1003" in render(v, color=False)


def test_render_caps_long_lists(tmp_path: Path) -> None:
    r = healthy()
    for i in range(30):
        r.add("delta", "ballot_started", f"{10 + i}.delta")
        r.add("alpha", "ballot_started", f"{10 + i}.delta")
    v = verdict_of(tmp_path, r)
    assert len(v.violations) == 30
    text = render(v, color=False)
    assert "... and 10 more" in text
    assert "32, from 1.alpha to 39.delta" in text  # alpha's ballots: too many to list


def test_json_verdict(tmp_path: Path) -> None:
    r = healthy()
    beta_votes_below_promise(r)
    data = tmp_path / "data"
    r.write(data)
    out = io.StringIO()
    status = run(make_config(data), alive_fn=lambda: None, wait=0, as_json=True, color=False,
                 out=out)
    doc = json.loads(out.getvalue())
    assert status == 1 == doc["exit_status"] and doc["status"] == "violation"
    (x,) = doc["violations"]
    assert x["kind"] == "promise_broken" and x["priests"] == ["beta"]
    assert x["ballots"] == ["2.gamma", "1.alpha"] and x["rule"] == KINDS["promise_broken"]
    assert [p["name"] for p in doc["priests"]] == NAMES


# --- run: re-checking with a fake clock ----------------------------------------------


class FakeTime:
    def __init__(self, on_sleep: Callable[[int], None] = lambda n: None) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []
        self.on_sleep = on_sleep

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        self.on_sleep(len(self.sleeps))


def test_run_waits_until_the_decree_appears(tmp_path: Path) -> None:
    r = healthy()
    del r.decrees["delta"]
    r.remove("delta", "learned")  # delta has not learned yet
    data = tmp_path / "data"
    r.write(data)
    fake = FakeTime(lambda n: (data / "delta" / "decree.txt").write_text("1001\n"))
    checks: list[int] = []

    def alive() -> set[str]:
        checks.append(1)
        return set(NAMES)

    out = io.StringIO()
    status = run(make_config(data), alive_fn=alive, wait=5, as_json=False, color=False, out=out,
                 clock=fake.clock, sleep=fake.sleep)
    assert status == 0 and len(checks) == 2 and len(fake.sleeps) == 1
    assert "AGREEMENT" in out.getvalue()


def test_run_gives_up_after_wait_with_last_status(tmp_path: Path) -> None:
    r = healthy()
    del r.decrees["delta"]
    r.remove("delta", "learned")  # delta has not learned yet
    data = tmp_path / "data"
    r.write(data)
    fake = FakeTime()
    out = io.StringIO()
    status = run(make_config(data), alive_fn=lambda: None, wait=1.0, as_json=False, color=False,
                 out=out, clock=fake.clock, sleep=fake.sleep, interval=0.3)
    assert status == 3
    assert sum(fake.sleeps) == pytest.approx(1.0) and len(fake.sleeps) == 4
    assert "NOT YET" in out.getvalue() and out.getvalue().count("cluster four") == 1


def test_run_stops_at_once_on_violation(tmp_path: Path) -> None:
    r = healthy()
    tamper_delta(r)
    data = tmp_path / "data"
    r.write(data)
    fake = FakeTime()
    status = run(make_config(data), alive_fn=lambda: None, wait=10, as_json=False, color=False,
                 out=io.StringIO(), clock=fake.clock, sleep=fake.sleep)
    assert status == 1 and fake.sleeps == []


# --- evidence from recovered ledgers: a SIGKILL between persisting and recording ---


def killed_after_persisting_vote(prev_vote: str, *, learn_in_window: bool = False) -> Run:
    """delta makes its vote in 2.gamma durable and is killed before recording `voted`.

    At its restart it recovers the vote (`prev_vote` in `started`), answers the
    retransmitted BeginBallot with Voted again and records nothing new; gamma
    learns from that quorum. With `learn_in_window`, gamma learns between delta's
    last event and its restart instead.
    """
    r = Run()
    for n in NAMES:
        r.add(n, "started", None, None, last_tried="0", next_bal="0", prev_vote="none")
    r.add("gamma", "ballot_started", "2.gamma")
    for n in ["gamma", "delta", "beta"]:
        r.add(n, "promised", "2.gamma", peer="gamma")
    r.add("gamma", "proposed", "2.gamma", 1001, quorum=["beta", "delta", "gamma"])
    for n in ["gamma", "beta"]:
        r.add(n, "voted", "2.gamma", 1001, peer="gamma")
    r.add("delta", "received", "2.gamma", 1001, peer="gamma", msg="BeginBallot")
    if learn_in_window:
        r.add("gamma", "learned", "2.gamma", 1001)
    r.add("delta", "started", None, None, last_tried="0", next_bal="2.gamma",
          prev_vote=prev_vote, pid=999)
    r.add("delta", "received", "2.gamma", 1001, peer="gamma", msg="BeginBallot", pid=999)
    r.add("delta", "sent", "2.gamma", peer="gamma", msg="Voted", pid=999)
    if not learn_in_window:
        r.add("gamma", "learned", "2.gamma", 1001)
    r.decrees = {"gamma": "1001\n"}
    return r


def test_vote_recovered_but_never_recorded_is_evidence(tmp_path: Path) -> None:
    r = killed_after_persisting_vote("1001@2.gamma")
    v = verdict_of(tmp_path, r, alive={"gamma"})
    assert v.violations == () and v.problems == ()
    assert v.exit_status == 0
    assert "2.gamma" in v.priests[3].ballots  # delta's recovered vote counts as seen


def test_without_the_recovered_vote_learning_is_unsound(tmp_path: Path) -> None:
    # The same run, but delta's ledger shows no vote: only two votes for 1001.
    r = killed_after_persisting_vote("none")
    v = verdict_of(tmp_path, r, alive={"gamma"})
    assert kinds(v) == {"unsound_learning"} and v.exit_status == 1
    assert "at most 2 votes" in v.violations[0].message


def test_learning_between_last_event_and_restart_is_not_flagged(tmp_path: Path) -> None:
    # The unrecorded vote may have been made right after delta's last event.
    r = killed_after_persisting_vote("1001@2.gamma", learn_in_window=True)
    assert verdict_of(tmp_path, r, alive={"gamma"}).exit_status == 0


def test_learning_before_the_last_event_is_still_flagged(tmp_path: Path) -> None:
    # The vote cannot predate delta's last recorded event before the restart.
    r = killed_after_persisting_vote("1001@2.gamma")
    learned = r.find("gamma", "learned")
    learned["t"] = r.find("delta", "received", "2.gamma")["t"] - 1
    v = verdict_of(tmp_path, r, alive={"gamma"})
    (x,) = v.violations
    assert x.kind == "unsound_learning"
    assert "unrecorded; in the ledger recovered at delta/events.jsonl:" in x.message


def test_recovered_vote_below_a_recorded_promise_is_caught(tmp_path: Path) -> None:
    r = killed_after_persisting_vote("1001@2.gamma")
    # delta had promised 3.beta before the crash: its recovered vote in 2.gamma broke it.
    r.find("delta", "promised", "2.gamma")["ballot"] = "3.beta"
    restart = next(e for e in r.events["delta"] if e["kind"] == "started" and e["pid"] == 999)
    restart["next_bal"] = "3.beta"
    v = verdict_of(tmp_path, r, alive={"gamma"})
    (x,) = [x for x in v.violations if x.kind == "promise_broken"]
    assert x.priests == ("delta",) and x.ballots == ("3.beta", "2.gamma")
    assert "pid 103" in x.message and "unrecorded" in x.message


def test_recovered_promise_is_kept_across_the_restart(tmp_path: Path) -> None:
    # delta's promise of 3.beta is durable but unrecorded; after the restart it
    # votes in the lower 2.gamma: a broken promise shown only by the ledger.
    r = Run()
    r.add("delta", "started", None, None, last_tried="0", next_bal="0", prev_vote="none")
    r.add("delta", "received", "3.beta", peer="beta", msg="NextBallot")
    r.add("delta", "started", None, None, last_tried="0", next_bal="3.beta",
          prev_vote="none", pid=999)
    r.add("delta", "voted", "2.gamma", 1001, peer="gamma", pid=999)
    v = verdict_of(tmp_path, r, alive=set())
    (x,) = v.violations
    assert x.kind == "promise_broken" and x.ballots == ("3.beta", "2.gamma")
    restart = r.events["delta"][2]
    restart["next_bal"] = "0"
    assert verdict_of(tmp_path, r, alive=set()).violations == ()


def test_recorded_vote_and_promise_add_no_evidence(tmp_path: Path) -> None:
    r = healthy()
    r.add("beta", "started", None, 1001, last_tried="0", next_bal="2.gamma",
          prev_vote="1001@2.gamma", pid=999)
    data = tmp_path / "data"
    r.write(data)
    config = make_config(data)
    history = load_history(config)
    before = check(config, history, None)
    assert before.exit_status == 0
    # The evidence is only what the events lack: beta's recorded vote stays its only one.
    assert before.priests[1].ballots == ("1.alpha", "2.gamma")


def test_malformed_recovered_ledger_is_a_problem_not_evidence(tmp_path: Path) -> None:
    r = killed_after_persisting_vote("1001@nonsense")
    v = verdict_of(tmp_path, r, alive={"gamma"})
    # Without delta's recovered vote, learning rests on evidence that could not be read.
    assert v.violations == () and {x.kind for x in v.unverifiable} == {"unsound_learning"}
    assert v.exit_status == 4
    (p,) = v.problems
    assert p.path.endswith("delta/events.jsonl") and "prev_vote" in p.reason


# --- the faults that came before a violation (harness.jsonl) ----------------------


def test_a_violation_lists_the_faults_applied_before_it(tmp_path: Path) -> None:
    r = healthy()
    r.up()
    r.fault("kill", "beta")
    r.fault("pause", "beta", Result.REFUSED)  # refused: nothing was done, not listed
    r.fault("restart", "beta")
    later_ballot_votes_otherwise(r)  # chosen_changed: evidence from here on
    r.fault("kill", "alpha")  # after the evidence: not listed
    v = verdict_of(tmp_path, r)
    (x,) = v.violations
    assert x.kind == "chosen_changed"
    t0 = r.events["alpha"][0]["t"]  # the first event: the base of every time shown
    kill, restart = (h["t"] for h in r.harness if h.get("action") in ("kill", "restart")
                     and h["priest"] == "beta")
    assert [(f.action, f.priest) for f in x.after] == [("kill", "beta"), ("restart", "beta")]
    assert [f.at for f in x.after] == [(kill - t0) / 1e9, (restart - t0) / 1e9]
    line = f"after: kill beta +{(kill - t0) / 1e9:.3f} s, restart beta +{(restart - t0) / 1e9:.3f} s"
    assert x.after_line() == line and x.earlier_faults == 0
    assert f"  chosen_changed: {x.message}\n    {line}\n" in render(v, color=False)
    doc = v.to_json()["violations"][0]
    assert doc["after"] == [{"action": "kill", "priest": "beta", "at": round((kill - t0) / 1e9, 6)},
                            {"action": "restart", "priest": "beta",
                             "at": round((restart - t0) / 1e9, 6)}]
    assert doc["earlier_faults"] == 0


def test_network_changes_are_faults_too(tmp_path: Path) -> None:
    r = healthy()
    r.up()
    r.network("partition", [["alpha"], ["beta", "gamma", "delta"]])
    r.network("drop", 2.0, Result.REFUSED)  # refused: not listed
    r.network("delay", [5.0, 40.0])
    r.network("heal", None)
    later_ballot_votes_otherwise(r)
    (x,) = verdict_of(tmp_path, r).violations
    assert [str(f).rsplit(" +", 1)[0] for f in x.after] == [
        "partition alpha/beta,gamma,delta", "delay 5.0-40.0", "heal"]


def test_only_the_last_faults_are_listed_and_the_earlier_ones_counted(tmp_path: Path) -> None:
    r = healthy()
    r.harness = []
    for i in range(8):
        r.fault("ballot", NAMES[i % 4])
    later_ballot_votes_otherwise(r)
    (x,) = verdict_of(tmp_path, r).violations
    assert [f.priest for f in x.after] == ["delta", "alpha", "beta", "gamma", "delta"]
    assert x.earlier_faults == 3
    assert (x.after_line() or "").endswith(", ballot delta +0.040 s (and 3 earlier)")


def test_faults_of_an_earlier_run_are_not_listed(tmp_path: Path) -> None:
    r = healthy()
    r.up()
    r.fault("kill", "alpha")  # the first run
    r.up()  # a second `up` on the same data dir: a new run
    r.fault("kill", "delta")
    later_ballot_votes_otherwise(r)
    (x,) = verdict_of(tmp_path, r).violations
    assert [(f.action, f.priest) for f in x.after] == [("kill", "delta")]
    assert x.earlier_faults == 0


def test_a_violation_of_the_final_files_comes_after_every_fault_of_the_last_run(
        tmp_path: Path) -> None:
    r = healthy()
    r.up()
    r.fault("stop", "delta")
    r.fault("restart", "delta")
    tamper_delta(r)
    v = verdict_of(tmp_path, r)
    disagreement = next(x for x in v.violations if x.kind == "disagreement")
    assert [f.action for f in disagreement.after] == ["stop", "restart"]


def test_without_harness_records_a_violation_lists_no_fault(tmp_path: Path) -> None:
    r = healthy()
    later_ballot_votes_otherwise(r)
    v = verdict_of(tmp_path, r)
    (x,) = v.violations
    assert x.after == () and x.after_line() is None
    assert "after:" not in render(v, color=False)
    assert v.to_json()["violations"][0]["after"] == []


# --- a ledger that lost what its priest recorded ------------------------------------


def test_a_header_only_ledger_names_the_promise_and_the_vote_it_lost(tmp_path: Path) -> None:
    r = healthy()
    delta_ledger_header_only(r)
    v = verdict_of(tmp_path, r)
    (x,) = v.violations
    assert x.kind == "ledger_lost" and x.priests == ("delta",) and x.decrees == (1001,)
    assert x.ballots == ("2.gamma",) and x.times == ()
    assert "delta/ledger.log holds next_bal=0 prev_vote=none (what a restart would recover)" \
        in x.message
    assert "but delta had promised ballot 2.gamma at +" in x.message
    assert "voted 1001 in ballot 2.gamma at +" in x.message
    assert "delta/events.jsonl:" in x.message
    assert v.exit_status == 1


def test_a_restart_that_recovered_less_is_dated_by_the_restart(tmp_path: Path) -> None:
    r = healthy()
    delta_restarts_with_an_empty_ledger(r)
    restart = r.events["delta"][-1]["t"]
    (x,) = verdict_of(tmp_path, r).violations
    assert x.kind == "ledger_lost" and x.times == (restart,)
    assert x.message.startswith("delta recovered next_bal=0 prev_vote=none when it restarted "
                                "at +")
    assert ", but delta had promised ballot 2.gamma" in x.message


def test_a_ledger_above_the_events_is_no_loss(tmp_path: Path) -> None:
    r = healthy()
    r.ledgers["delta"] = HEADER + encode_record(
        LedgerState(ZERO, Ballot(9, "alpha"), Vote(Ballot(9, "alpha"), 1001))) + "\n"
    assert verdict_of(tmp_path, r).exit_status == 0


def test_a_corrupt_ledger_is_a_problem_not_a_loss(tmp_path: Path) -> None:
    r = healthy()
    r.ledgers["delta"] = HEADER + "v1 this is not a record\nv1 nor this\n"
    v = verdict_of(tmp_path, r)
    assert v.violations == () and v.exit_status == 0
    (problem,) = v.problems
    assert problem.path.endswith("delta/ledger.log") and "line 2: bad record" in problem.reason


def test_the_readme_lists_every_violation_verify_reports() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = readme.split("| violation | rule |", 1)[1].split("\n\n", 1)[0]
    listed = {kind for line in table.splitlines()[2:]
              for kind in re.findall(r"`([a-z_]+)`", line.split("|")[1])}
    assert listed == set(KINDS)


def test_a_lost_vote_is_named_when_the_promise_it_made_is_kept(tmp_path: Path) -> None:
    # delta's only record is its vote in 2.gamma (no `promised` for it); its ledger
    # still promises 2.gamma but has no vote: the vote alone is lost.
    r = Run()
    r.add("delta", "started", None, None, last_tried="0", next_bal="0", prev_vote="none")
    r.add("delta", "voted", "2.gamma", 1001, peer="gamma")
    r.ledgers["delta"] = HEADER + encode_record(LedgerState(ZERO, Ballot(2, "gamma"))) + "\n"
    (x,) = verdict_of(tmp_path, r, alive=set()).violations
    assert x.kind == "ledger_lost" and x.decrees == (1001,)
    assert "but delta had voted 1001 in ballot 2.gamma" in x.message
