"""Run state on disk: who the supervisor is, where its socket is, which priests it runs.

- `<data_dir>/supervisor.json`: created exclusively (O_EXCL) by the supervisor,
  so a second `up` finds it; then replaced atomically as priests start. It holds
  a format version, the supervisor's pid and start time, the control socket's
  path and each priest's pid and start time. A file whose supervisor is gone
  (pid dead, or reused by another process) is stale: `down` and `up` clear it.
- the run record, `<private dir>/<cluster key>.json`: the same contents, kept
  outside the data dir, so that `status` and `down` still find a cluster whose
  data dir was deleted while it ran (see `harness.supervisor.files`).
- `logs/current.json` (relative to the working directory): the cluster last
  brought up from here, so commands without CONFIG act on it.
- `<data_dir>/harness.jsonl`: the supervisor's and chaos's records (their
  types: `harness.record`), one JSON object a line, appended by `EventFile`.

Each is replaced atomically (temp file + rename), never through a link, but not fsynced: they
describe running processes, and a machine crash that could lose them also
ends those processes, which makes the state stale anyway. Skipping the
fsyncs keeps `up` fast.
"""

from __future__ import annotations

import dataclasses
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from harness.errors import NotUpError, UserError
from harness.record import Record
from harness.supervisor.files import (
    check_not_link,
    cluster_key,
    open_file,
    private_dir,
    private_path,
    read_text,
    write_atomic,
)
from node.config import Config, load_config
from node.errors import ConfigError

FORMAT = 1
STATE_FILE = "supervisor.json"
HARNESS_FILE = "harness.jsonl"
CURRENT = Path("logs") / "current.json"
SOCKET_NAME = "control.sock"
SUN_PATH_MAX = 107  # sockaddr_un.sun_path is 108 bytes with the final NUL


@dataclass(frozen=True)
class Identity:
    """A process as pid plus start time: a recycled pid never matches."""

    pid: int
    create_time: float

    @classmethod
    def of(cls, pid: int) -> Identity:
        return cls(pid, psutil.Process(pid).create_time())

    def alive(self) -> bool:
        """True if this very process still runs (not a zombie, not a pid reused since)."""
        try:
            p = psutil.Process(self.pid)
            return bool(abs(p.create_time() - self.create_time) < 0.01
                        and p.status() != psutil.STATUS_ZOMBIE)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return False


@dataclass
class RunState:
    """The contents of supervisor.json."""

    cluster: str
    config: str
    data_dir: str
    supervisor: Identity
    socket: str
    priests: dict[str, Identity] = field(default_factory=dict)
    detached: bool = False
    version: int = FORMAT

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, path: Path) -> RunState:
        try:
            raw: dict[str, Any] = json.loads(text)
            if raw.get("version") != FORMAT:
                raise UserError(f"{path}: unknown format version {raw.get('version')!r}; "
                                f"remove the file once no priest of it runs")
            raw["supervisor"] = Identity(**raw["supervisor"])
            raw["priests"] = {n: Identity(**i) for n, i in raw["priests"].items()}
            return cls(**raw)
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise UserError(f"{path}: unreadable run state ({e}); remove it once no priest "
                            f"of it runs") from None


def state_path(data_dir: Path) -> Path:
    return data_dir / STATE_FILE


def record_path(data_dir: Path) -> Path:
    """The run record: supervisor.json's copy outside the data dir, keyed by the data dir."""
    return private_path(data_dir, ".json")


