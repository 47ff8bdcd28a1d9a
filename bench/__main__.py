"""`python -m bench` (or `make bench`): time ballots, fail-over, starts, simulation and memory,
and a 3-member etcd beside the priests (row `etcd`, when etcd is installed).

Prints a table and writes JSON under logs/bench/. Every figure is a median over
repeated runs, beside a floor measured in the same run and the ratio to it.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import ballots, campaign, etcd, floors, network, report_page, simulation, starts
from bench.cluster import BenchError
from bench.report import Entry, table, write_json
from bench.starts import Skipped
from bench.stats import Figure, Target, median
from node.sim import Faults

ROWS = ["ballot", "etcd", "contention", "failover", "restart", "start", "sim", "memory",
        "network", "report"]
# Rows that run only when asked for (`--only campaign`): real campaigns take many minutes.
OPT_IN = ["campaign"]
REFERENCE = ballots.REFERENCE
REFERENCE_PATH = "4 x atomic_write + 2.5 x udp_rtt"  # the critical path the targets use
LEDGER_PATH = "5 x ledger_persist + 2.5 x udp_rtt"  # this ledger's own
APPEND_PATH = "5 x fdatasync_append + 2.5 x udp_rtt"  # every write an fdatasync'd append
# The same, where 4 priests write at once (promises, votes, learned): the slowest of 4 appends.
CONTENDED_PATH = "2 x fdatasync_append + 3 x fdatasync_append_x4 + 2.5 x udp_rtt"
# Every datagram of a 4-priest ballot signed and verified once: NextBallot, LastVote,
# BeginBallot, Voted, Success, 3 of each over UDP (the leader's own go in memory).
TAG_PATH = "15 x datagram_tag"
PATHS = {REFERENCE: REFERENCE_PATH, ballots.APPEND_ONLY: APPEND_PATH}


@dataclass
class Plan:
    """How many samples each kind of figure takes."""

    floor_samples: int = 300  # half before the other rows, half after
    floor_burst: int = 2  # disk floor samples after each cluster sample, among the rows
    ballots: int = 30
    events: int = 30  # contention, fail-over, crash and restart
    starts: int = 10
    sizes: tuple[int, ...] = (3, 4, 5, 9)
    start_sizes: tuple[int, ...] = (4, 16, 32, 64)
    sim_seconds: float = 1.0
    sim_repeats: int = 5
    campaign_overhead: int = 30  # runs, one at a time
    campaign_runs: int = 300  # the correct core's campaign, and the cap of each catch
    campaign_seeds: int = 3  # campaigns per flaw


def make_plan(quick: bool, repeat: int | None) -> Plan:
    """The default plan, `--quick`'s tiny one, or every process row at `--repeat N` samples."""
    plan = Plan()
    if quick:
        plan = Plan(floor_samples=20, floor_burst=1, ballots=2, events=2, starts=2,
                    start_sizes=(4,), sim_seconds=0.1, sim_repeats=2, campaign_overhead=2,
                    campaign_runs=2, campaign_seeds=1)
    if repeat is not None:
        plan.ballots = plan.events = plan.starts = repeat
        plan.sim_repeats = max(2, repeat // 5)
    return plan


def floor_figures(samples: dict[str, list[float]]) -> list[Figure]:
    """The floors every ratio uses, each a median over all its samples of the run."""
    out = [Figure("floor", name, "s", values) for name, values in samples.items()]
    m = {f.name: f.median for f in out}
    derived = {
        REFERENCE: evaluate(REFERENCE_PATH, m),
        "this ledger's path": evaluate(LEDGER_PATH, m),
        ballots.APPEND_ONLY: evaluate(APPEND_PATH, m),
        "append-only path, 4 at once": evaluate(CONTENDED_PATH, m),
        "tags of a 4-priest ballot": evaluate(TAG_PATH, m),
    }
    paths = {REFERENCE: REFERENCE_PATH, "this ledger's path": LEDGER_PATH,
             ballots.APPEND_ONLY: APPEND_PATH, "append-only path, 4 at once": CONTENDED_PATH,
             "tags of a 4-priest ballot": TAG_PATH}
    out += [Figure("floor", f"{name}: {paths[name]}", "s", [value], notes={"derived": True})
            for name, value in derived.items()]
    return out


def evaluate(expression: str, m: dict[str, float]) -> float:
    """A floor expression like "4 x atomic_write + 2.5 x udp_rtt" over the floor medians."""
    total = 0.0
    for term in expression.split(" + "):
        factor, _, name = term.rpartition(" x ")
        value = m[name] if name in m else evaluate(PATHS[name], m)
        total += float(factor or 1) * value
    return total


def resolve_floors(entries: list[Entry], m: dict[str, float]) -> None:
    """Give each figure whose floor is an expression its value, now that the floors are in."""
    for e in entries:
        if isinstance(e, Figure) and e.floor is None and e.floor_name:
            e.floor = evaluate(e.floor_name, m)


def run_rows(rows: list[str], plan: Plan, workdir: Path) -> list[Entry]:
    """Every asked-for row, in order; a row that fails is reported, not fatal."""
    have_supervisor = ("start" in rows or "memory" in rows) and starts.supervisor_available()
    jobs: dict[str, Any] = {
        "ballot": lambda: ballots.ballot_latency(workdir, list(plan.sizes), plan.ballots),
        "etcd": lambda: etcd.etcd_row(workdir, plan.ballots, plan.events),
        "contention": lambda: [ballots.contention(workdir, plan.events)],
        "failover": lambda: [ballots.failover(workdir, plan.events)],
        "restart": lambda: ballots.crash_restart(workdir, plan.events),
        "start": lambda: start_row(workdir, plan, have_supervisor),
        "sim": lambda: sim_row(plan),
        "memory": lambda: starts.memory(workdir, have_supervisor),
        "network": lambda: [*network.ballots(workdir, plan.ballots),
                            *network.forwarding(workdir, plan.events)],
        "report": lambda: report_page.report_row(workdir, max(3, min(plan.ballots, 7))),
        "campaign": lambda: campaign_row(workdir, plan),
    }
    entries: list[Entry] = []
    for row in rows:
        print(f"bench: {row} ...", file=sys.stderr, flush=True)
        try:
            entries += jobs[row]()
        except BenchError as e:
            entries.append(Skipped(row, row, f"failed: {e}"))
    return with_comparisons(entries)


def with_comparisons(entries: list[Entry]) -> list[Entry]:
    """The etcd row's side-by-side figures, placed right after it, from this run's figures."""
    extra = etcd.comparisons(entries)
    at = max((i + 1 for i, e in enumerate(entries) if e.row == etcd.ROW), default=len(entries))
    return [*entries[:at], *extra, *entries[at:]]


def start_row(workdir: Path, plan: Plan, supervised: bool) -> list[Entry]:
    out: list[Entry] = []
    if supervised:
        out += starts.up_detach(workdir, list(plan.start_sizes), plan.starts)
    else:
        out += [Skipped("start", f"up --detach, {n} priests", starts.NO_SUPERVISOR)
                for n in plan.start_sizes]
    out += starts.forked_start(workdir, list(plan.start_sizes), plan.starts)
    out.append(starts.execed_start(workdir, plan.starts))
    return out


def campaign_row(workdir: Path, plan: Plan) -> list[Entry]:
    jobs = os.cpu_count() or 1
    return [campaign.overhead(workdir, plan.campaign_overhead),
            campaign.correct_core(workdir, plan.campaign_runs, jobs),
            *campaign.catches(workdir, plan.campaign_runs, plan.campaign_seeds, jobs)]


def sim_row(plan: Plan) -> list[Entry]:
    core = [simulation.core_rate(plan.sim_seconds) for _ in range(plan.sim_repeats)]
    clean = [simulation.world_rate(plan.sim_seconds, simulation.NO_FAULTS, 1000 * i)
             for i in range(plan.sim_repeats)]
    faulty = [simulation.world_rate(plan.sim_seconds, Faults(), 1000 * i)
              for i in range(plan.sim_repeats)]
    checked = [simulation.search_rate(plan.sim_seconds, 100_000 * i) for i in range(plan.sim_repeats)]
    floor = median(core)
    return [
        Figure("sim", "bare core, 5 priests (floor)", "/s", core),
        Figure("sim", "simulate --jobs 1, with the checks, 5 priests, default faults", "/s",
               [wall for wall, _ in checked], floor, "bare core",
               Target(10000, below=False, text=">= 10,000/s"),
               notes={"per CPU second": [round(cpu) for _, cpu in checked]}),
        Figure("sim", "World alone (no checks), 5 priests, no faults", "/s", clean, floor, "bare core"),
        Figure("sim", "World alone (no checks), 5 priests, default faults", "/s", faulty, floor,
               "bare core"),
    ]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Time ballots, contention, fail-over, crash and restart, starts, the "
                    "simulator and memory, each beside a floor measured in the same run, and a "
                    "3-member etcd beside the priests when etcd is installed. "
                    "Prints a table; writes JSON under --out.")
    parser.add_argument("--quick", action="store_true",
                        help="tiny counts: checks that every row runs, figures are rough")
    parser.add_argument("--only", action="append", metavar="ROW", choices=ROWS + OPT_IN,
                        help=f"only this row (repeatable): {', '.join(ROWS + OPT_IN)} "
                             f"({', '.join(OPT_IN)} only when asked for: many minutes); "
                             f"floors always run")
    parser.add_argument("--repeat", type=int, metavar="N",
                        help="samples per figure for every process row (default 30, starts 10)")
    parser.add_argument("--out", type=Path, default=Path("logs/bench"),
                        help="directory for the JSON (default: logs/bench)")
    args = parser.parse_args(argv)
    if args.repeat is not None and args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 when done, 130 on Ctrl+C (every process started is killed)."""
    args = parse_args(argv)
    plan = make_plan(args.quick, args.repeat)
    rows = [r for r in ROWS + OPT_IN if r in (args.only or ROWS)]
    began = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="paxos-bench-") as tmp:
            workdir = Path(tmp)
            print("bench: floors ...", file=sys.stderr, flush=True)
            disk = floors.DiskFloors(workdir / "floors")
            try:
                disk.sample(plan.floor_samples // 2)
                first = floors.process_floors(plan.floor_samples // 2, workdir / "floors")
                ballots.between_samples(lambda: disk.sample(plan.floor_burst))
                entries = run_rows(rows, plan, workdir)
                disk.sample(plan.floor_samples // 2)
                last = floors.process_floors(plan.floor_samples // 2, workdir / "floors")
            finally:
                disk.close()
    except KeyboardInterrupt:
        print("bench: interrupted; every process it started has been killed", file=sys.stderr)
        return 130
    samples = {**disk.samples, **{k: first[k] + last[k] for k in first}}
    floor_rows = floor_figures(samples)
    m = {f.name: f.median for f in floor_rows if not f.notes.get("derived")}
    resolve_floors(entries, m)
    everything: list[Entry] = [*floor_rows, *entries]
    print(table(everything), end="")
    options = {"quick": args.quick, "only": rows, "repeat": args.repeat, "plan": vars(plan),
               "seconds": round(time.monotonic() - began, 1)}
    path = write_json(args.out, everything, options)
    print(f"bench: wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
