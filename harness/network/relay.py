"""The relay: the process that stands between priests and applies network faults to real datagrams.

`python -m harness.network.relay`, started by the supervisor (see
`harness.network.process`), reads its spec as the first JSON line on stdin:

    {"priests": {"alpha": {"public": ["127.0.0.1", 7101], "private": ["127.0.0.1", 40811]}, ...},
     "seed": 12345, "log": "/path/network.jsonl", "log_max": 100000, "parent": 4242,
     "faults": {...}}

It binds every priest's public (configured) address. A datagram that arrives
on B's public socket from A's private address is sent on to B's private
address from A's public socket, so B sees it come from A's configured
address; anything from another address is dropped and counted. Each
datagram's fate (`harness.network.faults.Faults.fate`) comes from one
`random.Random` seeded by the spec's or the latest command's seed.

Then each stdin line is a command, answered by one JSON line on stdout:
`{"op": "set", "faults": {...}, "seed": S|null}` and `{"op": "stats"}`.
It prints `{"ready": true}` once bound (or `{"error": "..."}` and exits 1),
and ends on SIGTERM, at EOF on stdin, or when its parent (the supervisor) dies.

`network.jsonl` gets one line per datagram (see docs/formats.md), with a
printable preview of its first HEAD_BYTES bytes (`preview`); at `log_max`
lines it is renamed `network.jsonl.1` (one older file kept) and begun anew.
"""

from __future__ import annotations

import heapq
import json
import os
import random
import selectors
import signal
import socket
import sys
import time
from collections.abc import Callable
from json.encoder import encode_basestring_ascii
from typing import Any

from harness.network.faults import FOREIGN, Faults, message_type
from node.proc import drain, set_parent_death_signal

SPEC_TIMEOUT = 10.0
PARENT_CHECK = 0.25  # seconds between checks that the supervisor still lives
BATCH = 256  # datagrams read from one socket per turn, so no socket starves the others
RCVBUF = 1 << 20
COUNTERS = ("received", "forwarded", "dropped", "duplicated", "delayed")
OUTSIDE = "outside"  # the sender of a datagram from an address that is no priest's
HEAD_BYTES = 48  # of each datagram, previewed in its network.jsonl line (`preview`)


def preview(data: bytes) -> str:
    """The first HEAD_BYTES bytes as a JSON string literal, one character per byte (latin-1):
    printable ASCII reads as itself, other bytes as JSON escapes (\\r, \\n, \\u00e9)."""
    return encode_basestring_ascii(data[:HEAD_BYTES].decode("latin-1"))


Address = tuple[str, int]


