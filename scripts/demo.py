"""The demo behind `make demo`: the original's scenario on configs/four.yaml, then a crash.

    up (3 of 4) -> a ballot -> the 4th joins and learns -> a priest is killed
    mid-run and restarted -> verify -> down (always, even on failure or Ctrl+C)

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
        ("Start alpha, beta and gamma only (delta is 'down'), in the background",
         ["up", config, "--detach", "--fresh", "--only", "alpha,beta,gamma"]),
        ("Ctrl+Z for alpha: it begins a ballot; 3 of 4 is a quorum, so they agree",
         ["chaos", "--ballot", "alpha", "--sleep", "0.5"]),
        ("delta has no decree yet", ["status"]),
        ("Start delta and ballot at delta: it learns the same decree",
         ["chaos", "--restart", "delta", "--ballot", "delta", "--sleep", "0.5"]),
        ("Crash beta (SIGKILL), ballot at gamma, restart beta from its ledger, ballot again",
         ["chaos", "--kill", "beta", "--ballot", "gamma", "--sleep", "0.3", "--restart", "beta",
          "--ballot", "beta", "--sleep", "0.5"]),
        ("Pause gamma (SIGSTOP) while alpha ballots, then resume it (SIGCONT)",
         ["chaos", "--pause", "gamma", "--ballot", "alpha", "--sleep", "0.3", "--resume", "gamma",
          "--sleep", "0.3"]),
        ("Every priest holds the same decree, and the history breaks no rule",
         ["verify", "--wait", "5"]),
    ]


def show_first_ballot(data_dir: Path) -> None:
    """The steps of the first ballot, as alpha narrated them (messages left out)."""
    log = data_dir / "alpha" / "priest.log"
    print(f"\n# What alpha saw of the first ballot ({log}, messages omitted)")
    if not log.exists():
        print("  (no log yet)")
        return
    steps = [line for line in log.read_text().splitlines() if " | " in line
             and not line.split(" | ", 1)[1].split(" ", 1)[-1].startswith(("->", "<-"))]
    print("\n".join(steps[:9]))


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
            show_first_ballot(data_dir)
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
