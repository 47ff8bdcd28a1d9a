"""The supervisor's handle on the relay process: start it, set its faults, read its counters, stop it.

`RelayProcess` starts `python -m harness.network.relay` in its own session
(the terminal's Ctrl+C and Ctrl+Z are the supervisor's), hands it its spec on
stdin, and waits until it says it is ready (every public address bound). It
picks each priest's private port (free, on the priest's own loopback host);
the launcher passes them to the priests as `bind`. Commands are one JSON line
each way over the relay's stdin and stdout; the relay's stdout reaching EOF
is how the supervisor's loop learns that it died (`fileno()` is waitable).
"""

from __future__ import annotations

import json
import os
import random
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from harness.errors import StartupError
from harness.network.faults import Faults
from harness.record import RelayExited, RelayStarted, now
from node.config import Config

READY_TIMEOUT = 10.0
ANSWER_TIMEOUT = 2.0
STOP_GRACE = 2.0
LOG_MAX = 100_000  # lines of network.jsonl before it is rotated to network.jsonl.1
NETWORK_FILE = "network.jsonl"
PRIVATE_LOW, PRIVATE_HIGH = 20000, 32768  # where priests' private ports are drawn


class RelayDown(Exception):
    """The relay is not running (it died, or has not been started)."""


def private_ports(config: Config, rng: random.Random | None = None) -> dict[str, int]:
    """A free port for each priest on its own loopback host, none of them a configured port.

    Drawn below the kernel's ephemeral range: a port the kernel hands out for `bind(0)` or
    an outgoing socket can be taken by anyone between the relay's start and a priest's
    restart on it much later; one below that range only by a process that asks for it.
    """
    rng = rng or random.Random()
    low, high = PRIVATE_LOW, min(_ephemeral_low(), PRIVATE_HIGH)
    taken = {p.port for p in config.priests.values()}
    held: list[socket.socket] = []
    ports: dict[str, int] = {}
    try:
        for name, p in config.priests.items():
            for _ in range(1000):
                port = rng.randrange(low, high)
                if port in taken:
                    continue
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                try:
                    s.bind((p.host, port))
                except OSError:
                    s.close()
                    continue
                held.append(s)  # held until all are chosen: no two priests get one port
                ports[name] = port
                taken.add(port)
                break
            else:
                raise StartupError(f"no free port for priest {name}'s private address in "
                                   f"{low}-{high - 1} on {p.host}")
    finally:
        for s in held:
            s.close()
    return ports


