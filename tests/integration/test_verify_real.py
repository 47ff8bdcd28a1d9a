"""`verify` judging real priests: a healthy run with a crash passes, tampering and waiting do not."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.check.rules import load_and_check
from node.config import Config, load_config
from node.ledger import HEADER
from tests.integration.priests import REPO, Priests

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

FOUR = ["alpha", "beta", "gamma", "delta"]


@pytest.fixture
def cluster(make_config, tmp_path: Path, no_leaks):
    priests = Priests(load_config(make_config(4)), tmp_path)
    yield priests
    priests.stop_all()


def verify_argv(config: Config, *extra: str) -> list[str]:
    return [sys.executable, "-m", "harness", "verify", config.path, "--json", *extra]


def cli_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "NO_COLOR": "1"}


def verify_cli(config: Config, cwd: Path, *extra: str) -> tuple[int, dict]:
    """`python -m harness verify CONFIG --json` run in cwd: (exit status, the JSON verdict)."""
    done = subprocess.run(verify_argv(config, *extra), cwd=cwd, env=cli_env(),
                          capture_output=True, text=True, timeout=60)
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout)


def test_a_healthy_run_with_a_crash_is_agreement(cluster: Priests, tmp_path: Path) -> None:
    names = cluster.config.names
    for name in names:
        cluster.start(name)
    # Two ballots at once, and one of their leaders killed while they run.
    cluster.ballot("alpha")
    cluster.ballot("beta")
    time.sleep(0.005)
    cluster.kill("beta")
    cluster.start("beta")
    cluster.ballot("gamma")
    held = cluster.wait_decrees(names)
    assert None not in held.values() and len(set(held.values())) == 1, held
    decree = held["alpha"]

    verdict = load_and_check(cluster.config, set(cluster.procs))
    assert verdict.exit_status == 0, verdict.violations
    assert verdict.decree == decree
    status, report = verify_cli(cluster.config, tmp_path)
    assert status == 0, report["violations"]
    assert report["decree"] == decree and report["status"] == "agreement"

    (cluster.config.priest_dir("delta") / "decree.txt").write_text(f"{decree + 1}\n")
    status, report = verify_cli(cluster.config, tmp_path)
    assert status == 1
    assert report["violations"] and all("delta" in v["priests"] for v in report["violations"])
    assert any(str(decree + 1) in v["message"] for v in report["violations"])


def test_a_priest_that_never_learned_is_not_yet(cluster: Priests, tmp_path: Path) -> None:
    for name in ("alpha", "beta", "gamma"):
        cluster.start(name)
    cluster.ballot("alpha")
    held = cluster.wait_decrees(["alpha", "beta", "gamma"])
    assert None not in held.values(), held
    cluster.start("delta")  # after the ballot, and no ballot since: it holds nothing

    verdict = load_and_check(cluster.config, set(cluster.procs))
    assert verdict.exit_status == 3 and verdict.waiting == ("delta",)
    status, report = verify_cli(cluster.config, tmp_path)
    assert status == 3
    assert report["waiting"] == ["delta"] and report["violations"] == []


def test_wait_sees_a_ballot_that_starts_later(cluster: Priests, tmp_path: Path) -> None:
    for name in cluster.config.names:
        cluster.start(name)
    waiting = subprocess.Popen(verify_argv(cluster.config, "--wait", "5"), cwd=tmp_path,
                               env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        time.sleep(0.5)
        assert waiting.poll() is None  # nobody holds a decree yet: it keeps checking
        cluster.ballot("gamma")
        out, err = waiting.communicate(timeout=30)
    finally:
        if waiting.poll() is None:
            waiting.send_signal(signal.SIGKILL)
            waiting.wait(5)
    assert waiting.returncode == 0, out + err
    decree = cluster.decree("gamma")
    assert decree is not None and json.loads(out)["decree"] == decree


def test_status_and_verify_see_priests_started_by_hand(cluster: Priests, tmp_path: Path) -> None:
    for name in ("alpha", "beta", "gamma"):
        cluster.start(name)
    cluster.ballot("alpha")
    held = cluster.wait_decrees(["alpha", "beta", "gamma"])
    assert None not in held.values(), held
    cluster.kill("gamma")  # it holds the decree, but no longer runs; delta never started
    done = subprocess.run([sys.executable, "-m", "harness", "status", cluster.config.path,
                           "--json"], cwd=tmp_path, env=cli_env(), capture_output=True,
                          text=True, timeout=60)
    report = json.loads(done.stdout)
    rows = {p["priest"]: (p["state"], p["pid"]) for p in report["priests"]}
    assert rows == {"alpha": ("by hand", cluster.procs["alpha"].pid),
                    "beta": ("by hand", cluster.procs["beta"].pid),
                    "gamma": ("down", None), "delta": ("down", None)}, rows
    assert done.returncode == 1 and "started by hand run: alpha, beta" in report["summary"]
    # The survivors are the priests that run: delta, never started, is not waited for.
    status, verdict = verify_cli(cluster.config, tmp_path)
    assert status == 0 and verdict["waiting"] == [], verdict


def test_a_lost_ledger_and_a_lost_decree_are_violations(cluster: Priests, tmp_path: Path) -> None:
    names = cluster.config.names
    for name in names:
        cluster.start(name)
    cluster.ballot("alpha")
    held = cluster.wait_decrees(names)
    assert None not in held.values(), held
    cluster.kill("delta")
    # While delta is down, its ledger is emptied to its header and gamma's decree.txt deleted.
    (cluster.config.priest_dir("delta") / "ledger.log").write_text(HEADER)
    (cluster.config.priest_dir("gamma") / "decree.txt").unlink()
    status, report = verify_cli(cluster.config, tmp_path)
    assert status == 1, report
    found = {v["kind"]: v for v in report["violations"]}
    assert set(found) == {"ledger_lost", "decree_lost"}, report["violations"]
    assert found["ledger_lost"]["priests"] == ["delta"]
    assert "ledger.log holds next_bal=0 prev_vote=none" in found["ledger_lost"]["message"]
    assert found["decree_lost"]["priests"] == ["gamma"]
    # delta restarts on the emptied ledger: its `started` event shows what it forgot.
    cluster.start("delta")
    status, report = verify_cli(cluster.config, tmp_path)
    (lost,) = [v for v in report["violations"] if v["kind"] == "ledger_lost"]
    assert status == 1 and "when it restarted at +" in lost["message"], lost


def test_a_violation_lists_the_faults_the_harness_applied_before_it(harness) -> None:
    config = harness.config(4)
    done = harness.run("up", str(config), "--detach", "--fresh")
    assert done.returncode == 0, done.stderr
    try:
        assert harness.run("chaos", "--ballot", "alpha").returncode == 0
        data = harness.cwd / "data"
        harness.wait_until(lambda: all((data / n / "decree.txt").exists() for n in FOUR),
                           what="every priest learns")
        done = harness.run("chaos", "--kill", "beta", "--restart", "beta")
        assert done.returncode == 0, done.stderr
        decree = int((data / "delta" / "decree.txt").read_text())
        (data / "delta" / "decree.txt").write_text(f"{decree + 1}\n")  # tampered after the kill

        done = harness.run("verify", "--json")
        assert done.returncode == 1, done.stdout + done.stderr
        report = json.loads(done.stdout)
        (disagreement,) = [v for v in report["violations"] if v["kind"] == "disagreement"]
        # The final files come after every fault of the run, in the order applied.
        assert [(f["action"], f["priest"]) for f in disagreement["after"]] == [
            ("ballot", "alpha"), ("kill", "beta"), ("restart", "beta")]
        times = [f["at"] for f in disagreement["after"]]
        assert times == sorted(times) and disagreement["earlier_faults"] == 0
        # delta learned after the ballot and before the kill: only the ballot came before.
        (mismatch,) = [v for v in report["violations"] if v["kind"] == "decree_file_mismatch"]
        assert [f["action"] for f in mismatch["after"]] == ["ballot"]

        text = harness.run("verify").stdout
        line = next(x for x in text.splitlines() if "after: ballot alpha" in x)
        assert ", kill beta +" in line and ", restart beta +" in line, text
    finally:
        assert harness.run("down").returncode == 0
