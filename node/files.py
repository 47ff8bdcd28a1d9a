"""The priest's directories and files, opened without following symbolic links.

A hostile process on the host may plant a link where a priest will create a
file or a directory, hoping the priest writes through it. So a priest walks
to its directory one component at a time (openat with O_NOFOLLOW, creating
what is missing), keeps that directory open, and opens every file in it
relative to that descriptor with O_NOFOLLOW. A planted link is refused in
one line naming it; nothing is ever written outside the data dir.

Which components are checked: every one of a relative data dir (all are the
priest's to create, below the directory it runs in), only the last one of an
absolute data dir (the parents are the user's: /tmp, say, may be a link),
and the priest's own directory always.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from node.errors import StartupError

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
APPEND_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC


def link_refused(path: Path | str) -> StartupError:
    """The one line for a symbolic link found where a priest's file or directory belongs."""
    return StartupError(f"{path}: is a symbolic link; a priest follows no link in its data dir "
                        f"(it writes only inside it): remove the link, or point data_dir at the "
                        f"real directory")


def _is_link(name: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(name, dir_fd=dir_fd).st_mode)
    except OSError:
        return False


def _walk_error(exc: OSError, target: Path, component: Path) -> StartupError:
    reason = exc.strerror or str(exc)
    if isinstance(exc, FileExistsError | NotADirectoryError):
        reason += " (a file is in the way of a directory)"
    where = "" if component == target else f"{component}: "
    return StartupError(f"{target}: cannot use it: {where}{reason}")


def open_dir(directory: Path, *, sync: bool = True, checked: int | None = None) -> int:
    """A descriptor of `directory`, created if missing, with no link among the checked components.

    checked: how many final components must not be links (None: the rule in the
    module's docstring). Raises StartupError naming the path.
    """
    directory = Path(directory)
    parts = [p for p in directory.parts if p != directory.anchor]
    if checked is None:
        checked = 1 if directory.is_absolute() else len(parts)
    checked = min(checked, len(parts))
    base = Path(directory.anchor or ".").joinpath(*parts[:len(parts) - checked])
    try:
        base.mkdir(parents=True, exist_ok=True)
        fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise _walk_error(exc, directory, base) from None
    shown = base
    try:
        for part in parts[len(parts) - checked:]:
            shown = shown / part
            child = _open_child(fd, part, shown, directory, sync)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_child(fd: int, part: str, shown: Path, target: Path, sync: bool) -> int:
    for _ in range(2):
        try:
            return os.open(part, DIR_FLAGS, dir_fd=fd)
        except FileNotFoundError:
            pass
        except OSError as exc:
            if exc.errno == errno.ELOOP or _is_link(part, fd):
                raise link_refused(shown) from None
            raise _walk_error(exc, target, shown) from None
        try:
            os.mkdir(part, 0o755, dir_fd=fd)
        except FileExistsError:
            continue  # made meanwhile (another priest): open what is there, or refuse it
        except OSError as exc:
            raise _walk_error(exc, target, shown) from None
        if sync:
            os.fsync(fd)  # so the new directory survives a power cut
    raise _walk_error(FileNotFoundError(errno.ENOENT, "vanished while being opened"), target, shown)


def open_at(dir_fd: int, name: str, flags: int, shown_dir: Path, mode: int = 0o644) -> int:
    """os.open(name, flags | O_NOFOLLOW) in `dir_fd`; a link is StartupError, other errors an
    OSError naming `shown_dir / name`."""
    # O_NONBLOCK: a FIFO planted in a file's place must not hang the priest at open.
    try:
        fd = os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, mode,
                     dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP or _is_link(name, dir_fd):
            raise link_refused(shown_dir / name) from None
        raise OSError(exc.errno, exc.strerror, str(shown_dir / name)) from None
    file_mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(file_mode):
        os.close(fd)
        code = errno.EISDIR if stat.S_ISDIR(file_mode) else errno.EINVAL
        strerror = os.strerror(code) if code == errno.EISDIR else "not a regular file"
        raise OSError(code, strerror, str(shown_dir / name))
    return fd


def read_at(dir_fd: int, name: str, shown_dir: Path) -> bytes | None:
    """The bytes of `name` in `dir_fd`, None if absent; never through a link."""
    try:
        fd = open_at(dir_fd, name, os.O_RDONLY, shown_dir)
    except FileNotFoundError:
        return None
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(shown_dir / name)) from None
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def atomic_write_at(dir_fd: int, name: str, data: bytes, shown_dir: Path, *, sync: bool = True,
                    mode: int = 0o644) -> None:
    """Replace `name` in `dir_fd` by `data`: a crash leaves the old or the new file, never a mix.

    A temp file created exclusively (never through a link), written, fsynced, renamed
    over `name` (a link there is replaced, not followed), then the directory fsynced.
    """
    temp = f"{name}.tmp{os.urandom(4).hex()}"
    fd = open_at(dir_fd, temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, shown_dir, mode)
    try:
        try:
            write_all(fd, data)
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        try:
            os.unlink(temp, dir_fd=dir_fd)
        except OSError:
            pass
        raise
    if sync:
        os.fsync(dir_fd)


__all__ = ["open_dir", "open_at", "read_at", "atomic_write_at", "write_all", "link_refused",
           "APPEND_FLAGS", "READ_FLAGS"]
