"""`python -m node CONFIG NAME`: run one priest, like the original's `./paxos CONFIG NAME`."""

from __future__ import annotations

import argparse
import sys

from node import __version__
from node.config import load_config
from node.errors import UserError
from node.messages import MAX_DECREE, MIN_DECREE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m node",
        description="Run one priest of a Synod cluster. Ctrl+Z (SIGTSTP) begins a ballot; "
                    "Ctrl+C or SIGTERM stops it. Its files are in <data_dir>/<NAME>/.",
    )
    parser.add_argument("config", metavar="CONFIG", help="the cluster's YAML config")
    parser.add_argument("name", metavar="NAME", help="which priest of the config this process is")
    parser.add_argument("--propose", type=int, metavar="DECREE",
                        help="the decree to propose when free to choose "
                             "(default: the config's 'propose', else 1000 * position + round)")
    parser.add_argument("--bind", type=int, metavar="PORT",
                        help="listen on this loopback port instead of the configured one (the "
                             "harness's relay forwards to it); peers are still known by their "
                             "configured addresses")
    parser.add_argument("--no-color", action="store_true", help="plain output even on a terminal")
    parser.add_argument("--quiet", action="store_true",
                        help="show only the steps, not each message sent and received "
                             "(priest.log keeps everything)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    args = parser.parse_args(argv)
    if args.propose is not None and not MIN_DECREE <= args.propose <= MAX_DECREE:
        # Checked here, not at the first ballot: a decree must fit in a signed 64-bit int.
        print(f"python -m node: error: --propose: {args.propose} is out of range "
              f"(a decree is an integer from {MIN_DECREE} to {MAX_DECREE})", file=sys.stderr)
        return 2
    if args.bind is not None and not 1 <= args.bind <= 65535:
        print(f"python -m node: error: --bind: {args.bind} is not a port (1-65535)", file=sys.stderr)
        return 2
    try:
        from node.runtime import serve  # imported here so --help stays fast

        config = load_config(args.config)
        config.require(args.name)
        return serve(config, args.name, proposal=args.propose,
                     color=False if args.no_color else None, messages=not args.quiet,
                     bind=args.bind)
    except UserError as exc:
        print(f"python -m node: error: {exc}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
