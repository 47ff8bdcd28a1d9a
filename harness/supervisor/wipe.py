"""`up --fresh`: remove what this harness and its priests wrote in the data dir, and only that.

A name is not proof: a user's `priest.log` or `harness.jsonl` has the same
name as ours. So each file is removed only if its *contents* are what the
writer of that name writes (the table `PRIEST_FILES`, `RUN_FILES`):

- `ledger.log`: starts with the ledger's header line; `decree.txt`: a decimal
  int and a newline; `priest.lock`: a pid and a newline (or empty);
  `events.jsonl`: JSON objects of this priest (`"priest": NAME`, a `kind`);
  `priest.log`: narration lines `NAME | HH:MM:SS.mmm ...`; temp files of the
  ledger's atomic writes: a beginning of a ledger or a decree;
- `harness.jsonl`, `network.jsonl` (and `network.jsonl.1`): JSON objects
  with a `t` and a `kind`; `supervisor.log`:
  starts with the header the harness writes when it creates it;
  `supervisor.json` (and its temp files): a run state whose supervisor is gone;
  `control.sock`: a socket;
- a foreign priest's directory: its `priest.log` (written by the harness),
  and the files and directories that harness.jsonl's `priest_files` records
  say its runs created (the supervisor compares the directory before each
  start with after each end); `NAME.config.json` or `NAME.config.yaml`, the
  config the harness wrote for it (its header, or the legislators JSON).

A final line without its newline (the trace of a crash mid-append) must be
the beginning of such a line. `events.jsonl` and `priest.log` may be empty (a
priest creates them before it writes). If anything is not recognised, or a
priest still runs on its directory, `--fresh` refuses, names the file, and
removes nothing. Everything else in the data dir (`cluster.key`, a user's
files) is never looked at.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path

from harness.errors import UsageError, UserError
from harness.supervisor.files import lock_holder, open_file
from harness.supervisor.foreign import CONFIG_HEADER
from harness.supervisor.state import SOCKET_NAME, STATE_FILE, read_state
from node.config import Config
from node.ledger import DECREE, HEADER, LEDGER, LOCK, TEMP_PREFIXES

SUPERVISOR_LOG = "supervisor.log"
SUPERVISOR_LOG_HEADER = ("# paxos-harness supervisor log: what detached supervisors of this "
                         "data dir and their priests printed\n")
HARNESS_LOG = "harness.jsonl"
EVENTS, NARRATION = "events.jsonl", "priest.log"

Recognise = Callable[[bytes, str], bool]  # (contents, priest name) -> written by us?


def _lines(data: bytes, line_ok: Callable[[bytes], bool], tail_ok: Callable[[bytes], bool]) -> bool:
    """Every complete line passes `line_ok`; a torn final line passes `tail_ok`."""
    *whole, tail = data.split(b"\n")
    return all(line_ok(line) for line in whole) and (not tail or tail_ok(tail))


def _json_object(line: bytes) -> dict[str, object] | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _event(name: str) -> Callable[[bytes], bool]:
    def ok(line: bytes) -> bool:
        event = _json_object(line)
        return (event is not None and event.get("priest") == name
                and isinstance(event.get("kind"), str) and isinstance(event.get("t"), int))
    return ok


def _begins_json(tail: bytes) -> bool:
    return tail.startswith(b'{"t":') or b'{"t":'.startswith(tail)


def _events(data: bytes, name: str) -> bool:
    return _lines(data, _event(name), _begins_json)


def _narration(data: bytes, name: str) -> bool:
    head = f"{name:>8} | ".encode()
    line = re.compile(re.escape(head) + rb"\d\d:\d\d:\d\d\.\d{3} .*")
    return _lines(data, lambda x: line.fullmatch(x) is not None,
                  lambda t: t.startswith(head) or head.startswith(t))


def _ledger(data: bytes, _name: str) -> bool:
    return data.startswith(HEADER.encode())


def _decree(data: bytes, _name: str) -> bool:
    return re.fullmatch(rb"-?[0-9]+\n", data) is not None


def _lock(data: bytes, _name: str) -> bool:
    return re.fullmatch(rb"([0-9]+\n)?", data) is not None


def _temp(data: bytes, _name: str) -> bool:
    """A temp file of an atomic write cut short: a beginning of a ledger or of a decree."""
    header = HEADER.encode()
    return (data.startswith(header) or header.startswith(data)
            or re.fullmatch(rb"-?[0-9]*\n?", data) is not None)


def _harness_log(data: bytes, _name: str) -> bool:
    def ok(line: bytes) -> bool:
        record = _json_object(line)
        return (record is not None and isinstance(record.get("t"), int)
                and isinstance(record.get("kind"), str))
    return _lines(data, ok, _begins_json)


def _supervisor_log(data: bytes, _name: str) -> bool:
    return data.startswith(SUPERVISOR_LOG_HEADER.encode())


def _foreign_config(data: bytes, name: str) -> bool:
    """A config the harness wrote for a foreign priest: its YAML header, or legislators JSON."""
    if data.startswith(CONFIG_HEADER.format(name=name).encode()):
        return True
    try:
        value = json.loads(data)
    except ValueError:
        return False
    return (isinstance(value, dict) and set(value) == {"legislators"}
            and isinstance(value["legislators"], list)
            and all(isinstance(x, dict) and set(x) == {"ip", "port", "name"}
                    for x in value["legislators"]))


def _state_temp(data: bytes, _name: str) -> bool:
    return not data or data.startswith(b"{")


PRIEST_FILES: dict[str, Recognise] = {LEDGER: _ledger, DECREE: _decree, LOCK: _lock,
                                      EVENTS: _events, NARRATION: _narration}
# network.jsonl (and the one it rotated to .1): the relay's lines, `t` and `kind` like harness.jsonl's.
RUN_FILES: dict[str, Recognise] = {HARNESS_LOG: _harness_log, SUPERVISOR_LOG: _supervisor_log,
                                   "network.jsonl": _harness_log, "network.jsonl.1": _harness_log}


def wipe_data_dir(config: Config) -> list[Path]:
    """Remove what the harness and its priests wrote in the data dir (--fresh); what went.

    Everything is checked before anything is removed: UsageError naming the
    first file that is not recognised, and nothing is removed.
    """
    files: list[Path] = []
    dirs: list[Path] = []
    created = _created(config) if config.foreign_names else set()
    if config.foreign_names:
        _no_foreign_running(config)
    for name in config.names:
        directory = config.priest_dir(name)
        if not directory.exists() and not directory.is_symlink():
            continue
        if config.is_foreign(name):
            files += _foreign_files(config, name, directory, created)
        else:
            files += _priest_files(config, name, directory)
        dirs.append(directory)
    if config.data_dir.is_dir():
        files += _run_files(config, config.data_dir)
    for path in files:
        if path.is_dir() and not path.is_symlink():
            path.rmdir()  # a directory a foreign priest's run created, emptied above
        else:
            path.unlink(missing_ok=True)
    for directory in dirs:
        directory.rmdir()
    return files + dirs


def _refuse(config: Config, path: Path, why: str) -> UsageError:
    return UsageError(f"--fresh: refusing to remove {path}: {why}; move it away (or point "
                      f"data_dir in {config.path} elsewhere); nothing was removed")


def _priest_files(config: Config, name: str, directory: Path) -> list[Path]:
    """The files of a priest's directory, each recognised; UsageError on anything else."""
    if directory.is_symlink() or not directory.is_dir():
        raise _refuse(config, directory, "it is not a priest's directory")
    found = []
    for entry in sorted(directory.iterdir()):
        if entry.name in PRIEST_FILES:
            recognise = PRIEST_FILES[entry.name]
        elif entry.name.startswith(TEMP_PREFIXES):
            recognise = _temp
        else:
            raise _refuse(config, directory, f"it holds {entry.name}, which no priest writes")
        _check(config, entry, name, recognise)
        found.append(entry)
    _not_running(config, directory)
    return found


