"""`paxos-harness simulate`: the real Synod core under thousands of seeded faulty runs."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

from colorama import Fore, Style

from harness.check.verdict import Violation
from harness.errors import UsageError
from harness.output import use_color
from harness.report.diagram import diagram, legend, rests_on, shorten
from harness.simulate.runs import RULES, Report, Setup, replay_command, run_seed, search
from harness.verbs.args import count_arg, number_arg, probability, seed_arg
from node.config import MAX_PRIESTS
from node.flaws import FLAW_NAMES
from node.flaws import warning as flaw_warning
from node.sim import HORIZON, Faults, Step, World, describe_step


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = Faults()
    p.add_argument("--priests", type=count_arg(1, MAX_PRIESTS), default=5, metavar="N",
                   help="priests per run (default 5)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--seeds", type=count_arg(1, 10**9), metavar="K",
                       help="run K seeds, from --first-seed on (default 1000)")
    which.add_argument("--seed", type=seed_arg, metavar="S", help="run seed S only")
    p.add_argument("--first-seed", type=seed_arg, default=0, metavar="F",
                   help="the first of the --seeds K seeds (default 0)")
    p.add_argument("--trace", action="store_true",
                   help="print the whole run as a message diagram, step by step "
                        "(with --seed; with --seeds, for the run that breaks a rule)")
    p.add_argument("--flaw", action="append", choices=FLAW_NAMES, default=[], metavar="NAME",
                   help=f"a deliberate mistake in the core, repeatable: {', '.join(FLAW_NAMES)}")
    p.add_argument("--until", action="append", choices=sorted(RULES), default=[], metavar="RULE",
                   help="search on until a run breaks this rule (repeatable), passing over runs "
                        "that break only others, e.g. --until disagreement")
    p.add_argument("--html", type=Path, metavar="FILE",
                   help="write the run's HTML report to FILE (as `report` does for a real run): "
                        "with --seed S, of seed S; with --seeds, of the run that breaks a rule "
                        "(none when every run is clean)")
    p.add_argument("--json", action="store_true", help="machine-readable result")
    p.add_argument("--drop", type=probability, default=d.drop, metavar="P",
                   help=f"chance a message is lost (default {d.drop})")
    p.add_argument("--duplicate", type=probability, default=d.duplicate, metavar="P",
                   help=f"chance a message arrives twice (default {d.duplicate})")
    p.add_argument("--crash", type=probability, default=d.crash, metavar="P",
                   help=f"chance a priest crashes before each effect (default {d.crash})")
    p.add_argument("--partition", type=probability, default=d.partition, metavar="P",
                   help=f"chance a run cuts a minority off until the heal (default {d.partition})")
    p.add_argument("--ballots", type=count_arg(0, 100_000), default=d.ballots, metavar="N",
                   help=f"ballots asked of random priests before the heal (default {d.ballots})")
    p.add_argument("--horizon", type=horizon_arg, default=HORIZON, metavar="SECONDS",
                   help=f"virtual seconds of the faulty phase, before the heal (default {HORIZON:g}); "
                        "ballots are asked in its first half")
    p.add_argument("--jobs", type=count_arg(0, 256), default=0, metavar="J",
                   help="worker processes (default 0: one per CPU, at most 8); results do not "
                        "depend on it")


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run the real Synod core under seeded faults; check every run (exit 1 on a violation).

    Each seed is one deterministic run: ballots at random priests, lost,
    duplicated and reordered messages, partitions, crashes between any two
    effects; then a heal phase (network whole, all priests up, one ballot).
    Every run is judged by the checks of `verify`, and every priest must hold
    a decree after the heal. Exit 0 with a summary when every run is clean;
    exit 1 at the first run that breaks a rule, with its seed, the rule, and
    its steps as a message diagram shortened to those that matter; exit 2 for
    a bad option. The same seed always replays the same run:
        paxos-harness simulate --priests 5 --seeds 2000
        paxos-harness simulate --priests 5 --seed 1234 --trace
        paxos-harness simulate --priests 5 --seeds 2000 --flaw same-ballot-numbers
        paxos-harness simulate --seeds 2000 --flaw same-ballot-numbers --until disagreement
    With --until RULE, runs that break only other rules are passed over (and
    counted); exit 1 if any run broke any rule. --html FILE writes the run's
    HTML report (the one `report` writes of a real run, on virtual time): of
    seed S with --seed S, else of the run that broke a rule; an existing FILE
    is replaced, a link or a directory refused:
        paxos-harness simulate --seed 444 --flaw same-ballot-numbers --html /tmp/444.html
    """
    out = out or sys.stdout
    setup = _setup(args)
    seeds = _seeds(args)
    if args.html is not None:
        from harness.report.page import check_output

        check_output(args.html, "--html")  # before the search: a bad name fails at once
    color = not args.json and use_color(out)
    _warn_flaws(setup.flaws, sys.stderr if args.json else out, color)
    jobs = args.jobs or min(os.cpu_count() or 1, 8)
    report = search(setup, seeds, jobs=jobs, until=frozenset(args.until))
    world, violations = run_seed(setup, report.failed.seed) if report.failed else (None, ())
    if world is None and (args.trace or args.html is not None) and len(seeds) == 1:
        world, violations = run_seed(setup, seeds[0])
    html = _write_html(args.html, setup, world, violations, report) \
        if args.html is not None else None
    traced = world if report.failed or args.trace else None  # a clean run's trace: only asked
    if args.json:
        data = _to_json(report, args, traced, violations)
        if html is not None:
            data["html"] = html
        out.write(json.dumps(data, indent=2) + "\n")
    else:
        lines = _render(report, args, traced, violations, color)
        if html is not None:
            lines.append(html["text"])
        out.write("\n".join(lines) + "\n")
    return 1 if report.failed or report.passed_over else 0


