"""The priest's durable storage: `ledger.log`, `decree.txt` and `priest.lock`.

Theory of operation (the format is in docs/formats.md):
- `ledger.log` is an append-only text log. It is created whole (temp file,
  fsync, rename, fsync of the directory) holding only its header, so it always
  has one. Each `persist` appends one record and fdatasyncs it; the last valid
  record is the state. A crash mid-append can only damage the final line, so
  an incomplete or bad final line is dropped and truncated away on open;
  damage anywhere else is corruption and the priest refuses to start.
- A final line that is complete (it ends in a newline) but fails its CRC is
  dropped too: a power cut can persist an unsynced append's length before its
  data, leaving a garbled last block. Nothing was sent that depended on that
  record, since a send waits for its fdatasync, so forgetting it is safe.
- A directory or file the priest cannot use (a path that is a file, a file
  that is a directory, no permission) is a StartupError naming the path.
- Past `COMPACT_AFTER` records the log is rewritten atomically to its header
  and last record.
- A learned decree is a record of its own in `ledger.log` (`v1 learned=D`),
  appended and fdatasynced like the others: the ledger is the one durable
  truth. `decree.txt` is its view, written once, atomically (temp file and
  rename) but without fsyncs; at open, a `decree.txt` that is missing or
  unreadable (what a crash before the rename, or a power cut after it, may
  leave) is rebuilt from the ledger, and one that holds another decree is
  corruption. A priest never changes its decree.
- `priest.lock` is flocked for the lifetime of a `Ledger`, so two priests of
  the same name cannot share a directory.
"""

from __future__ import annotations

import fcntl
import os
import re
import zlib
from pathlib import Path
from types import TracebackType

from node.errors import LedgerError, StartupError
from node.files import atomic_write_at, open_at, open_dir, read_at
from node.messages import (
    MAX_DECREE,
    MIN_DECREE,
    NO_VOTE,
    Ballot,
    LedgerState,
    ProtocolBug,
    RoundOutOfRange,
    Vote,
)

LEDGER = "ledger.log"
DECREE = "decree.txt"
LOCK = "priest.lock"
HEADER = "# paxos-harness ledger v1: the last valid record is the state\n"
COMPACT_AFTER = 1000
# Leftovers of an atomic write interrupted by a crash; removed on open.
TEMP_PREFIXES = (LEDGER + ".tmp", DECREE + ".tmp")

_RECORD = re.compile(r"(v1 last_tried=(\S+) next_bal=(\S+) prev_vote=(\S+)) crc=([0-9a-f]{8})")
_LEARNED = re.compile(r"(v1 learned=(\S+)) crc=([0-9a-f]{8})")
LEARNED_PREFIX = "v1 learned="
# A decree as written: optional minus, no leading zero, no "-0" (what str(int) gives).
_DECREE = re.compile(r"-?[1-9][0-9]{0,18}|0")


# --- records ---------------------------------------------------------------


def _crc(text: str) -> str:
    return f"{zlib.crc32(text.encode()) & 0xFFFFFFFF:08x}"


def encode_record(state: LedgerState) -> str:
    """One ledger line for `state`, without its newline."""
    text = (f"v1 last_tried={state.last_tried} next_bal={state.next_bal} "
            f"prev_vote={state.prev_vote}")
    return f"{text} crc={_crc(text)}"


def encode_learned(decree: int) -> str:
    """The ledger line that makes a learned `decree` durable, without its newline."""
    text = f"{LEARNED_PREFIX}{decree}"
    return f"{text} crc={_crc(text)}"


def decode_learned(line: str) -> int:
    """Inverse of `encode_learned`: DamagedRecord if torn, ValueError if it holds no decree."""
    match = _LEARNED.fullmatch(line)
    if not match:
        raise DamagedRecord("not a ledger record")
    text, decree_text, crc = match.groups()
    if _crc(text) != crc:
        raise DamagedRecord(f"crc mismatch (record says {crc}, text gives {_crc(text)})")
    return parse_decree_text(decree_text)


def parse_vote(text: str) -> Vote:
    """A vote as the ledger writes it: "none" or "DECREE@ROUND.PRIEST"; ValueError otherwise.

    Only the canonical spelling is accepted ("05@1.alpha", "5@0" are not).
    """
    if text == "none":
        return NO_VOTE
    decree_text, sep, ballot_text = text.partition("@")
    if not sep:
        raise ValueError(f"not a vote: {text!r}")
    try:
        decree = parse_decree_text(decree_text)
    except ValueError as exc:
        raise ValueError(f"not a vote: {text!r} ({exc})") from None
    vote = Vote(Ballot.parse(ballot_text), decree)
    if vote.is_none() or str(vote) != text:
        raise ValueError(f"not a vote: {text!r}")
    return vote


