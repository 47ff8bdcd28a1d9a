"""Values of the Synod protocol: ballots, votes, the five messages, events and effects.

Everything here is a frozen dataclass: plain data, no behaviour beyond ordering
and formatting. The core (`node.synod`) consumes events and produces effects;
the runtime and the simulator apply effects and produce events. This module
imports nothing from the project: the core, the codec, the ledger, the config
and the run record (`node.record`) all build on it, never on the core.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

# Bounds every number in the protocol must respect (checked by the codec and the ledger).
# A ballot's round is at most MAX_ROUND = 2^48 - 1: a million ballots a second
# for eight years. The headroom is deliberate: round + 1 (a priest's next ballot),
# round + timing.attempts, and 1000 * 255 + round (the default proposal) all stay
# far inside a signed 64-bit int, and below 2^53, so every JSON reader (a float
# one too) reads a round exactly. A priest never goes above it: once a round
# reaches the bound it refuses to begin a ballot (see node.synod), it never crashes.
MAX_ROUND = 2**48 - 1
MIN_DECREE = -(2**63)
MAX_DECREE = 2**63 - 1


class RoundOutOfRange(ValueError):
    """A ballot round above MAX_ROUND (or below 1) where a real ballot belongs."""


class ProtocolBug(AssertionError):
    """An invariant of our own is broken: stop loudly, never continue."""


@dataclass(frozen=True)
class Timing:
    """Protocol timing in seconds; see node.config for the YAML keys."""

    retransmit: float = 0.02
    ballot_timeout: float = 0.5
    backoff: float = 0.05
    attempts: int = 5


@dataclass(frozen=True, order=True, slots=True)
class Ballot:
    """A ballot number: the pair (round, priest), compared lexicographically.

    Two priests can never start the same ballot because the priest's name is
    part of the number. `ZERO` sorts below every real ballot.
    """

    round: int
    priest: str

    def __str__(self) -> str:
        return "0" if self.is_zero() else f"{self.round}.{self.priest}"

    def is_zero(self) -> bool:
        return self.round == 0

    def to_json(self) -> list[object]:
        return [self.round, self.priest]

    @classmethod
    def parse(cls, text: str) -> Ballot:
        """Inverse of `str()`: "0" or "ROUND.PRIEST"; ValueError otherwise."""
        if text == "0":
            return ZERO
        round_text, sep, priest = text.partition(".")
        if not sep or not priest or not round_text.isdigit():
            raise ValueError(f"not a ballot: {text!r}")
        if len(round_text) > 20:  # int() of a huge digit string is slow; no round is that long
            raise RoundOutOfRange(f"ballot round out of range 1..{MAX_ROUND}: {text[:30]!r}...")
        ballot = cls(int(round_text), priest)
        if ballot.round < 1 or ballot.round > MAX_ROUND:
            raise RoundOutOfRange(f"ballot round {ballot.round} out of range 1..{MAX_ROUND}: {text!r}")
        return ballot


ZERO = Ballot(0, "")


@dataclass(frozen=True, slots=True)
class Vote:
    """A priest's vote: the ballot it voted in and that ballot's decree.

    `NO_VOTE` (ballot ZERO) means the priest has never voted.
    """

    ballot: Ballot
    decree: int

    def __str__(self) -> str:
        return "none" if self.ballot.is_zero() else f"{self.decree}@{self.ballot}"

    def is_none(self) -> bool:
        return self.ballot.is_zero()


NO_VOTE = Vote(ZERO, 0)


@dataclass(frozen=True, slots=True)
class LedgerState:
    """What a priest must never forget: written durably before it is relied on.

    last_tried: the last ballot this priest began (as proposer).
    next_bal:   the highest ballot it promised (answered NextBallot for).
    prev_vote:  its latest vote, ballot and decree together.
    """

    last_tried: Ballot = ZERO
    next_bal: Ballot = ZERO
    prev_vote: Vote = NO_VOTE


# --- the five messages -----------------------------------------------------
# Every message carries the name of the priest that sent it (`src`).


@dataclass(frozen=True, slots=True)
class NextBallot:
    """Proposer -> all (phase 1a, "prepare"): promise not to vote below `ballot`?"""

    src: str
    ballot: Ballot


@dataclass(frozen=True, slots=True)
class LastVote:
    """Acceptor -> proposer (phase 1b, "promise"): I promise; here is my last vote."""

    src: str
    ballot: Ballot
    vote: Vote


@dataclass(frozen=True, slots=True)
class BeginBallot:
    """Proposer -> quorum (phase 2a, "accept"): vote for `decree` in `ballot`."""

    src: str
    ballot: Ballot
    decree: int


@dataclass(frozen=True, slots=True)
class Voted:
    """Acceptor -> proposer (phase 2b, "accepted"): I voted in `ballot`."""

    src: str
    ballot: Ballot


@dataclass(frozen=True, slots=True)
class Success:
    """Learner -> all ("chosen"): `decree` passed (in `ballot`, for the record)."""

    src: str
    ballot: Ballot
    decree: int


Message = NextBallot | LastVote | BeginBallot | Voted | Success
MESSAGE_TYPES: tuple[type, ...] = (NextBallot, LastVote, BeginBallot, Voted, Success)


def describe_message(m: Message) -> str:
    """A message as the paper would write it: NextBallot(3.alpha), LastVote(3.alpha, 7@2.beta)..."""
    if isinstance(m, LastVote):
        return f"LastVote({m.ballot}, {m.vote})"
    if isinstance(m, (BeginBallot, Success)):
        return f"{type(m).__name__}({m.ballot}, {m.decree})"
    return f"{type(m).__name__}({m.ballot})"


# --- events: what happens to a priest --------------------------------------
# (`Event` is what the core is fed; `EventKind` names what a priest records.)


class EventKind(StrEnum):
    """What a line of a priest's events.jsonl records; see `node.record` and docs/formats.md."""

    # From the Synod core, as `Record` effects:
    BALLOT_STARTED = "ballot_started"  # a proposer began `ballot` (after persisting last_tried)
    PROMISED = "promised"  # an acceptor promised `ballot` (after persisting next_bal)
    PROPOSED = "proposed"  # a proposer put `decree` to `ballot` (BeginBallot follows)
    VOTED = "voted"  # an acceptor voted `decree` in `ballot` (after persisting prev_vote)
    LEARNED = "learned"  # a priest learned `decree` (after writing decree.txt)
    BALLOT_ABANDONED = "ballot_abandoned"  # a proposer gave `ballot` up (timeout, higher ballot)
    IGNORED = "ignored"  # a message that was stale, refused or contradictory
    REMINDED = "reminded"  # a priest holding the decree told others with Success
    # From the runtime:
    STARTED = "started"  # the process started, with what it recovered from disk
    SENT = "sent"  # a message left (or went to the priest itself)
    RECEIVED = "received"  # a message arrived, decoded and valid
    DROPPED = "dropped"  # a datagram was dropped, with why
    STOPPED = "stopped"  # the process is stopping, with why



