"""What the verbs do to a cluster as a whole: select, lock, clear, stop by signal, report.

`up`, `down` and `status` share these; each reads the run state
(`harness.supervisor.state`) and talks to a running supervisor over its
control socket (`harness.supervisor.control`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from harness.errors import (
    PROG,
    AlreadyUpError,
    BusyError,
    ControlError,
    NotUpError,
    UsageError,
    UserError,
)
from harness.supervisor import control
from harness.supervisor.actions import ALIVE, State
from harness.supervisor.decrees import DECREE_FILE, look
from harness.supervisor.files import RunLock, lock_holder
from harness.supervisor.state import RunState, read_state, remove_state
from harness.supervisor.wipe import wipe_data_dir
from node.config import Config

DOWN_STATE = "down"  # what `status` shows for every priest when no supervisor runs
BY_HAND = "by hand"  # ... except a priest that runs all the same, started by hand
__all__ = ["wipe_data_dir"]  # --fresh lives in harness.supervisor.wipe; the verbs find it here


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


def take_run_lock(config: Config) -> RunLock:
    """The cluster's run lock; AlreadyUpError (or BusyError) saying who holds it if taken.

    `up` takes it before it looks at the run state and holds it through
    --fresh's wipe and the start, and the supervisor holds it for its life: an
    `up` that cannot take it has looked at nothing and changed nothing.
    """
    from harness.supervisor.daemon import already_up

    lock = RunLock.take(config.data_dir)
    if lock is not None:
        return lock
    state = read_state(config.data_dir)
    if state is not None and state.supervisor.alive():
        raise AlreadyUpError(f"{already_up(config, state)}; nothing was changed")
    pid = RunLock.holder(config.data_dir)
    raise BusyError(f"another `{PROG} up` (pid {pid or '?'}) is bringing cluster "
                    f"{config.cluster} up right now, data in {config.data_dir}; nothing was "
                    f"changed; once it is up, `{PROG} status {config.path}` shows it")


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


def cluster_status(config: Config) -> dict[str, Any]:
    """Everything `status` shows, as plain data (the --json output)."""
    state = read_state(config.data_dir)
    up = state is not None and state.supervisor.alive()
    live, network, problems = (_live(state) if up and state is not None
                               else (_by_hand(config), None, []))
    priests = []
    for name in config.names:
        row = live.get(name) or {"pid": None, "exit_status": None,
                                 "state": State.NOT_STARTED if up else DOWN_STATE}
        if config.is_foreign(name):
            decree, ballot, problem = read_foreign_files(config.data_dir / name)
        else:
            decree, ballot, problem = read_priest_files(config.data_dir / name)
        priests.append({"priest": name, "pid": row["pid"], "state": row["state"],
                        "exit_status": row["exit_status"], "decree": decree,
                        "last_ballot": ballot, "problem": problem, "armed": row.get("armed")})
    if up and state is not None:
        summary = f"cluster {config.cluster} is up (supervisor pid {state.supervisor.pid})"
        if not config.data_dir.is_dir():
            summary += (f"; its data dir {config.data_dir} is gone (found by its run record); "
                        f"`{PROG} down` still stops it")
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
            "summary": summary, "priests": priests, "network": network, "problems": problems}


def _live(state: RunState) -> tuple[dict[str, dict[str, Any]], dict[str, Any] | None, list[str]]:
    """The priests' rows, the network, and what the supervisor could not write."""
    try:
        result = control.request(state.socket, "status", timeout=10.0)
        return ({r["priest"]: r for r in result["priests"]}, result.get("network"),
                list(result.get("problems", [])))
    except (NotUpError, ControlError):
        # The supervisor is alive but does not answer: say what the state file knows.
        return ({n: {"pid": i.pid, "exit_status": None,
                     "state": State.RUNNING if i.alive() else State.EXITED}
                 for n, i in state.priests.items()}, None, [])


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


def alive_priests(config: Config) -> set[str] | None:
    """Names of running or paused priests (or started by hand), or None when none runs.

    What `status` says of each priest's process, without reading its files:
    `verify --wait` asks this at every poll.
    """
    state = read_state(config.data_dir)
    up = state is not None and state.supervisor.alive()
    live = _live(state)[0] if up and state is not None else _by_hand(config)
    running = {n for n in config.names if n in live and live[n]["state"] in (*ALIVE, BY_HAND)}
    if not up and not running:
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


def read_foreign_files(directory: Path) -> tuple[int | None, str, str | None]:
    """(decree, "?", problem) of a foreign priest: its decree.txt; its ballots are its own."""
    present, value, text = look(directory / DECREE_FILE)
    problem = None if not present or value is not None else (
        f"{directory / DECREE_FILE}: not a decree: {text!r}")
    return value, "?", problem


def wait_gone(state: RunState, timeout: float = 15.0) -> None:
    # Not psutil's wait: the supervisor is not our child, and a zombie awaiting
    # its reaper (which may be slow) has finished all the same.
    deadline = time.monotonic() + timeout
    while state.supervisor.alive() and time.monotonic() < deadline:
        time.sleep(0.005)