class DamagedRecord(ValueError):
    """A line that is not a whole record (no match, or its CRC fails): what a torn append leaves."""


def decode_record(line: str) -> LedgerState:
    """Inverse of `encode_record`; ValueError for anything it would not write.

    DamagedRecord (a ValueError) when the line is not a whole record; a plain
    ValueError when a whole, CRC-valid record holds what a ledger must not
    (a round above MAX_ROUND, a non-canonical spelling): that is no torn write.
    """
    match = _RECORD.fullmatch(line)
    if not match:
        raise DamagedRecord("not a ledger record")
    text, last_tried, next_bal, prev_vote, crc = match.groups()
    if _crc(text) != crc:
        raise DamagedRecord(f"crc mismatch (record says {crc}, text gives {_crc(text)})")
    state = LedgerState(Ballot.parse(last_tried), Ballot.parse(next_bal), parse_vote(prev_vote))
    # Only the one canonical spelling is accepted ("01.alpha", "5@0" are not).
    if encode_record(state) != line:
        raise ValueError("record is not in canonical form")
    return state


def _parse_log(path: Path, data: bytes) -> tuple[LedgerState, int | None, int, int, bool]:
    """(state, decree, records, good_length, torn) of a ledger's bytes; LedgerError if corrupt.

    decree is the learned one (None: no `learned` record); good_length is the byte
    length up to the end of the last good line; torn says whether a damaged final
    line follows it.
    """
    if not data:
        raise LedgerError(f"{path}: line 1: file is empty (no header)")
    if not data.startswith(HEADER.encode()):
        raise LedgerError(f"{path}: line 1: missing header {HEADER.strip()!r}")
    lines = data[len(HEADER):].split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    state, decree, good = LedgerState(), None, len(HEADER)
    for number, raw in enumerate(lines, start=2):
        try:
            line = raw.decode()
            if line.startswith(LEARNED_PREFIX):
                learned = decode_learned(line)
                if decree is not None and learned != decree:
                    raise ValueError(f"learned {learned} after learning {decree}: a decree "
                                     f"never changes")
                decree = learned
            else:
                state = decode_record(line)
        except ValueError as e:  # UnicodeDecodeError is a ValueError
            torn = isinstance(e, (DamagedRecord, UnicodeDecodeError))
            if torn and number == len(lines) + 1 and not tail:
                # A complete last line with a bad CRC: an append cut by a power cut
                # (length synced, data not). It was never fdatasynced, so nothing
                # that depended on it was sent: drop it like an incomplete line.
                # A line whose CRC holds was written whole: never dropped.
                return state, decree, number - 2, good, True
            hint = ""
            if isinstance(e, RoundOutOfRange):
                hint = ("; a round this high comes only from a forged datagram that an older "
                        "version accepted, and no ballot can follow it: stop the cluster and "
                        "start it afresh (paxos-harness up --fresh)")
            raise LedgerError(f"{path}: line {number}: bad record: {e}{hint}") from None
        good += len(raw) + 1
    return state, decree, len(lines), good, bool(tail)


# --- files -----------------------------------------------------------------


def atomic_write_text(path: Path, text: str, *, sync: bool = True) -> None:
    """Replace `path` by `text` so a crash leaves the old or the new file, never a mix.

    Temp file in the same directory, write, fsync, os.replace, fsync the directory.
    """
    path = Path(path)
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        atomic_write_at(dir_fd, path.name, text.encode("utf-8"), path.parent, sync=sync)
    finally:
        os.close(dir_fd)


def parse_decree_text(text: str) -> int:
    """A decree as the ledger and decree.txt spell it, the one rule for both; ValueError otherwise.

    Exactly what `str(decree)` writes: decimal digits, a leading `-` for a negative
    decree, no `+`, no leading zero, no `-0`, no space; in the signed 64-bit range.
    """
    if not _DECREE.fullmatch(text):
        raise ValueError(f"not a decree (decimal digits, a '-' if negative, no '+', "
                         f"no leading zero): {text[:40]!r}")
    decree = int(text)
    if not MIN_DECREE <= decree <= MAX_DECREE:
        raise ValueError(f"decree out of the signed 64-bit range: {decree}")
    return decree


