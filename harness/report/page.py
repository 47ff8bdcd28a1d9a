"""`report`'s work: read the run, judge it as `verify` does, write the HTML (harness.report.html)."""

from __future__ import annotations

from pathlib import Path

from harness.check.history import load_history
from harness.check.rules import check
from harness.errors import RunFilesError
from harness.report import html
from harness.report.run import load_run
from node.config import Config


def write_report(config: Config, alive: set[str] | None, path: Path) -> str:
    """Write the report of the last run under config.data_dir to `path`; one line saying what."""
    history = load_history(config)
    verdict = check(config, history, alive)
    run = load_run(config, history)
    if not any(run.events.values()):
        raise RunFilesError(f"{config.data_dir}: no run recorded (no events.jsonl with events); "
                            f"bring the cluster up first: paxos-harness up {config.path}")
    text = html.render(run, verdict)
    try:
        html.write(path, text)
    except OSError as exc:
        raise RunFilesError(f"{path}: cannot write the report: {exc.strerror or exc}") from None
    between = run.between()
    return (f"{len(between)} messages ({sum(m.lost for m in between)} lost), "
            f"{len(run.ballots)} ballots, verdict exit {verdict.exit_status}, "
            f"{len(text.encode()) / 1e6:.2f} MB")
