"""Runs at once: one forked worker process per run, at most `jobs` alive, results as they end.

Each worker (`harness.campaign.run.worker_main`) brings its cluster up, runs
its plan and its verdict, brings the cluster down, and sends its result on a
pipe. It ignores Ctrl+C: the campaign, here, decides. On Ctrl+C, or when a
run breaks a rule (one of --until's, if given) and --keep-going is off, every
worker still running is sent SIGTERM,
which makes it bring its cluster down (the supervisor stops its priests and
its relay) and end; a worker that does not end in time is killed, and its
cluster stopped by signal from its run state. So nothing a campaign started
outlives it.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as mp_wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from harness.campaign.run import KEPT, RUN_LOG, RunResult, Status, make_run_dir, worker_main
from harness.campaign.spec import Campaign
from harness.errors import InternalError, UserError, from_wire
from harness.supervisor.cluster import stop_by_signal
from harness.supervisor.state import read_state

FORK = multiprocessing.get_context("fork")
TICK = 0.5  # seconds between progress updates while runs go on
STOP_WAIT = 30.0  # a worker asked to stop brings its cluster down well within this


@dataclass
class _Worker:
    k: int
    directory: Path
    process: BaseProcess
    conn: Connection
    data_dir: str | None = None  # once its cluster is up
    result: RunResult | None = None
    error: UserError | None = None
    interrupted: bool = False

    def drain(self) -> None:
        """Read every message the worker has sent so far."""
        try:
            while self.conn.poll():
                kind, body = self.conn.recv()
                self._take(kind, body)
        except (EOFError, OSError):
            pass

    def _take(self, kind: str, body: Any) -> None:
        if kind == "up":
            self.data_dir = body
        elif kind == "result":
            self.result = RunResult.from_json(body)
        elif kind == "error":
            self.error = from_wire(body)
        elif kind == "interrupted":
            self.interrupted = True

    @property
    def ended(self) -> bool:
        return not self.process.is_alive()


@dataclass
class Outcome:
    """Every result, in the order runs ended; whether Ctrl+C or a failure stopped it early."""

    results: list[RunResult] = field(default_factory=list)
    interrupted: bool = False  # Ctrl+C
    stopped: bool = False  # a failing run stopped the rest (no --keep-going)
    error: UserError | None = None
    elapsed: float = 0.0


def _entry(campaign: Campaign, k: int, directory: Path, conn: Connection) -> None:
    sys.exit(worker_main(campaign, k, directory, conn.send))


def _spawn(campaign: Campaign, k: int) -> _Worker:
    directory = make_run_dir(campaign.root, k)
    parent, child = FORK.Pipe(duplex=False)
    process = FORK.Process(target=_entry, args=(campaign, k, directory, child),
                           name=f"campaign run {k}", daemon=False)
    process.start()
    child.close()
    return _Worker(k, directory, process, parent)


def run_all(campaign: Campaign, *, on_result: Callable[[RunResult], None] = lambda _r: None,
            on_tick: Callable[[int], None] = lambda _n: None) -> Outcome:
    """Do the campaign's runs, `jobs` at a time, until all are done, one fails, or Ctrl+C."""
    started = time.monotonic()
    outcome = Outcome()
    queue = deque(campaign.numbers)
    active: list[_Worker] = []
    try:
        while (queue and not outcome.stopped and outcome.error is None) or active:
            while queue and not outcome.stopped and outcome.error is None \
                    and len(active) < campaign.jobs:
                active.append(_spawn(campaign, queue.popleft()))
            mp_wait([w.conn for w in active] + [w.process.sentinel for w in active], TICK)
            for w in list(active):
                if w not in active:
                    continue  # stopped by another run's failure, in this same turn
                w.drain()
                if not w.ended:
                    continue
                w.drain()
                w.process.join()
                active.remove(w)
                _cleanup_dead(w)
                _ended(w, campaign, outcome, on_result, active)
            on_tick(len(active))
    except KeyboardInterrupt:
        outcome.interrupted = True
    finally:
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl+C: still clean up
        try:
            stop_workers(active)
        finally:
            signal.signal(signal.SIGINT, old)
        outcome.elapsed = time.monotonic() - started
    return outcome


def _ended(w: _Worker, campaign: Campaign, outcome: Outcome,
           on_result: Callable[[RunResult], None], active: list[_Worker]) -> None:
    if w.error is not None:
        if outcome.error is None:
            outcome.error = w.error
            stop_workers(active)
        return
    if w.result is None:
        if w.interrupted or outcome.interrupted or outcome.stopped:
            return  # stopped on purpose before it could say anything
        # A run that ended without a word is a bug of ours, never a pass.
        if outcome.error is None:
            outcome.error = InternalError(
                f"run {w.k} ended without a result (exit status {w.process.exitcode}; this is "
                f"a bug); its output is in {w.directory / RUN_LOG}")
            stop_workers(active)
        return
    outcome.results.append(w.result)
    on_result(w.result)
    if (w.result.status == Status.VIOLATION and campaign.sought(w.result.rules)
            and not campaign.keep_going and not outcome.stopped):
        outcome.stopped = True
        stop_workers(active)


def stop_workers(active: list[_Worker]) -> None:
    """SIGTERM every worker (each brings its cluster down), wait, then kill what is left."""
    for w in active:
        if w.process.is_alive() and w.process.pid is not None:
            try:
                os.kill(w.process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + STOP_WAIT
    for w in active:
        w.process.join(max(0.0, deadline - time.monotonic()))
        if w.process.is_alive():
            w.process.kill()
            w.process.join()
        w.drain()
        _cleanup_dead(w)
    active.clear()


def _cleanup_dead(w: _Worker) -> None:
    """A worker that ended without bringing its cluster down: stop that cluster by signal."""
    if w.result is not None:
        return
    try:
        w.directory.rmdir()  # empty when it ended before writing anything
    except OSError:
        pass
    if w.data_dir is None:
        return
    state = read_state(Path(w.data_dir))
    if state is not None and (state.supervisor.alive()
                              or any(i.alive() for i in state.priests.values())):
        stop_by_signal(state)


def kept(results: list[RunResult]) -> list[RunResult]:
    """The runs whose files stay: failures (and every run with --keep)."""
    return [r for r in results if r.kept or r.status in KEPT]
