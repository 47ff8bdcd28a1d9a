"""The harness's own files: never through a link, replaced atomically, and the run lock.

Every file the harness writes (supervisor.json and its temp files,
supervisor.log, harness.jsonl, logs/current.json, the run record and run lock
in the private directory, the control socket) is opened with O_NOFOLLOW and
must be a regular file: a symbolic link (or a FIFO, a directory) planted at one
of those names is refused in one line naming it, and never written through.

The run lock (`RunLock`) makes "is the cluster up?", `--fresh`'s wipe and the
start of the supervisor one critical section: `up` takes it before it looks,
and the supervisor holds it for as long as it runs.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import tempfile
from pathlib import Path

from harness.errors import LinkError, UserError
from node import codec  # its sha256 is the interpreter's own: hashlib would load OpenSSL
from node.ledger import LOCK as PRIEST_LOCK

NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC


def _refused(path: Path, what: str) -> LinkError:
    return LinkError(f"{path}: {what}, where the harness keeps one of its own files; it does "
                     f"not write through links or into anything but a regular file: remove it")


def check_not_link(path: Path) -> None:
    """LinkError if `path` is a symbolic link (dangling or not)."""
    if path.is_symlink():
        raise _refused(path, "a symbolic link")


def open_file(path: Path, flags: int, mode: int = 0o644) -> int:
    """os.open without following a link; LinkError unless it is (or becomes) a regular file.

    O_NONBLOCK keeps a FIFO planted at `path` from blocking us; a regular
    file ignores it. FileNotFoundError and other OSErrors pass through.
    """
    try:
        fd = os.open(path, flags | NOFOLLOW | os.O_NONBLOCK, mode)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise _refused(path, "a symbolic link") from None
        if e.errno in (errno.ENXIO, errno.EISDIR):
            raise _refused(path, "not a regular file") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise _refused(path, "not a regular file")
    os.set_blocking(fd, True)
    return fd


def read_text(path: Path) -> str:
    """The text of a run file, read without following a link."""
    fd = open_file(path, os.O_RDONLY)
    with os.fdopen(fd, "rb") as f:
        return f.read().decode("utf-8")


def write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    """Replace `path` by `text`: a temp file (created exclusively, never a link), then rename.

    Not fsynced: run files describe running processes, which a machine crash
    ends anyway. A link at `path` is refused rather than replaced.
    """
    check_not_link(path)
    temp = path.with_name(f"{path.name}.tmp{os.urandom(4).hex()}")
    fd = open_file(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


# --- the private directory: run records, locks and long socket paths -----------


def private_dir() -> Path:
    """/tmp/paxos-harness-<uid> ($TMPDIR is honoured), created 0700; refused if not ours."""  # noqa: S108
    path = Path(tempfile.gettempdir()) / f"paxos-harness-{os.getuid()}"
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass
    st = path.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise UserError(f"{path}: must be a directory owned by you with mode 0700")
    return path


def cluster_key(data_dir: Path) -> str:
    """A short name for a cluster, from its absolute data dir: the same from any directory."""
    digest: str = codec.sha256(os.fsencode(data_dir.resolve())).hexdigest()
    return digest[:20]


def private_path(data_dir: Path, suffix: str) -> Path:
    """`<private dir>/<cluster key><suffix>`: a run file that outlives the data dir."""
    return private_dir() / f"{cluster_key(data_dir)}{suffix}"


# --- the run lock ---------------------------------------------------------------


class RunLock:
    """The cluster's exclusive run lock: an flock on `<private dir>/<key>.lock`.

    Not in the data dir, so that deleting the data dir of a running cluster
    does not free it. The file holds the pid of its holder, for messages. The
    lock belongs to the open file: a forked supervisor shares it with the `up`
    that forked it, and holds it alone once that `up` has closed its copy;
    priests close it with every other descriptor of the supervisor's.
    """

    def __init__(self, path: Path, fd: int) -> None:
        self.path, self.fd = path, fd

    @classmethod
    def take(cls, data_dir: Path) -> RunLock | None:
        """The lock, or None if another process holds it (never waits)."""
        path = private_path(data_dir, ".lock")
        while True:
            fd = open_file(path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return None
            # The holder before us may have removed the file as it let go: then we
            # locked a file nobody else will find. Lock the one at `path` instead.
            try:
                same = os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                lock = cls(path, fd)
                lock.claim()
                return lock
            os.close(fd)

    @staticmethod
    def holder(data_dir: Path) -> int | None:
        """The pid written in the lock file by its holder, if any."""
        try:
            text = read_text(private_path(data_dir, ".lock")).strip()
        except (OSError, UserError, ValueError):
            return None
        return int(text) if text.isdigit() else None

    def claim(self) -> None:
        """Write our pid into the lock file (the forked supervisor does it again)."""
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)

    def close(self) -> None:
        """Let go of our descriptor (the lock stays held while another copy is open)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def release(self) -> None:
        """Remove the lock file and let go: the holder's last act."""
        if self.fd >= 0:
            self.path.unlink(missing_ok=True)
            self.close()


def lock_holder(directory: Path) -> int | None:
    """The pid of the process holding `directory`'s priest.lock: a priest running there.

    Read from /proc/locks, so the lock is never taken, not even for an instant
    (a priest starting then would find it held and refuse to start).
    """
    try:
        st = (directory / PRIEST_LOCK).lstat()
        table = Path("/proc/locks").read_text()
    except OSError:
        return None
    key = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    for line in table.splitlines():
        fields = line.split()  # "1: FLOCK  ADVISORY  WRITE 4242 fe:00:123 0 EOF"; waiters: "->"
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == key:
            return int(fields[4])
    return None
