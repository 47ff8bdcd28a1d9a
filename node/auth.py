"""The cluster's key: every datagram carries an HMAC-SHA256 tag under it.

The key is 32 random bytes, kept as 64 lowercase hex digits and a newline in
`<data_dir>/cluster.key` (or the config's `key_file:`), mode 0600. The first
priest to start creates it; priests that start at the same moment race, so the
file appears whole or not at all: a temp file is written and fsynced, then
link()ed to the name, which fails if another priest got there first, and
every priest then reads the one file that won. A key file that is a link,
readable or writable by group or others, owned by another user, or not 64 hex
digits is refused in one line: a priest never runs on a key it cannot trust.
The datagram format with its tag is in node.codec and docs/formats.md.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from node.config import Config
from node.errors import StartupError
from node.files import open_at, open_dir, write_all

KEY_FILE = "cluster.key"
KEY_BYTES = 32
_HEX = frozenset("0123456789abcdef")


def cluster_key(config: Config) -> bytes:
    """The cluster's key, created if absent; StartupError naming the file if unusable."""
    if config.key_file is not None:
        path = config.key_file
        try:
            dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise StartupError(f"{path}: cannot use it as key_file (from {config.path}): "
                               f"{path.parent}: {exc.strerror}") from None
    else:
        path = config.data_dir / KEY_FILE
        dir_fd = open_dir(config.data_dir)  # never through a link (node.files)
    try:
        return load_or_create_key(dir_fd, path.name, path.parent)
    finally:
        os.close(dir_fd)


def load_or_create_key(dir_fd: int, name: str, shown_dir: Path) -> bytes:
    """The key in `name` under `dir_fd`; if absent, create it atomically first."""
    path = shown_dir / name
    try:
        key = _read_key(dir_fd, name, path)
        if key is None:
            _create_key(dir_fd, name, shown_dir)
            key = _read_key(dir_fd, name, path)
    except OSError as exc:
        raise StartupError(f"{path}: cannot use the cluster key: {exc.strerror or exc}") from None
    if key is None:
        raise StartupError(f"{path}: the cluster key vanished while being created")
    return key


def _read_key(dir_fd: int, name: str, path: Path) -> bytes | None:
    try:
        fd = open_at(dir_fd, name, os.O_RDONLY, path.parent)
    except FileNotFoundError:
        return None
    try:
        info = os.fstat(fd)
        data = os.read(fd, 2 * KEY_BYTES + 2)
    finally:
        os.close(fd)
    if info.st_uid != os.getuid():
        raise StartupError(f"{path}: the cluster key belongs to another user (uid {info.st_uid}): "
                           f"refusing it")
    if info.st_mode & 0o077:
        mode = stat.S_IMODE(info.st_mode)
        raise StartupError(f"{path}: the cluster key is open to group or others (mode {mode:04o}): "
                           f"chmod 600 {path}")
    text = data.decode("ascii", errors="replace")
    if len(text) != 2 * KEY_BYTES + 1 or not text.endswith("\n") or not set(text[:-1]) <= _HEX:
        raise StartupError(f"{path}: not a cluster key ({2 * KEY_BYTES} lowercase hex digits and "
                           f"a newline); remove it and a priest makes a new one")
    return bytes.fromhex(text[:-1])


def _create_key(dir_fd: int, name: str, shown_dir: Path) -> None:
    """Write a new key under a temp name, then link it in place unless another won the race."""
    temp = f"{name}.tmp{os.getpid()}.{os.urandom(4).hex()}"
    fd = open_at(dir_fd, temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, shown_dir, 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)  # whatever the umask
            write_all(fd, (os.urandom(KEY_BYTES).hex() + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
        except FileExistsError:
            pass  # another priest created it first: everyone reads that one
        except OSError as exc:
            if exc.errno != errno.EEXIST:
                raise
        else:
            os.fsync(dir_fd)
    finally:
        try:
            os.unlink(temp, dir_fd=dir_fd)
        except OSError:
            pass


__all__ = ["cluster_key", "load_or_create_key", "KEY_FILE", "KEY_BYTES"]
