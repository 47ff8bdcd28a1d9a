"""paxos-harness: start, fault, check and simulate a cluster of Synod priests on this host.

    paxos-harness up configs/four.yaml --detach
    paxos-harness chaos --kill delta --ballot alpha
    paxos-harness verify
    paxos-harness down

Exit statuses: 0 success; 1 a check failed or the command could not be done in
the cluster's present state (already up, not up, a priest that cannot start);
2 usage or config error; 3 not yet agreed (verify); 70 an internal error (a bug);
141 the reader of the output went away (`| head`), which is not an error to report.
Every error a user can cause is one line on stderr.
"""

from __future__ import annotations

import argparse
import fnmatch
import inspect
import json
import math
import os
import stat
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
    ConfigError,
    ControlError,
    NotUpError,
    UsageError,
    UserError,
)
from harness.output import table, use_color
from harness.state import (
    CURRENT,
    SOCKET_NAME,
    STATE_FILE,
    RunState,
    check_current_writable,
    check_data_dir,
    read_state,
    recorded_cluster,
    remove_state,
    resolve_config,
)
from node import __version__
from node.config import Config, load_config

PROG = "paxos-harness"
PIPE_STATUS = 128 + 13  # as if SIGPIPE had ended us, the way `yes | head` ends `yes`
# What --fresh may remove: the files a priest writes in its directory, and the run files.
PRIEST_FILES = frozenset({"decree.txt", "ledger.log", "priest.log", "events.jsonl",
                          "priest.lock"})
PRIEST_TEMP = "*.tmp*"  # atomic writes' temp files, left by a crash
RUN_FILES = ("harness.jsonl", "supervisor.log")


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
    check_data_dir(config.data_dir)
    check_current_writable()  # before any priest starts, not after
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
    period. Idempotent: exit 0 if the cluster is already down, or if nothing
    was ever brought up from here. It also clears the run state left by a
    supervisor that died, and stops a supervisor that does not answer by
    signal. If the config file has gone since `up`, the data dir recorded in
    logs/current.json is used.
    """
    try:
        config = resolve_config(args.config)
    except NotUpError:  # no CONFIG and no logs/current.json
        print(f"nothing is up here: no cluster has been brought up from this directory "
              f"({CURRENT} is missing)")
        return 0
    except ConfigError:
        recorded = recorded_cluster(args.config)
        if recorded is None:
            raise
        config = recorded
        print(f"{PROG}: {config.path} cannot be read; stopping cluster {config.cluster} from "
              f"its run state in {config.data_dir}", file=sys.stderr)
    state = read_state(config.data_dir)
    if state is None:
        print(f"cluster {config.cluster} is not up; nothing to stop")
        return 0
    if not state.supervisor.alive():
        return clear_stale(config) or 0
    try:
        stopped = control.request(state.socket, "down")["stopped"]
    except (NotUpError, ControlError) as e:
        print(f"{PROG}: the supervisor did not answer ({e}); stopping it by signal",
              file=sys.stderr)
        stopped = stop_by_signal(state)
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
    has not learned yet; 2: usage or config error, or a violation that rests
    only on files or lines that could not be read (cannot verify). --wait T
    re-checks for up to T seconds until agreement.
    """
    from harness import verify

    config = resolve_config(args.config)
    check_data_dir(config.data_dir)
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


def stop_by_signal(state: RunState) -> dict[str, str]:
    """Stop a supervisor that does not answer, then any priest it left; the priests that ran.

    SIGCONT first (it may be stopped), so that it can stop its priests itself
    on SIGTERM; SIGKILL after a while; then each priest still alive by pid.
    """
    from harness.daemon import stop_orphans, stop_supervisor

    running = [n for n, ident in state.priests.items() if ident.alive()]
    stop_supervisor(state.supervisor)
    stop_orphans(state.priests)
    remove_state(state)
    return {n: "stopped" for n in running}


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


def number_arg(what: str, *, above_zero: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number >= 0 (> 0 if `above_zero`), described as `what`."""
    bound = "> 0" if above_zero else ">= 0"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None
        if not math.isfinite(value) or value < 0 or (above_zero and value == 0):
            raise argparse.ArgumentTypeError(f"must be {what} {bound}, got {text!r}")
        return value

    parse.__name__ = what  # argparse names the type in some messages
    return parse


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
    v.add_argument("--wait", type=number_arg("a number of seconds"), default=0.0, metavar="T",
                   help="re-check up to T seconds")
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
        status = int(args.func(args))
        sys.stdout.flush()  # here, not at exit, so a closed pipe is seen below
        return status
    except BrokenPipeError:
        return _reader_gone()
    except UserError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return e.exit_status
    except KeyboardInterrupt:
        return 130
    except OSError as e:
        if e.filename is None:
            return _bug(e)
        # A file we could not use that no verb foresaw: still the user's to fix.
        print(f"{PROG}: error: {e.filename}: {e.strerror}", file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001 - the one place a bug becomes a message
        return _bug(e)


def _reader_gone() -> int:
    """The reader of stdout went away (`| head -1`): stop quietly, as other commands do."""
    # Python flushes stdout again at exit; pointing it at /dev/null keeps that quiet.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return PIPE_STATUS


def _bug(exc: BaseException) -> int:
    fd, path = tempfile.mkstemp(prefix="paxos-harness-crash-", suffix=".txt")
    with os.fdopen(fd, "w") as f:
        traceback.print_exc(file=f)
    print(f"{PROG}: internal error (this is a bug, please report it): "
          f"{type(exc).__name__}: {exc}; traceback in {path}", file=sys.stderr)
    return BUG_STATUS
