"""paxos-harness: start, fault, check and simulate a cluster of Synod priests on this host.

    paxos-harness up configs/four.yaml --detach
    paxos-harness chaos --kill delta --ballot alpha
    paxos-harness verify
    paxos-harness down

Exit statuses: 0 success; 1 a check failed or the command could not be done in
the cluster's present state (already up, not up, a priest that cannot start);
2 usage or config error; 3 not yet agreed (verify); 70 an internal error (a bug).
Every error a user can cause is one line on stderr.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from harness import control
from harness.errors import (
    BUG_STATUS,
    AlreadyUpError,
    ControlError,
    NotUpError,
    UsageError,
    UserError,
)
from harness.output import table, use_color
from harness.state import RunState, read_state, remove_state, resolve_config
from node import __version__
from node.config import Config, load_config

PROG = "paxos-harness"


def cmd_up(args: argparse.Namespace) -> int:
    """Start one priest process per priest of CONFIG under a supervisor.

    In the foreground (the default) it streams every priest's narration until
    Ctrl+C (stops every priest, exit 130) or `paxos-harness down` (exit 0).
    Ctrl+Z does not suspend anything: it asks the next running priest in turn
    to start a ballot (SIGTSTP) and says which one. With --detach it returns as
    soon as every priest listens and leaves the supervisor in the background.
    Priests recover from their ledgers in the data dir unless --fresh.
    Exit 1 if the cluster is already up or a priest cannot start (then nothing
    is left running); 2 for a bad config or option.
    """
    from harness.daemon import run, start_detached

    config = load_config(args.config)
    names = select_priests(config, args.only)
    clear_stale(config)
    if args.fresh:
        wipe_data_dir(config)
    if not args.detach:
        return run(config, names)
    answer = start_detached(config, names)
    pids = ", ".join(f"{n} {pid}" for n, pid in answer["priests"].items())
    print(f"cluster {config.cluster} is up: {len(answer['priests'])} priests ({pids}), "
          f"supervisor pid {answer['supervisor']}; stop it with `{PROG} down`")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    """Stop every priest and the supervisor of CONFIG (default: the current cluster).

    Each priest is resumed if paused, sent SIGTERM, and SIGKILLed after a grace
    period. Idempotent: exit 0 if the cluster is already down. It also clears
    the run state left by a supervisor that died.
    """
    from harness.daemon import stop_orphans, stop_supervisor

    config = resolve_config(args.config)
    state = read_state(config.data_dir)
    if state is None:
        print(f"cluster {config.cluster} is not up; nothing to stop")
        return 0
    if not state.supervisor.alive():
        return clear_stale(config) or 0
    try:
        stopped = control.request(state.socket, "down")["stopped"]
    except (NotUpError, ControlError) as e:
        # A supervisor that does not answer is stopped by signal, its priests by pid.
        print(f"{PROG}: the supervisor did not answer ({e}); stopping it by signal",
              file=sys.stderr)
        stop_supervisor(state.supervisor)
        stopped = {n: "stopped" for n in stop_orphans(state.priests)}
        remove_state(state)
    _wait_gone(state)
    names = ", ".join(stopped) or "no priest was running"
    print(f"cluster {config.cluster} is down (stopped: {names})")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """Show each priest of CONFIG (default: the current cluster): pid, state, decree, last ballot.

    States: running, paused, killed, exited, not started; `down` when no
    supervisor runs. Decree and last ballot come from the priests' files.
    Exit 0 when the cluster is up, 1 when it is not (the table is still shown),
    so `paxos-harness status >/dev/null` tells a script whether it is up.
    """
    config = resolve_config(args.config)
    report = cluster_status(config)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        color = use_color(sys.stdout)
        print(report["summary"])
        rows = [[p["priest"], str(p["pid"] or "-"), p["state"], _cell(p["decree"]),
                 p["last_ballot"]] for p in report["priests"]]
        print(table(["priest", "pid", "state", "decree", "last ballot"], rows, color=color,
                    state_column=2), end="")
        for p in report["priests"]:
            if p["problem"]:
                print(f"{p['priest']}: {p['problem']}")
    return 0 if report["up"] else 1


def cmd_verify(args: argparse.Namespace) -> int:
    """Check agreement from the files the priests of CONFIG left (default: the current cluster).

    Exit 0: every surviving priest holds the same decree and the history shows
    no safety violation; 1: a violation; 3: no violation but a surviving priest
    has not learned yet; 2: usage or config error. --wait T re-checks for up
    to T seconds until agreement.
    """
    from harness import verify

    config = resolve_config(args.config)
    return verify.run(config, alive_fn=lambda: alive_priests(config), wait=args.wait,
                      as_json=args.json, color=use_color(sys.stdout), out=sys.stdout)


# --- helpers the verbs share -------------------------------------------------


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
    from harness.daemon import already_up, stop_orphans

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


def wipe_data_dir(config: Config) -> None:
    """Remove the config's data dir (--fresh), refusing paths that hold more than it."""
    target = config.data_dir.resolve()
    cwd, home = Path.cwd().resolve(), Path.home().resolve()
    if target in (Path("/"), home) or target == cwd or target in cwd.parents:
        raise UsageError(f"{config.path}: data_dir: refusing to wipe {target} for --fresh "
                         f"(it holds the current directory or your home)")
    shutil.rmtree(target, ignore_errors=False) if target.exists() else None