def _write_html(path: Path, setup: Setup, world: World | None,
                violations: tuple[Violation, ...], report: Report) -> dict[str, Any]:
    """Write the report of `world` to `path`, or say why there is none; what --json shows."""
    from harness.report.page import write_simulation_report

    if world is None:
        text = (f"no report written: no run of seeds {report.seeds[0]}..{report.seeds[-1]} broke "
                f"a rule; --seed S --html {path} writes the report of any one run")
        return {"path": None, "seed": None, "text": text}
    summary = write_simulation_report(setup, world, violations, path)
    why = "the run that broke a rule" if report.failed is not None and len(report.seeds) > 1 \
        else "the seed asked for"
    text = (f"report of seed {world.seed} ({why}): {summary}\n"
            f"wrote {path} (open it in a browser: file://{path.resolve()})")
    return {"path": str(path), "seed": world.seed, "text": text}


def _setup(args: argparse.Namespace) -> Setup:
    faults = Faults(drop=args.drop, duplicate=args.duplicate, crash=args.crash,
                    partition=args.partition, ballots=args.ballots)
    return Setup(args.priests, faults, tuple(dict.fromkeys(args.flaw)), horizon=args.horizon)


def horizon_arg(text: str) -> float:
    """An argparse type: the faulty phase's length, more than 0 and at most an hour."""
    value = number_arg("a number of seconds", above_zero=True)(text)
    if value > 3600:
        raise argparse.ArgumentTypeError(f"at most 3600 seconds, got {text}")
    return value


def _seeds(args: argparse.Namespace) -> range:
    if args.seed is not None:
        if args.first_seed:
            raise UsageError("--first-seed goes with --seeds K, not with --seed S")
        return range(args.seed, args.seed + 1)
    return range(args.first_seed, args.first_seed + (args.seeds or 1000))


def _warn_flaws(flaws: tuple[str, ...], out: TextIO, color: bool) -> None:
    for flaw in flaws:
        line = flaw_warning(flaw, "this core")
        out.write(f"{Fore.YELLOW}{Style.BRIGHT}{line}{Style.RESET_ALL}\n" if color else line + "\n")


def _trace(world: World, violations: tuple[Violation, ...], full: bool) -> tuple[list[Step], str]:
    steps = world.steps
    if full or not violations:
        return steps, f"the whole run, {len(steps)} steps"
    short = shorten(world, violations)
    return short, f"shortened to the {len(short)} steps that matter, of {len(steps)}"


