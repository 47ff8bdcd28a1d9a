"""`chaos --garbage`: malformed input sent where a priest listens, and whether it survived.

Any priest, the harness's own or a foreign one, must survive what arrives on
its socket: random bytes, a message cut short, a header that is not a number,
a field missing, a sender nobody knows. `inputs` draws such inputs (in the
shape of the paper's messages written as text lines, as the original program
and `examples/naive-priest/` speak, and as JSON, as this package's codec
speaks); `send_garbage` sends them one by one (a datagram each over UDP, a
connection each over TCP) to the priest's own socket (behind the relay: its
private port, so the relay does not drop them as coming from outside), and
after each one watches the process a moment: the first input after which it
is found dead is the one cited. Only loopback addresses are ever targets.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import psutil

from harness.record import Garbage
from harness.supervisor.state import Identity

WATCH = 0.05  # seconds a priest is watched after each input
LAST_WATCH = 0.5  # ... and after the last one (a traceback or a core dump takes a while)
BUDGET = 10.0  # seconds one --garbage may keep the supervisor
TCP_TIMEOUT = 0.5
SHOWN = 80  # characters of an input kept in the record

METHODS = ("NextBallot", "LastVote", "BeginBallot", "Voted", "Success")
HEADERS = ("from", "ballot", "decree", "name", "vote-ballot", "vote-decree", "id")


@dataclass(frozen=True)
class Input:
    kind: str  # what sort of garbage
    data: bytes


def inputs(count: int, names: Sequence[str], rng: random.Random) -> list[Input]:
    """`count` malformed inputs, cycling through the sorts so that a few cover them all."""
    makers: list[Callable[[random.Random, Sequence[str]], Input]] = [
        _missing_field, _not_a_number, _cut_short, _random_bytes, _unknown_sender, _json,
        _empty, _no_blank_line, _huge_number, _long_line]
    return [makers[i % len(makers)](rng, names) for i in range(count)]


def _message(method: str, headers: Sequence[tuple[str, str]], end: bool = True) -> bytes:
    lines = [method, *(f"{k}: {v}" for k, v in headers)]
    return ("\r\n".join(lines) + ("\r\n\r\n" if end else "")).encode()


def _missing_field(rng: random.Random, names: Sequence[str]) -> Input:
    method = rng.choice(METHODS)
    return Input("missing field", _message(method, [("from", rng.choice(names))]))


def _not_a_number(rng: random.Random, names: Sequence[str]) -> Input:
    method = rng.choice(METHODS)
    junk = rng.choice(["x7", "", "1.5", "-", "0x1f", "NaN", "9" * 30 + "z"])
    return Input("not a number", _message(method, [("from", rng.choice(names)), ("ballot", junk),
                                                   ("decree", junk)]))


def _cut_short(rng: random.Random, names: Sequence[str]) -> Input:
    whole = _message(rng.choice(METHODS), [("from", rng.choice(names)), ("ballot", "3"),
                                           ("decree", "7")])
    return Input("cut short", whole[: rng.randrange(1, len(whole) - 1)])


def _random_bytes(rng: random.Random, _names: Sequence[str]) -> Input:
    return Input("random bytes", rng.randbytes(rng.randrange(1, 200)))


def _unknown_sender(rng: random.Random, _names: Sequence[str]) -> Input:
    return Input("unknown sender", _message(rng.choice(METHODS), [
        ("from", "nobody-" + str(rng.randrange(1000))), ("ballot", "1"), ("decree", "1")]))


def _json(rng: random.Random, names: Sequence[str]) -> Input:
    text = rng.choice([
        '{"type": "Success"',
        '{"type": "NextBallot", "ballot": "x"}',
        '{"type": "Voted", "from": "' + rng.choice(names) + '", "ballot": null}',
        "[1, 2, 3]",
        '{"v": 1, "mac": "00", "body": {}}',
    ])
    return Input("bad JSON", text.encode())


def _empty(_rng: random.Random, _names: Sequence[str]) -> Input:
    return Input("empty", b"")


def _no_blank_line(rng: random.Random, names: Sequence[str]) -> Input:
    return Input("no blank line", _message("Success", [("from", rng.choice(names)),
                                                       ("decree", "1")], end=False))


def _huge_number(rng: random.Random, names: Sequence[str]) -> Input:
    return Input("huge number", _message(rng.choice(METHODS), [
        ("from", rng.choice(names)), ("ballot", "9" * 40), ("decree", "-" + "9" * 40)]))


def _long_line(rng: random.Random, _names: Sequence[str]) -> Input:
    return Input("long line", rng.choice(METHODS).encode() + b"A" * 60000)


def _nothing() -> None:
    return None


def escaped(data: bytes) -> str:
    """The bytes as an escaped string, at most SHOWN characters (then '...')."""
    text = repr(data)[2:-1]
    return text if len(text) <= SHOWN else text[: SHOWN - 3] + "..."


def _dead(pid: int, create_time: float | None) -> bool:
    """True once priest `pid` (started at `create_time`, if known) has ended.

    A foreign priest is our child, left unreaped here (WNOWAIT). One of our own is
    the fork server's child, which reaps it at once: its pid may then be another
    process's, which its start time tells apart.
    """
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        pass
    if create_time is not None:
        return not Identity(pid, create_time).alive()  # ended, or its pid is another's now
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def _watch(pid: int, create_time: float | None, seconds: float) -> bool:
    """Watch `pid` for `seconds`; True if it ended meanwhile."""
    deadline = time.monotonic() + seconds
    while True:
        if _dead(pid, create_time):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.002)


def send_garbage(name: str, pid: int, address: tuple[str, int], transport: str, count: int,
                 names: Sequence[str], *, seed: int, watch: float = WATCH,
                 last_watch: float = LAST_WATCH, budget: float = BUDGET,
                 between: Callable[[], None] = _nothing,
                 create_time: float | None = None) -> Garbage:
    """Send up to `count` inputs drawn from `seed` to `address`, watching `pid` after each
    (and longer after the last); the record of it all.

    Stops early when the priest is found dead, or when `budget` seconds have gone (the
    supervisor has other work: `between` does what it cannot leave undone meanwhile, such
    as reading the priests' output and their decree.txt).
    """
    host, port = address
    if not ipaddress.IPv4Address(host).is_loopback:  # the config allows nothing else; checked anyway
        raise ValueError(f"{host} is not a loopback address")
    rng = random.Random(seed)
    sent: list[dict[str, object]] = []
    died_after: int | None = None
    began = time.monotonic_ns()
    if _dead(pid, create_time):  # ended before anything was sent: not of this input
        return Garbage(t=began, priest=name, transport=transport, port=port, inputs=sent,
                       seed=seed, note="it had already ended: nothing was sent")
    deadline = time.monotonic() + budget
    note = None
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM) if transport == "udp" else None
    try:
        items = inputs(count, names, rng)
        for i, item in enumerate(items):
            t = time.monotonic_ns()
            failed = _send_one(udp, item.data, address)
            sent.append({"t": t, "kind": item.kind + failed, "data": escaped(item.data)})
            last = i == len(items) - 1
            if _watch(pid, create_time, last_watch if last else watch):
                died_after = i
                break
            between()
            if not last and time.monotonic() >= deadline:
                note = (f"stopped after {i + 1} of {count}: {budget:g} s is the most the "
                        "supervisor gives one --garbage")
                break
    finally:
        if udp is not None:
            udp.close()
    return Garbage(t=began, priest=name, transport=transport, port=port, inputs=sent,
                   died_after=died_after, seed=seed, note=note)


def _send_one(udp: socket.socket | None, data: bytes, address: tuple[str, int]) -> str:
    """Send one input; '' or a note on what did not go through (said, never raised)."""
    if udp is not None:
        try:
            udp.sendto(data, address)
        except OSError as e:
            return f" (not sent: {e.strerror or e})"
        return ""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(TCP_TIMEOUT)
        try:
            s.connect(address)
            s.sendall(data)
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_WR)
        except OSError as e:
            return f" (not sent: {e.strerror or e})"
    return ""


def outcome(record: Garbage) -> str:
    """The action's outcome in words."""
    sent = len(record.inputs)
    what = ("datagram" if record.transport == "udp" else "connection") + ("s" if sent != 1 else "")
    head = f"sent {sent} malformed {what} to port {record.port} (seed {record.seed})"
    if record.died_after is None:
        tail = "it is still running" if sent else ""
        return "; ".join(x for x in (head, record.note, tail) if x)
    last = record.inputs[record.died_after]
    return (f"{head}; it died after input {record.died_after + 1} "
            f"({last['kind']}: {last['data']})")
