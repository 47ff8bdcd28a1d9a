"""The control channel: a Unix socket owned by the supervisor, JSON lines.

One request per connection: the client sends one JSON object and a newline,
the supervisor answers with one JSON object and a newline, then closes.

    -> {"op": "status"}
    <- {"ok": true, "result": {"cluster": "four", "supervisor": 4242, "priests": [...]}}
    -> {"op": "kill", "priest": "delta"}
    <- {"ok": true, "result": {"action": "kill", "priest": "delta", "pid": 4301,
                               "outcome": "killed (SIGKILL)"}}
    -> {"op": "pause", "priest": "delta"}
    <- {"ok": false, "error": "priest delta is killed: ...", "exit_status": 1}

Operations: status, down, and the actions in `ACTIONS` (each takes "priest").
The socket file is created mode 0600 and the peer's uid is checked, so only
its owner can drive the cluster.
"""

from __future__ import annotations

import json
import os
import socket
import struct
from pathlib import Path
from typing import Any

from harness.errors import ControlError, NotUpError, RefusedError, UnknownPriestError

ACTIONS = ("ballot", "kill", "stop", "pause", "resume", "restart")
OPS = ("status", "down") + ACTIONS
MAX_LINE = 1 << 16
CLIENT_TIMEOUT = 60.0  # long enough for a stop's grace period or a slow restart


def listen(path: Path) -> socket.socket:
    """Bind a non-blocking listening socket at `path`, readable by its owner only."""
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


def read_line(conn: socket.socket, timeout: float) -> bytes:
    """Read up to the first newline; ControlError on timeout, EOF first or an oversize line."""
    conn.settimeout(timeout)
    data = b""
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
    if req["op"] in ACTIONS and not isinstance(req.get("priest"), str):
        raise ControlError(f"{req['op']} needs a priest name")
    return req


def encode(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def request(path: str | Path, op: str, priest: str | None = None, *,
            timeout: float = CLIENT_TIMEOUT) -> dict[str, Any]:
    """Send one request to the supervisor at `path` and return its result.

    Raises NotUpError if nobody listens, RefusedError/UnknownPriestError when
    the supervisor refuses, ControlError when the exchange fails.
    """
    msg: dict[str, Any] = {"op": op}
    if priest is not None:
        msg["priest"] = priest
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(os.fspath(path))
        except (FileNotFoundError, ConnectionRefusedError):
            raise NotUpError(f"no supervisor listens on {path}") from None
        try:
            sock.sendall(encode(msg))
        except OSError as e:
            raise ControlError(f"{path}: cannot send request: {e}") from None
        reply = _decode_reply(read_line(sock, timeout), path)
    if reply.get("ok"):
        return dict(reply.get("result") or {})
    error = str(reply.get("error", "refused"))
    status = reply.get("exit_status", 1)
    raise (UnknownPriestError if status == 2 else RefusedError)(error)


def _decode_reply(line: bytes, path: str | Path) -> dict[str, Any]:
    try:
        reply = json.loads(line)
    except ValueError:
        raise ControlError(f"{path}: the supervisor's answer is not JSON") from None
    if not isinstance(reply, dict):
        raise ControlError(f"{path}: the supervisor's answer is not an object")
    return reply


class ControlServer:
    """The supervisor's end: accepts a connection and reads its one request."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = listen(path)

    def fileno(self) -> int:
        return self.sock.fileno()

    def accept(self, timeout: float = 2.0) -> tuple[socket.socket, dict[str, Any]] | None:
        """The next client and its request; None (client answered and closed) if it is bad."""
        try:
            conn, _ = self.sock.accept()
        except (BlockingIOError, InterruptedError):
            return None
        try:
            if not peer_is_owner(conn):
                raise ControlError("permission denied: not the owner of this cluster")
            return conn, decode_request(read_line(conn, timeout))
        except (ControlError, OSError) as e:
            self.reply(conn, {"ok": False, "error": str(e), "exit_status": 2})
            return None

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
        self.sock.close()
        self.path.unlink(missing_ok=True)