def _render(report: Report, args: argparse.Namespace, world: World | None,
            violations: tuple[Violation, ...], color: bool) -> list[str]:
    def paint(text: str, code: str) -> str:
        return f"{code}{text}{Style.RESET_ALL}" if color else text

    setup, seeds = report.setup, report.seeds
    f = setup.faults
    span = f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {seeds[0]}..{seeds[-1]}"
    lines = [(f"simulate: {setup.priests} priests, {span}; drop {f.drop}, duplicate {f.duplicate}, "
             f"crash {f.crash}, partition {f.partition}, {f.ballots} ballots requested per run"
             + (f" in {setup.horizon:g} s" if setup.horizon != HORIZON else ""))]
    # The verdict first, so `| head` shows it; the trace after it.
    if report.failed is not None:
        lines += [""] + _violation_lines(report, violations, paint)
    if report.passed_over:
        lines += ["", _passed_over(report, args.until, paint)]
    if world is not None:
        steps, what = _trace(world, violations, args.trace)
        rows = diagram(world.names, steps, rests_on(violations))
        lines += ["", f"trace of seed {world.seed} ({what}):", *legend(rows, steps), *rows]
    lines += ["", _summary(report)]
    if report.failed is None and not report.passed_over:
        clean = f"CLEAN (exit 0): {report.runs} runs, no violation"
        lines.append(paint(clean, Fore.GREEN + Style.BRIGHT))
    return lines


def _passed_over(report: Report, until: list[str], paint: Callable[[str, str], str]) -> str:
    counts = ", ".join(f"{kind} in {n}" for kind, n in sorted(report.passed_over.items()))
    text = f"passed over (--until {' '.join(until)}), runs breaking other rules: {counts}"
    if report.failed is None:
        text = f"VIOLATION (exit 1), but no run broke {', '.join(until)}; {text}"
        return paint(text, Fore.RED + Style.BRIGHT)
    return text


def _violation_lines(report: Report, violations: tuple[Violation, ...],
                     paint: Callable[[str, str], str]) -> list[str]:
    assert report.failed is not None
    seed = report.failed.seed
    kinds = ", ".join(dict.fromkeys(v.kind for v in violations))
    lines = [paint(f"VIOLATION (exit 1) in seed {seed}: {kinds}", Fore.RED + Style.BRIGHT)]
    for v in violations:
        lines += [f"  {paint(v.kind, Fore.RED)}: {v.message}", f"    rule: {RULES[v.kind]}"]
    lines.append(f"replay: {replay_command(report.setup, seed)}")
    return lines


def _summary(r: Report) -> str:
    lost = f" ({100 * r.dropped / r.messages:.0f}% lost)" if r.messages else ""
    return (f"{r.runs} runs, {r.messages} messages{lost}, {r.crashes} crashes, {r.ballots} "
            f"ballots in {r.seconds:.2f}s: {r.rate(r.runs):.0f} runs/s, "
            f"{r.rate(r.ballots):.0f} ballots/s")


def _to_json(report: Report, args: argparse.Namespace, world: World | None,
             violations: tuple[Violation, ...]) -> dict[str, Any]:
    r, setup = report, report.setup
    data: dict[str, Any] = {
        "status": "violation" if r.failed or r.passed_over else "clean",
        "exit_status": 1 if r.failed or r.passed_over else 0,
        "until": list(args.until), "passed_over": dict(sorted(r.passed_over.items())),
        "priests": setup.priests, "first_seed": r.seeds[0], "seeds": len(r.seeds),
        "flaws": list(setup.flaws), "faults": asdict(setup.faults), "horizon": setup.horizon,
        "runs": r.runs, "messages": r.messages, "dropped": r.dropped, "crashes": r.crashes,
        "ballots": r.ballots, "seconds": round(r.seconds, 6),
        "runs_per_second": round(r.rate(r.runs), 1),
        "ballots_per_second": round(r.rate(r.ballots), 1),
        "violation": None,
    }
    if r.failed is not None:
        data["violation"] = {
            "seed": r.failed.seed, "replay": replay_command(setup, r.failed.seed),
            "violations": [{"kind": v.kind, "rule": RULES[v.kind], "message": v.message,
                            "priests": list(v.priests), "decrees": list(v.decrees),
                            "ballots": list(v.ballots)} for v in violations],
        }
    if world is not None:
        steps, _ = _trace(world, violations, args.trace)
        data["trace"] = [f"{s.time:.6f} {describe_step(s)}" for s in steps]
    return data
