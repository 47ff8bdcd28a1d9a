"""The control channel: a Unix socket owned by the supervisor, JSON lines.

One request per connection: the client sends one JSON object and a newline;
the supervisor acknowledges it with a bare newline as soon as it has read it,
then answers with one JSON object and a newline, and closes. The acknowledgement
tells a supervisor that is busy (a restart waiting for readiness, a `down`
waiting out the grace period) from one that does not run at all (SIGSTOPped,
hung): the client waits `ACK_TIMEOUT` for it, then up to `timeout` for the answer.

    -> {"op": "status"}
    <- {"ok": true, "result": {"cluster": "four", "supervisor": 4242, "priests": [...]}}
    -> {"op": "kill", "priest": "delta"}
    <- {"ok": true, "result": {"action": "kill", "priest": "delta", "pid": 4301,
                               "outcome": "killed (SIGKILL)"}}
    -> {"op": "pause", "priest": "delta"}
    <- {"ok": false, "code": "refused", "error": "cannot pause priest delta: ...", "pid": 4242}

A refusal carries the pid of the priest it names when the supervisor knows it.

    -> {"op": "drop", "arg": 0.3, "seed": 7}
    <- {"ok": true, "result": {"action": "drop", "priest": null, "value": 0.3, "seed": 7,
                               "pid": null, "outcome": "network drop 30%"}}

Operations: status, down, and the actions in `ACTIONS`: a priest's action takes
"priest"; a network action takes "arg" (its value: text, a number, or null for
heal) and may take "seed" (an int that reseeds the relay's random draws).
The socket file is created mode 0600 and the peer's uid is checked, so only
its owner can drive the cluster.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from harness.errors import ControlError, LinkError, NotUpError, from_wire, to_wire
from harness.supervisor.actions import ACTIONS, NETWORK_ACTIONS

OPS = ("status", "down", *ACTIONS)
MAX_LINE = 1 << 16
CLIENT_TIMEOUT = 60.0  # long enough for a stop's grace period or a slow restart
ACK_TIMEOUT = 2.0  # a supervisor that runs reads a request at once; one that does not, never
REQUEST_TIMEOUT = 2.0  # a client that has not sent its whole request by then is dropped
ACK = b"\n"


def listen(path: Path) -> socket.socket:
    """Bind a non-blocking listening socket at `path`, readable by its owner only.

    A socket left there by a supervisor that died is replaced; anything else
    (a link, a file) is refused, not removed.
    """
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        mode = None
    if mode is not None and stat.S_ISLNK(mode):
        raise LinkError(f"{path}: a symbolic link, where the supervisor binds its control "
                        f"socket; it does not bind through links: remove it")
    if mode is not None and not stat.S_ISSOCK(mode):
        raise LinkError(f"{path}: not a socket, where the supervisor binds its control "
                        f"socket; move it away")
    path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)  # the file is born 0600: no window where others may connect
    try:
        sock.bind(os.fspath(path))
    finally:
        os.umask(old)
    sock.listen(64)
    sock.setblocking(False)
    return sock


def peer_is_owner(conn: socket.socket) -> bool:
    """True if the connected peer runs as our uid (SO_PEERCRED)."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return bool(uid == os.getuid())


def read_line(conn: socket.socket, timeout: float, data: bytes = b"") -> bytes:
    """Read up to the first newline; ControlError on timeout, EOF first or an oversize line."""
    conn.settimeout(timeout)
    try:
        while b"\n" not in data:
            chunk = conn.recv(4096)
            if not chunk:
                raise ControlError("connection closed before a full line arrived")
            data += chunk
            if len(data) > MAX_LINE:
                raise ControlError("line too long")
    except TimeoutError:
        raise ControlError(f"no complete line within {timeout:g} s") from None
    return data.split(b"\n", 1)[0]


