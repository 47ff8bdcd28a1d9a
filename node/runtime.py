"""The priest's process: one UDP socket, timers, signals, and the core's effects applied in order.

This is the only place a priest touches the world. Each loop turn waits for a
datagram, a signal or the next timer, turns it into an event for the Synod
core, and applies the effects the core returns strictly in order: a `Persist`
is durable (fdatasync) before the `Send` after it leaves, and each narration
line is on disk (events.jsonl) before the message it narrates is sent.

Signals: SIGTSTP asks for a ballot (it does not stop the priest); SIGTERM and
SIGINT end it cleanly.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import TextIO

from node.auth import cluster_key
from node.codec import Codec, DatagramError, DropReason
from node.config import Config
from node.errors import StartupError
from node.files import APPEND_FLAGS, open_at
from node.flaws import strategy
from node.flaws import warning as flaw_warning
from node.ledger import (
    Ledger,
    decode_learned,
    decode_record,
    encode_learned,
    encode_record,
    os_error,
)
from node.messages import (
    MAX_DECREE,
    MIN_DECREE,
    BallotRequested,
    CancelTimer,
    Effect,
    Event,
    EventKind,
    Learn,
    Message,
    Persist,
    Received,
    Record,
    Send,
    SetTimer,
    TimerFired,
    describe_message,
)
from node.output import Narrator, use_color
from node.proc import drain, give_back_freed_memory, set_parent_death_signal
from node.record import PriestEvent, message_event, recorded, started_event
from node.synod import Priest

EVENTS = "events.jsonl"
PRIEST_LOG = "priest.log"
PARENT_CHECK = 0.25  # seconds between checks that the supervisor still lives
# Drop logging, whatever a flood holds: per reason (a fixed DropReason) at most
# one line a second, and over all reasons at most DROP_LOG_BURST lines at once,
# then DROP_LOG_RATE a second. A logged drop is two lines (priest.log and
# events.jsonl) of at most ~600 bytes together, so a flood adds at most ~6 KB
# at once and ~1.2 KB a second, however many datagrams it sends.
DROP_LOG_INTERVAL = 1.0
DROP_LOG_BURST = 10
DROP_LOG_RATE = 2.0
DROP_DETAIL_MAX = 160  # characters of a drop's detail text kept in a logged line
REHEARSAL_PRIESTS = 3  # a rehearsal's cast: enough for every path, whatever the cluster's size
REHEARSAL_LINES = 1000  # a bound on its work (a ballot of three priests makes ~40 event lines)


class DropLimiter:
    """Counts every dropped datagram by reason and says which ones to log (see DROP_LOG_*).

    Its tables are keyed by DropReason, so they never hold more than its few members.
    """

    def __init__(self, interval: float = DROP_LOG_INTERVAL, burst: int = DROP_LOG_BURST,
                 rate: float = DROP_LOG_RATE) -> None:
        self.interval, self.burst, self.rate = interval, burst, rate
        self.tokens = float(burst)
        self.refilled: float | None = None
        self.last_logged: dict[DropReason, float] = {}
        self.suppressed: dict[DropReason, int] = {}
        self.counts: dict[DropReason, int] = {}

    def drop(self, reason: DropReason, now: float) -> int | None:
        """Count one drop at `now`; the number suppressed since the last logged one to log it, else None."""
        self.counts[reason] = self.counts.get(reason, 0) + 1
        if self.refilled is not None:
            self.tokens = min(float(self.burst), self.tokens + (now - self.refilled) * self.rate)
        self.refilled = now
        last = self.last_logged.get(reason)
        if (last is not None and now - last < self.interval) or self.tokens < 1.0:
            self.suppressed[reason] = self.suppressed.get(reason, 0) + 1
            return None
        self.tokens -= 1.0
        self.last_logged[reason] = now
        return self.suppressed.pop(reason, 0)


class EventLog:
    """events.jsonl: one `PriestEvent` per line, buffered until `flush()` (one write(2))."""

    def __init__(self, fd: int, priest: str) -> None:
        self.fd = fd  # opened by the runtime, never through a link
        self.priest, self.pid = priest, os.getpid()
        self.lines: list[str] = []

    def write(self, event: PriestEvent) -> None:
        self.lines.append(event.to_line())

    def record(self, r: Record) -> None:
        """The event of a core's `Record` effect, stamped now."""
        self.write(recorded(r, time.monotonic_ns(), self.priest, self.pid))

    def message(self, kind: EventKind, m: Message, peer: str) -> None:
        """A `sent` or `received` event, stamped now."""
        self.write(message_event(kind, m, peer, time.monotonic_ns(), self.priest, self.pid))

    def flush(self) -> None:
        if self.lines:
            os.write(self.fd, "".join(self.lines).encode())
            self.lines.clear()

    def close(self) -> None:
        self.flush()
        os.close(self.fd)


