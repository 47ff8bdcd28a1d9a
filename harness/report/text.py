"""`diagram`'s output: a real run's verdict in one line, the legend, and the diagram's rows."""

from __future__ import annotations

from colorama import Fore, Style

from harness.check.verdict import OK, VIOLATION, Verdict
from harness.errors import UsageError
from harness.report import steps as run_steps
from harness.report.diagram import HEADER_EVERY, diagram, legend, rests_on
from harness.report.run import Run, judged_run
from node.config import Config


def draw_run(config: Config, alive: set[str] | None, *, ballot: str | None = None,
             everything: bool = False, color: bool = False) -> list[str]:
    """The lines `diagram` prints for the last run under config.data_dir."""
    run, verdict = judged_run(config, alive)
    every = run_steps.steps(run)
    if ballot is not None:
        known = sorted({b.ballot for b in run.ballots})
        if ballot not in known:
            shown = ", ".join(known[:12]) + (" ..." if len(known) > 12 else "")
            raise UsageError(f"--ballot {ballot}: no priest began that ballot in this run "
                             f"(ballots begun: {shown or 'none'})")
        chosen = run_steps.of_ballot(every, run, ballot)
        chosen = chosen if everything else run_steps.collapse(chosen)
        what = f"ballot {ballot}: {len(chosen)} of {len(every)} steps"
    elif everything:
        chosen, what = every, f"the whole run, {len(every)} steps"
    else:
        chosen = run_steps.shorten(run, every, verdict.violations)
        what = (f"shortened to the {len(chosen)} steps that matter, of {len(every)}; "
                "--all for every one")
    # What happened before the first step shown still shapes the lanes (a partition, a kill).
    before = [s for s in every if chosen and s.time < chosen[0].time]
    rows = diagram(run.names, chosen, rests_on(verdict.violations, run.t0), color=color,
                   header_every=HEADER_EVERY, before=before)
    return [*head(run, verdict, color), f"diagram ({what}):", *legend(rows, chosen), *rows]


def head(run: Run, verdict: Verdict, color: bool) -> list[str]:
    """Two lines: what the run was, and verify's verdict on it."""
    between = run.between()
    lost = sum(m.lost for m in between)
    faults = sum(1 for r in run.actions if getattr(r, "applied", False))
    earlier = f"; {run.earlier_runs} earlier runs in this data dir not drawn" \
        if run.earlier_runs else ""
    read = [*(["events"] if any(run.events.values()) else []), "harness.jsonl",
            *(["network.jsonl"] if run.relay else [])]
    source = " and ".join(read) if len(read) < 3 else f"{read[0]}, {read[1]} and {read[2]}"
    first = (f"cluster {run.config.cluster}: a run of {run.seconds(run.t1):.2f} s, "
             f"{len(run.names)} priests, {len(between)} messages between priests ({lost} lost), "
             f"{faults} faults and ballot requests applied (from {source}){earlier}")
    lines = [first]
    if run.foreign and run.relay:
        lines.append(f"foreign priests {', '.join(run.foreign)}: their messages are the datagrams "
                     "the relay carried, by their first bytes (time: when the relay read each); "
                     "their decree.txt as the supervisor saw it; no promises or votes")
    status = verdict.exit_status
    kinds = ", ".join(dict.fromkeys(v.kind for v in verdict.violations))
    text = {OK: f"verdict: AGREEMENT (exit 0){_decree(verdict)}",
            VIOLATION: f"verdict: VIOLATION (exit 1): {kinds}; `paxos-harness verify` explains"}.get(
        status, f"verdict: {verdict.status.upper()} (exit {status})")
    if color:
        shade = {OK: Fore.GREEN, VIOLATION: Fore.RED}.get(status, Fore.YELLOW)
        text = f"{shade}{Style.BRIGHT}{text}{Style.RESET_ALL}"
    return lines + [text, *run.notes]


def _decree(verdict: Verdict) -> str:
    return f": every surviving priest holds decree {verdict.decree}" \
        if verdict.decree is not None else ""
