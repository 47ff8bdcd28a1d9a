"""The flaws: one table of names, each a strategy that answers one question wrongly."""

from __future__ import annotations

import inspect

import pytest

import node.synod
from node.flaws import CORRECT, FLAW_NAMES, FLAWED_BALLOT_PRIEST, FLAWS, Strategy, strategy
from node.messages import NO_VOTE, ZERO, Ballot, LedgerState, Vote

LEDGER = LedgerState(Ballot(3, "alpha"), Ballot(5, "beta"), Vote(Ballot(4, "gamma"), 7))


def test_the_names_are_those_configs_and_simulate_accept() -> None:
    assert FLAW_NAMES == ("same-ballot-numbers", "forget-promises", "ignore-previous-votes")
    assert all(FLAWS[name].name == name and FLAWS[name].teaches for name in FLAW_NAMES)


def test_no_flaw_is_the_correct_strategy() -> None:
    assert strategy() is CORRECT == Strategy()
    with pytest.raises(KeyError):
        strategy(["forget-everything"])


@pytest.mark.parametrize("name, replaced", [
    ("same-ballot-numbers", {"next_ballot", "contradicts"}),
    ("forget-promises", {"recover"}),
    ("ignore-previous-votes", {"binding_vote"}),
])
def test_each_flaw_replaces_only_its_answers(name: str, replaced: set[str]) -> None:
    flawed = strategy([name])
    changed = {f for f in Strategy.__dataclass_fields__ if getattr(flawed, f) != getattr(CORRECT, f)}
    assert changed == replaced


def test_flaws_combine() -> None:
    both = strategy(FLAW_NAMES)
    assert {getattr(both, f) for f in Strategy.__dataclass_fields__}.isdisjoint(
        {getattr(CORRECT, f) for f in Strategy.__dataclass_fields__})


def test_ballot_numbers() -> None:
    assert CORRECT.next_ballot("delta", LEDGER, Ballot(9, "gamma")) == Ballot(10, "delta")
    flawed = strategy(["same-ballot-numbers"]).next_ballot
    assert flawed("delta", LEDGER, Ballot(9, "gamma")) == Ballot(4, FLAWED_BALLOT_PRIEST)
    assert flawed("alpha", LEDGER, ZERO) == flawed("beta", LEDGER, ZERO)  # the collision it teaches


def test_one_decree_per_ballot() -> None:
    vote = Vote(Ballot(4, "gamma"), 7)
    assert CORRECT.contradicts(vote, Ballot(4, "gamma"), 8)
    assert not CORRECT.contradicts(vote, Ballot(4, "gamma"), 7)
    assert not CORRECT.contradicts(vote, Ballot(5, "gamma"), 8)
    assert not strategy(["same-ballot-numbers"]).contradicts(vote, Ballot(4, "gamma"), 8)


def test_recovery() -> None:
    assert CORRECT.recover(LEDGER) == LEDGER
    assert strategy(["forget-promises"]).recover(LEDGER) == LedgerState(last_tried=Ballot(3, "alpha"))


def test_binding_vote() -> None:
    votes = [NO_VOTE, Vote(Ballot(2, "alpha"), 1), Vote(Ballot(4, "beta"), 2), NO_VOTE]
    assert CORRECT.binding_vote(votes) == Vote(Ballot(4, "beta"), 2)
    assert CORRECT.binding_vote([NO_VOTE, NO_VOTE]) is None
    assert strategy(["ignore-previous-votes"]).binding_vote(votes) is None


def test_the_core_names_no_flaw() -> None:
    source = inspect.getsource(node.synod)
    assert not [name for name in FLAW_NAMES if name in source]
    assert "flaws" not in source.replace("node.flaws", "")