def uniform(limit: float) -> float:
    """A random float in [0, limit): timer jitter (the core itself is deterministic), from
    the system's random source, so a priest does not load `random` (0.5 MB resident)."""
    return limit * int.from_bytes(os.urandom(4), "big") / 2**32


def rehearse(config: Config, codec: Codec) -> list[str]:
    """Run one ballot among three scratch priests of the cluster, in memory; return its event lines.

    Each message goes through the codec both ways, each step is made into its
    event line and narration text, and nothing is written, sent or kept: the
    priest's own core is not touched. A priest does this before it says it is
    ready, so its first real ballot runs on warm paths: a forked priest has
    already copied the pages they touch from its parent (a cold ballot of 4
    priests took ~370 page faults among them; ~30 after a rehearsal).
    """
    names = config.names[:REHEARSAL_PRIESTS]  # a cost that does not grow with the cluster
    scratch = {n: Priest(n, names, index=i + 1, timing=config.timing) for i, n in enumerate(names)}
    queue: deque[tuple[str, Event]] = deque([(names[0], BallotRequested())])
    lines: list[str] = []  # event lines, returned
    said: list[str] = []  # narration text, built as a priest builds it, then dropped
    while queue and len(lines) < REHEARSAL_LINES:
        name, event = queue.popleft()
        if isinstance(event, Received):
            m = codec.decode(codec.encode(event.message))
            lines.append(message_event(EventKind.RECEIVED, m, m.src, 0, name, None).to_line())
            said.append(f"<- {describe_message(m)} from {m.src}")
            event = Received(m)
        for effect in scratch[name].handle(event):
            if isinstance(effect, Send):
                m = effect.message
                lines.append(message_event(EventKind.SENT, m, effect.dst, 0, name, None).to_line())
                said.append(f"-> {describe_message(m)} to {effect.dst}")
                queue.append((effect.dst, Received(m)))
            elif isinstance(effect, Record):
                lines.append(recorded(effect, 0, name, None).to_line())
            elif isinstance(effect, Persist):
                decode_record(encode_record(effect.state))
            elif isinstance(effect, Learn):
                decode_learned(encode_learned(effect.decree))
    return lines


