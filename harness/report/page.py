"""`report`'s work: read the run, judge it as `verify` does, write the HTML (harness.report.html).

`simulate --html` writes the same page for a simulated run (`write_simulation_report`).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path

from harness.check.verdict import Verdict, Violation
from harness.errors import RunFilesError, UsageError
from harness.report import html
from harness.report.run import Run, judged_run
from harness.report.simulated import simulated_run
from harness.simulate.runs import Setup
from node.config import Config
from node.sim import World


def write_report(config: Config, alive: set[str] | None, path: Path) -> str:
    """Write the report of the last run under config.data_dir to `path`; one line saying what."""
    run, verdict = judged_run(config, alive)
    return _write(run, verdict, path)


def write_simulation_report(setup: Setup, world: World, violations: Sequence[Violation],
                            path: Path) -> str:
    """Write the report of a played simulated world to `path`; one line saying what."""
    run, verdict = simulated_run(setup, world, violations)
    return _write(run, verdict, path)


def check_output(path: Path, option: str) -> None:
    """UsageError, in one line, unless a report can be written at `path`: a new file, or a
    regular file it replaces (atomically), in a directory that exists and can be written."""
    where = f"{option} {path}"
    if path.is_symlink():
        raise UsageError(f"{where}: a symbolic link; the report is never written through one: "
                         "remove it, or name another file")
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise UsageError(f"{where}: {exc.strerror or exc}") from None
    if mode is not None and stat.S_ISDIR(mode):
        raise UsageError(f"{where}: a directory; name a file in it, e.g. {path / 'report.html'}")
    if mode is not None and not stat.S_ISREG(mode):
        raise UsageError(f"{where}: not a regular file; name another file")
    parent = path.parent
    if not parent.is_dir():
        raise UsageError(f"{where}: no directory {parent}; create it first, or name a file "
                         "in one that exists")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{where}: cannot write in {parent} (permission denied)")


def _write(run: Run, verdict: Verdict, path: Path) -> str:
    text = html.render(run, verdict)
    try:
        html.write(path, text)
    except OSError as exc:
        raise RunFilesError(f"{path}: cannot write the report: {exc.strerror or exc}") from None
    between = run.between()
    return (f"{len(between)} messages ({sum(m.lost for m in between)} lost), "
            f"{len(run.ballots)} ballots, verdict exit {verdict.exit_status}, "
            f"{len(text.encode()) / 1e6:.2f} MB")
