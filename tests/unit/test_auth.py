"""The cluster key: created once, atomically, by whichever priest starts first; refused if untrustworthy."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest

from node.auth import KEY_FILE, load_or_create_key
from node.errors import StartupError
from node.files import open_dir

FORK = multiprocessing.get_context("fork")


def load(directory: Path) -> bytes:
    fd = open_dir(directory)
    try:
        return load_or_create_key(fd, KEY_FILE, directory)
    finally:
        os.close(fd)


def test_the_first_start_creates_an_owner_only_key_and_later_ones_read_it(tmp_path: Path) -> None:
    key = load(tmp_path)
    path = tmp_path / KEY_FILE
    assert len(key) == 32 and path.read_text() == key.hex() + "\n"
    assert path.stat().st_mode & 0o777 == 0o600
    assert load(tmp_path) == key
    assert [p.name for p in tmp_path.iterdir()] == [KEY_FILE]  # no temp file left


def test_the_key_is_owner_only_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        load(tmp_path)
    finally:
        os.umask(old)
    assert (tmp_path / KEY_FILE).stat().st_mode & 0o777 == 0o600


def _racer(directory: str, start: object, out: object) -> None:
    start.wait()  # type: ignore[attr-defined]
    out.send(load(Path(directory)).hex())  # type: ignore[attr-defined]


def test_priests_racing_to_create_the_key_all_end_with_the_same_one(tmp_path: Path) -> None:
    for attempt in range(5):
        directory = tmp_path / str(attempt)
        directory.mkdir()
        start = FORK.Event()
        pipes = [FORK.Pipe(duplex=False) for _ in range(8)]
        procs = [FORK.Process(target=_racer, args=(str(directory), start, w)) for _, w in pipes]
        for p in procs:
            p.start()
        start.set()
        keys = {r.recv() for r, _ in pipes}
        for p in procs:
            p.join(10)
        assert len(keys) == 1
        assert (directory / KEY_FILE).read_text() == keys.pop() + "\n"
        assert [p.name for p in directory.iterdir()] == [KEY_FILE]


@pytest.mark.parametrize(("content", "mode", "says"), [
    ("ab" * 32 + "\n", 0o644, "chmod 600"),
    ("ab" * 32 + "\n", 0o620, "chmod 600"),
    ("ab" * 32 + "\n", 0o604, "chmod 600"),
    ("AB" * 32 + "\n", 0o600, "not a cluster key"),
    ("ab" * 32, 0o600, "not a cluster key"),
    ("ab" * 31 + "\n", 0o600, "not a cluster key"),
    ("ab" * 33 + "\n", 0o600, "not a cluster key"),
    ("", 0o600, "not a cluster key"),
])
def test_an_untrustworthy_key_file_is_one_line_naming_it(
        tmp_path: Path, content: str, mode: int, says: str) -> None:
    path = tmp_path / KEY_FILE
    path.write_text(content)
    path.chmod(mode)
    with pytest.raises(StartupError) as err:
        load(tmp_path)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{path}: ") and says in message
    assert path.read_text() == content  # never replaced


def test_a_linked_key_file_is_refused_even_if_its_target_is_a_good_key(tmp_path: Path) -> None:
    good = tmp_path / "good.key"
    good.write_text("ab" * 32 + "\n")
    good.chmod(0o600)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / KEY_FILE).symlink_to(good)
    with pytest.raises(StartupError, match="is a symbolic link"):
        load(tmp_path / "data")


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to give a file to another user")
def test_a_key_file_of_another_user_is_refused(tmp_path: Path) -> None:
    path = tmp_path / KEY_FILE
    path.write_text("ab" * 32 + "\n")
    path.chmod(0o600)
    os.chown(path, 12345, 12345)
    with pytest.raises(StartupError, match="another user"):
        load(tmp_path)