def decode_request(line: bytes) -> dict[str, Any]:
    """A request object; ControlError if it is not one."""
    try:
        req = json.loads(line)
    except ValueError as e:
        raise ControlError(f"request is not JSON: {e}") from None
    if not isinstance(req, dict) or req.get("op") not in OPS:
        raise ControlError(f"unknown request {req!r}; operations: {', '.join(OPS)}")
    if req["op"] in NETWORK_ACTIONS:
        seed = req.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ControlError(f"{req['op']}: seed must be an integer, got {seed!r}")
        if not isinstance(req.get("arg"), str | int | float | type(None)):
            raise ControlError(f"{req['op']}: arg must be text, a number or null")
    elif req["op"] in ACTIONS and not isinstance(req.get("priest"), str):
        raise ControlError(f"{req['op']} needs a priest name")
    return req


def encode(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def request(path: str | Path, op: str, priest: str | None = None, *,
            timeout: float = CLIENT_TIMEOUT, ack_timeout: float | None = None,
            arg: object = None, seed: int | None = None,
            owner: int | None = None) -> dict[str, Any]:
    """Send one request to the supervisor at `path` and return its result.

    The supervisor must take the request within `ack_timeout` seconds (connect,
    send, acknowledgement; default ACK_TIMEOUT). An action may queue behind
    another client's restart, so when the supervisor's pid `owner` is given,
    the client waits on past ACK_TIMEOUT, up to `timeout`, as long as that
    process is not stopped (SIGSTOP) or gone; a frozen one is said at once.
    Then the supervisor may take up to `timeout` to answer. Raises NotUpError
    if nobody listens, RefusedError/UnknownPriestError when the supervisor
    refuses, ControlError when the exchange fails or times out.
    """
    msg: dict[str, Any] = {"op": op}
    if priest is not None:
        msg["priest"] = priest
    if op in NETWORK_ACTIONS:
        msg["arg"], msg["seed"] = arg, seed
    elif arg is not None:  # a priest action's own argument (garbage's count)
        msg["arg"] = arg
    if ack_timeout is None:
        ack_timeout = ACK_TIMEOUT
    patience = timeout if owner is not None else ack_timeout
    deadline = time.monotonic() + patience
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(ack_timeout)
        try:
            sock.connect(os.fspath(path))
        except (FileNotFoundError, ConnectionRefusedError):
            raise NotUpError(f"no supervisor listens on {path}") from None
        except TimeoutError:
            raise ControlError(_not_taken(path, ack_timeout, owner)) from None
        except OSError as e:
            raise ControlError(f"{path}: cannot connect: {e}") from None
        try:
            sock.sendall(encode(msg))
            first = _acknowledgement(sock, deadline, owner)
        except TimeoutError:
            raise ControlError(_not_taken(path, ack_timeout, owner)) from None
        except OSError as e:
            raise ControlError(f"{path}: cannot send request: {e}") from None
        if not first:
            raise ControlError(f"{path}: the supervisor closed the connection without an answer")
        reply = _decode_reply(read_line(sock, timeout, first.removeprefix(ACK)), path)
    if reply.get("ok"):
        return dict(reply.get("result") or {})
    raise from_wire(reply)


def _acknowledgement(sock: socket.socket, deadline: float, owner: int | None) -> bytes:
    """The first bytes of the answer; TimeoutError once the supervisor cannot be waited for."""
    while True:
        try:
            return sock.recv(4096)
        except TimeoutError:
            if owner is None or time.monotonic() >= deadline or not _working(owner):
                raise


def _working(pid: int) -> bool:
    """True if `pid` runs or sleeps: busy, say with another client's restart, not frozen."""
    try:
        return psutil.Process(pid).status() not in FROZEN
    except psutil.Error:
        return False


FROZEN = (psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP, psutil.STATUS_ZOMBIE,
          psutil.STATUS_DEAD)


def _not_taken(path: str | Path, ack_timeout: float, owner: int | None) -> str:
    """Why a request was not taken, and what to do about it."""
    if owner is None:
        return f"{path}: the supervisor did not take the request within {ack_timeout:g} s"
    status: str
    try:
        status = psutil.Process(owner).status()
    except psutil.Error:
        status = "gone"
    if status in (psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP):
        return (f"the supervisor (pid {owner}) is stopped (SIGSTOP?) and did not take the "
                f"request within {ack_timeout:g} s; nothing was done: resume it with "
                f"`kill -CONT {owner}`, or stop the cluster with `paxos-harness down`")
    return (f"the supervisor (pid {owner}, {status}) did not take the request; nothing was "
            f"done: stop the cluster with `paxos-harness down`")


def _decode_reply(line: bytes, path: str | Path) -> dict[str, Any]:
    try:
        reply = json.loads(line)
    except ValueError:
        raise ControlError(f"{path}: the supervisor's answer is not JSON") from None
    if not isinstance(reply, dict):
        raise ControlError(f"{path}: the supervisor's answer is not an object")
    return reply


@dataclass
class _Client:
    """A connection whose request has not fully arrived yet."""

    deadline: float
    data: bytes = field(default=b"")


class ControlServer:
    """The supervisor's end: accepts clients and reads their requests without ever blocking.

    The event loop waits on `waitables()`, then calls `poll()`: a client that
    is slow to send its line costs the loop nothing, and one that sends none
    within `request_timeout` is dropped.
    """

    def __init__(self, path: Path, *, request_timeout: float = REQUEST_TIMEOUT) -> None:
        self.path = path
        self.sock = listen(path)
        self.request_timeout = request_timeout
        self.clients: dict[socket.socket, _Client] = {}

    def fileno(self) -> int:
        return self.sock.fileno()

    def waitables(self) -> list[socket.socket]:
        """The listening socket and every client still sending its request."""
        return [self.sock, *self.clients]

    def wait_timeout(self) -> float | None:
        """Seconds until the next client's deadline; None when no client is waiting."""
        if not self.clients:
            return None
        return max(0.0, min(c.deadline for c in self.clients.values()) - time.monotonic())

    def poll(self) -> list[tuple[socket.socket, dict[str, Any]]]:
        """Accept new clients, read what has arrived; the complete requests, acknowledged."""
        self._accept_all()
        done: list[tuple[socket.socket, dict[str, Any]]] = []
        now = time.monotonic()
        for conn, client in list(self.clients.items()):
            try:
                line = self._read_some(conn, client)
                if line is None:
                    if now >= client.deadline:
                        raise ControlError(f"no complete request within "
                                           f"{self.request_timeout:g} s")
                    continue
                del self.clients[conn]
                req = decode_request(line)
                conn.send(ACK)  # one byte into an empty socket buffer: never blocks
                done.append((conn, req))
            except (ControlError, OSError) as e:
                self.clients.pop(conn, None)
                self.reply(conn, to_wire(ControlError(str(e))))
        return done

    def _accept_all(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            conn.setblocking(False)
            if not peer_is_owner(conn):
                self.reply(conn, to_wire(ControlError("permission denied: not the owner of "
                                                      "this cluster")))
                continue
            self.clients[conn] = _Client(time.monotonic() + self.request_timeout)

    @staticmethod
    def _read_some(conn: socket.socket, client: _Client) -> bytes | None:
        """The request line once it is whole; None while more is to come."""
        while b"\n" not in client.data:
            try:
                chunk = conn.recv(4096)
            except (BlockingIOError, InterruptedError):
                return None
            if not chunk:
                raise ControlError("connection closed before a full line arrived")
            client.data += chunk
            if len(client.data) > MAX_LINE:
                raise ControlError("line too long")
        return client.data.split(b"\n", 1)[0]

    @staticmethod
    def reply(conn: socket.socket, answer: dict[str, Any]) -> None:
        """Send the answer and close; a client that went away is not our problem."""
        try:
            conn.settimeout(2.0)
            conn.sendall(encode(answer))
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        for conn in self.clients:
            conn.close()
        self.clients.clear()
        self.sock.close()
        self.path.unlink(missing_ok=True)
