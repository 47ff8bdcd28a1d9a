"""Cluster config: YAML in, a frozen `Config` out, or a `ConfigError` naming file and key.

    cluster: four            # optional; default: the file's stem
    data_dir: logs/four      # optional; default: logs/<cluster>
    priests:                 # name -> address; 1 to 255 priests
      alpha: {host: 127.0.0.1, port: 7101}
      beta:  {host: 127.0.0.1, port: 7102, propose: 42}
    timing:                  # optional, seconds
      retransmit: 0.02       # resend NextBallot/BeginBallot to silent priests
      ballot_timeout: 0.5    # give a ballot up after this long without a quorum
      backoff: 0.05          # wait this + random jitter (same again) before retrying
      attempts: 5            # ballots tried per request before giving up
    flaws: []                # optional; deliberate protocol mistakes, for teaching
    key_file: keys/four.key  # optional; default <data_dir>/cluster.key; relative to this file
    network: relay           # optional; under the harness: relay (faults possible) or direct

A foreign priest (any program, not this package's priest) is named by a
command, for every priest or per priest (`priests.NAME.command`):

    command: [../examples/naive-priest/naive_priest.py, "{config}", "{name}"]
    config_format: legislators-json   # or yaml (the default): what {config} is
    transport: udp           # or tcp: what it listens on (tcp: no relay, so network: direct)
    stop_signal: SIGINT      # how `down` and `--stop` ask it to end (default SIGTERM)
    ready_timeout: 5         # seconds for it to bind its port at start
    tty: true                # run it on a pseudo-terminal (it then writes lines as it goes)

Placeholders in the command: {config} {name} {host} {port} {dir}. A program
given as a path with a `/` is relative to this file's directory; a bare name
is looked up on PATH. `flaws` apply to the harness's own priests only.

Hosts are restricted to loopback (127.0.0.0/8): this is a single-host bench.
"""

from __future__ import annotations

import ipaddress
import os
import re
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from node.errors import ConfigError
from node.flaws import FLAW_NAMES
from node.messages import Timing

NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
MAX_PRIESTS = 255
TOP_KEYS = {"cluster", "data_dir", "priests", "timing", "flaws", "key_file", "network",
            "command", "config_format", "transport", "stop_signal", "ready_timeout", "tty"}
PRIEST_KEYS = {"host", "port", "propose", "command"}
NETWORKS = ("relay", "direct")  # how priests under the harness reach each other
CONFIG_FORMATS = ("yaml", "legislators-json")  # what a foreign priest's {config} holds
TRANSPORTS = ("udp", "tcp")  # what a foreign priest listens on
PLACEHOLDERS = ("config", "name", "host", "port", "dir")
STOP_SIGNALS = ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGKILL")


@dataclass(frozen=True)
class Foreign:
    """How the harness runs foreign priests (those with a `command`): one for the cluster."""

    config_format: str = "yaml"
    transport: str = "udp"
    stop_signal: int = signal.SIGTERM
    ready_timeout: float = 5.0
    tty: bool = False


@dataclass(frozen=True)
class PriestAddress:
    name: str
    host: str
    port: int
    index: int  # 1-based position in the config: part of the default proposal
    propose: int | None = None  # the decree this priest proposes when free to choose
    # A foreign priest's command (placeholders not yet filled in); None: the harness's own priest.
    command: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Config:
    path: str
    cluster: str
    data_dir: Path
    priests: dict[str, PriestAddress]
    timing: Timing = field(default_factory=Timing)
    flaws: tuple[str, ...] = ()
    key_file: Path | None = None  # None: <data_dir>/cluster.key (see node.auth)
    network: str = "relay"
    foreign: Foreign = field(default_factory=Foreign)

    @property
    def names(self) -> list[str]:
        return list(self.priests)

    def is_foreign(self, name: str) -> bool:
        """True if priest `name` is run from a command, not the harness's own priest."""
        return self.priests[name].command is not None

    @property
    def foreign_names(self) -> list[str]:
        return [n for n, p in self.priests.items() if p.command is not None]

    @property
    def quorum(self) -> int:
        """A strict majority of the priests in the config."""
        return len(self.priests) // 2 + 1

    def priest_dir(self, name: str) -> Path:
        return self.data_dir / name

    def address_of(self, name: str) -> tuple[str, int]:
        p = self.priests[name]
        return (p.host, p.port)

    def require(self, name: str) -> PriestAddress:
        """The priest called `name`, or a ConfigError listing the known names."""
        if name not in self.priests:
            known = ", ".join(self.priests)
            raise ConfigError(self.path, "priests", f"no priest named {name!r} (known: {known})")
        return self.priests[name]


