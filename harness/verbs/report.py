"""`paxos-harness report`: one self-contained HTML file of a real run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

from harness.supervisor.cluster import alive_priests
from harness.supervisor.state import check_data_dir, resolve_config
from harness.verbs.args import config_arg

REPORT_FILE = "report.html"


def add_arguments(p: argparse.ArgumentParser) -> None:
    config_arg(p)
    p.add_argument("-o", "--output", metavar="FILE", type=Path,
                   help=f"where to write it (default: {REPORT_FILE} in the cluster's data dir)")


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Write the run CONFIG's priests left as one HTML file (default: the current cluster).

    Everything is inline, so it opens from disk, offline, in any browser, and
    reads without JavaScript: verify's verdict first, each violation with its
    evidence; a timeline (a lane per priest, running, paused and down shaded,
    network faults across the lanes they cut, ballots as bars with their
    number and outcome); the message diagram (a line per message from its
    send to its receipt, a lost one to where it vanished; hover for the
    message in the paper's notation and its times; zoom with + and -); each
    priest's final ledger and decree.txt; the chaos plan with its seed; the
    config. A foreign priest's messages are its datagrams as the relay saw
    them, by their first bytes (none without the relay). The last run in the
    data dir is drawn. Scripts can rely on its
    markup (docs/formats.md). Exit 0 when written; 2 for a data dir with no run.
        paxos-harness report
        paxos-harness report configs/four.yaml -o /tmp/four.html
    """
    from harness.report.page import write_report

    out = out or sys.stdout
    config = resolve_config(args.config)
    check_data_dir(config.data_dir)
    path = args.output if args.output is not None else config.data_dir / REPORT_FILE
    summary = write_report(config, alive_priests(config), path)
    out.write(f"report: {summary}\nwrote {path} (open it in a browser: file://{path.resolve()})\n")
    return 0