class Relay:
    """Public sockets, the private addresses behind them, the faults, the counters."""

    def __init__(self, spec: dict[str, Any], *, clock: Callable[[], int] = time.monotonic_ns) -> None:
        self.clock = clock
        self.names = list(spec["priests"])
        self.private: dict[str, Address] = {}
        self.by_private: dict[Address, str] = {}
        self.public: dict[str, socket.socket] = {}
        for name, addrs in spec["priests"].items():
            priv = (str(addrs["private"][0]), int(addrs["private"][1]))
            self.private[name] = priv
            self.by_private[priv] = name
        self.faults = Faults.from_wire(spec.get("faults") or {})
        self.seed = int(spec.get("seed", 0))
        self.rng = random.Random(self.seed)
        self.totals = dict.fromkeys(COUNTERS, 0)
        self.links: dict[str, dict[str, int]] = {}
        self.held: list[tuple[int, int, socket.socket, bytes, Address]] = []  # delayed copies
        self.seq = 0
        self.log = Log(spec.get("log"), int(spec.get("log_max", 100_000)))
        self._bind_all(spec)

    def _bind_all(self, spec: dict[str, Any]) -> None:
        for name, addrs in spec["priests"].items():
            host, port = str(addrs["public"][0]), int(addrs["public"][1])
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
                sock.bind((host, port))
            except OSError as e:
                sock.close()
                self.close()
                raise RelayError(f"the relay cannot bind priest {name}'s address {host}:{port}: "
                                 f"{e.strerror}") from None
            sock.setblocking(False)
            self.public[name] = sock

    # --- datagrams --------------------------------------------------------------

    def receive(self, dst: str, sock: socket.socket) -> None:
        """Read what waits on `dst`'s public socket and decide each datagram's fate."""
        for _ in range(BATCH):
            try:
                data, addr = sock.recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            self.route(data, addr, dst)

    def route(self, data: bytes, addr: Address, dst: str) -> None:
        now = self.clock()
        self.seq += 1
        src = self.by_private.get(addr)
        if src is None:
            self._count(f"{OUTSIDE}->{dst}", "received", "dropped")
            self.log.write(f'{{"t":{now},"kind":"datagram","n":{self.seq},"src":null,'
                           f'"dst":"{dst}","bytes":{len(data)},"fate":"dropped",'
                           f'"reason":"{FOREIGN}","from":"{addr[0]}:{addr[1]}",'
                           f'"head":{preview(data)}}}\n')
            return
        link = f"{src}->{dst}"
        # The envelope is read only when a fault needs the message type (drop-success).
        kind = message_type(data) if self.faults.drop_success else None
        reason, delays = self.faults.fate(src, dst, self.rng, kind)
        if reason is not None:
            self._count(link, "received", "dropped")
            self.log.write(f'{{"t":{now},"kind":"datagram","n":{self.seq},"src":"{src}",'
                           f'"dst":"{dst}","bytes":{len(data)},"fate":"dropped",'
                           f'"reason":"{reason}","head":{preview(data)}}}\n')
            return
        out = self.public[src]
        target = self.private[dst]
        times = []
        for delay in delays:
            if delay <= 0:
                self._send(out, data, target)
                times.append(now)
            else:
                due = now + int(delay * 1e9)
                heapq.heappush(self.held, (due, self.seq, out, data, target))
                times.append(due)
        counters = ["received", "forwarded"]
        if len(delays) > 1:
            counters.append("duplicated")
        if any(d > 0 for d in delays):
            counters.append("delayed")
        self._count(link, *counters)
        fate = "duplicated" if len(delays) > 1 else "forwarded"
        self.log.write(f'{{"t":{now},"kind":"datagram","n":{self.seq},"src":"{src}",'
                       f'"dst":"{dst}","bytes":{len(data)},"fate":"{fate}",'
                       f'"at":[{",".join(map(str, times))}],"head":{preview(data)}}}\n')

    def _count(self, link: str, *counters: str) -> None:
        row = self.links.get(link)
        if row is None:
            row = self.links[link] = dict.fromkeys(COUNTERS, 0)
        for c in counters:
            row[c] += 1
            self.totals[c] += 1

    @staticmethod
    def _send(sock: socket.socket, data: bytes, addr: Address) -> None:
        try:
            sock.sendto(data, addr)
        except OSError:
            pass  # UDP may lose it: the priest's buffer is full, or it is down

    def release(self) -> float | None:
        """Send the delayed copies that are due; seconds until the next one, or None."""
        now = self.clock()
        while self.held and self.held[0][0] <= now:
            _due, _n, sock, data, addr = heapq.heappop(self.held)
            self._send(sock, data, addr)
        return (self.held[0][0] - now) / 1e9 if self.held else None

    # --- commands ----------------------------------------------------------------

    def command(self, req: dict[str, Any]) -> dict[str, Any]:
        if req.get("op") == "set":
            self.faults = Faults.from_wire(req.get("faults") or {})
            if req.get("seed") is not None:
                self.seed = int(req["seed"])
                self.rng = random.Random(self.seed)
            self.log.write(json.dumps({"t": self.clock(), "kind": "faults",
                                       "faults": self.faults.to_wire(),
                                       "seed": req.get("seed")}) + "\n")
            return {"ok": True}
        if req.get("op") == "stats":
            return {"ok": True, "totals": self.totals, "links": self.links, "held": len(self.held)}
        return {"ok": False, "error": f"unknown command {req.get('op')!r}"}

    def close(self) -> None:
        for sock in self.public.values():
            sock.close()
        self.public.clear()
        self.log.close()


class RelayError(Exception):
    """The relay cannot start (a public address is taken)."""


class Log:
    """network.jsonl: lines buffered and written once per loop turn; rotated at `limit` lines."""

    def __init__(self, path: str | None, limit: int) -> None:
        self.path, self.limit = path, max(limit, 1)
        self.lines: list[str] = []
        self.count = 0
        self.fd = os.open(path, LOG_FLAGS, 0o644) if path else None
        if path is not None:
            self.count = _count_lines(path)

    def write(self, line: str) -> None:
        if self.fd is not None:
            self.lines.append(line)

    def flush(self) -> None:
        if not self.lines or self.fd is None or self.path is None:
            self.lines.clear()
            return
        while self.lines:
            room = self.limit - self.count
            if room <= 0:
                os.close(self.fd)
                os.replace(self.path, self.path + ".1")
                self.fd = os.open(self.path, LOG_FLAGS, 0o644)
                self.count, room = 0, self.limit
            chunk, self.lines = self.lines[:room], self.lines[room:]
            os.write(self.fd, "".join(chunk).encode())
            self.count += len(chunk)

    def close(self) -> None:
        if self.fd is not None:
            self.flush()
            os.close(self.fd)
            self.fd = None


