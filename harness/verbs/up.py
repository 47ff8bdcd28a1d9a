"""`paxos-harness up`: start a cluster under a supervisor."""

from __future__ import annotations

import argparse

from harness.errors import PROG
from harness.supervisor.cluster import clear_stale, select_priests, wipe_data_dir
from harness.supervisor.state import check_current_writable, check_data_dir
from harness.verbs.args import config_arg
from node.config import load_config


def add_arguments(p: argparse.ArgumentParser) -> None:
    config_arg(p, optional=False)
    p.add_argument("--only", metavar="A,B",
                   help="start only these priests (others: chaos --restart)")
    p.add_argument("--detach", action="store_true", help="return once every priest listens")
    p.add_argument("--fresh", action="store_true", help="wipe the config's data dir first")


def run(args: argparse.Namespace) -> int:
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
    from harness.supervisor.daemon import run as run_supervisor
    from harness.supervisor.daemon import start_detached

    config = load_config(args.config)
    names = select_priests(config, args.only)
    check_data_dir(config.data_dir)
    check_current_writable()  # before any priest starts, not after
    clear_stale(config)
    if args.fresh:
        wipe_data_dir(config)
    if not args.detach:
        return run_supervisor(config, names)
    answer = start_detached(config, names)
    pids = ", ".join(f"{n} {pid}" for n, pid in answer["priests"].items())
    relay = answer.get("relay")
    network = f", relay pid {relay}" if relay is not None else ", network direct"
    print(f"cluster {config.cluster} is up: {len(answer['priests'])} priests ({pids}), "
          f"supervisor pid {answer['supervisor']}{network}; stop it with `{PROG} down`")
    return 0