def load_yaml(path: str | Path) -> object:
    """Read and parse one YAML file (duplicate keys refused); ConfigError naming file and line."""
    p = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(p, "", "no such file") from None
    except IsADirectoryError:
        raise ConfigError(p, "", "is a directory, not a YAML file") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(p, "", f"cannot read: {exc}") from None
    from node.yamlfile import parse_yaml  # here: a priest forked with its config never needs it

    return parse_yaml(text, p)


def load_config(path: str | Path) -> Config:
    """Read and validate a config file; raises ConfigError with file and key."""
    return parse_config(load_yaml(path), str(path), default_cluster=Path(path).stem)


def parse_config(raw: object, path: str, default_cluster: str = "cluster") -> Config:
    """Validate an already-parsed YAML document."""
    if not isinstance(raw, dict):
        raise ConfigError(path, "", "must be a mapping with a 'priests' key")
    for key in raw:
        if key not in TOP_KEYS:
            raise ConfigError(path, str(key), f"unknown key (expected one of: {', '.join(sorted(TOP_KEYS))})")
    cluster = raw.get("cluster", default_cluster)
    if not isinstance(cluster, str) or not NAME_RE.match(cluster):
        raise ConfigError(path, "cluster", f"must be a short identifier (a-z, 0-9, _ or -), got {cluster!r}")
    data_dir = raw.get("data_dir", f"logs/{cluster}")
    if not isinstance(data_dir, str) or not data_dir.strip():
        raise ConfigError(path, "data_dir", f"must be a non-empty path, got {data_dir!r}")
    if "\0" in data_dir:
        raise ConfigError(path, "data_dir", "must not contain a NUL character")
    if "priests" not in raw:
        raise ConfigError(path, "priests", "missing: list the priests as name: {host, port}")
    command = _parse_command(raw["command"], path, "command") if "command" in raw else None
    priests = _parse_priests(raw["priests"], path, command)
    timing = _parse_timing(raw.get("timing", {}), path)
    flaws = _parse_flaws(raw.get("flaws", []), path)
    key_file = _parse_key_file(raw.get("key_file"), path)
    foreign = _parse_foreign(raw, path, any(p.command is not None for p in priests.values()))
    default_network = "direct" if foreign.transport == "tcp" else "relay"
    network = raw.get("network", default_network)
    if network not in NETWORKS:
        raise ConfigError(path, "network", f"must be one of {', '.join(NETWORKS)}, got {network!r}")
    if network == "relay" and foreign.transport == "tcp":
        raise ConfigError(path, "network", "the relay carries UDP datagrams only, and these "
                          "priests talk TCP (transport: tcp); use network: direct")
    return Config(path, cluster, Path(data_dir), priests, timing, flaws, key_file, network,
                  foreign)


