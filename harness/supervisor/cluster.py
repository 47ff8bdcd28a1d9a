"""What the verbs do to a cluster as a whole: select, clear, wipe, stop by signal, report.

`up`, `down` and `status` share these; each reads the run state
(`harness.supervisor.state`) and talks to a running supervisor over its
control socket (`harness.supervisor.control`).
"""

from __future__ import annotations

import fnmatch
import os
import stat
import time
from pathlib import Path
from typing import Any

from harness.errors import PROG, AlreadyUpError, ControlError, NotUpError, UsageError, UserError
from harness.supervisor import control
from harness.supervisor.actions import ALIVE, State
from harness.supervisor.state import (
    SOCKET_NAME,
    STATE_FILE,
    RunState,
    read_state,
    remove_state,
)
from node.config import Config
from node.ledger import LOCK

# What --fresh may remove: the files a priest writes in its directory, and the run files.
PRIEST_FILES = frozenset({"decree.txt", "ledger.log", "priest.log", "events.jsonl",
                          "priest.lock"})
PRIEST_TEMP = "*.tmp*"  # atomic writes' temp files, left by a crash
RUN_FILES = ("harness.jsonl", "supervisor.log", "network.jsonl", "network.jsonl.1")
DOWN_STATE = "down"  # what `status` shows for every priest when no supervisor runs
BY_HAND = "by hand"  # ... except a priest that runs all the same, started by hand


def select_priests(config: Config, only: str | None) -> list[str]:
    """The priests to start, in config order: all, or those listed in --only."""
    if only is None:
        return config.names
    wanted = [n.strip() for n in only.split(",") if n.strip()]
    if not wanted:
        raise UsageError("--only: list at least one priest, e.g. --only alpha,beta")
    for name in wanted:
        if name not in config.priests:
            raise UsageError(f"--only: no priest named {name!r} in {config.path} "
                             f"(known: {', '.join(config.names)})")
    return [n for n in config.names if n in wanted]


def clear_stale(config: Config) -> int | None:
    """Refuse if the cluster is up; clear the run state of a supervisor that died."""
    from harness.supervisor.daemon import already_up, stop_orphans

    state = read_state(config.data_dir)
    if state is None:
        return None
    if state.supervisor.alive():
        raise AlreadyUpError(already_up(config, state))
    stopped = stop_orphans(state.priests)
    remove_state(state)
    left = f"; stopped priests it left: {', '.join(stopped)}" if stopped else ""
    print(f"cleared the run state of cluster {config.cluster}: its supervisor "
          f"(pid {state.supervisor.pid}) is gone{left}")
    return 0


def stop_by_signal(state: RunState) -> dict[str, str]:
    """Stop a supervisor that does not answer, then any priest it left; the priests that ran.

    SIGCONT first (it may be stopped), so that it can stop its priests itself
    on SIGTERM; SIGKILL after a while; then each priest still alive by pid.
    """
    from harness.supervisor.daemon import stop_orphans, stop_supervisor

    running = [n for n, ident in state.priests.items() if ident.alive()]
    stop_supervisor(state.supervisor)
    stop_orphans(state.priests)
    remove_state(state)
    return dict.fromkeys(running, "stopped")


def wipe_data_dir(config: Config) -> list[Path]:
    """Remove what the harness put in the data dir (--fresh): priests' directories, run files.

    Each priest's directory goes only if it holds nothing but files a priest
    writes; otherwise UsageError naming it, and nothing is removed. Other
    entries of the data dir are never touched. Returns what was removed.
    """
    files: list[Path] = []
    dirs: list[Path] = []
    for name in config.names:
        directory = config.priest_dir(name)
        if not directory.exists() and not directory.is_symlink():
            continue
        files += _priest_files(config, directory)
        dirs.append(directory)
    files += _run_files(config.data_dir)
    for path in files:
        path.unlink(missing_ok=True)
    for directory in dirs:
        directory.rmdir()
    return files + dirs


def _priest_files(config: Config, directory: Path) -> list[Path]:
    """The files in a priest's directory; UsageError if anything else is there."""
    where = f"--fresh: refusing to remove {directory}"
    fix = f"move it away or point data_dir in {config.path} elsewhere"
    if directory.is_symlink() or not directory.is_dir():
        raise UsageError(f"{where}: it is not a priest's directory; {fix}")
    found = []
    for entry in sorted(directory.iterdir()):
        mode = entry.lstat().st_mode
        ours = entry.name in PRIEST_FILES or fnmatch.fnmatch(entry.name, PRIEST_TEMP)
        if not (ours and stat.S_ISREG(mode)):
            raise UsageError(f"{where}: it holds {entry.name}, which no priest writes; {fix}")
        found.append(entry)
    return found


def _run_files(data_dir: Path) -> list[Path]:
    """The harness's own files in `data_dir` (supervisor.json only if its supervisor is gone)."""
    found = [data_dir / n for n in RUN_FILES if (data_dir / n).is_file()
             and not (data_dir / n).is_symlink()]
    sock = data_dir / SOCKET_NAME
    if sock.is_socket():
        found.append(sock)
    state = read_state(data_dir) if data_dir.is_dir() else None
    if state is not None and not state.supervisor.alive():
        found.append(data_dir / STATE_FILE)
    if data_dir.is_dir():
        found += [e for e in sorted(data_dir.glob(STATE_FILE + ".tmp*")) if e.is_file()
                  and not e.is_symlink()]
    return found


