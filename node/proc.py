"""Process-level helpers shared by the priest, its fork server and the relay: no imports of the core."""

from __future__ import annotations

import signal
import socket
import sys
from typing import Any


def drain(sock: socket.socket) -> None:
    """Read a non-blocking socket (a wake-up pipe) until it is empty."""
    try:
        while sock.recv(4096):
            pass
    except (BlockingIOError, InterruptedError):
        pass


def _libc() -> Any | None:
    """The C library (Linux only; None elsewhere or when it cannot be loaded)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes  # here: only what calls into libc loads libffi

    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def _call(function: str, *args: object) -> None:
    """Call a libc function for its effect; where it is missing, nothing happens."""
    libc = _libc()
    if libc is not None:
        try:
            getattr(libc, function)(*args)
        except (OSError, AttributeError):
            pass


def set_parent_death_signal() -> None:
    """Linux: have the kernel send SIGTERM when the parent process dies.

    Elsewhere (or if prctl is missing) nothing happens: callers also check getppid().
    """
    _call("prctl", 1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG


def set_process_name(name: str) -> None:
    """Linux: the process's name as `ps -o comm`, `top` and psutil's name() show it (at
    most 15 bytes). A forked priest's command line is its fork server's; this tells it apart.
    """
    _call("prctl", 15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME


def give_back_freed_memory() -> None:
    """Return to the system what start-up freed (imports, the rehearsal): a priest keeps
    less resident, and a fork server's priests inherit less (`bench --only memory`)."""
    import gc

    gc.collect()
    _call("malloc_trim", 0)  # glibc
