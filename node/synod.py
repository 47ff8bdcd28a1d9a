"""The Synod protocol of *The Part-Time Parliament*, as a pure state machine.

Theory of operation
-------------------
Each priest plays three parts at once: it may conduct a ballot (proposer),
it answers other priests' ballots (acceptor), and it records the decree once
one passes (learner). `Priest.handle(event)` takes one event -- a ballot was
requested, a message arrived, a timer fired -- and returns the effects the
outside world must apply *in order*: persist the ledger, write the decree,
send messages, set timers, record narration. The core touches no socket,
file, clock or random number, so the same object runs in a real process
(`node.runtime`), in tests and in the simulator.

A ballot goes:

1. The proposer picks a ballot number b higher than any it has seen, makes
   `last_tried = b` durable (with its own promise of b, in the same record),
   and sends `NextBallot(b)` to every priest, itself included.
2. A priest whose promise `next_bal` is not above b makes `next_bal = b`
   durable and answers `LastVote(b, v)`, v its latest vote (or none).
3. With LastVotes from a quorum (a strict majority of all priests), the
   proposer must choose the decree of the highest vote among them, or, if
   none of them ever voted, any decree: its own proposal. It sends
   `BeginBallot(b, d)` to every priest.
4. A priest whose promise is not above b makes `prev_vote = (b, d)` durable
   and answers `Voted(b)`.
5. With Voted from a quorum, decree d has passed. The proposer sends
   `Success(d)` to every priest and writes d to decree.txt; so does each
   priest that receives Success. (Success goes first: the decree passed when
   the quorum's votes became durable, not when anyone's decree.txt did.)

Why it is safe: any two quorums share a priest. Once a quorum voted d in
ballot b, every later ballot's quorum contains one of those voters, whose
LastVote reports a vote at b or later, so the later ballot proposes d again.

Rules kept here beyond the paper's sketch:
- Ballot numbers are pairs (round, priest): no two priests ever share one.
- Nothing is sent before the ledger change it depends on is persisted: every
  handler emits `Persist` before the `Send` that relies on it (tested).
- UDP loses, duplicates and reorders: the proposer resends to silent priests
  every `retransmit` seconds until a quorum answers or `ballot_timeout`
  passes; duplicates are answered again without a new ledger write.
- A proposer that sees a higher ballot, or times out, abandons its ballot and
  retries after `backoff` plus random jitter (drawn by the runner), at most
  `attempts` times, so duelling proposers stop duelling. A priest asked to
  take part in a ballot below its promise answers with the LastVote of that
  promise, so the leader learns how high it must go (the paper's priests
  just stay silent, and a leader far behind could never catch up).
- Ballot rounds never exceed MAX_ROUND (the codec refuses higher ones); a
  priest whose next ballot would have to go above it refuses to begin one
  and says so, it does not crash.
- A priest that holds a decree never changes it; it answers any ballot
  message (NextBallot, LastVote, BeginBallot, Voted) with `Success`, so
  stragglers learn at the next ballot anywhere.

Four choices are made by the `Strategy` the priest is given (`node.flaws`):
how a ballot is numbered, what a start recovers from the ledger, which
previous vote binds the proposal, and whether a second decree in a ballot
voted in is a contradiction. The default is correct; a teaching flaw is a
strategy that answers one of them wrongly, so no flaw is named here.

Glossary (paper -> the usual modern name)
    NextBallot  -> prepare (1a)      LastVote -> promise (1b)
    BeginBallot -> accept (2a)       Voted    -> accepted (2b)
    Success     -> chosen / decide   ledger   -> stable storage
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from node.flaws import CORRECT, Strategy
from node.messages import (
    MAX_ROUND,
    ZERO,
    Ballot,
    BallotRequested,
    BeginBallot,
    CancelTimer,
    Effect,
    Event,
    EventKind,
    LastVote,
    Learn,
    LedgerState,
    Message,
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

FRESH_LEDGER = LedgerState()  # nothing tried, promised or voted
RETRANSMIT = "retransmit"
BACKOFF = "backoff"


class Priest:
    """One priest of the Synod: proposer, acceptor and learner. Pure: no I/O."""

    def __init__(
        self,
        name: str,
        priests: Sequence[str],
        *,
        ledger: LedgerState = FRESH_LEDGER,
        decree: int | None = None,
        decree_ballot: Ballot = ZERO,
        proposal: int | None = None,
        index: int = 1,
        timing: Timing = Timing(),  # noqa: B008 (frozen: one shared default is safe)
        strategy: Strategy = CORRECT,
    ) -> None:
        if name not in priests:
            raise ProtocolBug(f"priest {name!r} is not in its own config {list(priests)}")
        self.name = name
        self.priests = list(priests)
        self.quorum = len(self.priests) // 2 + 1
        self.index = index
        self.proposal = proposal
        self.timing = timing
        self.strategy = strategy
        ledger = strategy.recover(ledger)
        self.ledger = ledger
        self.decree = decree
        self.decree_ballot = decree_ballot
        # Proposer state: volatile, lost at a crash (last_tried is in the ledger).
        self.ballot = ZERO
        self.phase = "idle"  # idle | polling (awaiting LastVote) | voting (awaiting Voted)
        self.last_votes: dict[str, Vote] = {}
        self.voters: set[str] = set()
        self.proposed_decree = 0  # what this priest proposes in its ballot (BeginBallot)
        self.ticks = 0
        self.attempts_left = 0
        self.highest_seen = max(ledger.last_tried, ledger.next_bal, ledger.prev_vote.ballot)

    # --- the one entry point -------------------------------------------

    def handle(self, event: Event) -> list[Effect]:
        """Apply one event; return the effects to carry out, in order."""
        if isinstance(event, BallotRequested):
            return self._on_ballot_requested()
        if isinstance(event, TimerFired):
            return self._on_timer(event.name)
        if isinstance(event, Received):
            return self._on_message(event.message)
        raise ProtocolBug(f"unknown event {event!r}")

    def default_proposal(self, ballot: Ballot) -> int:
        """The decree proposed when free to choose: configured, or 1000 * index + round."""
        if self.proposal is not None:
            return self.proposal
        return 1000 * self.index + ballot.round

    # --- proposer ------------------------------------------------------

    def _on_ballot_requested(self) -> list[Effect]:
        if self.decree is not None:
            text = f"the decree is already {self.decree}: no ballot needed; Success to every priest"
            effects: list[Effect] = [Record(EventKind.REMINDED, text, self.decree_ballot, self.decree)]
            return effects + self._success_to(self._others())
        if self.phase != "idle":
            return [Record(EventKind.IGNORED, f"ballot {self.ballot} is already in progress", self.ballot)]
        self.attempts_left = self.timing.attempts
        return [CancelTimer(BACKOFF)] + self._start_ballot()

    def _start_ballot(self) -> list[Effect]:
        b = self.strategy.next_ballot(self.name, self.ledger, self.highest_seen)
        if b.round > MAX_ROUND:
            # Only a round forged up to the bound gets here (no run of ballots
            # reaches 2^48). No ballot can follow it: say so, never crash.
            top = max(self.ledger.last_tried, self.ledger.next_bal, self.highest_seen)
            self.phase, self.attempts_left = "idle", 0
            text = (f"cannot begin a ballot: it would have to be above {top}, and no ballot "
                    f"round may exceed {MAX_ROUND}")
            return [Record(EventKind.IGNORED, text, top, promised=top)]
        # The proposer is one of the priests it polls: its own promise of b goes
        # into the same ledger record as last_tried (one durable write, not two),
        # so its own NextBallot finds b promised already and is answered at once.
        promises = b > self.ledger.next_bal
        self.ledger = replace(self.ledger, last_tried=b, next_bal=max(self.ledger.next_bal, b))
        self.ballot, self.phase, self.ticks = b, "polling", 0
        self.last_votes, self.voters = {}, set()
        self.highest_seen = max(self.highest_seen, b)
        effects: list[Effect] = [
            Persist(self.ledger),
            Record(EventKind.BALLOT_STARTED, f"begins ballot {b}: NextBallot({b}) to every priest", b),
        ]
        if promises:
            text = (f"promises itself not to vote in any ballot below {b}; "
                    f"its last vote: {self.ledger.prev_vote}")
            effects.append(Record(EventKind.PROMISED, text, b, peer=self.name))
        return effects + [
            *self._to_all(NextBallot(self.name, b)),
            SetTimer(RETRANSMIT, self.timing.retransmit),
        ]

    def _on_last_vote(self, m: LastVote) -> list[Effect]:
        if self.phase != "polling" or m.ballot != self.ballot:
            return [Record(EventKind.IGNORED, f"LastVote({m.ballot}) from {m.src} is not for a ballot being polled",
                           m.ballot, peer=m.src)]
        if m.src in self.last_votes:
            return []  # a duplicate: already counted
        self.last_votes[m.src] = m.vote
        if len(self.last_votes) < self.quorum:
            return []
        top = self.strategy.binding_vote(self.last_votes.values())
        if top is not None:
            d = top.decree
            why = f"the highest previous vote in the quorum is {top}: it must be {d}"
        else:
            d = self.default_proposal(self.ballot)
            why = f"no priest of the quorum has voted: free to choose, it proposes {d}"
        self.phase, self.voters, self.proposed_decree = "voting", set(), d
        b = self.ballot
        return [
            Record(EventKind.PROPOSED, f"a quorum promised ballot {b}; {why}; BeginBallot({b}, {d})",
                   b, d, quorum=tuple(sorted(self.last_votes))),
            *self._to_all(BeginBallot(self.name, b, d)),
            SetTimer(RETRANSMIT, self.timing.retransmit),
        ]

    def _on_voted(self, m: Voted) -> list[Effect]:
        if self.phase != "voting" or m.ballot != self.ballot:
            return [Record(EventKind.IGNORED, f"Voted({m.ballot}) from {m.src} is not for a ballot being voted",
                           m.ballot, peer=m.src)]
        self.voters.add(m.src)
        if len(self.voters) < self.quorum:
            return []
        b, d = self.ballot, self.proposed_decree
        effects = self._learn(d, b, f"a quorum ({', '.join(sorted(self.voters))}) voted in ballot {b}")
        # The decree passed the moment a quorum's votes were durable, so Success
        # need not wait for our own decree.txt: the priests write theirs meanwhile.
        return self._success_to(self._others()) + effects

    def _on_timer(self, name: str) -> list[Effect]:
        if name == BACKOFF:
            if self.decree is None and self.phase == "idle" and self.attempts_left > 0:
                return self._start_ballot()
            return []
        if name != RETRANSMIT:
            raise ProtocolBug(f"unknown timer {name!r}")
        if self.phase == "idle":
            return []
        self.ticks += 1
        if self.ticks * self.timing.retransmit >= self.timing.ballot_timeout:
            return self._abandon(f"no quorum answered within {self.timing.ballot_timeout}s")
        if self.phase == "polling":
            sends: list[Effect] = [Send(p, NextBallot(self.name, self.ballot))
                                   for p in self.priests if p not in self.last_votes]
        else:
            sends = [Send(p, BeginBallot(self.name, self.ballot, self.proposed_decree))
                     for p in self.priests if p not in self.voters]
        return sends + [SetTimer(RETRANSMIT, self.timing.retransmit)]

    def _abandon(self, reason: str) -> list[Effect]:
        b = self.ballot
        self.phase = "idle"
        self.attempts_left -= 1
        effects: list[Effect] = [CancelTimer(RETRANSMIT)]
        if self.attempts_left > 0:
            text = f"abandons ballot {b}: {reason}; retries after a random back-off"
            effects += [Record(EventKind.BALLOT_ABANDONED, text, b),
                        SetTimer(BACKOFF, self.timing.backoff, jitter=self.timing.backoff)]
        else:
            text = f"abandons ballot {b}: {reason}; gives up (Ctrl+Z to try again)"
            effects.append(Record(EventKind.BALLOT_ABANDONED, text, b, gave_up=True))
        return effects

    def _notice(self, b: Ballot) -> list[Effect]:
        """A ballot from another priest: remember it; give ours up if it is outranked."""
        if b > self.highest_seen:
            self.highest_seen = b
        if self.phase != "idle" and b > self.ballot and b.priest != self.name:
            return self._abandon(f"a higher ballot {b} is under way")
        return []

    # --- acceptor ------------------------------------------------------

    def _on_message(self, m: Message) -> list[Effect]:
        if isinstance(m, Success):
            return self._on_success(m)
        if self.decree is not None:
            # Whatever a priest is doing in a ballot, the decree is settled: tell it so.
            what = f"{type(m).__name__}({m.ballot}) from {m.src}"
            text = f"{what} comes after the decision: the decree is already {self.decree}; tells it Success"
            return [Record(EventKind.REMINDED, text, m.ballot, self.decree, peer=m.src),
                    *self._success_to([m.src])]
        if isinstance(m, NextBallot):
            return self._notice(m.ballot) + self._on_next_ballot(m)
        if isinstance(m, BeginBallot):
            return self._notice(m.ballot) + self._on_begin_ballot(m)
        if isinstance(m, LastVote):
            return self._notice(m.ballot) + self._on_last_vote(m)
        if isinstance(m, Voted):
            return self._on_voted(m)
        raise ProtocolBug(f"unknown message {m!r}")

    def _on_next_ballot(self, m: NextBallot) -> list[Effect]:
        b = m.ballot
        if b < self.ledger.next_bal:
            return self._refuse(m)
        effects: list[Effect] = []
        if b > self.ledger.next_bal:
            self.ledger = replace(self.ledger, next_bal=b)
            text = (f"promises {m.src} not to vote in any ballot below {b}; "
                    f"its last vote: {self.ledger.prev_vote}")
            effects += [Persist(self.ledger), Record(EventKind.PROMISED, text, b, peer=m.src)]
        return effects + [Send(m.src, LastVote(self.name, b, self.ledger.prev_vote))]

    def _on_begin_ballot(self, m: BeginBallot) -> list[Effect]:
        b, d = m.ballot, m.decree
        prev = self.ledger.prev_vote
        if prev.ballot == b and prev.decree == d:
            return [Send(m.src, Voted(self.name, b))]  # a duplicate: vote already durable
        if self.strategy.contradicts(prev, b, d):
            return [Record(EventKind.IGNORED, f"BeginBallot({b}, {d}) from {m.src} contradicts "
                                      f"BeginBallot({b}, {prev.decree}): one decree per ballot",
                           b, d, peer=m.src)]
        if b < self.ledger.next_bal:
            return self._refuse(m)
        self.ledger = replace(self.ledger, next_bal=b, prev_vote=Vote(b, d))
        return [
            Persist(self.ledger),
            Record(EventKind.VOTED, f"votes for decree {d} in ballot {b}", b, d, peer=m.src),
            Send(m.src, Voted(self.name, b)),
        ]

    def _refuse(self, m: NextBallot | BeginBallot) -> list[Effect]:
        """Below our promise: take no part, but show the leader the higher ballot.

        The answer is the LastVote we gave for our promise: it is true, it
        commits us to nothing new, and the leader, seeing a ballot above its
        own, abandons it and tries next above that one. Without it a leader
        whose rounds lag far behind would time out again and again.
        """
        promise = self.ledger.next_bal
        text = (f"takes no part in ballot {m.ballot} of {m.src}: it promised {promise}; "
                f"tells {m.src} so")
        return [Record(EventKind.IGNORED, text, m.ballot, peer=m.src, promised=promise),
                Send(m.src, LastVote(self.name, promise, self.ledger.prev_vote))]

    # --- learner -------------------------------------------------------

    def _on_success(self, m: Success) -> list[Effect]:
        if self.decree is None:
            # A ballot asked of us is still open (running, or backing off to retry):
            # the priests it polled may wait for its outcome, so tell them all.
            asked = self.phase != "idle" or self.attempts_left > 0
            effects = self._learn(m.decree, m.ballot, f"{m.src} sent Success")
            return effects + (self._success_to(self._others()) if asked else [])
        if self.decree != m.decree:
            # Never overwrite: a decree once written is final. A peer is wrong.
            text = (f"Success({m.decree}) from {m.src} contradicts the decree it holds, "
                    f"{self.decree}: refused")
            return [Record(EventKind.IGNORED, text, m.ballot, m.decree, peer=m.src, conflict=True)]
        return []

    def _learn(self, d: int, b: Ballot, why: str) -> list[Effect]:
        if self.decree is not None:
            if self.decree != d:
                raise ProtocolBug(f"{self.name} would change its decree {self.decree} to {d}")
            return []
        self.decree, self.decree_ballot = d, b
        self.phase = "idle"
        self.attempts_left = 0
        return [
            Learn(d, b),
            CancelTimer(RETRANSMIT),
            CancelTimer(BACKOFF),
            Record(EventKind.LEARNED, f"{why}: the decree is {d}", b, d),
        ]

    # --- helpers -------------------------------------------------------

    def _others(self) -> list[str]:
        return [p for p in self.priests if p != self.name]

    def _to_all(self, m: Message) -> list[Effect]:
        # One message object for every priest: the runtime encodes it once.
        return [Send(p, m) for p in self.priests]

    def _success_to(self, dsts: Sequence[str]) -> list[Effect]:
        assert self.decree is not None
        m = Success(self.name, self.decree_ballot, self.decree)
        return [Send(p, m) for p in dsts]


__all__ = ["Priest", "FRESH_LEDGER", "RETRANSMIT", "BACKOFF"]