def cluster_status(config: Config) -> dict[str, Any]:
    """Everything `status` shows, as plain data (the --json output)."""
    state = read_state(config.data_dir)
    up = state is not None and state.supervisor.alive()
    live, network = _live(state) if up and state is not None else (_by_hand(config), None)
    priests = []
    for name in config.names:
        row = live.get(name) or {"pid": None, "exit_status": None,
                                 "state": State.NOT_STARTED if up else DOWN_STATE}
        decree, ballot, problem = read_priest_files(config.data_dir / name)
        priests.append({"priest": name, "pid": row["pid"], "state": row["state"],
                        "exit_status": row["exit_status"], "decree": decree,
                        "last_ballot": ballot, "problem": problem})
    if up and state is not None:
        summary = f"cluster {config.cluster} is up (supervisor pid {state.supervisor.pid})"
    elif state is not None:
        summary = (f"cluster {config.cluster} is not up: its supervisor (pid "
                   f"{state.supervisor.pid}) died; `{PROG} down` clears what it left")
    else:
        summary = f"cluster {config.cluster} is not up (data in {config.data_dir})"
    if live and not up:
        summary += f"; priests started by hand run: {', '.join(live)}"
    if config.flaws:
        summary += f"; FLAWED on purpose: {', '.join(config.flaws)}"
    return {"cluster": config.cluster, "config": config.path, "data_dir": str(config.data_dir),
            "up": up, "supervisor": state.supervisor.pid if up and state else None,
            "flaws": list(config.flaws),
            "summary": summary, "priests": priests, "network": network}


def _live(state: RunState) -> tuple[dict[str, dict[str, Any]], dict[str, Any] | None]:
    """The priests' rows and the network, from the supervisor."""
    try:
        result = control.request(state.socket, "status", timeout=10.0)
        return {r["priest"]: r for r in result["priests"]}, result.get("network")
    except (NotUpError, ControlError):
        # The supervisor is alive but does not answer: say what the state file knows.
        return {n: {"pid": i.pid, "exit_status": None,
                    "state": State.RUNNING if i.alive() else State.EXITED}
                for n, i in state.priests.items()}, None


def network_line(network: dict[str, Any] | None) -> str | None:
    """`status`'s one line on the network, or None when the cluster is down."""
    if network is None:
        return None
    if network["mode"] != "relay":
        return "network: direct (no relay: network faults are off)"
    t = network.get("totals")
    counts = (f"; {t['forwarded']} forwarded, {t['dropped']} dropped, {t['duplicated']} "
              f"duplicated, {t['delayed']} delayed" if t else "")
    restarts = f", restarted {network['restarts']}x" if network.get("restarts") else ""
    if network.get("state") == "running":
        relay = f"relay pid {network['relay']}{restarts}"
    else:
        relay = (f"relay {str(network.get('state', 'dead')).upper()} (it died, exit status "
                 f"{network.get('last_exit')}; the supervisor restarts it){restarts}")
    return f"network: {relay} | {network['describe']}{counts.replace('; ', ' | ', 1)}"


def _by_hand(config: Config) -> dict[str, dict[str, Any]]:
    """Rows for the priests that run without a supervisor (started by hand)."""
    rows = {}
    for name in config.names:
        pid = lock_holder(config.priest_dir(name))
        if pid is not None:
            rows[name] = {"pid": pid, "exit_status": None, "state": BY_HAND}
    return rows


def lock_holder(directory: Path) -> int | None:
    """The pid of the process holding `directory`'s priest.lock: a priest running there.

    Read from /proc/locks, so the lock is never taken, not even for an instant
    (a priest starting then would find it held and refuse to start).
    """
    try:
        st = (directory / LOCK).lstat()
        table = Path("/proc/locks").read_text()
    except OSError:
        return None
    key = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    for line in table.splitlines():
        fields = line.split()  # "1: FLOCK  ADVISORY  WRITE 4242 fe:00:123 0 EOF"; waiters: "->"
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == key:
            return int(fields[4])
    return None


def alive_priests(config: Config) -> set[str] | None:
    """Names of running or paused priests (or started by hand), or None when none runs."""
    report = cluster_status(config)
    running = {p["priest"] for p in report["priests"] if p["state"] in (*ALIVE, BY_HAND)}
    if not report["up"] and not running:
        return None
    return running


def read_priest_files(directory: Path) -> tuple[int | None, str, str | None]:
    """(decree, last ballot, problem) from a priest's ledger.log and decree.txt, read-only."""
    from node.ledger import read_ledger

    try:
        ledger, decree = read_ledger(directory)
    except UserError as e:
        return None, "?", str(e)
    except OSError as e:
        return None, "?", f"{directory}: {e.strerror}"
    last = max(ledger.last_tried, ledger.next_bal, ledger.prev_vote.ballot)
    return decree, str(last) if not last.is_zero() else "-", None


def wait_gone(state: RunState, timeout: float = 15.0) -> None:
    # Not psutil's wait: the supervisor is not our child, and a zombie awaiting
    # its reaper (which may be slow) has finished all the same.
    deadline = time.monotonic() + timeout
    while state.supervisor.alive() and time.monotonic() < deadline:
        time.sleep(0.005)