def _created(config: Config) -> set[str]:
    """What foreign priests' runs created (paths relative to the data dir), as harness.jsonl
    records it (`priest_files`); nothing if it cannot be read."""
    path = config.data_dir / HARNESS_LOG
    found: set[str] = set()
    try:
        with os.fdopen(open_file(path, os.O_RDONLY), "rb") as f:
            data = f.read()
    except (OSError, UserError):
        return found
    for line in data.split(b"\n"):
        record = _json_object(line) if line.startswith(b'{"t":') else None
        if record is not None and record.get("kind") == "priest_files":
            created = record.get("created")
            if isinstance(created, list):
                found.update(c for c in created if isinstance(c, str))
    return found


def _no_foreign_running(config: Config) -> None:
    """UsageError if a process works in the data dir: a foreign priest holds no priest.lock,
    but it runs there (one its supervisor left, or one started by hand)."""
    import psutil

    top = str(config.data_dir.resolve())
    for p in psutil.process_iter(["cwd", "name"]):
        try:
            cwd = p.info["cwd"]
        except psutil.Error:
            continue
        if cwd and (cwd == top or cwd.startswith(top + os.sep)) and p.pid != os.getpid():
            raise _refuse(config, config.data_dir, f"a process runs in it ({p.info['name']}, "
                                                   f"pid {p.pid}): stop it first")