def cluster_status(config: Config) -> dict[str, Any]:
    """Everything `status` shows, as plain data (the --json output)."""
    from harness.supervisor import NOT_STARTED

    state = read_state(config.data_dir)
    up = state is not None and state.supervisor.alive()
    live = _live_rows(state) if up and state is not None else {}
    priests = []
    for name in config.names:
        row = live.get(name) or {"pid": None, "exit_status": None,
                                 "state": NOT_STARTED if up else "down"}
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
    return {"cluster": config.cluster, "config": config.path, "data_dir": str(config.data_dir),
            "up": up, "supervisor": state.supervisor.pid if up and state else None,
            "summary": summary, "priests": priests}


def _live_rows(state: RunState) -> dict[str, dict[str, Any]]:
    try:
        result = control.request(state.socket, "status", timeout=10.0)
        return {r["priest"]: r for r in result["priests"]}
    except (NotUpError, ControlError):
        # The supervisor is alive but does not answer: say what the state file knows.
        return {n: {"pid": i.pid, "exit_status": None,
                    "state": "running" if i.alive() else "exited"}
                for n, i in state.priests.items()}


def alive_priests(config: Config) -> set[str] | None:
    """Names of running or paused priests, or None when the cluster is down."""
    report = cluster_status(config)
    if not report["up"]:
        return None
    return {p["priest"] for p in report["priests"] if p["state"] in ("running", "paused")}


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


def _cell(value: object) -> str:
    return "-" if value is None else str(value)


def _wait_gone(state: RunState, timeout: float = 15.0) -> None:
    # Not psutil's wait: the supervisor is not our child, and a zombie awaiting
    # its reaper (which may be slow) has finished all the same.
    deadline = time.monotonic() + timeout
    while state.supervisor.alive() and time.monotonic() < deadline:
        time.sleep(0.005)


# --- parsing and the one place errors become exit statuses --------------------


def build_parser() -> argparse.ArgumentParser:
    """The argument parser: one sub-command per `cmd_<verb>`."""
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    def verb(name: str, func: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
        doc = inspect.cleandoc(func.__doc__ or name)
        p = sub.add_parser(name, help=doc.splitlines()[0], description=doc,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(func=func)
        return p

    up = verb("up", cmd_up)
    up.add_argument("config", metavar="CONFIG", help="the cluster's YAML config")
    up.add_argument("--only", metavar="A,B",
                    help="start only these priests (others: chaos --restart)")
    up.add_argument("--detach", action="store_true", help="return once every priest listens")
    up.add_argument("--fresh", action="store_true", help="wipe the config's data dir first")
    for name, func in (("down", cmd_down), ("status", cmd_status)):
        p = verb(name, func)
        p.add_argument("config", metavar="CONFIG", nargs="?", help="default: the current cluster")
        if name == "status":
            p.add_argument("--json", action="store_true", help="machine-readable output")
    v = verb("verify", cmd_verify)
    v.add_argument("config", metavar="CONFIG", nargs="?", help="default: the current cluster")
    v.add_argument("--wait", type=float, default=0.0, metavar="T", help="re-check up to T seconds")
    v.add_argument("--json", action="store_true", help="machine-readable verdict")
    from harness import faults, simulate  # noqa: PLC0415 - verbs that live in their own module
    faults.add_parser(sub)
    simulate.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns its exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, or a usage error argparse has printed
        return e.code if isinstance(e.code, int) else 2
    try:
        return int(args.func(args))
    except UserError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return e.exit_status
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # noqa: BLE001 - the one place a bug becomes a message
        return _bug(e)


def _bug(exc: BaseException) -> int:
    fd, path = tempfile.mkstemp(prefix="paxos-harness-crash-", suffix=".txt")
    with os.fdopen(fd, "w") as f:
        traceback.print_exc(file=f)
    print(f"{PROG}: internal error (this is a bug, please report it): "
          f"{type(exc).__name__}: {exc}; traceback in {path}", file=sys.stderr)
    return BUG_STATUS
