"""What a campaign is and what each of its runs does. Pure: no I/O, no clock, no global random.

A campaign is `runs` runs of one config. Run k (1-based) gets:
- a seed derived from the campaign's `--seed` and k (`run_seed`), from which
  the random nemesis draws its plan (`run_plan`: process and network faults,
  then the heal phase), exactly as `chaos --random --seed SEED` would on a
  fresh cluster of the same priests;
- a directory of its own, `<data_dir>/campaign/<seed>/run-<k>/`, holding its
  config (`config.yaml`: the config's priests on free loopback ports, its data
  dir that directory, the flaws of the config plus `--flaw`), so it never
  touches the data of a cluster of the config that is up.
"""

from __future__ import annotations

import shlex
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.chaos.plan import Plan, plan_random
from harness.errors import PROG
from node import codec  # its sha256 is the interpreter's own: hashlib would load OpenSSL
from node.config import Config

CAMPAIGN_DIR = "campaign"  # under the config's data dir
CONFIG_FILE = "config.yaml"  # each run's config, in its directory
DEFAULT_RUNS = 100
DEFAULT_DURATION = 2.0
DEFAULT_RATE = 2.0


@dataclass(frozen=True)
class Campaign:
    """A campaign's options, checked: one config, how many runs, how long, which faults."""

    config: Config
    runs: int = DEFAULT_RUNS
    duration: float = DEFAULT_DURATION
    seed: int = 0
    rate: float = DEFAULT_RATE
    faults: tuple[str, ...] = ("process", "network")
    flaws: tuple[str, ...] = ()  # added to the config's own
    jobs: int = 1
    keep: bool = False
    keep_going: bool = False
    only: int | None = None  # --run K: this run alone
    settle: float = 5.0  # seconds after the heal phase to wait for agreement
    until: tuple[str, ...] = ()  # --until RULE: the rules sought; a run breaking only others
    #                              is passed over (counted; its files go, unless --keep)

    def sought(self, rules: Sequence[str]) -> bool:
        """Does a run that broke `rules` stop the campaign (if --keep-going is off)?"""
        return bool(rules) and (not self.until or bool(set(rules) & set(self.until)))

    @property
    def numbers(self) -> list[int]:
        """The runs to do, in order (1-based)."""
        return [self.only] if self.only is not None else list(range(1, self.runs + 1))

    @property
    def all_flaws(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*self.config.flaws, *self.flaws)))

    @property
    def root(self) -> Path:
        """`<data_dir>/campaign/<seed>`: where every run's directory goes."""
        return self.config.data_dir / CAMPAIGN_DIR / str(self.seed)


def run_seed(seed: int, k: int) -> int:
    """The seed of run k's plan, from the campaign's seed: stable across versions and hosts."""
    digest = codec.sha256(f"paxos-harness campaign {seed} run {k}".encode()).digest()
    return int.from_bytes(digest[:4], "big") >> 1  # 31 bits, as `chaos --random` draws


def run_plan(campaign: Campaign, k: int) -> Plan:
    """Run k's plan: the random nemesis from its seed, on priests that all run at the start."""
    return plan_random(campaign.config.names, run_seed(campaign.seed, k), campaign.duration,
                       campaign.rate, faults=campaign.faults,
                       watchable=not campaign.config.foreign_names)


def run_config(campaign: Campaign, directory: Path, ports: Sequence[int]) -> dict[str, Any]:
    """Run k's config as YAML data: the priests on `ports`, data in `directory`.

    Timing, proposals and the network mode are the config's; the key is the
    run's own (in its directory), whatever the config's `key_file` says.
    """
    c = campaign.config
    priests: dict[str, dict[str, Any]] = {}
    for (name, p), port in zip(c.priests.items(), ports, strict=True):
        priests[name] = {"host": p.host, "port": int(port)}
        if p.propose is not None:
            priests[name]["propose"] = p.propose
        if p.command is not None:  # a foreign priest: its program is already an absolute path
            priests[name]["command"] = list(p.command)
    data: dict[str, Any] = {"cluster": c.cluster, "data_dir": str(directory), "priests": priests,
                            "timing": dict(vars(c.timing)), "flaws": list(campaign.all_flaws),
                            "network": c.network}
    if c.foreign_names:
        f = c.foreign
        data.update(config_format=f.config_format, transport=f.transport,
                    stop_signal=signal.Signals(f.stop_signal).name,
                    ready_timeout=f.ready_timeout, tty=f.tty)
    return data


def config_text(campaign: Campaign, k: int, data: dict[str, Any]) -> str:
    """The YAML of run k's config, with a header saying where it comes from."""
    head = (f"# run {k} of campaign seed {campaign.seed} of {campaign.config.path} "
            f"(plan seed {run_seed(campaign.seed, k)}), written by `{PROG} campaign`\n")
    return head + yaml.safe_dump(data, sort_keys=False)


def options(campaign: Campaign) -> list[str]:
    """The options that make a run's plan and priests: the same in a replay."""
    opts = ["--seed", str(campaign.seed), "--duration", f"{campaign.duration:g}",
            "--rate", f"{campaign.rate:g}", "--faults", ",".join(campaign.faults)]
    for flaw in campaign.flaws:
        opts += ["--flaw", flaw]
    return opts


def replay_command(campaign: Campaign, k: int) -> str:
    """The command that runs run k's plan again, on a fresh cluster of real priests."""
    return shlex.join([PROG, "campaign", campaign.config.path, *options(campaign), "--run",
                       str(k)])


def chaos_command(campaign: Campaign, k: int, config: Path) -> str:
    """The same plan by hand, on run k's kept config: `up --fresh`, then `chaos --random`."""
    up = shlex.join([PROG, "up", str(config), "--detach", "--fresh"])
    chaos = shlex.join([PROG, "chaos", str(config), "--random", "--seed",
                        str(run_seed(campaign.seed, k)), "--duration", f"{campaign.duration:g}",
                        "--rate", f"{campaign.rate:g}", "--faults", ",".join(campaign.faults)])
    return f"{up} && {chaos}"
