"""`paxos-harness diagram`: a real run's message diagram, in the terminal."""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from harness.output import use_color
from harness.supervisor.cluster import alive_priests
from harness.supervisor.state import check_data_dir, resolve_config
from harness.verbs.args import color_arg, config_arg


def add_arguments(p: argparse.ArgumentParser) -> None:
    config_arg(p)
    p.add_argument("--ballot", metavar="B",
                   help="only ballot B (e.g. 3.alpha): its messages, the Success of its decree, "
                        "the writes they caused and the faults while it ran")
    p.add_argument("--all", action="store_true",
                   help="every step: retransmissions too, not folded into the first copy")
    color_arg(p)


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Draw the message diagram of the run CONFIG's priests left (default: the current cluster).

    One column per priest, one row per step, time going down (seconds after
    the run's first event): every message sent (* sender, > or < receiver,
    x lost: dropped by the relay, or never received), ledger and decree.txt
    writes, and every fault the harness applied (kill, restart, stop, pause,
    resume, ballot requests, partitions, drops, heals) as its own row. Read
    from events.jsonl, harness.jsonl and, where the relay ran, network.jsonl;
    the last run in the data dir only. Shortened to what matters unless
    --all: on a violation, the steps it rests on (flagged !); otherwise every
    step, with retransmissions folded into their first copy ("sent 5 times,
    4 lost"). A foreign priest (config key command) writes no events: behind
    the relay, its datagrams are drawn by their first bytes ("NextBallot ...")
    and its decree.txt as the supervisor saw it (d); without the relay there
    is nothing to draw of it. The priests' names repeat every 40 rows:
        paxos-harness diagram
        paxos-harness diagram configs/four.yaml --ballot 1.beta
        paxos-harness diagram --all --color always | less -R
    Exit 0 when drawn; 2 for a bad option or a data dir with no run in it.
    """
    from harness.report.text import draw_run

    out = out or sys.stdout
    config = resolve_config(args.config)
    check_data_dir(config.data_dir)
    color = {"always": True, "never": False}.get(args.color, use_color(out))
    rows = draw_run(config, alive_priests(config), ballot=args.ballot, everything=args.all,
                    color=color)
    out.write("\n".join(rows) + "\n")
    return 0