# Never through a planted link (ELOOP: the relay stops, the supervisor says so).
LOG_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC


def _count_lines(path: str) -> int:
    try:
        with open(path, "rb") as f:
            return sum(1 for _ in f)
    except OSError:
        return 0


# --- the process ----------------------------------------------------------------------


class Commands:
    """JSON lines from the supervisor on a non-blocking fd."""

    def __init__(self, fd: int) -> None:
        self.fd, self.data, self.eof = fd, b"", False
        self.pending: list[dict[str, Any]] = []  # read along with the spec
        os.set_blocking(fd, False)

    def read(self) -> list[dict[str, Any]]:
        if self.pending:
            got, self.pending = self.pending, []
            return got
        try:
            chunk = os.read(self.fd, 65536)
        except (BlockingIOError, InterruptedError):
            chunk = None
        if chunk == b"":
            self.eof = True
        elif chunk:
            self.data += chunk
        lines = self.data.split(b"\n")
        self.data = lines.pop()
        return [_parse(line) for line in lines if line.strip()]


def _parse(line: bytes) -> dict[str, Any]:
    try:
        req = json.loads(line)
    except ValueError:
        return {"op": None}
    return req if isinstance(req, dict) else {"op": None}


def serve(relay: Relay, commands: Commands, parent: int, answer: Callable[[dict[str, Any]], None]
          ) -> int:
    """The relay's loop, until SIGTERM, EOF on the commands, or the parent's death."""
    stop: list[int] = []
    rsock, wsock = socket.socketpair()
    rsock.setblocking(False)
    wsock.setblocking(False)
    signal.set_wakeup_fd(wsock.fileno(), warn_on_full_buffer=False)
    signal.signal(signal.SIGTERM, lambda s, _f: stop.append(s))
    sel = selectors.DefaultSelector()
    for name, sock in relay.public.items():
        sel.register(sock, selectors.EVENT_READ, name)
    sel.register(commands.fd, selectors.EVENT_READ, None)
    sel.register(rsock, selectors.EVENT_READ, "")
    next_check = time.monotonic() + PARENT_CHECK
    try:
        while not stop and not commands.eof:
            wait = relay.release()
            left = next_check - time.monotonic()
            timeout = max(0.0, min(left, wait) if wait is not None else left)
            for key, _ in sel.select(timeout):
                if key.data is None:
                    for req in commands.read():
                        # The request's id comes back with the answer, so the supervisor
                        # never takes a late answer for the one it waits for.
                        answer({**relay.command(req), "id": req.get("id")})
                elif key.data == "":
                    drain(rsock)
                else:
                    relay.receive(key.data, key.fileobj)  # type: ignore[arg-type]
            relay.log.flush()
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + PARENT_CHECK
                if os.getppid() != parent:
                    break
    finally:
        sel.close()
        relay.close()
        signal.set_wakeup_fd(-1)
        rsock.close()
        wsock.close()
    return 0


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the terminal's Ctrl+C is the supervisor's
    signal.signal(signal.SIGTSTP, signal.SIG_IGN)
    out = sys.stdout

    def answer(message: dict[str, Any]) -> None:
        try:
            out.write(json.dumps(message) + "\n")
            out.flush()
        except (BrokenPipeError, OSError):
            pass

    commands = Commands(sys.stdin.fileno())
    spec = _first(commands, SPEC_TIMEOUT)
    if spec is None:
        answer({"error": "the relay got no spec on stdin"})
        return 2
    parent = int(spec.get("parent", os.getppid()))
    set_parent_death_signal()
    if os.getppid() != parent:
        return 1
    try:
        relay = Relay(spec)
    except RelayError as e:
        answer({"error": str(e)})
        return 1
    relay.log.write(json.dumps({"t": relay.clock(), "kind": "relay_started", "pid": os.getpid(),
                                "seed": relay.seed, "faults": relay.faults.to_wire()}) + "\n")
    relay.log.flush()
    answer({"ready": True, "pid": os.getpid()})
    return serve(relay, commands, parent, answer)


def _first(commands: Commands, timeout: float) -> dict[str, Any] | None:
    """The first line on stdin (the spec), or None at EOF, on bad JSON or after `timeout`."""
    deadline = time.monotonic() + timeout
    sel = selectors.DefaultSelector()
    sel.register(commands.fd, selectors.EVENT_READ)
    try:
        while not commands.eof and time.monotonic() < deadline:
            sel.select(deadline - time.monotonic())
            got = commands.read()
            if got:
                if "priests" not in got[0]:
                    return None
                commands.pending = got[1:]
                return got[0]
    finally:
        sel.close()
    return None


if __name__ == "__main__":
    sys.exit(main())
