#!/usr/bin/env python3
"""A naive Synod priest: one decree, agreed over UDP (or TCP), wrong in the ways a first attempt is.

    naive_priest.py CONFIG NAME [--tcp]

CONFIG is JSON, `{"legislators": [{"ip": "127.0.0.1", "port": 18100, "name": "l1"}, ...]}`,
the same file in the same order for every priest; NAME is this priest's entry.
SIGTSTP (Ctrl+Z) starts a ballot; SIGINT and SIGTERM end the process (status 0).

How it works
------------
The priest keeps its ledger in ./NAME/, one int per file: `last-tried.txt`
(the last ballot it began), `next-bal.txt` (the ballot it promised),
`prev-vote-id.txt` and `prev-vote-decree.txt` (its latest vote), and
`decree.txt` (the decree it learned). A ballot goes:

1. NextBallot(b): the proposer picks b = max(last_tried, next_bal) + 1 and
   sends it to every legislator, itself included, over the network.
2. LastVote(b, vote-ballot, vote-decree): a priest whose next_bal is below b
   promises b and reports its latest vote (-1, -1 if it never voted).
3. BeginBallot(b, decree): with LastVotes from a strict majority, the
   proposer proposes the decree of the highest vote, or b itself if none of
   them voted, to every legislator.
4. Voted(b): a priest whose next_bal is b records its vote and says so.
5. Success(decree): with Votes from a strict majority, the proposer writes
   decree.txt and tells every other legislator, who write theirs.

It is written to be easy to follow, not to be right: README.md beside this
file lists its mistakes, each marked `Mistake N` where it is made below.
Malformed input is not guarded against: a missing header, a non-number or an
unknown sender raises, and the process dies with a traceback (status 1).
It imports nothing but the standard library.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Literal, Protocol

USAGE = "usage: naive_priest.py CONFIG NAME [--tcp]"

LAST_TRIED = "last-tried.txt"
NEXT_BAL = "next-bal.txt"
PREV_VOTE_ID = "prev-vote-id.txt"
PREV_VOTE_DECREE = "prev-vote-decree.txt"
DECREE = "decree.txt"

RESET = "\033[0m"
CYAN, BLUE, YELLOW, GREEN, DIM = "\033[36m", "\033[34m", "\033[1;33m", "\033[1;32m", "\033[2m"


@dataclass(frozen=True)
class Legislator:
    name: str
    ip: str
    port: int


class UsageError(Exception):
    """Bad arguments or an unusable config: one line on stderr, status 2."""


def load_legislators(path: str) -> list[Legislator]:
    """The legislators of a JSON config, in file order."""
    try:
        with open(path, encoding="utf-8") as f:
            entries = json.load(f)["legislators"]
        return [Legislator(str(e["name"]), str(e["ip"]), int(e["port"])) for e in entries]
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror}") from e
    except (ValueError, KeyError, TypeError) as e:
        raise UsageError(f"{path} is not a legislators config ({type(e).__name__}: {e})") from e


# --- the ledger: one file per field ----------------------------------------


class Ledger:
    """The files in ./NAME/: one int each, no newline; a missing file reads -1, an empty one 0."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def read(self, field: str) -> int:
        try:
            text = (self.directory / field).read_text()
        except FileNotFoundError:
            return -1
        return int(text) if text else 0

    def write(self, field: str, value: int) -> None:
        # Mistake 3: written in place, no fsync, no rename; a crash here can leave it empty or torn.
        with open(self.directory / field, "w") as f:
            f.write(str(value))


# --- the wire format: a method line, `name: value` headers, a blank line -----


def encode(method: str, headers: dict[str, int | str]) -> bytes:
    lines = [method, *(f"{name}: {value}" for name, value in headers.items()), "", ""]
    return "\r\n".join(lines).encode()


def decode(data: bytes) -> tuple[str, dict[str, str]]:
    """Method and headers. Mistake 7: bad bytes raise, and nobody catches it."""
    head, _, _ = data.decode("utf-8").partition("\r\n\r\n")
    method, *lines = head.split("\r\n")
    headers = {}
    for line in lines:
        name, value = line.split(": ", 1)
        headers[name] = value
    return method, headers


# --- transports ---------------------------------------------------------------


class Transport(Protocol):
    def fileno(self) -> int: ...
    def receive(self) -> bytes | None: ...
    def send(self, to: Legislator, data: bytes) -> None: ...


class Udp:
    """One datagram per message, sent from the socket it listens on."""

    def __init__(self, me: Legislator) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((me.ip, me.port))

    def fileno(self) -> int:
        return self.sock.fileno()

    def receive(self) -> bytes | None:
        return self.sock.recv(65535)

    def send(self, to: Legislator, data: bytes) -> None:
        self.sock.sendto(data, (to.ip, to.port))


