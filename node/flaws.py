"""The choices a priest makes, as strategies: the correct ones, and the flaws that teach.

The Synod core (`node.synod`) asks a `Strategy` four questions and never
looks at a flaw's name:

- how it numbers a new ballot (`next_ballot`);
- what it recovers from its ledger when it starts (`recover`);
- which previous vote binds the decree it proposes (`binding_vote`);
- whether a second decree in a ballot it voted in is a contradiction
  (`contradicts`).

`CORRECT` answers them as the protocol must. Each flaw in `FLAWS` replaces
one or two answers with a mistake a real implementation has made; the
functions below read as those mistakes. `strategy(names)` builds the
strategy for the flaws a config (`flaws:`) or `simulate --flaw` names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from node.messages import Ballot, LedgerState, Vote

# The ballot "priest" a priest with the same-ballot-numbers flaw uses: every such
# priest shares it, so their ballot numbers collide (the codec accepts it).
FLAWED_BALLOT_PRIEST = "*"


# --- how a ballot is numbered ------------------------------------------------


def fresh_ballot(priest: str, ledger: LedgerState, highest_seen: Ballot) -> Ballot:
    """Correct: one round above every ballot seen, and this priest's own name in it.

    No other priest can make the same number, and it outranks every ballot so far.
    """
    top = max(ledger.last_tried.round, ledger.next_bal.round, highest_seen.round)
    return Ballot(top + 1, priest)


def last_tried_plus_one(priest: str, ledger: LedgerState, highest_seen: Ballot) -> Ballot:
    """The original's mistake: last_tried + 1, with no priest in it.

    Two priests that tried the same rounds begin the very same ballot.
    """
    return Ballot(ledger.last_tried.round + 1, FLAWED_BALLOT_PRIEST)


# --- one ballot, one decree -------------------------------------------------------


def another_decree_contradicts(prev_vote: Vote, ballot: Ballot, decree: int) -> bool:
    """Correct: a ballot has one decree, so another decree in the ballot voted in is refused."""
    return prev_vote.ballot == ballot and prev_vote.decree != decree


def another_decree_is_another_ballot(prev_vote: Vote, ballot: Ballot, decree: int) -> bool:
    """The mistake that comes with shared ballot numbers: a second decree under a number
    already voted in looks like just another ballot, so the priest votes again."""
    return False


# --- what a restarted priest recovers --------------------------------------------


def keep_ledger(ledger: LedgerState) -> LedgerState:
    """Correct: everything made durable: the last ballot tried, the promise, the vote."""
    return ledger


def forget_promise_and_vote(ledger: LedgerState) -> LedgerState:
    """The mistake: promise and vote kept in memory only, so a restart loses them."""
    return LedgerState(last_tried=ledger.last_tried)


# --- which previous vote binds the proposer -----------------------------------------


def highest_vote(votes: Iterable[Vote]) -> Vote | None:
    """Correct: the highest vote among the quorum's LastVotes; its decree must be proposed."""
    voted = [v for v in votes if not v.is_none()]
    return max(voted, key=lambda v: v.ballot) if voted else None


def no_vote_binds(votes: Iterable[Vote]) -> Vote | None:
    """The mistake: the LastVotes are not read, so the proposer always proposes its own decree."""
    return None


# --- the strategy and the flaws --------------------------------------------------


@dataclass(frozen=True)
class Strategy:
    """The answers a priest's core uses; `CORRECT` unless a flaw replaced some."""

    next_ballot: Callable[[str, LedgerState, Ballot], Ballot] = fresh_ballot
    contradicts: Callable[[Vote, Ballot, int], bool] = another_decree_contradicts
    recover: Callable[[LedgerState], LedgerState] = keep_ledger
    binding_vote: Callable[[Iterable[Vote]], Vote | None] = highest_vote


CORRECT = Strategy()


@dataclass(frozen=True)
class Flaw:
    """A deliberate mistake: its name (config `flaws:`, `simulate --flaw`), what it
    teaches, and the answers it replaces."""

    name: str
    teaches: str
    apply: Callable[[Strategy], Strategy]


FLAWS: dict[str, Flaw] = {flaw.name: flaw for flaw in (
    Flaw("same-ballot-numbers",
         "ballots are numbered last_tried + 1, as in the original, so two priests can begin "
         "the same ballot",
         lambda s: replace(s, next_ballot=last_tried_plus_one,
                           contradicts=another_decree_is_another_ballot)),
    Flaw("forget-promises",
         "a restarted priest has lost its promise and its vote",
         lambda s: replace(s, recover=forget_promise_and_vote)),
    Flaw("ignore-previous-votes",
         "a proposer always proposes its own decree, whatever the LastVotes report",
         lambda s: replace(s, binding_vote=no_vote_binds)),
)}
FLAW_NAMES: tuple[str, ...] = tuple(FLAWS)


def warning(name: str, who: str = "this priest") -> str:
    """The line that says a flaw is on, wherever it is on: loud, and what it teaches."""
    return (f"WARNING: flaw {name} is ON: {FLAWS[name].teaches}. {who[0].upper()}{who[1:]} is "
            "broken on purpose; expect violations.")


def strategy(flaws: Iterable[str] = ()) -> Strategy:
    """The correct strategy with each named flaw applied; KeyError for an unknown name."""
    result = CORRECT
    for name in flaws:
        result = FLAWS[name].apply(result)
    return result
