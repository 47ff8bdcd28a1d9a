"""The demo behind `make demo`: a ballot that fails, one that decides, one that only learns.

    up (3 of 4) -> a ballot with no quorum whose proposer crashes mid-ballot ->
    the 4th joins, a ballot at another priest decides -> the crashed priest
    comes back and only learns -> verify -> down (always, even on failure or Ctrl+C)

Each step is a real `paxos-harness` command, printed before it runs, so the
output doubles as a tutorial. `scripts/demo.py [CONFIG]` runs it on another
config with the same four names (the tests do, on free ports).
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

from node.config import load_config
from node.errors import UserError

DEFAULT_CONFIG = "configs/four.yaml"


def steps(config: str) -> list[tuple[str, list[str]]]:
    """The demo's steps: a title and the paxos-harness arguments of each."""
    return [
        ("Start alpha, beta and gamma only (delta is not started), on empty ledgers",
         ["up", config, "--detach", "--fresh", "--only", "alpha,beta,gamma"]),
        (("Freeze gamma (SIGSTOP), then Ctrl+Z for alpha: alpha and beta are 2 of 4, no quorum, "
         "so alpha's ballot stays open -- and alpha crashes (SIGKILL) in the middle of it"),
         ["chaos", "--pause", "gamma", "--ballot", "alpha", "--sleep", "0.3", "--kill", "alpha"]),
        ("Nothing is decided: no priest holds a decree", ["status"]),
        ("Wake gamma, start delta, and ballot at beta: beta, gamma and delta are 3 of 4, a quorum",
         ["chaos", "--resume", "gamma", "--restart", "delta", "--ballot", "beta",
          "--sleep", "0.5"]),
        (("alpha comes back on its ledger and begins a ballot: the others answer that the "
         "decree is already decided, and alpha learns it; nothing changes"),
         ["chaos", "--restart", "alpha", "--ballot", "alpha", "--sleep", "0.5"]),
        ("Every priest holds the same decree", ["status"]),
        ("...and the history breaks no rule", ["verify", "--wait", "5"]),
    ]


def narration(data_dir: Path, name: str, limit: int) -> list[str]:
    """The steps `name` narrated in its priest.log (messages left out)."""
    log = data_dir / name / "priest.log"
    if not log.exists():
        return ["  (no log yet)"]
    lines = [line for line in log.read_text().splitlines() if " | " in line
             and not line.split(" | ", 1)[1].split(" ", 1)[-1].startswith(("->", "<-"))]
    return lines[:limit]


def show_ballots(data_dir: Path) -> None:
    """The decisive ballot as beta led it, and the other side of it, as gamma saw it."""
    for name, what in (("beta", "beta led the ballot that decided"),
                       ("gamma", "gamma's side: frozen during alpha's ballot, then a voter"),
                       ("alpha", "alpha: crashed mid-ballot, back on its ledger, learns")):
        print(f"\n# {what} ({data_dir / name / 'priest.log'}, messages omitted)")
        print("\n".join(narration(data_dir, name, 12)))


def harness(args: list[str]) -> int:
    print(f"\n$ paxos-harness {shlex.join(args)}", flush=True)
    return subprocess.call([sys.executable, "-m", "harness", *args])


def main(argv: list[str] | None = None) -> int:
    config = (argv if argv is not None else sys.argv[1:]) or [DEFAULT_CONFIG]
    path = config[0]
    try:
        data_dir = load_config(path).data_dir.resolve()
    except UserError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return exc.exit_status
    status = 0
    try:
        for title, args in steps(path):
            print(f"\n# {title}", flush=True)
            code = harness(args)
            if code != 0 and args[0] != "status":
                print(f"\ndemo: step failed with exit status {code}", file=sys.stderr)
                status = code
                break
        else:
            show_ballots(data_dir)
    except KeyboardInterrupt:
        status = 130
    finally:
        print("\n# Stop everything", flush=True)
        harness(["down", path])
    if status == 0:
        print(f"\nThe priests' files are in {data_dir}/<name>/ -- "
              "decree.txt, ledger.log, priest.log, events.jsonl.")
    return status


if __name__ == "__main__":
    sys.exit(main())