class Tcp:
    """One connection per message: connect, write it, close. Connections are read one at a time."""

    def __init__(self, me: Legislator) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((me.ip, me.port))
        self.sock.listen(64)

    def fileno(self) -> int:
        return self.sock.fileno()

    def receive(self) -> bytes | None:
        conn, _ = self.sock.accept()
        with conn:
            # Mistake 8: read to the end, blocking; a peer that never closes stalls this priest.
            chunks = []
            while chunk := conn.recv(4096):
                chunks.append(chunk)
        return b"".join(chunks) or None  # a connection that carried nothing is no message

    def send(self, to: Legislator, data: bytes) -> None:
        with socket.create_connection((to.ip, to.port), timeout=1.0) as conn:
            conn.sendall(data)


# --- the priest -------------------------------------------------------------------


class Priest:
    """Proposer, acceptor and learner in one; handlers write the ledger, then send."""

    def __init__(self, me: Legislator, legislators: Sequence[Legislator], ledger: Ledger,
                 transport: Transport, colour: bool) -> None:
        self.me, self.ledger, self.transport, self.colour = me, ledger, transport, colour
        self.legislators = list(legislators)
        self.by_name = {leg.name: leg for leg in legislators}
        self.quorum = len(legislators) // 2 + 1
        self.last_tried = ledger.read(LAST_TRIED)
        self.next_bal = ledger.read(NEXT_BAL)
        self.prev_vote_id = ledger.read(PREV_VOTE_ID)
        self.prev_vote_decree = ledger.read(PREV_VOTE_DECREE)
        # The proposer's side lives only in memory: a restart forgets the ballot it was conducting.
        self.phase: Literal["idle", "polling", "voting"] = "idle"
        self.last_votes: dict[str, tuple[int, int]] = {}
        self.voters: set[str] = set()
        self.proposal = -1

    def say(self, colour: str, text: str) -> None:
        print(f"{colour}{text}{RESET}" if self.colour else text)

    def send(self, to: Legislator, method: str, **fields: int) -> None:
        headers: dict[str, int | str] = {"from": self.me.name}
        headers.update({name.replace("_", "-"): value for name, value in fields.items()})
        self.say(BLUE, f"{self.me.name} sends {method}({', '.join(map(str, fields.values()))}) to {to.name}")
        try:
            self.transport.send(to, encode(method, headers))
        except OSError as e:
            # Mistake 4: no retransmission; a message that did not go is simply gone.
            self.say(DIM, f"{self.me.name} could not send {method} to {to.name}: {e}")

    def start_ballot(self) -> None:
        # Mistake 1: the next number is not unique to this priest; two priests can both begin b.
        b = max(self.last_tried, self.next_bal) + 1
        self.last_tried = b
        self.ledger.write(LAST_TRIED, b)
        self.phase, self.last_votes, self.voters = "polling", {}, set()
        self.say(YELLOW, f"{self.me.name} is initiating ballot {b}")
        for leg in self.legislators:  # itself included, over the network like the others
            self.send(leg, "NextBallot", ballot=b)

    def handle(self, data: bytes) -> None:
        method, headers = decode(data)
        sender = self.by_name[headers["from"]]  # Mistake 7: an unknown sender raises KeyError
        handlers = {"NextBallot": self.on_next_ballot, "LastVote": self.on_last_vote,
                    "BeginBallot": self.on_begin_ballot, "Voted": self.on_voted,
                    "Success": self.on_success}
        if method not in handlers:
            raise ValueError(f"unknown message {method!r} from {sender.name}")
        handlers[method](sender, headers)

    def received(self, method: str, sender: Legislator, *values: int) -> None:
        self.say(CYAN, f"{self.me.name} received {method}({', '.join(map(str, values))}) from {sender.name}")

    def ignores(self, why: str) -> None:
        self.say(DIM, f"{self.me.name} ignores it: {why}")

    def on_next_ballot(self, sender: Legislator, headers: dict[str, str]) -> None:
        b = int(headers["ballot"])
        self.received("NextBallot", sender, b)
        # Mistake 1 again: "not lower than my promise" answers the same number twice, once per proposer.
        if b < self.next_bal:
            self.ignores(f"it promised ballot {self.next_bal}")  # silently: the proposer never hears why
            return
        self.next_bal = b
        self.ledger.write(NEXT_BAL, b)
        self.send(sender, "LastVote", ballot=b, vote_ballot=self.prev_vote_id, vote_decree=self.prev_vote_decree)

    def on_last_vote(self, sender: Legislator, headers: dict[str, str]) -> None:
        b, vote_ballot, vote_decree = (int(headers[h]) for h in ("ballot", "vote-ballot", "vote-decree"))
        self.received("LastVote", sender, b, vote_ballot, vote_decree)
        if self.phase != "polling" or b != self.last_tried:
            self.ignores(f"it is not collecting LastVotes for ballot {b}")
            return
        self.last_votes[sender.name] = (vote_ballot, vote_decree)
        if len(self.last_votes) < self.quorum:
            return
        highest_ballot, highest_decree = max(self.last_votes.values())
        # Mistake 6: free to choose, it proposes its own port number, so the decree says who won.
        self.proposal = highest_decree if highest_ballot >= 0 else self.me.port
        self.phase = "voting"
        self.say(GREEN, f"{self.me.name} has LastVotes from a majority for ballot {b}: "
                        f"it proposes decree {self.proposal}")
        for leg in self.legislators:
            self.send(leg, "BeginBallot", ballot=b, decree=self.proposal)

    def on_begin_ballot(self, sender: Legislator, headers: dict[str, str]) -> None:
        b, decree = int(headers["ballot"]), int(headers["decree"])
        self.received("BeginBallot", sender, b, decree)
        if b != self.next_bal:
            self.ignores(f"it promised ballot {self.next_bal}")
            return
        # Mistake 2: the vote is two files, written one after the other; a crash between leaves half a vote.
        self.prev_vote_id = b
        self.ledger.write(PREV_VOTE_ID, b)
        self.prev_vote_decree = decree
        self.ledger.write(PREV_VOTE_DECREE, decree)
        self.send(sender, "Voted", ballot=b)

    def on_voted(self, sender: Legislator, headers: dict[str, str]) -> None:
        b = int(headers["ballot"])
        self.received("Voted", sender, b)
        if self.phase != "voting" or b != self.last_tried:
            self.ignores(f"it is not counting Votes for ballot {b}")
            return
        self.voters.add(sender.name)
        if len(self.voters) < self.quorum:
            return
        self.phase = "idle"
        self.ledger.write(DECREE, self.proposal)
        self.say(GREEN, f"{self.me.name} has Votes from a majority for ballot {b}: "
                        f"decree {self.proposal} passed")
        for leg in self.legislators:
            if leg != self.me:
                self.send(leg, "Success", decree=self.proposal)

    def on_success(self, sender: Legislator, headers: dict[str, str]) -> None:
        decree = int(headers["decree"])
        self.received("Success", sender, decree)
        # Mistake 5: any Success, from anyone, overwrites the decree, even one already learned.
        self.ledger.write(DECREE, decree)
        self.say(GREEN, f"Received success, the new decree is now: {decree}")


