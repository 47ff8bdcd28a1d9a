"""Start and stop real `python -m node` priests for integration tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from node.config import Config

REPO = Path(__file__).resolve().parents[2]


class Priests:
    """Real priest processes of one config, tracked by pid; `stop_all` leaves none."""

    def __init__(self, config: Config, workdir: Path) -> None:
        self.config, self.workdir = config, workdir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.every: list[subprocess.Popen[bytes]] = []  # all ever started, for teardown

    def start(self, name: str, *extra: str, timeout: float = 10.0) -> subprocess.Popen[bytes]:
        out = self.workdir / f"{name}.out"
        offset = out.stat().st_size if out.exists() else 0
        env = {**os.environ, "PYTHONPATH": str(REPO), "NO_COLOR": "1"}
        with open(out, "ab") as sink:
            proc = subprocess.Popen([sys.executable, "-m", "node", self.config.path, name, *extra],
                                    stdout=sink, stderr=subprocess.STDOUT, env=env)
        self.every.append(proc)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if b"ready on" in out.read_bytes()[offset:]:
                self.procs[name] = proc
                return proc
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited {proc.returncode}: {out.read_text()[offset:]}")
            time.sleep(0.01)
        raise AssertionError(f"{name} not ready after {timeout}s")

    def signal(self, name: str, sig: int) -> None:
        os.kill(self.procs[name].pid, sig)

    def ballot(self, name: str) -> None:
        self.signal(name, signal.SIGTSTP)

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.kill()
        proc.wait(5)

    def stop_all(self) -> None:
        for proc in self.every:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.every:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        left = [p.pid for p in self.every if p.returncode is None]
        self.procs.clear()
        self.every.clear()
        assert not left, f"priests still running: {left}"

    def decree(self, name: str) -> int | None:
        path = self.config.priest_dir(name) / "decree.txt"
        return int(path.read_text()) if path.exists() else None

    def wait_decrees(self, names: list[str], timeout: float = 10.0) -> dict[str, int | None]:
        """Poll until every named priest holds a decree, or timeout; returns what they hold."""
        deadline = time.monotonic() + timeout
        while True:
            held = {n: self.decree(n) for n in names}
            if None not in held.values() or time.monotonic() > deadline:
                return held
            time.sleep(0.01)


def datagram(config: Config, obj: dict[str, object]) -> bytes:
    """The JSON object `obj` signed with the cluster's key, as a priest (or a peer holding the
    key) sends it; creates the key if no priest has yet."""
    return signed(config, json.dumps(obj, separators=(",", ":")).encode())


def signed(config: Config, body: bytes) -> bytes:
    """Any bytes, with the tag the cluster's key gives them."""
    from node.auth import cluster_key  # here, so this module imports on any version of node
    from node.codec import Codec

    return Codec(config.cluster, {}, key=cluster_key(config)).sign(body)


def send_as(config: Config, name: str, dst: str, data: bytes) -> None:
    """Send `data` to priest `dst` from priest `name`'s own address (which must be free)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(config.address_of(name))
        sock.sendto(data, config.address_of(dst))
