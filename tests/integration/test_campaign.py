"""`paxos-harness campaign` on real priests: clean runs, a flaw caught, Ctrl+C, two at once.

Every process a campaign starts works in a directory under the test's own
(each run's cluster in its run directory), so `working_under` finds any that
outlives the campaign, by pid; the test kills them and fails.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from node.config import load_config
from tests.conftest import write_config
from tests.integration.conftest import kill_all, working_under

pytestmark = [pytest.mark.integration]
ENV = {**os.environ, "NO_COLOR": "1"}


@pytest.fixture
def nothing_left(tmp_path: Path):
    """Fail the test if any process working under tmp_path outlives it (after killing it)."""
    yield
    survivors = working_under(tmp_path)
    kill_all(survivors)
    assert not survivors, f"processes survived the campaign: {[p.pid for p in survivors]}"


def _campaign(cwd: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness", "campaign", *args], cwd=cwd, env=ENV,
                          capture_output=True, text=True, timeout=timeout)


def _harness(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd, env=ENV,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.timeout(180)
def test_a_small_campaign_on_the_correct_core_is_clean_beside_a_cluster_that_is_up(
        tmp_path: Path, nothing_left: None) -> None:
    config = write_config(tmp_path, 3)
    up = _harness(tmp_path, "up", str(config), "--detach", "--fresh")
    assert up.returncode == 0, up.stderr
    current = (tmp_path / "logs" / "current.json").read_text()
    try:
        done = _campaign(tmp_path, str(config), "--runs", "3", "--duration", "1", "--seed", "5",
                         "--jobs", "2", "--json")
        assert done.returncode == 0, done.stdout + done.stderr
        summary = json.loads(done.stdout)
        assert summary["counts"]["pass"] == 3 and summary["done"] == 3, summary
        assert summary["counts"]["violation"] == 0 and not summary["failures"]
        assert {r["run"] for r in summary["results"]} == {1, 2, 3}
        assert not (tmp_path / "data" / "campaign").exists()  # passing runs leave nothing
        # The cluster that was up is untouched, and still the current one.
        assert (tmp_path / "logs" / "current.json").read_text() == current
        status = _harness(tmp_path, "status", str(config))
        assert status.returncode == 0 and "is up" in status.stdout
    finally:
        assert _harness(tmp_path, "down", str(config)).returncode == 0


@pytest.mark.timeout(180)
def test_a_flaw_is_caught_with_its_files_kept_and_the_replay_line(
        tmp_path: Path, nothing_left: None) -> None:
    config = write_config(tmp_path, 3)
    done = _campaign(tmp_path, str(config), "--runs", "10", "--duration", "1", "--rate", "10",
                     "--seed", "1", "--flaw", "same-ballot-numbers", "--jobs", "1")
    assert done.returncode == 1, done.stdout + done.stderr
    out = done.stdout
    assert "VIOLATION in run 1 (plan seed " in out and "ballot_reused" in out, out
    assert "VIOLATION (exit 1)" in out  # verify's own rendering
    run_dir = tmp_path / "data" / "campaign" / "1" / "run-1"
    assert f"files kept in {run_dir}/" in out
    replay = (f"paxos-harness campaign {config} --seed 1 --duration 1 --rate 10 "
              f"--faults process,network --flaw same-ballot-numbers --run 1")
    assert replay in out and "timing" in out and "differs" in out
    for name in ("config.yaml", "plan.txt", "chaos.log", "verdict.txt", "run.json",
                 "harness.jsonl", "alpha/events.jsonl", "report.html"):
        assert (run_dir / name).is_file(), name
    assert json.loads((run_dir / "run.json").read_text())["rules"] == ["ballot_reused"]
    report = (run_dir / "report.html").read_text()
    assert 'id="verdict"' in report and 'data-kind="ballot_reused"' in report
    assert "stopped at the first violation" in out.splitlines()[-1]
    # The kept run's config is a cluster's: verify reads the same verdict from it.
    verify = _harness(tmp_path, "verify", str(run_dir / "config.yaml"))
    assert verify.returncode == 1 and "ballot_reused" in verify.stdout
    # The replay runs the same plan again, beside the kept files.
    again = _campaign(tmp_path, *replay.split()[2:], "--keep")
    assert again.returncode in (0, 1), again.stderr
    assert (tmp_path / "data" / "campaign" / "1" / "run-1.2" / "plan.txt").read_text() == \
        (run_dir / "plan.txt").read_text()


@pytest.mark.timeout(180)
def test_until_passes_over_runs_that_break_only_other_rules(
        tmp_path: Path, nothing_left: None) -> None:
    config = write_config(tmp_path, 5)
    # forget-promises breaks ledger_lost at a restart; it can never reuse a ballot number.
    done = _campaign(tmp_path, str(config), "--runs", "3", "--duration", "1", "--seed", "2",
                     "--flaw", "forget-promises", "--until", "ballot_reused", "--jobs", "2",
                     "--json")
    summary = json.loads(done.stdout)
    assert summary["done"] == 3 and not summary["stopped"] and not summary["failures"], summary
    assert summary["until"] == ["ballot_reused"]
    broke = [r for r in summary["results"] if r["rules"]]
    assert all("ballot_reused" not in r["rules"] for r in broke)
    assert summary["passed_over"] == ({"ledger_lost": len(broke)} if broke else {}), summary
    assert done.returncode == (1 if broke else 0), done.stderr
    assert not (tmp_path / "data" / "campaign").exists()  # passed over: their files went too
    text = _campaign(tmp_path, str(config), "--runs", "1", "--duration", "1", "--seed", "2",
                     "--flaw", "forget-promises", "--until", "ballot_reused", "--jobs", "1")
    assert "passed over (--until ballot_reused)" in text.stdout.splitlines()[-1], text.stdout


@pytest.mark.timeout(180)
def test_ctrl_c_in_the_middle_stops_every_process_and_says_what_ran(
        tmp_path: Path, nothing_left: None) -> None:
    config = write_config(tmp_path, 3)
    proc = subprocess.Popen([sys.executable, "-m", "harness", "campaign", str(config),
                             "--runs", "50", "--duration", "2", "--seed", "3", "--jobs", "2"],
                            cwd=tmp_path, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        root = tmp_path / "data" / "campaign" / "3"
        deadline = time.monotonic() + 60
        while not list(root.glob("run-*/supervisor.json")):  # a cluster is up, mid-run
            assert time.monotonic() < deadline and proc.poll() is None, "no run started"
            time.sleep(0.05)
        time.sleep(0.5)
        os.killpg(proc.pid, signal.SIGINT)  # as Ctrl+C on a terminal: the whole group
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, out + err
    last = out.strip().splitlines()[-1]
    assert "INTERRUPTED (Ctrl+C)" in last and "of 50 runs" in last, out
    assert not working_under(tmp_path)
    assert not list(root.glob("run-*/supervisor.json"))


@pytest.mark.timeout(180)
def test_two_campaigns_at_once_do_not_collide(tmp_path: Path, nothing_left: None) -> None:
    config = write_config(tmp_path, 3)
    args = [sys.executable, "-m", "harness", "campaign", str(config), "--runs", "2",
            "--duration", "1", "--seed", "9", "--jobs", "1", "--keep", "--json"]
    procs = [subprocess.Popen(args, cwd=tmp_path, env=ENV, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, out + err
        assert json.loads(out)["counts"]["pass"] == 2
    dirs = sorted(d.name for d in (tmp_path / "data" / "campaign" / "9").iterdir())
    assert dirs == ["run-1", "run-1.2", "run-2", "run-2.2"]
    for d in dirs:  # each run judged on its own files: its data dir is its directory
        run_dir = tmp_path / "data" / "campaign" / "9" / d
        assert load_config(run_dir / "config.yaml").data_dir == run_dir
        assert json.loads((run_dir / "run.json").read_text())["status"] == "pass"


@pytest.mark.timeout(180)
def test_a_relative_data_dir_works_as_the_shipped_configs_have_it(
        tmp_path: Path, nothing_left: None) -> None:
    config = write_config(tmp_path, 3)
    text = config.read_text().replace(f"data_dir: {tmp_path / 'data'}", "data_dir: data")
    assert "data_dir: data\n" in text
    config.write_text(text)
    done = _campaign(tmp_path, config.name, "--runs", "2", "--duration", "1", "--seed", "3",
                     "--jobs", "1", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(done.stdout)
    assert summary["counts"]["pass"] == 2 and summary["done"] == 2, summary