def parse_decree(data: bytes) -> int:
    """The decree in decree.txt's bytes: `parse_decree_text` and a newline; ValueError otherwise."""
    text = data.decode("ascii", errors="replace")
    if not text.endswith("\n"):
        raise ValueError(f"not a decree (no newline at its end): {text[:40]!r}")
    return parse_decree_text(text[:-1])


def read_decree(path: Path) -> int | None:
    """The decree in `path` (decree.txt), None if absent; LedgerError if malformed."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    return _decree_of(path, data)


def _decree_of(path: Path, data: bytes | None) -> int | None:
    if data is None:
        return None
    try:
        return parse_decree(data)
    except ValueError as exc:
        raise LedgerError(f"{path}: {exc}") from None


def read_ledger(directory: Path) -> tuple[LedgerState, int | None]:
    """(state, decree) of a priest's directory, read-only: no lock, no repair.

    A missing ledger.log reads as the initial state; the decree is decree.txt's,
    else the ledger's (a crash can stop a priest between the two). Raises LedgerError.
    """
    path = directory / LEDGER
    try:
        state, logged = _parse_log(path, path.read_bytes())[:2]
    except FileNotFoundError:
        state, logged = LedgerState(), None
    shown = read_decree(directory / DECREE)
    return state, shown if shown is not None else logged


def read_ledger_file(path: Path) -> LedgerState:
    """The state a ledger.log holds, read-only (a torn final record is dropped, as on open).

    LedgerError if it is corrupt; OSError (FileNotFoundError...) if it cannot be read.
    """
    return _parse_log(path, path.read_bytes())[0]


def _lock(dir_fd: int, directory: Path) -> int:
    fd = open_at(dir_fd, LOCK, os.O_RDWR | os.O_CREAT, directory)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StartupError(
            f"{directory}: another priest is already running on this ledger") from None
    # The pid is for people and `status`; the flock is what excludes.
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def os_error(exc: OSError, fallback: Path) -> StartupError:
    """A StartupError of one line naming the path an OSError was about."""
    path = exc.filename if exc.filename is not None else fallback
    reason = exc.strerror or str(exc)
    if isinstance(exc, FileExistsError | NotADirectoryError):
        reason += " (a file is in the way of a directory)"
    return StartupError(f"{os.fsdecode(path)}: cannot use it: {reason}")


def _checked(directory: Path) -> int:
    """How many final components of a priest's directory must not be links: the priest's own
    and the data dir (every component of a relative path); see node.files."""
    return len(directory.parts) if not directory.is_absolute() else 2


# --- the ledger --------------------------------------------------------------


class Ledger:
    """An open priest directory: the recovered state, the decree, and the lock."""

    def __init__(self, directory: Path, dir_fd: int, sync: bool, compact_after: int) -> None:
        self.directory = directory
        self.dir_fd: int | None = dir_fd  # every file is opened relative to it, never via a link
        self.path = directory / LEDGER
        self.sync = sync
        self.compact_after = compact_after
        self._lock_fd: int | None = None
        self._fd: int | None = None
        self.records = 0
        self.state = LedgerState()
        self.decree: int | None = None
        self._learned: str | None = None  # the ledger's `learned` line, kept by a compaction

    @classmethod
    def open(cls, directory: Path, *, sync: bool = True, lock: bool = True,
             compact_after: int = COMPACT_AFTER) -> Ledger:
        """Create the directory if needed, lock it, and recover; LedgerError/StartupError.

        sync=False skips fsync (simulation); lock=False skips priest.lock (read-mostly tools).
        """
        directory = Path(directory)
        try:
            return cls._open(directory, sync, lock, compact_after)
        except OSError as exc:
            raise os_error(exc, directory) from None

    @classmethod
    def _open(cls, directory: Path, sync: bool, lock: bool, compact_after: int) -> Ledger:
        # The data dir and this directory: created if missing, never through a link.
        ledger = cls(directory, open_dir(directory, sync=sync, checked=_checked(directory)),
                     sync, compact_after)
        try:
            if lock:
                ledger._lock_fd = _lock(ledger.fd, directory)
            ledger._recover()
        except BaseException:
            ledger.close()
            raise
        return ledger

    @property
    def fd(self) -> int:
        """The descriptor of the priest's directory (ProtocolBug once closed)."""
        if self.dir_fd is None:
            raise ProtocolBug(f"{self.directory}: used after close")
        return self.dir_fd

    def _recover(self) -> None:
        for leftover in os.listdir(self.fd):
            if leftover.startswith(TEMP_PREFIXES):
                try:
                    os.unlink(leftover, dir_fd=self.fd)
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    raise OSError(exc.errno, exc.strerror, str(self.directory / leftover)) from None
        data = read_at(self.fd, LEDGER, self.directory)
        if data is None:
            atomic_write_at(self.fd, LEDGER, HEADER.encode(), self.directory, sync=self.sync)
            data = HEADER.encode()
        self.state, logged, self.records, good, torn = _parse_log(self.path, data)
        self._fd = open_at(self.fd, LEDGER, os.O_WRONLY | os.O_APPEND, self.directory)
        if torn:
            # Cut the torn append away so the next record starts on a clean line.
            os.ftruncate(self._fd, good)
            if self.sync:
                os.fsync(self._fd)
        self.decree = self._decree_view(logged)

    def _decree_view(self, logged: int | None) -> int | None:
        """The decree, with decree.txt made to show the ledger's (LedgerError if it shows another)."""
        path = self.directory / DECREE
        data = read_at(self.fd, DECREE, self.directory)
        if logged is None:
            return _decree_of(path, data)  # no decree, or a ledger from before `learned` records
        self._learned = encode_learned(logged)
        try:
            shown = parse_decree(data) if data is not None else None
        except ValueError:
            shown = None  # a view a power cut emptied or tore: the ledger holds the truth
        if shown is None:
            atomic_write_at(self.fd, DECREE, f"{logged}\n".encode(), self.directory, sync=self.sync)
        elif shown != logged:
            raise LedgerError(f"{path}: holds {shown}, but {self.path} learned {logged}")
        return logged

    def persist(self, state: LedgerState) -> None:
        """Append `state` as a record and make it durable (fdatasync) before returning."""
        if self._fd is None:
            raise ProtocolBug(f"{self.path}: persist on a closed ledger")
        line = encode_record(state)
        # Never write a record we would refuse to read back at the next start.
        try:
            readable = decode_record(line) == state
        except ValueError:
            readable = False
        if not readable:
            raise ProtocolBug(f"{self.path}: state cannot be recorded faithfully: {state!r}")
        self._append(line)
        self.state = state
        if self.records > self.compact_after:
            self._compact()

    def _append(self, line: str) -> None:
        """Append one line and make it durable (fdatasync) before returning."""
        if self._fd is None:
            raise ProtocolBug(f"{self.path}: append to a closed ledger")
        data = (line + "\n").encode()
        while data:
            data = data[os.write(self._fd, data):]
        if self.sync:
            os.fdatasync(self._fd)
        self.records += 1

    def _compact(self) -> None:
        """Rewrite the log atomically to its header, the learned decree and the state."""
        kept = [self._learned] if self._learned is not None else []
        kept.append(encode_record(self.state))
        atomic_write_at(self.fd, LEDGER, (HEADER + "".join(f"{k}\n" for k in kept)).encode(),
                        self.directory, sync=self.sync)
        assert self._fd is not None
        os.close(self._fd)
        self._fd = open_at(self.fd, LEDGER, os.O_WRONLY | os.O_APPEND, self.directory)
        self.records = len(kept)

    def write_decree(self, decree: int) -> None:
        """Make `decree` durable in the ledger, then show it in decree.txt; again: a no-op.

        The `learned` record is appended and fdatasynced (the one durable truth);
        decree.txt is then written atomically but not synced: a crash that loses it
        leaves the record, from which the next open rebuilds it. A different decree
        over an existing one is a ProtocolBug: a decree never changes.
        """
        if self.decree is not None:
            if self.decree != decree:
                raise ProtocolBug(f"{self.directory / DECREE}: would change decree "
                                  f"{self.decree} to {decree}")
            return
        if isinstance(decree, bool) or not MIN_DECREE <= decree <= MAX_DECREE:
            raise ProtocolBug(f"{self.directory / DECREE}: not a decree: {decree!r}")
        line = encode_learned(decree)
        self._append(line)
        self._learned = line
        atomic_write_at(self.fd, DECREE, f"{decree}\n".encode(), self.directory, sync=False)
        self.decree = decree

    def close(self) -> None:
        """Close the log and release the lock; safe to call twice."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the only descriptor releases the flock
            self._lock_fd = None
        if self.dir_fd is not None:
            os.close(self.dir_fd)
            self.dir_fd = None

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


__all__ = ["Ledger", "read_ledger", "read_ledger_file", "read_decree", "parse_decree",
           "parse_decree_text", "parse_vote", "os_error", "atomic_write_text", "encode_record",
           "decode_record", "encode_learned", "decode_learned", "HEADER", "LEDGER", "DECREE", "LOCK", "COMPACT_AFTER"]
