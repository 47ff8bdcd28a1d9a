"""Argument types the verbs share: each rejects a bad value with argparse's one-line error."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from harness.chaos.plan import FAULT_KINDS
from harness.errors import UsageError
from node.config import Config


def number_arg(what: str, *, above_zero: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number >= 0 (> 0 if `above_zero`), described as `what`."""
    bound = "> 0" if above_zero else ">= 0"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None
        if not math.isfinite(value) or value < 0 or (above_zero and value == 0):
            raise argparse.ArgumentTypeError(f"must be {what} {bound}, got {text!r}")
        return value

    parse.__name__ = what  # argparse names the type in some messages
    return parse


def count_arg(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an integer from `low` to `high`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be {low} to {high}, got {value}")
        return value

    return parse


def probability(text: str) -> float:
    """An argparse type: a probability, 0 to 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"a probability is between 0 and 1, got {text}")
    return value


def seed_arg(text: str) -> int:
    """An argparse type: a seed, 0 to 2^63-1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"must be between 0 and 2^63-1, got {text}")
    return value


def config_arg(parser: argparse.ArgumentParser, *, optional: bool = True) -> None:
    """The CONFIG positional: optional (default: the current cluster) for all but `up`."""
    if optional:
        parser.add_argument("config", metavar="CONFIG", nargs="?",
                            help="default: the current cluster")
    else:
        parser.add_argument("config", metavar="CONFIG", help="the cluster's YAML config")


def color_arg(parser: argparse.ArgumentParser) -> None:
    """--color WHEN: auto (a terminal, and NO_COLOR unset), always (for `less -R`), never."""
    parser.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                        metavar="WHEN", help="colour: auto (only on a terminal, not with NO_COLOR; "
                                             "the default), always (e.g. piped to less -R), never")


def fault_kinds(text: str) -> tuple[str, ...]:
    """An argparse type: a comma-separated subset of FAULT_KINDS (what a random nemesis mixes)."""
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    bad = [k for k in kinds if k not in FAULT_KINDS]
    if bad or not kinds:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(FAULT_KINDS)} (comma-separated), "
                                         f"got {text!r}")
    return kinds


def faults_for(config: Config, kinds: tuple[str, ...] | None) -> tuple[str, ...]:
    """What a random nemesis on `config` mixes: `kinds` as asked (--faults), checked, or by
    default both process and network faults, process only without a relay."""
    if kinds is None:
        return FAULT_KINDS if config.network == "relay" else ("process",)
    if "network" in kinds and config.network != "relay":
        why = ("its priests talk TCP (transport: tcp), and the relay carries UDP only"
               if config.foreign_names and config.foreign.transport == "tcp" else
               "it says `network: direct`, so no relay carries the datagrams")
        raise UsageError(f"--faults network: {config.path}: {why}; use --faults process")
    return kinds