def create_state(state: RunState) -> None:
    """Create supervisor.json exclusively, and the run record; FileExistsError if one is there."""
    data_dir = Path(state.data_dir)
    path = state_path(data_dir)
    check_not_link(path)
    # Written whole in a temp file, then linked into place: link() fails if the name
    # exists (so still exclusive), and no reader ever sees the file empty or half written.
    temp = path.with_name(f"{path.name}.tmp{os.urandom(4).hex()}")
    fd = open_file(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(state.to_json())
        os.link(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    write_atomic(record_path(data_dir), state.to_json(), 0o600)


def save_state(state: RunState) -> None:
    """Replace supervisor.json and the run record with `state`; the first failure is raised.

    Both are tried: the run record is still written when the data dir is gone or full.
    """
    data_dir = Path(state.data_dir)
    failure: Exception | None = None
    for path in (state_path(data_dir), record_path(data_dir)):
        try:
            write_atomic(path, state.to_json(), 0o600)
        except (OSError, UserError) as e:
            failure = failure or e
    if failure is not None:
        raise failure


def read_state(data_dir: Path) -> RunState | None:
    """The run state of the cluster in `data_dir` (or its run record, if the data dir lost it)."""
    path = state_path(data_dir)
    try:
        text = read_text(path)
    except FileNotFoundError:
        return _read_record(data_dir)
    except NotADirectoryError:
        raise UserError(f"{data_dir}: data_dir is not a directory; point data_dir at a "
                        f"directory (or remove that file)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read the run state: {_why(e)}") from None
    return RunState.from_json(text, path)


def _read_record(data_dir: Path) -> RunState | None:
    """The run record of `data_dir` if supervisor.json is missing (say, the data dir was deleted)."""
    path = record_path(data_dir)
    try:
        state = RunState.from_json(read_text(path), path)
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read the run record: {_why(e)}") from None
    return state if Path(state.data_dir) == data_dir.resolve() else None


def check_data_dir(data_dir: Path) -> None:
    """UserError unless `data_dir` is a directory or does not exist yet."""
    if data_dir.exists() and not data_dir.is_dir():
        raise UserError(f"{data_dir}: data_dir is not a directory; point data_dir at a "
                        f"directory (or remove that file)")


def remove_state(state: RunState) -> None:
    """Remove supervisor.json, the run record and the control socket of `state`.

    The socket's path is removed only if a socket is there: never a link or a
    file that someone put in its place.
    """
    data_dir = Path(state.data_dir)
    paths = [state_path(data_dir), record_path(data_dir)]
    try:
        if stat.S_ISSOCK(os.lstat(state.socket).st_mode):
            paths.append(Path(state.socket))
    except OSError:
        pass
    for path in paths:
        try:
            path.unlink(missing_ok=True)
        except NotADirectoryError:
            pass


def socket_path(data_dir: Path) -> Path:
    """`<data_dir>/control.sock`, or a short private path when that is too long to bind."""
    path = data_dir.resolve() / SOCKET_NAME
    if len(os.fsencode(path)) <= SUN_PATH_MAX:
        return path
    # Deep data dirs (pytest's tmp paths) overflow sun_path: use a directory of
    # our own under /tmp, keyed by the data dir, recorded in supervisor.json.
    return private_dir() / f"{cluster_key(data_dir)}.sock"


def _why(e: BaseException) -> str:
    return e.strerror if isinstance(e, OSError) and e.strerror else str(e)


# --- harness.jsonl -----------------------------------------------------------


class EventFile:
    """`<data_dir>/harness.jsonl`, opened for appending: one JSON object a line.

    O_APPEND makes each line land whole after any other writer's; `t` is
    CLOCK_MONOTONIC, shared by every process on the host.
    """

    def __init__(self, path: Path) -> None:
        self.fd = open_file(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)

    def record(self, record: Record) -> None:
        """Append one record (its type and fields: `harness.record`)."""
        os.write(self.fd, (json.dumps(record.to_json()) + "\n").encode())

    def close(self) -> None:
        os.close(self.fd)


def record_event(data_dir: Path, record: Record) -> None:
    """Append one record to `<data_dir>/harness.jsonl` (open, write, close)."""
    events = EventFile(data_dir / HARNESS_FILE)
    try:
        events.record(record)
    finally:
        events.close()


# --- the cluster last brought up from this directory -----------------------


def write_current(config: Config) -> None:
    """Record `config` as the cluster commands without CONFIG act on."""
    record = {"version": FORMAT, "config": str(Path(config.path).resolve()),
              "cluster": config.cluster, "data_dir": str(config.data_dir.resolve())}
    try:
        CURRENT.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(CURRENT, json.dumps(record, indent=1) + "\n")
    except OSError as e:
        raise UserError(f"{CURRENT}: cannot record the current cluster: {_why(e)}; "
                        f"{CURRENT.parent} must be a directory you can write") from None


def check_current_writable() -> None:
    """UserError if logs/current.json cannot be written (checked before anything starts)."""
    parent = CURRENT.parent
    if parent.exists() and not parent.is_dir():
        raise UserError(f"{parent}: not a directory, but {CURRENT} records the current "
                        f"cluster there; move {parent} away")
    check_not_link(CURRENT)
    if CURRENT.is_dir():
        raise UserError(f"{CURRENT}: a directory; remove it")


@dataclass(frozen=True)
class Current:
    """The contents of logs/current.json: the cluster last brought up from here."""

    config: str
    cluster: str
    data_dir: Path


def read_current() -> Current:
    """logs/current.json; NotUpError if missing, UserError naming the fix if unusable."""
    fix = f"pass CONFIG, or delete {CURRENT}"
    try:
        record = json.loads(read_text(CURRENT))
    except FileNotFoundError:
        raise NotUpError(f"no cluster has been brought up from this directory ({CURRENT} is "
                         f"missing): pass CONFIG, or run `paxos-harness up CONFIG`") from None
    except (OSError, ValueError) as e:  # UnicodeDecodeError is a ValueError
        raise UserError(f"{CURRENT}: unreadable ({_why(e)}); {fix}") from None
    if not isinstance(record, dict):
        raise UserError(f"{CURRENT}: not a JSON object; {fix}")
    for key in ("config", "data_dir"):
        if not isinstance(record.get(key), str) or not record[key]:
            raise UserError(f"{CURRENT}: {key}: must be a path (a non-empty string), got "
                            f"{record.get(key)!r}; {fix}")
    cluster = record.get("cluster")
    return Current(record["config"], cluster if isinstance(cluster, str) else "?",
                   Path(record["data_dir"]))


def resolve_config(path: str | None) -> Config:
    """The config at `path`, or the one recorded in logs/current.json when path is None."""
    if path is not None:
        return load_config(path)
    current = read_current()
    try:
        config = load_config(current.config)
    except ConfigError as e:
        raise ConfigError(e.path, e.key, f"{e.problem} (the config {CURRENT} names; pass "
                          f"CONFIG; `paxos-harness down` still stops that cluster)") from None
    # The recorded data dir is absolute: it stays right even if the config's is relative.
    return dataclasses.replace(config, data_dir=current.data_dir)


def recorded_cluster(path: str | None) -> Config | None:
    """The cluster logs/current.json records, as a Config without priests, if `path` is it.

    For `down` when the config file is gone: None unless `path` is None or names
    the recorded config.
    """
    try:
        current = read_current()
    except UserError:
        return None
    if path is not None and Path(path).resolve() != Path(current.config):
        return None
    return Config(path=current.config, cluster=current.cluster, data_dir=current.data_dir,
                  priests={})
