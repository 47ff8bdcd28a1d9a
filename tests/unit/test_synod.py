"""The Synod core, handler by handler, with no I/O: events in, effects out."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.flaws import strategy
from node.messages import (
    MAX_ROUND,
    NO_VOTE,
    ZERO,
    Ballot,
    BallotRequested,
    BeginBallot,
    CancelTimer,
    Effect,
    LastVote,
    Learn,
    LedgerState,
    NextBallot,
    Persist,
    ProtocolBug,
    Received,
    Record,
    Send,
    SetTimer,
    Success,
    TimerFired,
    Timing,
    Vote,
    Voted,
)
from node.synod import BACKOFF, RETRANSMIT, Priest

NAMES = ["alpha", "beta", "gamma", "delta"]


def priest(name: str = "alpha", **kw: object) -> Priest:
    return Priest(name, NAMES, index=NAMES.index(name) + 1, **kw)  # type: ignore[arg-type]


def sends(effects: list[Effect]) -> list[Send]:
    return [e for e in effects if isinstance(e, Send)]


def kinds(effects: list[Effect]) -> list[str]:
    return [e.kind for e in effects if isinstance(e, Record)]


def persisted(effects: list[Effect]) -> list[LedgerState]:
    return [e.state for e in effects if isinstance(e, Persist)]


def b(r: int, p: str) -> Ballot:
    return Ballot(r, p)


# --- proposer ----------------------------------------------------------------

def test_ballot_request_persists_last_tried_then_sends_next_ballot_to_every_priest() -> None:
    p = priest()
    effects = p.handle(BallotRequested())
    assert persisted(effects) == [LedgerState(last_tried=b(1, "alpha"), next_bal=b(1, "alpha"))]
    assert [(s.dst, s.message) for s in sends(effects)] == [
        (n, NextBallot("alpha", b(1, "alpha"))) for n in NAMES]
    first_send = next(i for i, e in enumerate(effects) if isinstance(e, Send))
    assert any(isinstance(e, Persist) for e in effects[:first_send])
    assert SetTimer(RETRANSMIT, Timing().retransmit) in effects
    assert "ballot_started" in kinds(effects)


def test_the_proposers_own_promise_is_durable_with_last_tried_in_one_write() -> None:
    p = priest()
    effects = p.handle(BallotRequested())
    assert persisted(effects) == [LedgerState(last_tried=b(1, "alpha"), next_bal=b(1, "alpha"))]
    assert "promised" in kinds(effects)  # its promise is recorded, as any acceptor's is
    own = p.handle(Received(NextBallot("alpha", b(1, "alpha"))))
    assert persisted(own) == []  # already durable: no second write
    assert [(s.dst, s.message) for s in sends(own)] == [
        ("alpha", LastVote("alpha", b(1, "alpha"), NO_VOTE))]


def test_a_ballot_below_the_promise_never_lowers_it() -> None:
    # Only a flawed numbering can begin a ballot below the promise; it stays.
    p = priest(ledger=LedgerState(next_bal=b(5, "delta")), strategy=strategy(("same-ballot-numbers",)))
    effects = p.handle(BallotRequested())
    assert persisted(effects) == [LedgerState(last_tried=b(1, "*"), next_bal=b(5, "delta"))]
    assert "promised" not in kinds(effects)


def test_ballot_numbers_are_unique_per_priest_and_above_everything_seen() -> None:
    p = priest("beta", ledger=LedgerState(last_tried=b(2, "beta"), next_bal=b(7, "delta")))
    effects = p.handle(BallotRequested())
    assert persisted(effects)[0].last_tried == b(8, "beta")


def test_quorum_of_last_votes_with_no_votes_proposes_own_decree() -> None:
    p = priest(proposal=42)
    p.handle(BallotRequested())
    bal = b(1, "alpha")
    assert sends(p.handle(Received(LastVote("alpha", bal, NO_VOTE)))) == []
    assert sends(p.handle(Received(LastVote("beta", bal, NO_VOTE)))) == []
    effects = p.handle(Received(LastVote("gamma", bal, NO_VOTE)))
    assert {s.message for s in sends(effects)} == {BeginBallot("alpha", bal, 42)}
    assert len(sends(effects)) == 4
    assert "proposed" in kinds(effects)


def test_default_proposal_is_visible_from_position_and_round() -> None:
    assert priest("gamma").default_proposal(b(4, "gamma")) == 3004
    assert priest("gamma", proposal=-5).default_proposal(b(4, "gamma")) == -5


def test_proposer_must_choose_the_decree_of_the_highest_previous_vote() -> None:
    p = priest(proposal=42, ledger=LedgerState(next_bal=b(4, "beta")))
    p.handle(BallotRequested())
    bal = b(5, "alpha")
    assert p.ballot == bal
    p.handle(Received(LastVote("beta", bal, Vote(b(3, "delta"), 7))))
    p.handle(Received(LastVote("gamma", bal, Vote(b(3, "gamma"), 9))))  # (3, gamma) > (3, delta)
    effects = p.handle(Received(LastVote("delta", bal, NO_VOTE)))
    assert {s.message for s in sends(effects)} == {BeginBallot("alpha", bal, 9)}


def test_duplicate_last_votes_are_counted_once() -> None:
    p = priest()
    p.handle(BallotRequested())
    bal = b(1, "alpha")
    for _ in range(5):
        assert sends(p.handle(Received(LastVote("beta", bal, NO_VOTE)))) == []
    p.handle(Received(LastVote("gamma", bal, NO_VOTE)))
    assert p.phase == "polling"


def test_stale_last_vote_for_an_older_ballot_is_ignored() -> None:
    p = priest(ledger=LedgerState(last_tried=b(3, "alpha")))
    p.handle(BallotRequested())
    effects = p.handle(Received(LastVote("beta", b(3, "alpha"), NO_VOTE)))
    assert kinds(effects) == ["ignored"] and sends(effects) == [] and p.phase == "polling"


def test_a_last_vote_for_a_higher_ballot_makes_the_leader_give_way_and_go_above_it() -> None:
    p = priest()
    p.handle(BallotRequested())
    effects = p.handle(Received(LastVote("beta", b(9, "delta"), NO_VOTE)))
    assert "ballot_abandoned" in kinds(effects) and p.phase == "idle"
    retry = p.handle(TimerFired(BACKOFF))
    assert persisted(retry)[0].last_tried == b(10, "alpha")


def _to_voting(p: Priest, decree_votes: int = 0) -> Ballot:
    p.handle(BallotRequested())
    bal = p.ballot
    for n in ("alpha", "beta", "gamma"):
        p.handle(Received(LastVote(n, bal, NO_VOTE)))
    assert p.phase == "voting"
    return bal


def test_quorum_of_voted_learns_and_sends_success_to_the_others() -> None:
    p = priest(proposal=5)
    bal = _to_voting(p)
    p.handle(Received(Voted("beta", bal)))
    p.handle(Received(Voted("beta", bal)))  # duplicate: still one voter
    assert p.decree is None
    effects = p.handle(Received(Voted("delta", bal)))
    assert p.decree is None
    effects = p.handle(Received(Voted("gamma", bal)))
    assert Learn(5, bal) in effects
    assert [s.dst for s in sends(effects)] == ["beta", "gamma", "delta"]
    assert all(s.message == Success("alpha", bal, 5) for s in sends(effects))
    assert p.decree == 5 and "learned" in kinds(effects)


def test_retransmit_resends_only_to_silent_priests() -> None:
    p = priest()
    p.handle(BallotRequested())
    bal = p.ballot
    p.handle(Received(LastVote("beta", bal, NO_VOTE)))
    effects = p.handle(TimerFired(RETRANSMIT))
    assert sorted(s.dst for s in sends(effects)) == ["alpha", "delta", "gamma"]
    assert SetTimer(RETRANSMIT, Timing().retransmit) in effects


def test_ballot_times_out_backs_off_with_jitter_and_retries_higher() -> None:
    timing = Timing(retransmit=0.1, ballot_timeout=0.3, backoff=0.05, attempts=2)
    p = priest(timing=timing)
    p.handle(BallotRequested())
    first = p.ballot
    p.handle(TimerFired(RETRANSMIT))
    p.handle(TimerFired(RETRANSMIT))
    effects = p.handle(TimerFired(RETRANSMIT))
    assert "ballot_abandoned" in kinds(effects)
    assert SetTimer(BACKOFF, 0.05, jitter=0.05) in effects
    retry = p.handle(TimerFired(BACKOFF))
    assert persisted(retry)[0].last_tried > first
    for _ in range(3):
        effects = p.handle(TimerFired(RETRANSMIT))
    assert p.phase == "idle"
    gave_up = [e for e in effects if isinstance(e, Record) and e.kind == "ballot_abandoned"]
    assert gave_up and gave_up[0].gave_up is True
    assert not any(isinstance(e, SetTimer) and e.name == BACKOFF for e in effects)
    assert p.handle(TimerFired(BACKOFF)) == []


def test_a_higher_ballot_from_another_priest_preempts_ours() -> None:
    p = priest()
    p.handle(BallotRequested())
    effects = p.handle(Received(NextBallot("beta", b(5, "beta"))))
    assert "ballot_abandoned" in kinds(effects)
    assert p.phase == "idle"
    # it still answers as an acceptor
    assert sends(effects)[-1].message == LastVote("alpha", b(5, "beta"), NO_VOTE)
    retry = p.handle(TimerFired(BACKOFF))
    assert persisted(retry)[0].last_tried == b(6, "alpha")


def test_ballot_request_when_already_decided_just_announces_success() -> None:
    p = priest(decree=77, decree_ballot=b(2, "beta"))
    effects = p.handle(BallotRequested())
    assert persisted(effects) == []
    assert [s.dst for s in sends(effects)] == ["beta", "gamma", "delta"]
    assert all(s.message == Success("alpha", b(2, "beta"), 77) for s in sends(effects))


# --- acceptor ----------------------------------------------------------------

def test_next_ballot_promise_is_persisted_before_last_vote() -> None:
    p = priest("beta", ledger=LedgerState(prev_vote=Vote(b(1, "gamma"), 3)))
    effects = p.handle(Received(NextBallot("alpha", b(2, "alpha"))))
    assert isinstance(effects[0], Persist) and effects[0].state.next_bal == b(2, "alpha")
    assert effects[-1] == Send("alpha", LastVote("beta", b(2, "alpha"), Vote(b(1, "gamma"), 3)))
    assert "promised" in kinds(effects)


def test_duplicate_next_ballot_is_answered_again_without_a_new_write() -> None:
    p = priest("beta")
    p.handle(Received(NextBallot("alpha", b(2, "alpha"))))
    effects = p.handle(Received(NextBallot("alpha", b(2, "alpha"))))
    assert persisted(effects) == []
    assert sends(effects) == [Send("alpha", LastVote("beta", b(2, "alpha"), NO_VOTE))]


def test_next_ballot_below_the_promise_is_refused_with_the_promise_it_made() -> None:
    vote = Vote(b(4, "delta"), 8)
    p = priest("beta", ledger=LedgerState(next_bal=b(5, "gamma"), prev_vote=vote))
    effects = p.handle(Received(NextBallot("alpha", b(5, "alpha"))))  # (5, alpha) < (5, gamma)
    assert persisted(effects) == [] and kinds(effects) == ["ignored"]
    assert sends(effects) == [Send("alpha", LastVote("beta", b(5, "gamma"), vote))]


def test_begin_ballot_vote_is_persisted_before_voted() -> None:
    p = priest("beta")
    p.handle(Received(NextBallot("alpha", b(2, "alpha"))))
    effects = p.handle(Received(BeginBallot("alpha", b(2, "alpha"), 9)))
    assert effects[0] == Persist(LedgerState(next_bal=b(2, "alpha"), prev_vote=Vote(b(2, "alpha"), 9)))
    assert effects[-1] == Send("alpha", Voted("beta", b(2, "alpha")))
    again = p.handle(Received(BeginBallot("alpha", b(2, "alpha"), 9)))
    assert again == [Send("alpha", Voted("beta", b(2, "alpha")))]


def test_begin_ballot_below_the_promise_is_refused() -> None:
    p = priest("beta", ledger=LedgerState(next_bal=b(3, "gamma")))
    effects = p.handle(Received(BeginBallot("alpha", b(2, "alpha"), 9)))
    assert persisted(effects) == [] and p.ledger.prev_vote == NO_VOTE
    assert sends(effects) == [Send("alpha", LastVote("beta", b(3, "gamma"), NO_VOTE))]


def test_a_leader_rounds_behind_catches_up_after_one_refusal() -> None:
    """Without the refusal a leader 7 rounds behind exhausts its attempts."""
    ps = {n: priest(n, ledger=LedgerState(next_bal=b(7, "alpha"))) for n in ("alpha", "beta")}
    ps.update({n: priest(n) for n in ("gamma", "delta")})
    queue = sends(ps["delta"].handle(BallotRequested()))
    for _ in range(3):  # deliver, then let delta time out or back off and try again
        while queue:
            s = queue.pop(0)
            queue += sends(ps[s.dst].handle(Received(s.message)))
        queue += sends(ps["delta"].handle(TimerFired(BACKOFF)))
    assert ps["delta"].decree is not None


def test_a_second_decree_in_the_same_ballot_is_refused() -> None:
    p = priest("beta")
    p.handle(Received(BeginBallot("alpha", b(2, "alpha"), 9)))
    effects = p.handle(Received(BeginBallot("alpha", b(2, "alpha"), 10)))
    assert sends(effects) == [] and p.ledger.prev_vote == Vote(b(2, "alpha"), 9)


def test_reordered_begin_ballot_before_next_ballot_still_votes_if_not_below_promise() -> None:
    p = priest("beta")
    effects = p.handle(Received(BeginBallot("alpha", b(2, "alpha"), 9)))
    assert sends(effects) == [Send("alpha", Voted("beta", b(2, "alpha")))]
    late = p.handle(Received(NextBallot("alpha", b(1, "alpha"))))
    assert persisted(late) == [] and p.ledger.next_bal == b(2, "alpha")


def test_a_decided_priest_answers_ballots_with_success() -> None:
    p = priest("beta", decree=4, decree_ballot=b(1, "gamma"))
    for m in (NextBallot("delta", b(9, "delta")), BeginBallot("delta", b(9, "delta"), 5)):
        effects = p.handle(Received(m))
        assert sends(effects) == [Send("delta", Success("beta", b(1, "gamma"), 4))]


# --- learner -----------------------------------------------------------------

def test_success_is_learned_once_and_never_changes() -> None:
    p = priest("beta")
    effects = p.handle(Received(Success("alpha", b(1, "alpha"), 12)))
    assert effects[0] == Learn(12, b(1, "alpha")) and p.decree == 12
    assert p.handle(Received(Success("gamma", b(1, "alpha"), 12))) == []
    conflict = p.handle(Received(Success("gamma", b(3, "gamma"), 99)))
    assert p.decree == 12 and not any(isinstance(e, Learn) for e in conflict)
    assert kinds(conflict) == ["ignored"]


def test_learning_stops_an_ongoing_ballot() -> None:
    p = priest()
    p.handle(BallotRequested())
    effects = p.handle(Received(Success("beta", b(1, "beta"), 3)))
    assert CancelTimer(RETRANSMIT) in effects and p.phase == "idle"
    assert p.handle(TimerFired(RETRANSMIT)) == []


def test_unknown_timer_is_our_bug() -> None:
    try:
        priest().handle(TimerFired("nonsense"))
    except ProtocolBug:
        return
    raise AssertionError("an unknown timer must stop the priest loudly")


# --- two proposers at once -----------------------------------------------------

def test_two_proposers_at_once_the_higher_ballot_wins_and_both_learn_it() -> None:
    ps = {n: priest(n, proposal=100 + i) for i, n in enumerate(NAMES)}
    queue: list[Send] = []
    for n in ("alpha", "delta"):
        queue += sends(ps[n].handle(BallotRequested()))
    steps = 0
    while queue and steps < 10_000:
        s = queue.pop(0)
        queue += sends(ps[s.dst].handle(Received(s.message)))
        steps += 1
    decrees = {n: p.decree for n, p in ps.items()}
    assert len(set(decrees.values())) == 1 and None not in decrees.values(), decrees


# --- persist before send, for every handler ------------------------------------

MSG_BALLOTS = st.builds(Ballot, st.integers(1, 4), st.sampled_from(NAMES))
EVENTS = st.one_of(
    st.just(BallotRequested()),
    st.sampled_from([TimerFired(RETRANSMIT), TimerFired(BACKOFF)]),
    st.builds(lambda s, bb: Received(NextBallot(s, bb)), st.sampled_from(NAMES), MSG_BALLOTS),
    st.builds(lambda s, bb, v, d: Received(LastVote(s, bb, Vote(v, d) if v.round else NO_VOTE)),
              st.sampled_from(NAMES), MSG_BALLOTS, st.builds(Ballot, st.integers(0, 4),
                                                               st.sampled_from(NAMES)),
              st.integers(0, 3)),
    st.builds(lambda s, bb, d: Received(BeginBallot(s, bb, d)), st.sampled_from(NAMES), MSG_BALLOTS,
              st.integers(0, 3)),
    st.builds(lambda s, bb: Received(Voted(s, bb)), st.sampled_from(NAMES), MSG_BALLOTS),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(EVENTS, max_size=60))
def test_nothing_is_sent_that_depends_on_an_unpersisted_ledger(events: list) -> None:
    p = priest("alpha")
    durable = LedgerState()
    learned: int | None = None
    for event in events:
        voters = set(p.voters) if p.phase == "voting" else set()
        effects = p.handle(event)
        for effect in effects:
            if isinstance(effect, Persist):
                durable = effect.state
            elif isinstance(effect, Learn):
                learned = effect.decree
            elif isinstance(effect, Send):
                m = effect.message
                if isinstance(m, NextBallot) and m.src == "alpha":
                    assert durable.last_tried == m.ballot
                elif isinstance(m, LastVote):
                    assert durable.next_bal >= m.ballot and m.vote == durable.prev_vote
                elif isinstance(m, Voted):
                    assert durable.prev_vote.ballot == m.ballot
                elif isinstance(m, Success):
                    # either learned before, or a quorum's durable votes just made it pass
                    passed = (isinstance(event, Received) and isinstance(event.message, Voted)
                              and len(voters | {event.message.src}) >= p.quorum
                              and Learn(m.decree, m.ballot) in effects)
                    assert learned == m.decree or passed
    assert durable == p.ledger or durable.last_tried == ZERO == p.ledger.last_tried


# --- the round bound ------------------------------------------------------------


@pytest.mark.parametrize("flaws", [(), ("same-ballot-numbers",)])
@pytest.mark.parametrize("where", ["next_bal", "last_tried", "seen"])
def test_a_priest_at_the_round_bound_refuses_a_ballot_and_does_not_crash(
        where: str, flaws: tuple[str, ...]) -> None:
    top = b(MAX_ROUND, "beta")
    ledger = LedgerState(last_tried=top) if where == "last_tried" else (
        LedgerState(next_bal=top) if where == "next_bal" else LedgerState())
    p = priest(ledger=ledger, strategy=strategy(flaws))
    if where == "seen":
        p.handle(Received(NextBallot("beta", top)))
    if flaws and where != "last_tried":
        p.ledger = LedgerState(last_tried=b(MAX_ROUND, "*"))
    for _ in range(3):
        effects = p.handle(BallotRequested())
        assert not persisted(effects) and not sends(effects)
        assert "ignored" in kinds(effects) and p.phase == "idle"
        assert p.handle(TimerFired(BACKOFF)) == []
    # it still answers ballots as an acceptor
    effects = p.handle(Received(NextBallot("gamma", b(MAX_ROUND, "gamma"))))
    assert all(s.message.ballot.round <= MAX_ROUND for s in sends(effects))


def test_every_ballot_a_priest_sends_is_within_the_bound() -> None:
    p = priest(ledger=LedgerState(next_bal=b(MAX_ROUND - 1, "beta")))
    effects = p.handle(BallotRequested())
    assert persisted(effects)[0].last_tried == b(MAX_ROUND, "alpha")
    assert "ignored" in kinds(p.handle(BallotRequested()))  # already in progress