def _foreign_files(config: Config, name: str, directory: Path, created: set[str]) -> list[Path]:
    """A foreign priest's directory: its priest.log (the harness's), and what harness.jsonl says
    its runs created; anything else is refused, and nothing is removed."""
    if directory.is_symlink() or not directory.is_dir():
        raise _refuse(config, directory, "it is not a priest's directory")
    found: list[Path] = []
    subdirs: list[Path] = []
    for root, dirnames, filenames in os.walk(directory):
        for entry in sorted(filenames):
            path = Path(root) / entry
            rel = os.path.relpath(path, config.data_dir)
            if path.parent == directory and entry == NARRATION:
                _check(config, path, name, _narration)
            elif rel not in created:
                raise _refuse(config, path, f"no run of foreign priest {name} created it (so "
                                            "it may be yours)")
            elif path.is_symlink() or not path.is_file():
                raise _refuse(config, path, "not a regular file")
            found.append(path)
        for d in dirnames:
            sub = Path(root) / d
            if sub.is_symlink() or os.path.relpath(sub, config.data_dir) not in created:
                raise _refuse(config, sub, f"no run of foreign priest {name} created it")
            subdirs.append(sub)
    return found + sorted(subdirs, key=lambda p: len(p.parts), reverse=True)


def _check(config: Config, path: Path, name: str, recognise: Recognise) -> None:
    """UsageError unless `path` is a regular file whose contents `recognise` accepts."""
    if not stat.S_ISREG(path.lstat().st_mode):
        raise _refuse(config, path, "not a regular file")
    try:
        with os.fdopen(open_file(path, os.O_RDONLY), "rb") as f:
            data = f.read()
    except (OSError, UserError) as e:
        raise _refuse(config, path, f"cannot read it ({e})") from None
    if not recognise(data, name):
        raise _refuse(config, path, f"its contents are not what paxos-harness writes in "
                                    f"{path.name}, so it was not written here")


def _not_running(config: Config, directory: Path) -> None:
    """UsageError if a priest (one started by hand, say) holds this directory's priest.lock."""
    # Read from /proc/locks, never by taking the lock: a priest starting this very
    # instant would find it held and refuse to start.
    if lock_holder(directory) is not None:
        raise _refuse(config, directory, f"a priest is running on it (it holds {LOCK}); "
                                         "stop it first")


def _run_files(config: Config, data_dir: Path) -> list[Path]:
    """The harness's own files in `data_dir`, recognised (supervisor.json: its supervisor gone)."""
    found = []
    for name, recognise in RUN_FILES.items():
        path = data_dir / name
        if path.exists() or path.is_symlink():
            _check(config, path, "", recognise)
            found.append(path)
    sock = data_dir / SOCKET_NAME
    if sock.is_socket() and not sock.is_symlink():
        found.append(sock)
    state = read_state(data_dir)
    if state is not None and not state.supervisor.alive() and (data_dir / STATE_FILE).exists():
        found.append(data_dir / STATE_FILE)
    for name in config.foreign_names:
        for suffix in ("json", "yaml"):
            path = data_dir / f"{name}.config.{suffix}"
            if path.exists() or path.is_symlink():
                _check(config, path, name, _foreign_config)
                found.append(path)
    for temp in sorted(data_dir.glob(STATE_FILE + ".tmp*")):
        _check(config, temp, "", _state_temp)
        found.append(temp)
    return found
