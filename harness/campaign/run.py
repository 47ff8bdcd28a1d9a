"""One run of a campaign, start to verdict: a fresh cluster, its plan, the heal, `verify`, `down`.

`do_run` is what a worker process does for run k, through the entry points a
user has: `up --detach --fresh` (`start_detached`), `chaos --random` (the
executor, its lines in `chaos.log`), `verify` (`load_and_check`, rendered as
`verify` prints it) and `down` (the control request). The worker's current
directory is the run's own, so whatever `up` records relative to it (the
"current cluster" of `logs/current.json`) stays in the run's directory and
never changes the user's.

Files in the run's directory, besides the priests' and the supervisor's:
`config.yaml`, `plan.txt`, `chaos.log`, `run.log` (the worker's own output),
`verdict.txt` and `run.json` (a `RunResult`). A run that passes has every one
of them removed unless --keep; a failing one keeps them all.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from types import FrameType
from typing import Any

from harness.campaign.spec import CONFIG_FILE, Campaign, config_text, run_config, run_plan, run_seed
from harness.chaos.executor import execute
from harness.chaos.plan import describe_plan
from harness.check.rules import load_and_check
from harness.check.verdict import OK, UNVERIFIABLE, VIOLATION, WAITING, Verdict, render
from harness.errors import ControlError, NotUpError, StartupError, UserError
from harness.supervisor import control
from harness.supervisor.actions import ALIVE
from harness.supervisor.cluster import stop_by_signal, take_run_lock, wait_gone, wipe_data_dir
from harness.supervisor.state import CURRENT, RunState, read_state
from node.config import Config, load_config

PLAN_FILE = "plan.txt"
CHAOS_LOG = "chaos.log"
RUN_LOG = "run.log"
VERDICT_FILE = "verdict.txt"
REPORT_FILE = "report.html"  # a kept run's report (`paxos-harness report`)
RESULT_FILE = "run.json"
OWN_FILES = (CONFIG_FILE, PLAN_FILE, CHAOS_LOG, RUN_LOG, VERDICT_FILE, RESULT_FILE)
START_TRIES = 3  # a free port taken by someone else between choosing it and binding it
POLL = 0.05  # seconds between checks for agreement after the heal


class Status(StrEnum):
    """How a run ended."""

    PASS = "pass"  # noqa: S105 - verify: exit 0 (not a password)
    VIOLATION = "violation"  # verify: exit 1
    UNVERIFIABLE = "unverifiable"  # verify: exit 2, a violation resting on unreadable files
    UNDECIDED = "undecided"  # verify: exit 3 after the settle time: no safety problem
    INTERRUPTED = "interrupted"  # stopped before its verdict (Ctrl+C, or another run failed)


VERIFY_STATUS = {OK: Status.PASS, VIOLATION: Status.VIOLATION, UNVERIFIABLE: Status.UNVERIFIABLE,
                 WAITING: Status.UNDECIDED}
KEPT = frozenset({Status.VIOLATION, Status.UNVERIFIABLE, Status.UNDECIDED})


@dataclass
class RunResult:
    """What one run did: its plan seed, verdict, timings, and where its files are if kept."""

    run: int  # k, from 1
    seed: int
    status: Status
    directory: str
    kept: bool = False
    rules: list[str] = field(default_factory=list)
    evidence: str = ""  # verify's rendering of the verdict, for a run that did not pass
    actions: int = 0
    refused: int = 0
    elapsed: float = 0.0  # seconds, the whole run
    phases: dict[str, float] = field(default_factory=dict)  # up, chaos, settle, down, verify

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> RunResult:
        return cls(**{**raw, "status": Status(raw["status"])})


class Interrupted(BaseException):
    """The worker was asked to stop (SIGTERM from the campaign): bring the cluster down."""


class _Term:
    """SIGTERM in a worker: raise Interrupted, or only note it while a cluster comes up."""

    deferred = False
    pending = False

    @classmethod
    def handler(cls, _signum: int, _frame: FrameType | None) -> None:
        if cls.deferred:  # the supervisor is being forked: stop once we know its run state
            cls.pending = True
            return
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: the cleanup must not be cut short
        raise Interrupted


def worker_signals() -> None:
    """In a worker: Ctrl+C is the campaign's to handle; SIGTERM stops this run cleanly."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTSTP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _Term.handler)


