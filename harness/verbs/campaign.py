"""`paxos-harness campaign`: many seeded chaos runs of real priests, each on a fresh cluster."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from harness.campaign.pool import run_all
from harness.campaign.report import Progress, failure, passed_over_line, summary, to_json
from harness.campaign.run import RunResult, Status, passed_over
from harness.campaign.spec import (
    DEFAULT_DURATION,
    DEFAULT_RATE,
    DEFAULT_RUNS,
    Campaign,
)
from harness.chaos.plan import MAX_STEPS
from harness.check.verdict import KINDS
from harness.errors import UsageError
from harness.record import fresh_seed
from harness.supervisor.state import check_data_dir
from harness.verbs.args import config_arg, count_arg, fault_kinds, faults_for, number_arg, seed_arg
from node.config import load_config
from node.flaws import FLAW_NAMES
from node.flaws import warning as flaw_warning

INTERRUPTED_STATUS = 130


def add_arguments(p: argparse.ArgumentParser) -> None:
    config_arg(p, optional=False)
    p.add_argument("--runs", type=count_arg(1, 10**6), metavar="N",
                   help=f"how many runs (default {DEFAULT_RUNS})")
    p.add_argument("--duration", type=number_arg("a number of seconds", above_zero=True),
                   metavar="T", help=f"seconds of chaos in each run, before its heal phase "
                   f"(default {DEFAULT_DURATION:g})")
    p.add_argument("--seed", type=seed_arg, metavar="S",
                   help="the campaign's seed; run k's plan seed is derived from it and k "
                        "(default: a new one, printed)")
    p.add_argument("--rate", type=number_arg("a number of actions per second", above_zero=True),
                   metavar="R", help=f"actions per second on average (default {DEFAULT_RATE:g})")
    p.add_argument("--faults", type=fault_kinds, metavar="KINDS",
                   help="what the nemesis mixes: process, network, or process,network "
                        "(default: both; process only with network: direct)")
    p.add_argument("--flaw", action="append", choices=FLAW_NAMES, default=[], metavar="NAME",
                   help=f"switch a deliberate mistake on in every run's priests, repeatable: "
                        f"{', '.join(FLAW_NAMES)}")
    p.add_argument("--jobs", type=count_arg(1, 256), metavar="J",
                   help="clusters at once (default: one per CPU)")
    p.add_argument("--run", type=count_arg(1, 10**6), metavar="K",
                   help="only run K of the campaign of --seed (its plan again, on real processes)")
    p.add_argument("--keep", action="store_true", help="keep the files of passing runs too")
    p.add_argument("--keep-going", action="store_true",
                   help="do every run, past violations (default: stop at the first)")
    p.add_argument("--until", action="append", choices=sorted(KINDS), default=[], metavar="RULE",
                   help="stop at a run that breaks this rule (repeatable), passing over runs "
                        "that break only others (counted; their files removed unless --keep), "
                        "e.g. --until promise_broken --until disagreement")
    p.add_argument("--json", action="store_true", help="a machine-readable summary at the end")


def run(args: argparse.Namespace) -> int:
    """Run many short seeded chaos runs of CONFIG's priests, each on a fresh cluster, each verified.

    Run k: a fresh cluster of CONFIG's priests on free loopback ports, in
    <data_dir>/campaign/<seed>/run-<k>/ (so it runs beside a cluster of CONFIG
    that is up); the random nemesis from a seed derived from --seed and k
    (process and network faults, --rate a second, for --duration seconds);
    the heal phase; verify; down. A passing run's files are removed (unless
    --keep); a failing run's are kept, with its plan.
        paxos-harness campaign configs/five.yaml --runs 200 --duration 2 --seed 1
        paxos-harness campaign configs/five.yaml --runs 300 --flaw forget-promises
        paxos-harness campaign configs/five.yaml --seed 1 --run 17     # run 17's plan again
    Exit 0: no run broke a rule; 1: a run did (it stops there unless
    --keep-going), with its seed, the rule, verify's evidence, where its files
    are and the command that replays its plan; 130: Ctrl+C (every process it
    started ends; a summary of what ran); 2: a bad option or config.
    With --until RULE it stops only at a run that breaks RULE: a flaw's own
    trace (forget-promises: ledger_lost, at the first restart) is passed over
    to find what the flaw breaks, e.g.
        paxos-harness campaign configs/five.yaml --runs 300 --flaw forget-promises \
            --until promise_broken --until disagreement
    """
    campaign = _campaign(args)
    out = sys.stdout
    for flaw in campaign.all_flaws:
        print(flaw_warning(flaw, "every run's cluster"), file=sys.stderr, flush=True)
    if not args.json:
        which = f"run {campaign.only}" if campaign.only else f"{campaign.runs} runs"
        print(f"campaign: seed {campaign.seed}, {which} of {campaign.duration:g} s on "
              f"{campaign.config.path} ({len(campaign.config.names)} priests; faults "
              f"{','.join(campaign.faults)}; rate {campaign.rate:g}/s; {campaign.jobs} at once); "
              f"files under {campaign.root}/", flush=True)
    existed = _existing(campaign)
    progress = Progress(out, len(campaign.numbers), on=not args.json and out.isatty())

    def on_result(r: RunResult) -> None:
        progress.result(r)
        if r.status != Status.PASS and not args.json:
            progress.clear()
            lines = ([passed_over_line(campaign, r)] if passed_over(campaign, r)
                     else failure(campaign, r) + [""])
            print("\n".join(lines), flush=True)

    outcome = run_all(campaign, on_result=on_result, on_tick=progress.tick)
    progress.clear()
    _tidy(campaign, existed)
    if outcome.error is not None:
        raise outcome.error
    status = (INTERRUPTED_STATUS if outcome.interrupted
              else 1 if any(r.status == Status.VIOLATION for r in outcome.results) else 0)
    if args.json:
        print(json.dumps(to_json(campaign, outcome, status), indent=1))
    else:
        print(summary(campaign, outcome), flush=True)
    return status


def _campaign(args: argparse.Namespace) -> Campaign:
    """The campaign the options describe, checked before anything starts (UsageError: exit 2)."""
    config = load_config(args.config)
    check_data_dir(config.data_dir)
    if args.run is not None and args.seed is None:
        raise UsageError("--run K replays run K of a campaign: give that campaign's --seed too")
    if args.run is not None and args.runs is not None and args.run > args.runs:
        raise UsageError(f"--run {args.run} is not one of the --runs {args.runs}")
    kinds = faults_for(config, args.faults)
    duration = args.duration if args.duration is not None else DEFAULT_DURATION
    rate = args.rate if args.rate is not None else DEFAULT_RATE
    if duration * rate > MAX_STEPS:
        raise UsageError(f"--rate x --duration is {duration * rate:g} actions; at most "
                         f"{MAX_STEPS} in one run")
    runs = args.runs if args.runs is not None else DEFAULT_RUNS
    jobs = args.jobs if args.jobs is not None else (os.cpu_count() or 1)
    return Campaign(config, runs=runs, duration=duration,
                    seed=args.seed if args.seed is not None else fresh_seed(),
                    rate=rate, faults=tuple(kinds), flaws=tuple(dict.fromkeys(args.flaw)),
                    jobs=max(1, min(jobs, runs if args.run is None else 1)), keep=args.keep,
                    keep_going=args.keep_going, only=args.run,
                    until=tuple(dict.fromkeys(args.until)))


def _existing(campaign: Campaign) -> set[Path]:
    """The campaign's parent directories that were there before it (never removed)."""
    root = campaign.root
    return {d for d in (root, root.parent, root.parent.parent) if d.exists()}


def _tidy(campaign: Campaign, existed: set[Path]) -> None:
    """Remove the directories the campaign made for its runs, if no kept run is in them."""
    root = campaign.root
    for d in (root, root.parent, root.parent.parent):
        if d in existed:
            break
        try:
            d.rmdir()
        except OSError:
            break
