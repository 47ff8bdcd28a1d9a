"""`paxos-harness up`: start a cluster under a supervisor."""

from __future__ import annotations

import argparse
import sys

from harness.errors import PROG
from harness.supervisor.cluster import (
    clear_stale,
    read_priest_files,
    select_priests,
    take_run_lock,
    wipe_data_dir,
)
from harness.supervisor.state import check_current_writable, check_data_dir
from harness.verbs.args import config_arg
from node.config import Config, load_config
from node.flaws import warning as flaw_warning


def add_arguments(p: argparse.ArgumentParser) -> None:
    config_arg(p, optional=False)
    p.add_argument("--only", metavar="A,B",
                   help="start only these priests (others: chaos --restart)")
    p.add_argument("--detach", action="store_true", help="return once every priest listens")
    p.add_argument("--fresh", action="store_true", help="wipe the config's data dir first")
    p.add_argument("--quiet", action="store_true",
                   help="in the foreground, show each priest's steps but not every message "
                        "sent and received (priest.log keeps everything)")
    p.add_argument("--no-color", action="store_true",
                   help="plain output in the foreground even on a terminal")


def run(args: argparse.Namespace) -> int:
    """Start one priest process per priest of CONFIG under a supervisor.

    In the foreground (the default) it streams every priest's narration until
    Ctrl+C (stops every priest, exit 130) or `paxos-harness down` (exit 0).
    Ctrl+Z does not suspend anything: it asks the next running priest in turn
    to start a ballot (SIGTSTP) and says which one. With --detach it returns as
    soon as every priest listens and leaves the supervisor in the background.
    Priests recover from their ledgers in the data dir unless --fresh.
    Exit 1 if the cluster is already up, or another `up` of it is under way, or
    a priest cannot start (then nothing is left running); 2 for a bad config or
    option. An `up` that finds the cluster up or coming up changes nothing.
    """
    from harness.supervisor.daemon import run as run_supervisor
    from harness.supervisor.daemon import start_detached

    config = load_config(args.config)
    names = select_priests(config, args.only)
    for flaw in config.flaws:  # loud before anything starts, in both modes
        print(flaw_warning(flaw, f"cluster {config.cluster}"), file=sys.stderr, flush=True)
    check_data_dir(config.data_dir)
    check_current_writable()  # before any priest starts, not after
    # One critical section from the check to the start: a second `up` that comes
    # now finds the lock taken, and never wipes what this one starts.
    lock = take_run_lock(config)
    try:
        clear_stale(config)
        if args.fresh:
            wipe_data_dir(config)
        else:
            _say_what_is_resumed(config, names)
        if not args.detach:
            return run_supervisor(config, names, lock=lock,
                                  color=False if args.no_color else None, messages=not args.quiet)
        answer = start_detached(config, names, lock)
    finally:
        lock.close()  # ours; a detached supervisor holds its own copy for its life
    pids = ", ".join(f"{n} {pid}" for n, pid in answer["priests"].items())
    relay = answer.get("relay")
    network = f", relay pid {relay}" if relay is not None else ", network direct"
    print(f"cluster {config.cluster} is up: {len(answer['priests'])} priests ({pids}), "
          f"supervisor pid {answer['supervisor']}{network}; stop it with `{PROG} down`")
    return 0


def _say_what_is_resumed(config: Config, names: list[str]) -> None:
    """One line when the priests will recover a history, so nobody expects a first ballot."""
    held: dict[int, list[str]] = {}
    promised = []
    for name in names:
        decree, ballot, _problem = read_priest_files(config.priest_dir(name))
        if decree is not None:
            held.setdefault(decree, []).append(name)
        elif ballot != "-":
            promised.append(name)
    if not held and not promised:
        return
    parts = [f"decree {d} ({', '.join(who)})" for d, who in sorted(held.items())]
    if promised:
        parts.append(f"ballots under way ({', '.join(promised)})")
    print(f"resuming the history in {config.data_dir}: {'; '.join(parts)}; "
          f"a ballot now finds what was decided; `{PROG} up {config.path} --fresh` starts afresh",
          flush=True)
