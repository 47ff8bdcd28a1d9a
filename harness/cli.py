"""paxos-harness: start, fault, check and simulate a cluster of Synod priests on this host.

    paxos-harness up configs/four.yaml --detach
    paxos-harness chaos --kill delta --ballot alpha
    paxos-harness verify
    paxos-harness down

Exit statuses: 0 success; 1 a check failed or the command could not be done in
the cluster's present state (already up, not up, a priest that cannot start);
2 usage or config error; for verify also 3 not yet agreed, 4 cannot verify, 5 nothing to
check; 70 an internal error (a bug);
141 the reader of the output went away (`| head`), which is not an error to report.
Every error a user can cause is one line on stderr.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import sys
import tempfile
import traceback
from collections.abc import Sequence

from harness.errors import BUG_STATUS, PROG, UserError
from harness.verbs import VERBS
from node import __version__

PIPE_STATUS = 128 + 13  # as if SIGPIPE had ended us, the way `yes | head` ends `yes`


# --- the verbs, and the one place errors become exit statuses ------------------


def build_parser() -> argparse.ArgumentParser:
    """The argument parser: one sub-command per module of `harness.verbs`, help from its `run`."""
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for name in VERBS:
        verb = importlib.import_module(f"harness.verbs.{name}")
        doc = inspect.cleandoc(verb.run.__doc__ or name)
        p = sub.add_parser(name, help=doc.splitlines()[0], description=doc,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        verb.add_arguments(p)
        p.set_defaults(func=verb.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns its exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, or a usage error argparse has printed
        return e.code if isinstance(e.code, int) else 2
    try:
        status = int(args.func(args))
        sys.stdout.flush()  # here, not at exit, so a closed pipe is seen below
        return status
    except BrokenPipeError:
        return _reader_gone()
    except UserError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return e.exit_status
    except KeyboardInterrupt:
        return 130
    except OSError as e:
        if e.filename is None:
            return _bug(e)
        # A file we could not use that no verb foresaw: still the user's to fix.
        print(f"{PROG}: error: {e.filename}: {e.strerror}", file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001 - the one place a bug becomes a message
        return _bug(e)


def _reader_gone() -> int:
    """The reader of stdout went away (`| head -1`): stop quietly, as other commands do."""
    # Python flushes stdout again at exit; pointing it at /dev/null keeps that quiet.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return PIPE_STATUS


def _bug(exc: BaseException) -> int:
    fd, path = tempfile.mkstemp(prefix="paxos-harness-crash-", suffix=".txt")
    with os.fdopen(fd, "w") as f:
        traceback.print_exc(file=f)
    print(f"{PROG}: internal error (this is a bug, please report it): "
          f"{type(exc).__name__}: {exc}; traceback in {path}", file=sys.stderr)
    return BUG_STATUS