def _parse_command(raw: object, path: str, key: str) -> tuple[str, ...]:
    """A command: a non-empty list of strings, placeholders among PLACEHOLDERS."""
    if isinstance(raw, str):
        raise ConfigError(path, key, f"must be a list (the program, then its arguments), "
                          f"e.g. [{raw!r}, \"{{config}}\", \"{{name}}\"], not a string")
    if not isinstance(raw, list) or not raw or not all(isinstance(a, str) for a in raw):
        raise ConfigError(path, key, f"must be a non-empty list of strings: the program, then "
                          f"its arguments; got {raw!r}")
    if not raw[0].strip():
        raise ConfigError(path, key, "the program (its first item) must not be empty")
    for arg in raw:
        if "\0" in arg:
            raise ConfigError(path, key, "must not contain a NUL character")
        import string  # here: only a foreign priest's command needs it

        try:
            fields = [(f, spec, conv) for _, f, spec, conv in string.Formatter().parse(arg)
                      if f is not None]
        except ValueError as exc:
            raise ConfigError(path, key, f"{arg!r}: {exc} (write {{{{ and }}}} for a "
                              f"literal brace)") from None
        for f, spec, conv in fields:
            if f not in PLACEHOLDERS:
                known = ", ".join(f"{{{p}}}" for p in PLACEHOLDERS)
                raise ConfigError(path, key, f"{arg!r}: unknown placeholder {{{f}}} "
                                  f"(known: {known})")
            if spec or conv is not None:  # `{port:d}`, `{name!x}`: str.format fails on them
                raise ConfigError(path, key, f"{arg!r}: a placeholder is a bare {{{f}}}, "
                                  "without a conversion (!) or a format (:)")
    program = raw[0]
    if "/" in program and not os.path.isabs(program) and "{" not in program:
        # Relative to the config file, not to where the harness runs (nor the data dir).
        program = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(path)), program))
    return (program, *raw[1:])


def _parse_foreign(raw: dict[Any, Any], path: str, any_foreign: bool) -> Foreign:
    """config_format, transport, stop_signal, ready_timeout, tty: only with a command."""
    keys = ("config_format", "transport", "stop_signal", "ready_timeout", "tty")
    if not any_foreign:
        for k in keys:
            if k in raw:
                raise ConfigError(path, k, "applies to foreign priests only, and no priest "
                                  "has a `command`")
        return Foreign()
    d = Foreign()
    config_format = raw.get("config_format", d.config_format)
    if config_format not in CONFIG_FORMATS:
        raise ConfigError(path, "config_format", f"must be one of {', '.join(CONFIG_FORMATS)}, "
                          f"got {config_format!r}")
    transport = raw.get("transport", d.transport)
    if transport not in TRANSPORTS:
        raise ConfigError(path, "transport", f"must be one of {', '.join(TRANSPORTS)}, "
                          f"got {transport!r}")
    stop = raw.get("stop_signal", "SIGTERM")
    name = stop.upper() if isinstance(stop, str) else stop
    if isinstance(name, str) and not name.startswith("SIG"):
        name = "SIG" + name
    if name not in STOP_SIGNALS:
        raise ConfigError(path, "stop_signal", f"must be one of {', '.join(STOP_SIGNALS)}, "
                          f"got {stop!r}")
    timeout = raw.get("ready_timeout", d.ready_timeout)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0.1 <= timeout <= 600:
        raise ConfigError(path, "ready_timeout", f"must be a number of seconds 0.1-600, "
                          f"got {timeout!r}")
    tty = raw.get("tty", d.tty)
    if not isinstance(tty, bool):
        raise ConfigError(path, "tty", f"must be true or false, got {tty!r}")
    return Foreign(config_format, transport, int(signal.Signals[name]), float(timeout), tty)


def _parse_key_file(raw: object, path: str) -> Path | None:
    """key_file: a path, relative to the config file's directory (not to where one runs)."""
    if raw is None:
        return None
    if not isinstance(raw, str) or not raw.strip() or "\0" in raw:
        raise ConfigError(path, "key_file", f"must be a path to the cluster's key file, got {raw!r}")
    if raw.endswith("/"):
        raise ConfigError(path, "key_file", f"must name a file, not a directory: {raw!r}")
    return Path(path).parent / raw


