"""`paxos-harness verify`: the checker, on what a cluster's priests left on disk."""

from __future__ import annotations

import argparse
import sys

from harness.check.verdict import NOTHING
from harness.errors import PROG, NotUpError
from harness.output import use_color
from harness.supervisor.cluster import alive_priests
from harness.supervisor.state import check_data_dir, resolve_config
from harness.verbs.args import config_arg, number_arg


def add_arguments(p: argparse.ArgumentParser) -> None:
    config_arg(p)
    p.add_argument("--wait", type=number_arg("a number of seconds"), default=0.0, metavar="T",
                   help="re-check up to T seconds")
    p.add_argument("--json", action="store_true", help="machine-readable verdict")


def run(args: argparse.Namespace) -> int:
    """Check agreement from the files the priests of CONFIG left (default: the current cluster).

    Exit 0: every surviving priest holds the same decree and the history shows
    no safety violation; 1: a violation; 2: usage or config error; 3: no
    violation but a surviving priest has not learned yet; 4: cannot verify (a
    violation rests only on files or lines that could not be read); 5: nothing
    to check (no cluster brought up here, or none of its priests ever ran).
    --wait T re-checks for up to T seconds until agreement.
    """
    from harness.check import rules

    try:
        config = resolve_config(args.config)
    except NotUpError as e:  # no CONFIG and nothing brought up here: not a broken rule
        print(f"{PROG}: {e}", file=sys.stderr)
        return NOTHING
    check_data_dir(config.data_dir)
    return rules.run(config, alive_fn=lambda: alive_priests(config), wait=args.wait,
                     as_json=args.json, color=use_color(sys.stdout), out=sys.stdout)