@dataclass(frozen=True, slots=True)
class BallotRequested:
    """Someone (SIGTSTP, the harness, a test) asks this priest to initiate a ballot."""


@dataclass(frozen=True, slots=True)
class Received:
    """A decoded, validated message arrived from another (or the same) priest."""

    message: Message


@dataclass(frozen=True, slots=True)
class TimerFired:
    """A timer set earlier by a `SetTimer` effect has expired."""

    name: str


Event = BallotRequested | Received | TimerFired


# --- effects: what the core asks the outside world to do, in order ---------


@dataclass(frozen=True, slots=True)
class Persist:
    """Make `state` the durable ledger before applying any later effect."""

    state: LedgerState


@dataclass(frozen=True, slots=True)
class Send:
    """Send `message` to priest `dst` (possibly this priest itself)."""

    dst: str
    message: Message


@dataclass(frozen=True, slots=True)
class SetTimer:
    """Fire `TimerFired(name)` after `delay` + uniform(0, `jitter`) seconds.

    Setting a timer that is already set replaces it. The randomness of the
    jitter lives in whoever runs the core, so the core stays deterministic.
    """

    name: str
    delay: float
    jitter: float = 0.0


@dataclass(frozen=True, slots=True)
class CancelTimer:
    name: str


@dataclass(frozen=True, slots=True)
class Learn:
    """Write `decree` to decree.txt (once, atomically) before later effects."""

    decree: int
    ballot: Ballot


@dataclass(frozen=True, slots=True)
class Record:
    """A step worth narrating and recording in events.jsonl (as a `node.record.PriestEvent`).

    `text` is the narration in the paper's words; the other fields are filled
    when they apply (ZERO: no ballot).
    """

    kind: EventKind
    text: str
    ballot: Ballot = ZERO
    decree: int | None = None
    peer: str | None = None
    quorum: tuple[str, ...] | None = None  # proposed: the priests whose LastVotes it counted
    gave_up: bool | None = None  # ballot_abandoned: no attempt is left
    promised: Ballot | None = None  # ignored: the promise that keeps it out of the ballot
    conflict: bool | None = None  # ignored: a Success for another decree than the one held


Effect = Persist | Send | SetTimer | CancelTimer | Learn | Record
