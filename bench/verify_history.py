"""How long `verify` takes on a large healthy history: load_and_check, median of runs.

    .venv/bin/python bench/verify_history.py [--events 100000] [--priests 5] [--runs 5]

Builds, in a temporary directory, a run of many contended ballots: each ballot is
begun, promised by every priest, proposed and voted by a minority, with the
sent/received events a real run records; the last ballot passes and every
priest learns. Prints the time to read and check it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from harness.check.rules import load_and_check
from node.config import Config, parse_config
from node.ledger import HEADER, LEDGER, encode_record
from node.messages import ZERO, Ballot, LedgerState, Vote

DECREE = 1001
NAMES = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota"]


class Writer:
    """Per-priest events.jsonl lines, written as the runtime writes them (compact JSON)."""

    def __init__(self, names: list[str]) -> None:
        self.lines: dict[str, list[str]] = {n: [] for n in names}
        self.t = 10**12
        self.count = 0

    def add(self, priest: str, kind: str, ballot: str | None = None, decree: int | None = None,
            peer: str | None = None, **extra: object) -> None:
        """A Synod event, with narration like the priest's."""
        text = f"{kind.replace('_', ' ')} in ballot {ballot}: decree {decree}, peer {peer}"
        self._write(priest, {"kind": kind, "ballot": ballot, "decree": decree, "peer": peer,
                             "text": text, **extra})

    def message(self, priest: str, kind: str, msg: str, ballot: str, peer: str,
                decree: int | None = None) -> None:
        """A `sent` or `received` event: no narration, the message's fields."""
        fields: dict[str, object] = {"kind": kind, "peer": peer, "msg": msg, "ballot": ballot}
        if decree is not None:
            fields["decree"] = decree
        self._write(priest, fields)

    def _write(self, priest: str, fields: dict[str, object]) -> None:
        self.t += 10_000  # 10 microseconds apart
        record = {"t": self.t, "priest": priest, "pid": 1000 + NAMES.index(priest), **fields}
        self.lines[priest].append(json.dumps(record, separators=(",", ":")))
        self.count += 1


def ballot(w: Writer, names: list[str], r: int, voters: list[str]) -> None:
    """One ballot of round r: NextBallot/LastVote with everyone, BeginBallot/Voted with `voters`."""
    leader = names[r % len(names)]
    b = f"{r}.{leader}"
    w.add(leader, "ballot_started", b)
    for p in names:
        w.message(leader, "sent", "NextBallot", b, p)
        w.message(p, "received", "NextBallot", b, leader)
        w.add(p, "promised", b, peer=leader)
        w.message(p, "sent", "LastVote", b, leader)
        w.message(leader, "received", "LastVote", b, p)
    w.add(leader, "proposed", b, DECREE, quorum=names)
    for p in voters:
        w.message(leader, "sent", "BeginBallot", b, p, DECREE)
        w.message(p, "received", "BeginBallot", b, leader, DECREE)
        w.add(p, "voted", b, DECREE, peer=leader)
        w.message(p, "sent", "Voted", b, leader)
        w.message(leader, "received", "Voted", b, p)


def build(data_dir: Path, n_events: int, n_priests: int) -> tuple[Config, int]:
    """Write a healthy history of about n_events events; return its config and event count."""
    names = NAMES[:n_priests]
    quorum = n_priests // 2 + 1
    w = Writer(names)
    for p in names:
        w.add(p, "started", last_tried="0", next_bal="0", prev_vote="none")
    r = 0
    while w.count < n_events - 12 * n_priests - 60:
        r += 1
        ballot(w, names, r, names[: quorum - 1])  # a minority votes; the ballot times out
        w.add(names[r % n_priests], "ballot_abandoned", f"{r}.{names[r % n_priests]}")
    r += 1
    ballot(w, names, r, names)
    for p in names:
        w.add(p, "learned", f"{r}.{names[r % n_priests]}", DECREE)
    final = Ballot(r, names[r % n_priests])
    for i, p in enumerate(names):
        d = data_dir / p
        d.mkdir(parents=True)
        (d / "events.jsonl").write_text("\n".join(w.lines[p]) + "\n")
        (d / "decree.txt").write_text(f"{DECREE}\n")
        # Its ledger, as a real run leaves it: the last ballot it led, the final promise and vote.
        led = max((k for k in range(1, r + 1) if k % n_priests == i), default=0)
        state = LedgerState(Ballot(led, p) if led else ZERO, final, Vote(final, DECREE))
        (d / LEDGER).write_text(HEADER + encode_record(state) + "\n")
    priests = {p: {"port": 7300 + i} for i, p in enumerate(names)}
    config = parse_config({"data_dir": str(data_dir), "priests": priests}, "bench.yaml", "bench")
    return config, w.count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--priests", type=int, default=5, choices=range(1, len(NAMES) + 1))
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        config, count = build(Path(tmp) / "data", args.events, args.priests)
        times, cpu = [], []
        for _ in range(args.runs):
            start, start_cpu = time.perf_counter(), time.process_time()
            verdict = load_and_check(config, None)
            times.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
        if verdict.exit_status != 0:
            print(f"the synthetic history is not healthy: {verdict.violations[:3]}",
                  file=sys.stderr)
            return 1
    print(f"verify: {count} events, {args.priests} priests: load_and_check median "
          f"{statistics.median(times):.3f} s over {args.runs} runs (min {min(times):.3f}, "
          f"max {max(times):.3f}; CPU median {statistics.median(cpu):.3f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