def _ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (Linux), or 32768."""
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
        return int(text.split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


class RelayProcess:
    """One relay process at a time for `config`, forwarding to the priests' `private` ports."""

    def __init__(self, config: Config, private: dict[str, int], *, log: Path | None,
                 log_max: int = LOG_MAX) -> None:
        self.config, self.private, self.log, self.log_max = config, private, log, log_max
        self.proc: subprocess.Popen[bytes] | None = None
        self.buffer = b""
        self.sent = 0  # the id of the last request

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def spec(self, seed: int, faults: Faults) -> dict[str, Any]:
        return {"priests": {n: {"public": [p.host, p.port], "private": [p.host, self.private[n]]}
                            for n, p in self.config.priests.items()},
                "seed": seed, "log": str(self.log) if self.log is not None else None,
                "log_max": self.log_max, "parent": os.getpid(), "faults": faults.to_wire()}

    def start(self, seed: int, faults: Faults | None = None) -> int:
        """Start the relay and wait until it is ready; its pid. StartupError if it cannot start."""
        faults = faults if faults is not None else Faults()
        self.buffer = b""
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "harness.network.relay"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, start_new_session=True, close_fds=True)
        try:
            self._write(self.spec(seed, faults))
            answer = self._read(READY_TIMEOUT)
        except RelayDown:
            answer = None
        if answer is None or not answer.get("ready"):
            why = (answer or {}).get("error") or self._ended("did not say it was ready")
            self.stop()
            raise StartupError(str(why))
        return self.proc.pid

    def fds(self) -> list[int]:
        """The supervisor's ends of the relay's pipes (a priest forked later must close them)."""
        if self.proc is None or self.proc.stdin is None or self.proc.stdout is None:
            return []
        return [self.proc.stdin.fileno(), self.proc.stdout.fileno()]

    def fileno(self) -> int:
        """Readable when the relay has died (EOF on its stdout)."""
        assert self.proc is not None and self.proc.stdout is not None
        return self.proc.stdout.fileno()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def exited(self) -> int | None:
        """The exit status (-N: signal N) once the relay has died and is reaped; else None.

        Called when `fileno()` is readable: EOF means it died; any stray output is read away.
        """
        if self.proc is None:
            return None
        try:
            chunk = os.read(self.fileno(), 65536)
        except (BlockingIOError, InterruptedError):
            return None
        if chunk:
            self.buffer += chunk
            return None
        status = self.proc.wait(STOP_GRACE)
        self._close_pipes()
        self.proc = None
        return status

    def request(self, req: dict[str, Any]) -> dict[str, Any]:
        """One command and its answer; RelayDown if the relay does not run or answer.

        Each request carries an id that its answer echoes: an answer that comes
        late (a relay stopped and continued) is skipped, never taken for the
        answer to a later request.
        """
        if not self.running():
            raise RelayDown("the relay is not running")
        self.sent += 1
        self._write({**req, "id": self.sent})
        deadline = time.monotonic() + ANSWER_TIMEOUT
        while (answer := self._read(max(0.0, deadline - time.monotonic()))) is not None:
            if answer.get("id") == self.sent:
                return answer
        raise RelayDown("the relay did not answer")

    def set(self, faults: Faults, seed: int | None) -> None:
        self.request({"op": "set", "faults": faults.to_wire(), "seed": seed})

    def stats(self) -> dict[str, Any]:
        return self.request({"op": "stats"})

    def stop(self) -> int | None:
        """SIGTERM, a grace period, SIGKILL; the exit status, or None if none ran."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            try:
                proc.send_signal(signal.SIGTERM)
                proc.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_GRACE)
        self.proc = proc
        self._close_pipes()
        self.proc = None
        return proc.returncode

    # --- the pipes -----------------------------------------------------------------

    def _write(self, message: dict[str, Any]) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        try:
            os.write(self.proc.stdin.fileno(), json.dumps(message).encode() + b"\n")
        except OSError:
            raise RelayDown("the relay is gone") from None

    def _read(self, timeout: float) -> dict[str, Any] | None:
        """The next JSON line from the relay; None at EOF or after `timeout`."""
        deadline = time.monotonic() + timeout
        fd = self.fileno()
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        try:
            answer = json.loads(line)
        except ValueError:
            return None
        return answer if isinstance(answer, dict) else None

    def _ended(self, otherwise: str) -> str:
        assert self.proc is not None
        try:
            status = self.proc.wait(0.5)
        except subprocess.TimeoutExpired:
            return f"the relay {otherwise} within {READY_TIMEOUT:g} s"
        return f"the relay exited with status {status} before it was ready"

    def _close_pipes(self) -> None:
        assert self.proc is not None
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                try:
                    pipe.close()
                except OSError:
                    pass


class RelayNetwork:
    """The relay under a supervisor: started with the cluster, restarted when it dies, stopped last.

    Implements `harness.supervisor.core.Network`. Records `relay_started` (pid,
    seed) and `relay_exited` (pid, status) through `record`; a relay that dies
    is started again after `backoff` seconds (doubling while it keeps dying
    young), with the faults in force. Its random seed at each start is drawn
    from `seeds` and recorded.
    """

    BACKOFF = 0.2
    MAX_BACKOFF = 5.0
    YOUNG = 5.0  # a relay that dies younger than this doubles the back-off

    def __init__(self, process: RelayProcess, *, record: Any, seeds: Any,
                 clock: Any = time.monotonic) -> None:
        self.process, self.record, self.seeds, self.clock = process, record, seeds, clock
        self.faults = Faults()
        self.seed: int | None = None
        self.restarts = 0
        self.started_at = 0.0
        self.backoff = self.BACKOFF
        self.restart_at: float | None = None
        self.last_exit: int | None = None

    def start(self) -> int:
        """Start the relay (StartupError if it cannot bind); its pid."""
        self.seed = int(self.seeds())
        pid = self.process.start(self.seed, self.faults)
        self.started_at = self.clock()
        self.record(RelayStarted(t=now(), pid=pid, seed=self.seed, restarts=self.restarts,
                                 faults=self.faults.to_wire()))
        return pid

    def set(self, faults: Faults, seed: int | None) -> str:
        self.faults = faults
        if seed is not None:
            self.seed = seed
        try:
            self.process.set(faults, seed)
        except RelayDown:
            return "; the relay is down: in force once it is restarted"
        return ""

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"relay": self.process.pid, "seed": self.seed,
                               "restarts": self.restarts, "last_exit": self.last_exit,
                               "totals": None, "links": {}}
        try:
            stats = self.process.stats()
            out.update(state="running", totals=stats["totals"], links=stats["links"])
        except RelayDown:
            out["state"] = "restarting" if self.restart_at is not None else "dead"
        return out

    # --- hooks for the supervisor's loop -------------------------------------------------

    def waitables(self) -> list[int]:
        """The relay's stdout, readable (EOF) when it dies; none while it is down."""
        return [self.process.fileno()] if self.process.proc is not None else []

    def readable(self) -> None:
        """The relay's stdout is readable: if it died, record it and plan its restart."""
        pid = self.process.pid
        status = self.process.exited()
        if status is None:
            return
        self.last_exit = status
        self.record(RelayExited(t=now(), pid=pid, status=status))
        young = self.clock() - self.started_at < self.YOUNG
        self.backoff = min(self.backoff * 2, self.MAX_BACKOFF) if young else self.BACKOFF
        self.restart_at = self.clock() + self.backoff

    def wait_timeout(self) -> float | None:
        """Seconds until a restart is due; None if none is planned."""
        return None if self.restart_at is None else max(0.0, self.restart_at - self.clock())

    def restart_if_due(self) -> str | None:
        """Restart the relay if its time has come; a line to say, or None."""
        if self.restart_at is None or self.clock() < self.restart_at:
            return None
        self.restart_at = None
        self.restarts += 1
        try:
            pid = self.start()
        except StartupError as e:
            self.record(RelayExited(t=now(), pid=None, status=None, error=str(e)))
            self.restart_at = self.clock() + self.MAX_BACKOFF
            return f"the relay did not restart: {e}; trying again in {self.MAX_BACKOFF:g} s"
        return f"the relay died ({_exit_text(self.last_exit)}); restarted it (pid {pid})"

    def stop(self) -> None:
        self.restart_at = None
        pid = self.process.pid
        status = self.process.stop()
        if status is not None:
            self.record(RelayExited(t=now(), pid=pid, status=status))


def _exit_text(status: int | None) -> str:
    if status is None:
        return "unknown status"
    if status < 0:
        try:
            return f"killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"killed by signal {-status}"
    return f"exit status {status}"
