"""Real crashes: SIGKILL a process that is persisting ledger records and rewriting
files atomically, a few hundred times at random instants, and reopen after each.

What a SIGKILL may not do: leave a ledger that will not open, lose a record
whose write had completed, or leave an atomically written file torn or empty.
"""

from __future__ import annotations

import importlib.util
import os
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import BinaryIO

import psutil
import pytest

from node.ledger import DECREE, LEDGER, Ledger
from node.messages import Ballot, LedgerState

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
KILLS = 500
SEED = 20240611


def load_writer() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ledger_writer", HERE / "ledger_writer.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


writer = load_writer()


def file_id(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_ino, st.st_size


def start_forker(directory: Path, errors: BinaryIO) -> subprocess.Popen[bytes]:
    """The process that forks the writers (so each costs a fork, not a Python start)."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    # bufsize=0: select() on stdout must see every line, none hidden in a buffer.
    return subprocess.Popen([sys.executable, str(HERE / "ledger_writer.py"), "--fork",
                             str(directory)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=errors, env=env, bufsize=0)


def read_int(forker: subprocess.Popen[bytes]) -> int:
    assert forker.stdout is not None
    line = forker.stdout.readline()
    assert line, f"the writer's parent exited with {forker.wait(timeout=10)}"
    return int(line)


def start_writer(forker: subprocess.Popen[bytes]) -> int:
    assert forker.stdin is not None
    forker.stdin.write(b"go\n")
    return read_int(forker)


def wait_first_write(forker: subprocess.Popen[bytes], ledger: Path, before: tuple[int, int],
                     errors: Path) -> None:
    """Return once the writer has changed ledger.log (so the kill lands while it writes)."""
    deadline = time.monotonic() + 15
    while file_id(ledger) == before:
        # Output from the forker now means the writer has already exited: a failure.
        if select.select([forker.stdout], [], [], 0.0005)[0]:
            pytest.fail(f"writer exited early ({read_int(forker)}): {errors.read_text()}")
        assert time.monotonic() < deadline, "writer did not write within 15 s"


def kill_writer_if_alive(pid: int, forker: subprocess.Popen[bytes]) -> None:
    """SIGKILL writer `pid` unless it is gone (checked: still the forker's child)."""
    try:
        if psutil.Process(pid).ppid() == forker.pid:
            os.kill(pid, signal.SIGKILL)
    except (psutil.NoSuchProcess, ProcessLookupError):
        pass


def check_recovered(directory: Path, previous: int) -> int:
    """Reopen the ledger as a priest would; return the index of the recovered state."""
    with Ledger.open(directory) as ledger:
        i = ledger.state.last_tried.round
        assert ledger.state == writer.ledger_state(i), f"state never written: {ledger.state}"
        assert i >= previous, f"ledger went back from state {previous} to {i}"
        # decree.txt(i-1) was complete before record i was begun; decree.txt(i) may be.
        assert ledger.decree in ({i - 1, i} if i > 1 else {None, 1}), (i, ledger.decree)
    blob = directory / writer.BLOB
    if blob.exists():
        complete = {writer.blob_text(j) for j in (i - 1, i) if j > 0}
        assert blob.read_text() in complete, f"{blob.name} torn or stale at state {i}"
    else:
        assert i <= 1, f"{blob.name} missing at state {i}"
    leftovers = [p.name for p in directory.iterdir()
                 if p.name.startswith((DECREE + ".tmp", LEDGER + ".tmp"))]
    assert not leftovers, f"temp files left after open: {leftovers}"
    for temp in directory.glob(writer.BLOB + ".tmp*"):
        temp.unlink()  # the writer is dead: its half-written temp files are garbage
    return i


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_sigkill_at_random_instants_never_loses_or_tears(tmp_path: Path, no_leaks: None) -> None:
    rng = random.Random(SEED)
    directory = tmp_path / "alpha"
    Ledger.open(directory).close()
    ledger = directory / LEDGER
    errors = tmp_path / "writer.err"
    with errors.open("wb") as err:
        forker = start_forker(directory, err)
    pid: int | None = None
    recovered = 0
    try:
        for _ in range(KILLS):
            before = file_id(ledger)
            pid = start_writer(forker)
            wait_first_write(forker, ledger, before, errors)
            time.sleep(rng.uniform(0, 0.01))
            os.kill(pid, signal.SIGKILL)
            status = read_int(forker)  # the writer is reaped: its flock is gone
            pid = None
            assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, status
            recovered = check_recovered(directory, recovered)
    finally:
        if pid is not None:
            kill_writer_if_alive(pid, forker)
        forker.kill()
        forker.wait(timeout=10)
        for pipe in (forker.stdin, forker.stdout):
            if pipe is not None:
                pipe.close()
    # Every writer made at least one record before its kill, and none was lost.
    assert recovered >= KILLS


def _learn_forever(directory: Path) -> None:
    """Child: in fresh subdirectories 0, 1, 2..., persist a state, then learn decree i."""
    i = 0
    while True:
        with Ledger.open(directory / str(i)) as ledger:
            ledger.persist(LedgerState(Ballot(i + 1, "alpha")))
            ledger.write_decree(i)
        i += 1


def test_sigkill_while_learning_leaves_a_decree_txt_that_agrees_with_the_ledger(
        tmp_path: Path) -> None:
    """Real kills at random instants of a process that learns decrees, then reopen each."""
    rng = random.Random(16)
    for kill in range(40):
        directory = tmp_path / f"kill{kill}"
        directory.mkdir()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child is killed
            try:
                _learn_forever(directory)
            finally:
                os._exit(1)
        time.sleep(rng.uniform(0.005, 0.05))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        for sub in sorted(directory.iterdir(), key=lambda p: int(p.name)):
            i = int(sub.name)
            shown = (sub / DECREE).read_text() if (sub / DECREE).exists() else None
            with Ledger.open(sub) as ledger:
                # decree.txt is written after the record: never before it, never torn.
                assert shown in (None, f"{i}\n")
                assert ledger.decree in (None, i)
                if shown is not None:
                    assert ledger.decree == i
                if ledger.decree is not None:
                    assert (sub / DECREE).read_text() == f"{i}\n"