class Runtime:
    """A priest's event loop. Build it, call `run()`; `close()` releases everything."""

    def __init__(self, config: Config, name: str, *, out: TextIO, color: bool,
                 proposal: int | None = None, watch_parent: int | None = None,
                 messages: bool = True, bind: int | None = None) -> None:
        me = config.require(name)
        if proposal is not None and (isinstance(proposal, bool)
                                     or not MIN_DECREE <= proposal <= MAX_DECREE):
            raise StartupError(f"priest {name}: proposal {proposal!r} is not a decree "
                               f"(an integer from {MIN_DECREE} to {MAX_DECREE})")
        self.config, self.name = config, name
        self.directory = config.priest_dir(name)
        self.ledger = Ledger.open(self.directory)  # LedgerError/StartupError: refuse to start
        try:
            key = cluster_key(config)  # created if absent; StartupError if unusable
        except BaseException:
            self.ledger.close()
            raise
        self.codec = Codec(config.cluster, {n: (p.host, p.port) for n, p in config.priests.items()},
                           key=key)
        # `bind`: a private port behind the harness's relay; peers still see me.port.
        self.sock = self._bind(me.host, me.port if bind is None else bind)
        try:
            self.priest = Priest(
                name, config.names, ledger=self.ledger.state, decree=self.ledger.decree,
                proposal=proposal if proposal is not None else me.propose, index=me.index,
                timing=config.timing, strategy=strategy(config.flaws),
            )
            self.events = EventLog(open_at(self.ledger.fd, EVENTS, APPEND_FLAGS, self.directory), name)
            try:
                log_fd = open_at(self.ledger.fd, PRIEST_LOG, APPEND_FLAGS, self.directory)
                self.narrator = Narrator(name, me.index, out, color, log_fd, messages=messages)
            except BaseException:
                self.events.close()
                raise
        except BaseException as exc:
            # Release the port and the ledger's lock before refusing to start.
            self.sock.close()
            self.ledger.close()
            if isinstance(exc, OSError):
                raise os_error(exc, self.directory) from None
            raise
        self.timers: dict[str, float] = {}
        self.inbox: deque[Message] = deque()  # messages a priest sends to itself
        self.outbox: list[tuple[bytes, tuple[str, int]]] = []  # datagrams not yet sent
        self.pending: deque[str] = deque()  # signals seen, handled in the loop
        self.watch_parent = watch_parent
        self.drops = DropLimiter()
        self.stopping = False

    def _bind(self, host: str, port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            self.ledger.close()
            raise StartupError(f"priest {self.name}: cannot bind {host}:{port}: {exc.strerror}") from None
        sock.setblocking(False)
        return sock

    # --- signals -------------------------------------------------------

    def install_signals(self) -> socket.socket:
        """Route SIGTSTP/SIGTERM/SIGINT into the loop through a wake-up socket."""
        rsock, wsock = socket.socketpair()
        rsock.setblocking(False)
        wsock.setblocking(False)
        self._wake = (rsock, wsock)
        signal.set_wakeup_fd(wsock.fileno(), warn_on_full_buffer=False)
        signal.signal(signal.SIGTSTP, lambda *_: self.pending.append("ballot"))
        signal.signal(signal.SIGTERM, lambda *_: self.pending.append("stop"))
        signal.signal(signal.SIGINT, lambda *_: self.pending.append("stop"))
        if self.watch_parent is not None:
            set_parent_death_signal()
            if os.getppid() != self.watch_parent:
                self.pending.append("orphaned")
        return rsock

    # --- the loop ------------------------------------------------------

    def run(self, on_ready: Callable[[], None] | None = None) -> int:
        wake = self.install_signals()
        rehearse(self.config, self.codec)
        give_back_freed_memory()
        recovered = self.priest.ledger
        host, port = self.sock.getsockname()
        self.events.write(started_event(time.monotonic_ns(), self.name, self.events.pid, recovered,
                                        self.priest.decree, f"listening on {host}:{port}",
                                        wall=time.time_ns()))
        self.narrator.say(self._startup_line())
        for flaw in self.config.flaws:
            self.narrator.say(flaw_warning(flaw), warn=True)
        self._flush()
        if on_ready is not None:
            on_ready()
        next_parent_check = time.monotonic() + PARENT_CHECK
        while not self.stopping:
            now = time.monotonic()
            deadline = min([next_parent_check, *self.timers.values()])
            ready, _, _ = select.select([self.sock, wake], [], [], max(0.0, deadline - now))
            if wake in ready:
                drain(wake)
            self._handle_signals()
            if self.sock in ready:
                self._receive_all()
            self._fire_timers()
            if time.monotonic() >= next_parent_check:
                next_parent_check = time.monotonic() + PARENT_CHECK
                if self.watch_parent is not None and os.getppid() != self.watch_parent:
                    self._stop("its supervisor is gone")
            self._flush()
        return 0

    def _startup_line(self) -> str:
        s = self.priest.ledger
        held = f"holds decree {self.priest.decree}" if self.priest.decree is not None else "holds no decree"
        me = self.config.priests[self.name]
        host, port = self.sock.getsockname()
        # Peers know a priest by its configured address; behind the relay it listens elsewhere.
        where = f"{me.host}:{me.port}" + (f" (behind the relay, on {host}:{port})"
                                          if port != me.port else "")
        return (f"ready on {where}; {held}; ledger: last tried {s.last_tried}, "
                f"promised {s.next_bal}, last vote {s.prev_vote} (Ctrl+Z: begin a ballot)")

    def _handle_signals(self) -> None:
        while self.pending:
            what = self.pending.popleft()
            if what == "ballot":
                self.narrator.say("SIGTSTP: asked to begin a ballot")
                self._dispatch(BallotRequested())
            elif what == "orphaned":
                self._stop("its supervisor is gone")
            else:
                self._stop("asked to stop")

    def _stop(self, why: str) -> None:
        if not self.stopping:
            self.stopping = True
            dropped = tuple((reason.value, n) for reason, n in sorted(self.drops.counts.items()))
            self.events.write(PriestEvent(time.monotonic_ns(), self.name, EventKind.STOPPED,
                                          self.events.pid, text=why, dropped=dropped))
            self.narrator.say(f"stops: {why}")

    def _receive_all(self) -> None:
        for _ in range(256):  # bounded so timers and signals are not starved
            try:
                data, addr = self.sock.recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # e.g. ICMP port unreachable surfaced on Linux: nothing to read
            try:
                message = self.codec.decode(data, addr)
            except DatagramError as exc:
                self._dropped(exc, addr)
                continue
            self._dispatch(Received(message))

    def _fire_timers(self) -> None:
        now = time.monotonic()
        for name, when in sorted(self.timers.items(), key=lambda kv: kv[1]):
            if when <= now and self.timers.get(name) == when:
                del self.timers[name]
                self._dispatch(TimerFired(name))

    def _dropped(self, error: DatagramError, addr: tuple[str, int]) -> None:
        suppressed = self.drops.drop(error.kind, time.monotonic())
        if suppressed is None:
            return
        detail = error.reason
        if len(detail) > DROP_DETAIL_MAX:
            detail = detail[:DROP_DETAIL_MAX - 3] + "..."
        more = f" ({suppressed} more like it dropped since)" if suppressed else ""
        where = f"{addr[0]}:{addr[1]}"
        self.events.write(PriestEvent(time.monotonic_ns(), self.name, EventKind.DROPPED,
                                      self.events.pid, reason=error.kind.value, detail=detail,
                                      addr=where, suppressed=suppressed))
        self.narrator.say(f"drops a datagram from {where}: {error.kind.value}: {detail}{more}",
                          warn=True)

    # --- effects -------------------------------------------------------

    def _dispatch(self, event: Event) -> None:
        """Feed one event to the core, then any messages it sent to itself."""
        if isinstance(event, Received):
            self._log_received(event.message)
        self._apply(self.priest.handle(event))
        while self.inbox:
            message = self.inbox.popleft()
            self._log_received(message)
            self._apply(self.priest.handle(Received(message)))

    def _apply(self, effects: list[Effect]) -> None:
        """Apply effects in order. Sends are batched, but never past a durable write
        they precede (so Success is not held up by decree.txt), and a durable write
        is never overtaken by a send that follows it."""
        for effect in effects:
            if isinstance(effect, Persist):
                self._flush()
                self.ledger.persist(effect.state)
            elif isinstance(effect, Learn):
                self._flush()
                self.ledger.write_decree(effect.decree)
            elif isinstance(effect, Send):
                self._send(effect.dst, effect.message)
            elif isinstance(effect, SetTimer):
                jitter = uniform(effect.jitter) if effect.jitter else 0.0
                self.timers[effect.name] = time.monotonic() + effect.delay + jitter
            elif isinstance(effect, CancelTimer):
                self.timers.pop(effect.name, None)
            elif isinstance(effect, Record):
                self._record(effect)
        self._flush()

    def _flush(self) -> None:
        """Narration and events first, then the datagrams they narrate."""
        self.events.flush()
        self.narrator.flush()
        for data, addr in self.outbox:
            try:
                self.sock.sendto(data, addr)
            except (BlockingIOError, InterruptedError, ConnectionRefusedError):
                pass  # UDP may lose it; the proposer retransmits
        self.outbox.clear()

    def _record(self, r: Record) -> None:
        self.events.record(r)
        self.narrator.say(r.text, kind=r.kind)

    def _send(self, dst: str, message: Message) -> None:
        self.events.message(EventKind.SENT, message, dst)
        self.narrator.say(f"-> {describe_message(message)} to {dst}", kind=EventKind.SENT)
        if dst == self.name:
            self.inbox.append(message)
            return
        self.outbox.append((self.codec.encode(message), self.config.address_of(dst)))

    def _log_received(self, m: Message) -> None:
        self.events.message(EventKind.RECEIVED, m, m.src)
        self.narrator.say(f"<- {describe_message(m)} from {m.src}", kind=EventKind.RECEIVED)

    def close(self) -> None:
        self._flush()
        self.sock.close()
        self.ledger.close()
        self.events.close()
        self.narrator.close()


def serve(config: Config, name: str, *, out: TextIO | None = None, color: bool | None = None,
          on_ready: Callable[[], None] | None = None, watch_parent: int | None = None,
          proposal: int | None = None, messages: bool = True, bind: int | None = None) -> int:
    """Run priest `name` of `config` until SIGTERM/SIGINT; returns the exit status.

    Raises a UserError (StartupError, LedgerError) before `on_ready` if it cannot start.
    With `messages` False the terminal shows only the steps (priest.log keeps everything).
    """
    stream = out if out is not None else sys.stdout
    runtime = Runtime(config, name, out=stream, color=use_color(stream) if color is None else color,
                      proposal=proposal, watch_parent=watch_parent, messages=messages,
                      bind=bind)
    try:
        return runtime.run(on_ready)
    finally:
        runtime.close()