# --- the run's directory ---------------------------------------------------------


def make_run_dir(root: Path, k: int) -> Path:
    """`root/run-<k>`, created here and now; `run-<k>.2`... if another campaign has it.

    Absolute: the run's process works inside it, so a relative data dir would point nowhere.
    """
    root = root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    for n in range(1, 1000):
        path = root / (f"run-{k}" if n == 1 else f"run-{k}.{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise StartupError(f"{root}: run-{k} and 998 more like it exist; remove old runs")


def free_ports(n: int) -> list[int]:
    """n distinct ports on 127.0.0.1 that were free a moment ago, for UDP and for TCP both
    (a foreign priest may listen on either)."""
    for _ in range(20):
        socks: list[socket.socket] = []
        try:
            for _ in range(n):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind(("127.0.0.1", 0))
            ports = [int(s.getsockname()[1]) for s in socks]
            for port in ports:  # held while the UDP ones are: all n at once
                socks.append(socket.create_server(("127.0.0.1", port)))
            return ports
        except OSError:
            continue  # one was taken for TCP: draw again
        finally:
            for s in socks:
                s.close()
    raise StartupError("no loopback ports free for both UDP and TCP after 20 tries")


def remove_run(directory: Path, config: Config | None) -> None:
    """Remove what the run wrote there, and the directory once empty; nothing else."""
    if config is not None:
        wipe_data_dir(config)  # the priests' files and the run files, nothing it did not write
        (config.data_dir / "cluster.key").unlink(missing_ok=True)
    for name in OWN_FILES:
        (directory / name).unlink(missing_ok=True)
    (directory / CURRENT).unlink(missing_ok=True)
    for d in (directory / CURRENT.parent, directory):
        try:
            d.rmdir()
        except OSError:
            pass  # something else is there: not ours to remove


# --- one run ----------------------------------------------------------------------


@dataclass
class _Clock:
    phases: dict[str, float] = field(default_factory=dict)
    mark: float = field(default_factory=time.monotonic)

    def lap(self, name: str) -> None:
        now = time.monotonic()
        self.phases[name] = round(self.phases.get(name, 0.0) + now - self.mark, 4)
        self.mark = now


def do_run(campaign: Campaign, k: int, directory: Path,
           on_up: Callable[[RunState], None] = lambda _s: None) -> RunResult:
    """Run k in `directory` (the current directory): up, plan, heal, verify, down, verdict."""
    started = time.monotonic()
    clock = _Clock()
    plan = run_plan(campaign, k)
    (directory / PLAN_FILE).write_text("\n".join(describe_plan(plan)) + "\n")
    result = RunResult(k, run_seed(campaign.seed, k), Status.INTERRUPTED, str(directory),
                       actions=len(plan.steps))
    config: Config | None = None
    state: RunState | None = None
    failed = False  # by an error of the harness: keep what there is to look at
    try:
        _Term.deferred = True
        try:
            config = _start(campaign, k, directory)
            state = read_state(config.data_dir)
        finally:
            _Term.deferred = False
        assert state is not None, "the supervisor answered, so its run state is there"
        on_up(state)
        if _Term.pending:
            _Term.handler(signal.SIGTERM, None)
        clock.lap("up")
        with open(directory / CHAOS_LOG, "w", encoding="utf-8") as log:
            execute(plan, state, keep_going=True, out=log)
        result.refused = _refused(directory / CHAOS_LOG)
        clock.lap("chaos")
        _settle(config, state, campaign.settle)
        clock.lap("settle")
        _down(state)
        state = None
        clock.lap("down")
        verdict = load_and_check(config, None)  # down: every priest's files count
        clock.lap("verify")
        _judge(result, verdict, directory)
        if _kept(campaign, result):
            _report(config, directory)
    except Exception:
        failed = True
        raise
    finally:
        if state is not None:  # interrupted, or an error: leave no process behind
            _down(state)
        result.elapsed = round(time.monotonic() - started, 4)
        result.phases = clock.phases
        result.kept = campaign.keep or failed or _kept(campaign, result)
        if result.status != Status.INTERRUPTED:
            (directory / RESULT_FILE).write_text(json.dumps(result.to_json(), indent=1) + "\n")
        if not result.kept:
            remove_run(directory, config)
    return result


def passed_over(campaign: Campaign, result: RunResult) -> bool:
    """A violation of none of the rules --until seeks: counted, but not what is looked for."""
    return result.status == Status.VIOLATION and not campaign.sought(result.rules)


def _kept(campaign: Campaign, result: RunResult) -> bool:
    return result.status in KEPT and not passed_over(campaign, result)


def _start(campaign: Campaign, k: int, directory: Path) -> Config:
    """Write the run's config on free ports and bring it up; new ports if one was taken."""
    from harness.supervisor.daemon import start_detached

    n = len(campaign.config.names)
    for attempt in range(1, START_TRIES + 1):
        path = directory / CONFIG_FILE
        path.write_text(config_text(campaign, k, run_config(campaign, directory, free_ports(n))))
        config = load_config(path)
        lock = take_run_lock(config)  # as `up` does: nothing else may bring this run's cluster up
        try:
            start_detached(config, config.names, lock)
            return config
        except StartupError:
            wipe_data_dir(config)
            if attempt == START_TRIES:
                raise
        finally:
            lock.close()  # ours; the detached supervisor holds its own copy for its life
    raise AssertionError("unreachable")


def _refused(log: Path) -> int:
    return sum(1 for line in log.read_text(encoding="utf-8").splitlines() if "REFUSED" in line)


def _alive(state: RunState) -> set[str] | None:
    rows: Sequence[dict[str, Any]] = control.request(state.socket, "status")["priests"]
    return {r["priest"] for r in rows if r["state"] in ALIVE}


def _settle(config: Config, state: RunState, settle: float) -> None:
    """After the heal: wait until verify would say agreement or violation, at most `settle` s."""
    deadline = time.monotonic() + settle
    while time.monotonic() < deadline:
        if load_and_check(config, _alive(state)).exit_status in (OK, VIOLATION):
            return
        time.sleep(POLL)


def _down(state: RunState) -> None:
    """`down`: through the supervisor, or by signal if it does not answer."""
    try:
        control.request(state.socket, "down")
    except (NotUpError, ControlError):
        stop_by_signal(state)
    wait_gone(state)


def _report(config: Config, directory: Path) -> None:
    """A kept run gets its HTML report beside its files (`paxos-harness report`'s own)."""
    from harness.report.page import write_report

    try:
        write_report(config, None, directory / REPORT_FILE)
    except UserError as e:  # the run's files are kept all the same; say why there is no report
        (directory / REPORT_FILE).with_suffix(".txt").write_text(f"no report: {e}\n")


def _judge(result: RunResult, verdict: Verdict, directory: Path) -> None:
    # A status verify may add later (another "cannot verify") is kept, never taken as a pass.
    result.status = VERIFY_STATUS.get(verdict.exit_status, Status.UNVERIFIABLE)
    result.rules = sorted({v.kind for v in (*verdict.violations, *verdict.unverifiable)})
    text = render(verdict, color=False)
    (directory / VERDICT_FILE).write_text(text)
    if result.status != Status.PASS:
        result.evidence = text


def worker_main(campaign: Campaign, k: int, directory: Path, send: Callable[[object], None]) -> int:
    """The body of the process of run k: its output to run.log, its result (or error) sent."""
    from harness.errors import InternalError, UserError, to_wire

    worker_signals()
    directory = directory.resolve()
    try:
        out = os.open(directory / RUN_LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.close(out)
        os.chdir(directory)
        result = do_run(campaign, k, directory,
                        on_up=lambda s: send(("up", s.data_dir)))
        send(("result", result.to_json()))
        return 0
    except Interrupted:
        send(("interrupted", None))
        return 0
    except UserError as e:
        send(("error", to_wire(e)))
        return 1
    except Exception as e:  # noqa: BLE001 - a bug in a worker: reported by the campaign
        import traceback

        traceback.print_exc()
        error = InternalError(f"run {k} failed (this is a bug): {type(e).__name__}: {e}; "
                              f"traceback in {directory / RUN_LOG}")
        send(("error", to_wire(error)))
        return 1