def _parse_priests(raw: object, path: str,
                   command: tuple[str, ...] | None = None) -> dict[str, PriestAddress]:
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(path, "priests", "must be a non-empty mapping of name -> {host, port}")
    if len(raw) > MAX_PRIESTS:
        raise ConfigError(path, "priests", f"at most {MAX_PRIESTS} priests, got {len(raw)}")
    priests: dict[str, PriestAddress] = {}
    addresses: dict[tuple[str, int], str] = {}
    for index, (name, spec) in enumerate(raw.items(), start=1):
        key = f"priests.{name}"
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise ConfigError(
                path, key, "a priest's name must be a short identifier: a lowercase letter, "
                "then up to 31 of a-z, 0-9, _ or -"
            )
        if not isinstance(spec, dict):
            raise ConfigError(path, key, "must be a mapping {host: 127.0.0.1, port: N}")
        for k in spec:
            if k not in PRIEST_KEYS:
                raise ConfigError(path, f"{key}.{k}", f"unknown key (expected: {', '.join(sorted(PRIEST_KEYS))})")
        host = _parse_host(spec.get("host", "127.0.0.1"), path, f"{key}.host")
        port = spec.get("port")
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise ConfigError(path, f"{key}.port", f"must be an integer 1-65535, got {port!r}")
        propose = spec.get("propose")
        if propose is not None and (isinstance(propose, bool) or not isinstance(propose, int)
                                    or not -(2**63) <= propose < 2**63):
            raise ConfigError(path, f"{key}.propose", f"must be a 64-bit integer, got {propose!r}")
        if (host, port) in addresses:
            other = addresses[(host, port)]
            raise ConfigError(path, f"{key}.port", f"address {host}:{port} already used by priest {other!r}")
        addresses[(host, port)] = name
        own = (_parse_command(spec["command"], path, f"{key}.command") if "command" in spec
               else command)
        priests[name] = PriestAddress(name, host, port, index, propose, own)
    return priests


def _parse_host(raw: object, path: str, key: str) -> str:
    if raw == "localhost":
        return "127.0.0.1"
    if not isinstance(raw, str):
        raise ConfigError(path, key, f"must be a loopback IPv4 address like 127.0.0.1, got {raw!r}")
    try:
        addr = ipaddress.IPv4Address(raw)
    except ValueError:
        raise ConfigError(path, key, f"must be a loopback IPv4 address like 127.0.0.1, got {raw!r}") from None
    if not addr.is_loopback:
        raise ConfigError(path, key, f"{raw} is not a loopback address (127.0.0.0/8): this bench stays on one host")
    return str(addr)


def _parse_timing(raw: object, path: str) -> Timing:
    if not isinstance(raw, dict):
        raise ConfigError(path, "timing", "must be a mapping")
    defaults = Timing()
    values: dict[str, Any] = {}
    for k, v in raw.items():
        if k not in Timing.__dataclass_fields__:
            raise ConfigError(path, f"timing.{k}", f"unknown key (expected: {', '.join(Timing.__dataclass_fields__)})")
        if k == "attempts":
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 1000:
                raise ConfigError(path, f"timing.{k}", f"must be an integer 1-1000, got {v!r}")
        elif isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.001 <= v <= 3600:
            raise ConfigError(path, f"timing.{k}", f"must be a number of seconds 0.001-3600, got {v!r}")
        values[k] = v
    timing = Timing(**{**defaults.__dict__, **values})
    if timing.ballot_timeout < timing.retransmit:
        raise ConfigError(path, "timing.ballot_timeout", "must not be shorter than timing.retransmit")
    return timing


def _parse_flaws(raw: object, path: str) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError(path, "flaws", "must be a list")
    for flaw in raw:
        if flaw not in FLAW_NAMES:
            raise ConfigError(path, "flaws", f"unknown flaw {flaw!r} (known: {', '.join(FLAW_NAMES)})")
    for i, flaw in enumerate(raw):
        if flaw in raw[:i]:
            raise ConfigError(path, "flaws", f"{flaw!r} is listed twice")
    return tuple(raw)
