"""Process-level helpers shared by the priest, its fork server and the relay: no imports of the core."""

from __future__ import annotations

import signal
import socket
import sys


def drain(sock: socket.socket) -> None:
    """Read a non-blocking socket (a wake-up pipe) until it is empty."""
    try:
        while sock.recv(4096):
            pass
    except (BlockingIOError, InterruptedError):
        pass


def set_parent_death_signal() -> None:
    """Linux: have the kernel send SIGTERM when the parent process dies.

    Elsewhere (or if prctl is missing) nothing happens: callers also check getppid().
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes  # here: only a priest that watches its parent loads libffi

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def set_process_name(name: str) -> None:
    """Linux: the process's name as `ps -o comm`, `top` and psutil's name() show it (at
    most 15 bytes). A forked priest's command line is its fork server's; this tells it apart.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes  # here: loaded already by a priest that watches its parent

    try:
        ctypes.CDLL(None, use_errno=True).prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME
    except (OSError, AttributeError):
        pass


def give_back_freed_memory() -> None:
    """Return to the system what start-up freed (imports, the rehearsal): a priest keeps
    less resident, and a fork server's priests inherit less (`bench --only memory`)."""
    import gc

    gc.collect()
    if sys.platform.startswith("linux"):
        import ctypes  # here: loaded already by a priest that watches its parent

        try:
            ctypes.CDLL(None).malloc_trim(0)  # glibc
        except (OSError, AttributeError):
            pass
