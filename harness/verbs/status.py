"""`paxos-harness status`: who runs, with pid, state, decree and last ballot."""

from __future__ import annotations

import argparse
import json
import sys

from harness.output import table, use_color
from harness.supervisor.cluster import cluster_status, network_line
from harness.supervisor.state import resolve_config
from harness.verbs.args import config_arg


def add_arguments(p: argparse.ArgumentParser) -> None:
    config_arg(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    """Show each priest of CONFIG (default: the current cluster): pid, state, decree, last ballot.

    States: running, paused, killed, exited, not started; `down` when no
    supervisor runs. A priest armed by `chaos --kill-after-promise` is named
    below the table. Decree and last ballot come from the priests' files.
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
        line = network_line(report["network"])
        if line is not None:
            print(line)
        rows = [[p["priest"], str(p["pid"] or "-"), p["state"], _cell(p["decree"]),
                 p["last_ballot"]] for p in report["priests"]]
        print(table(["priest", "pid", "state", "decree", "last ballot"], rows, color=color,
                    state_column=2), end="")
        for p in report["priests"]:
            if p["armed"]:
                print(f"{p['priest']}: armed ({p['armed']}): SIGKILL right after its next promise")
            if p["problem"]:
                print(f"{p['priest']}: {p['problem']}")
        for problem in report["problems"]:
            print(f"supervisor: {problem}")
    return 0 if report["up"] else 1


def _cell(value: object) -> str:
    return "-" if value is None else str(value)
