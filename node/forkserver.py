"""`python -m node.forkserver FD SUPERVISOR`: the lean process the harness forks its priests from.

A forked child starts with every page of its parent. Forked from the
supervisor, a priest would carry the whole harness (its CLI, every verb,
psutil); forked from this process, which imports only what a priest runs, it
carries nothing more than a priest needs, and starts as fast as a fork.

The supervisor starts this process once, with one end of a socket pair (FD).
Each request is a pickled `Request` with one descriptor beside it: the write
end of a pipe on which the priest says `ready` (or why it could not start)
and which it holds until it ends, so the supervisor sees its end as EOF. This
process answers (STARTED, pid) or (FAILED, reason) to each request, and
(EXITED, pid, code) when a priest ends (code as multiprocessing's: -N for
signal N). One request that fails (no fork, no descriptor left) fails alone:
the server goes on serving the others. It exits when the supervisor closes
its end or dies (a parent-death signal), and every priest it forked then ends
too: their parent is gone, and their own parent-death signal says so.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import pickle
import select
import signal
import socket
import sys
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from typing import NoReturn

from node.codec import Codec
from node.config import Config
from node.errors import UserError
from node.proc import give_back_freed_memory, set_parent_death_signal, set_process_name
from node.runtime import rehearse, serve

MAX_REQUEST = 1 << 20  # a pickled config of 255 priests is far smaller
# Priests are multiprocessing processes forked from this lean process (about 0.6 MB
# of its imports). This process ends with os._exit, never through multiprocessing's
# exit handler, which would wait for every priest (forever for a stopped one).
FORK = multiprocessing.get_context("fork")
# The server's answers, and a priest's line on its pipe (the launcher reads both).
STARTED, EXITED, FAILED = "started", "exited", "failed"
READY, ERROR = "ready", "error "


@dataclass(frozen=True)
class Request:
    """Start priest `name` of `config`; `quiet`: its terminal output to /dev/null."""

    config: Config
    name: str
    quiet: bool
    color: bool | None
    messages: bool
    bind: int | None = None  # a private port behind the relay


def main(argv: list[str]) -> int:
    sock = socket.socket(fileno=int(argv[0]))
    set_parent_death_signal()
    set_process_name("fork server")
    if os.getppid() != int(argv[1]):
        return 0  # the supervisor died before the signal was armed
    children: dict[int, BaseProcess] = {}  # pidfd -> priest
    prepared = False
    while True:
        ready, _, _ = select.select([sock.fileno(), *children], [], [])
        for fd in ready:
            if fd == sock.fileno():
                message, fds, _, _ = socket.recv_fds(sock, MAX_REQUEST, 1)
                if not message:
                    return 0  # the supervisor is done, or gone
                reply = start(message, fds, children, first=not prepared)
                prepared = True
                if not answer(sock, reply):
                    return 0
            else:
                priest = children.pop(fd)
                os.close(fd)
                priest.join()  # reaped at once: the pidfd said it ended
                ended = (EXITED, priest.pid, priest.exitcode)  # exit code -N: signal N
                priest.close()
                if not answer(sock, ended):
                    return 0


def start(message: bytes, fds: list[int], children: dict[int, BaseProcess], *,
          first: bool = False) -> tuple[object, ...]:
    """Fork the priest a request asks for (the `first` one after `prepare`); the answer."""
    try:
        if len(fds) != 1:
            raise ValueError(f"a request comes with one descriptor, not {len(fds)}")
        request = pickle.loads(message)  # noqa: S301 - our supervisor
        if first:
            prepare(request.config)
        priest, pid = fork_priest(request, fds[0])
        try:
            children[os.pidfd_open(pid)] = priest
        except OSError:
            priest.kill()  # untracked, it could not be reported: it must not run
            priest.join()
            raise
        return (STARTED, pid)
    except Exception as e:  # noqa: BLE001 - one failed start must not end the others' server
        return (FAILED, f"{type(e).__name__}: {e}")
    finally:
        for fd in fds:
            os.close(fd)


def prepare(config: Config) -> None:
    """Once, before the first fork: rehearse a ballot here, so what the first run of each
    path creates or specializes is inherited by every priest (whose own rehearsal is then
    cheaper); give back what the imports and the rehearsal freed; freeze what is left, so
    a priest's collections leave the inherited pages shared. The rehearsal is only a
    saving: whatever goes wrong in it is left to the request itself to meet."""
    try:
        rehearse(config, Codec(config.cluster,
                               {n: (p.host, p.port) for n, p in config.priests.items()},
                               key=bytes(32)))
    except Exception:  # noqa: BLE001, S110 - a rehearsal that fails costs only its saving
        pass
    give_back_freed_memory()
    gc.freeze()


def answer(sock: socket.socket, message: tuple[object, ...]) -> bool:
    """Tell the supervisor; False if it is gone."""
    try:
        sock.send(pickle.dumps(message))
    except OSError:
        return False
    return True


def fork_priest(request: Request, ready: int) -> tuple[BaseProcess, int]:
    """Fork one priest (a multiprocessing process) that runs `priest_main`; it and its pid."""
    # This process's pid, taken here: read in the child, getppid() could already be 1
    # (this process gone), and the priest would watch the wrong parent and never stop.
    priest = FORK.Process(target=run_priest, args=(request, ready, os.getpid()),
                          name=f"priest {request.name}")
    priest.start()
    pid = priest.pid
    if pid is None:  # start() forks or raises: never here
        raise OSError(f"priest {request.name}: no pid after fork")
    # Also done by the child; doing it here too closes the race in which the
    # supervisor signals the group before the child has moved into it.
    try:
        os.setpgid(pid, pid)
    except OSError:
        pass
    return priest, pid


def run_priest(request: Request, ready: int, parent: int) -> NoReturn:
    """The priest process's target: its exit status is `priest_main`'s."""
    sys.exit(priest_main(request, ready, parent))


def priest_main(request: Request, ready: int, parent: int) -> int:
    """The priest child: own process group, only its standard streams and `ready` open."""
    os.setpgid(0, 0)
    set_process_name(f"priest {request.name}")
    # Until the runtime installs its own handlers (before it says ready), a stray
    # Ctrl+C or SIGTSTP must neither kill nor suspend it.
    for sig in (signal.SIGINT, signal.SIGTSTP):
        signal.signal(sig, signal.SIG_IGN)
    for fd in [int(fd) for fd in os.listdir("/proc/self/fd")]:
        if fd > 2 and fd != ready:
            try:
                os.close(fd)  # this server's socket, its other children's pidfds
            except OSError:
                pass
    name = request.name
    out = open(os.devnull, "w") if request.quiet else None  # noqa: SIM115 - lives as long as the priest
    try:
        return serve(request.config, name, out=out, color=request.color,
                     watch_parent=parent, messages=request.messages,
                     on_ready=lambda: tell(ready, READY), bind=request.bind)
    except UserError as e:
        tell(ready, f"{ERROR}{e.message}")
        return e.exit_status
    except OSError as e:
        # It could not write (a full disk): it stops here, with one line, not a traceback.
        # Its ledger is crash-safe, so `chaos --restart` brings it back once space is back.
        where = f"{os.fsdecode(e.filename)}: " if e.filename is not None else ""
        reason = f"priest {name} stopped: cannot write: {where}{e.strerror or e}"
        tell(ready, f"{ERROR}{reason}")
        say(f"{reason}; restart it once that is fixed")
        return 1
    except BaseException as e:  # noqa: BLE001 - a bug: said on the pipe, then the traceback
        tell(ready, f"{ERROR}crashed (this is a bug): {type(e).__name__}: {e}")
        import traceback  # here: only a crash needs it

        traceback.print_exc()
        return 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()  # os._exit follows, which would drop what is buffered
            except (OSError, ValueError):
                pass


def tell(fd: int, line: str) -> None:
    """One line to the supervisor on the priest's pipe (it may have stopped listening)."""
    try:
        os.write(fd, line.encode("utf-8", "replace") + b"\n")
    except OSError:
        pass


def say(line: str) -> None:
    """One line on stderr, if stderr can take it (it may be on the full disk too)."""
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def run(argv: list[str]) -> NoReturn:
    """main(), ended with os._exit whatever happens: never through exit handlers (see FORK)."""
    code = 1
    try:
        code = main(argv)
    except BaseException:  # noqa: BLE001 - said on stderr, then the same exit
        import traceback  # here: only a crash needs it

        traceback.print_exc()
    finally:
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    run(sys.argv[1:])