# --- the process ------------------------------------------------------------------


def _exit(signum: int, frame: FrameType | None) -> None:
    sys.exit(0)


def install_signals() -> tuple[socket.socket, socket.socket]:
    """Ctrl+Z as a ballot, SIGINT and SIGTERM as an exit; the pair that wakes the loop on Ctrl+Z.

    Installed before binding, so a priest that listens already takes Ctrl+Z as
    a ballot, never as a pause. Keep both ends: the second is the wakeup fd.
    """
    wake, wakeup_fd = socket.socketpair()
    for end in (wake, wakeup_fd):
        end.setblocking(False)
    # The signal's number lands on this pair and wakes the loop, which starts the ballot
    # between two messages, never in the middle of one.
    signal.set_wakeup_fd(wakeup_fd.fileno())
    signal.signal(signal.SIGTSTP, lambda signum, frame: None)
    signal.signal(signal.SIGINT, _exit)
    signal.signal(signal.SIGTERM, _exit)
    return wake, wakeup_fd


def serve(priest: Priest, transport: Transport, wake: socket.socket) -> None:
    """Messages and Ctrl+Z, one at a time, forever; SIGINT and SIGTERM exit from their handler."""
    selector = selectors.DefaultSelector()
    selector.register(transport.fileno(), selectors.EVENT_READ, "network")
    selector.register(wake, selectors.EVENT_READ, "signal")
    while True:
        for key, _ in selector.select():
            if key.data == "signal":
                for signum in wake.recv(64):
                    if signum == signal.SIGTSTP:
                        priest.start_ballot()
            elif (data := transport.receive()) is not None:
                priest.handle(data)


def parse_args(argv: Sequence[str]) -> tuple[str, str, bool]:
    """CONFIG, NAME and whether to talk TCP."""
    tcp = "--tcp" in argv
    rest = [a for a in argv if a != "--tcp"]
    if len(rest) != 2 or any(a.startswith("-") for a in rest):
        raise UsageError(USAGE)
    return rest[0], rest[1], tcp


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args in (["-h"], ["--help"]):
        print(USAGE)
        return 0
    try:
        config, name, tcp = parse_args(args)
        legislators = load_legislators(config)
        me = next((leg for leg in legislators if leg.name == name), None)
        if me is None:
            raise UsageError(f"{name!r} is not a legislator of {config}")
    except UsageError as e:
        print(e, file=sys.stderr)
        return 2
    for leg in legislators:
        Path(leg.name).mkdir(exist_ok=True)
    ledger = Ledger(Path(me.name))
    wake, _wakeup_fd = install_signals()
    try:
        transport: Transport = Tcp(me) if tcp else Udp(me)
    except OSError as e:
        print(f"{me.name}: cannot listen on {me.ip}:{me.port}: {e.strerror}", file=sys.stderr)
        return 1
    colour = sys.stdout.isatty() and "NO_COLOR" not in os.environ
    priest = Priest(me, legislators, ledger, transport, colour)
    priest.say(DIM, f"{me.name} listens on {me.ip}:{me.port} ({'TCP' if tcp else 'UDP'}); "
                    f"last tried {priest.last_tried}, promised {priest.next_bal}, "
                    f"voted {priest.prev_vote_decree} in {priest.prev_vote_id}")
    serve(priest, transport, wake)
    return 0


if __name__ == "__main__":
    sys.exit(main())
