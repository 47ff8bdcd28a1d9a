"""The benchmark runs end to end with tiny counts, so it cannot rot. No time is ever asserted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import etcd
from bench.__main__ import main, make_plan
from bench.report import fmt, table
from bench.stats import Figure, Target, median, percentile


def test_percentiles_interpolate() -> None:
    samples = [4.0, 1.0, 3.0, 2.0]
    assert median(samples) == 2.5
    assert percentile(samples, 0) == 1.0
    assert percentile(samples, 100) == 4.0
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 90) == pytest.approx(4.6)


def test_ratio_is_above_one_when_worse_than_the_floor() -> None:
    slow = Figure("ballot", "b", "s", [3.0, 4.0, 5.0], floor=2.0)
    rate = Figure("sim", "w", "/s", [500.0], floor=1000.0)
    assert slow.ratio == 2.0
    assert rate.ratio == 2.0
    assert Target(1.0, below=False).met(rate.median)
    assert not Target(3.0).met(slow.median)


def test_units_read_well() -> None:
    assert fmt(0.0005, "s") == "500 us"
    assert fmt(0.0125, "s") == "12.50 ms"
    assert fmt(14.1e6, "B") == "14.1 MB"
    assert fmt(1234.0, "/s") == "1,234/s"
    text = table([Figure("floor", "udp_rtt", "s", [3e-5])])
    assert "udp_rtt" in text and "30 us" in text


def test_plans() -> None:
    assert make_plan(False, None).ballots >= 30
    assert make_plan(True, None).ballots < 30
    assert make_plan(True, 7).ballots == 7


@pytest.mark.integration
@pytest.mark.timeout(180)
def test_quick_run_writes_every_row(tmp_path: Path, no_leaks: None,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench"
    assert main(["--quick", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    document = json.loads((out / "latest.json").read_text())
    figures = document["figures"]
    names = {f["name"] for f in figures}
    for expected in ["ledger_persist", "atomic_write", "fdatasync_append", "udp_rtt",
                     "fdatasync_append_x4",
                     "fork_start", "exec_start", "ballot, 3 priests", "ballot, 4 priests",
                     "ballot, 5 priests", "ballot, 9 priests", "all 4 ballot at once",
                     "proposer killed, 4 priests", "crash all 4 to first decision",
                     "fork 4 priests to ready", "World alone (no checks), 5 priests, no faults",
                     "simulate --jobs 1, with the checks, 5 priests, default faults",
                     "RSS per priest (python -m node)", "up --detach, 4 priests",
                     "RSS of the supervisor"]:
        assert expected in names, f"{expected!r} missing from {sorted(names)}"
        assert expected in printed
    measured = [f for f in figures if "skipped" not in f]
    rows = {f["row"] for f in measured}
    assert {"floor", "ballot", "contention", "failover", "restart", "start", "sim",
            "memory"} <= rows
    for f in measured:
        # A cost added on top of a floor is a difference of two timings: a sample may be 0.
        difference = f["name"].startswith("added per")
        assert f["median"] >= 0 if difference else f["median"] > 0, f
        assert all(s >= 0 if difference else s > 0 for s in f["samples"]), f
        if f["floor"] is not None:
            assert f["floor"] > 0 and f["ratio"] > 0, f
    ballots = [f for f in measured if f["row"] == "ballot"]
    assert all(f["floor_name"] == "append-only path" and f["n"] == 2 for f in ballots)
    for f in ballots:  # what the ballot cost the priests: CPU time and page faults
        assert f["notes"]["median_cpu_all_priests"] > 0, f
        assert f["notes"]["median_page_faults_all_priests"] >= 0, f
    for f in figures:
        if "skipped" in f:
            assert f["skipped"].startswith("not measured"), f  # a failure is never hidden


def test_only_runs_the_rows_asked_for(tmp_path: Path, no_leaks: None) -> None:
    out = tmp_path / "bench"
    assert main(["--quick", "--only", "sim", "--out", str(out)]) == 0
    rows = {f["row"] for f in json.loads((out / "latest.json").read_text())["figures"]}
    assert rows == {"floor", "sim"}


def test_etcd_row_without_etcd_says_how_to_install_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH with no etcd on it
    out = tmp_path / "bench"
    assert main(["--quick", "--only", "etcd", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    lines = [line for line in printed.splitlines() if line.startswith("etcd ")]
    assert len(lines) == 1, printed
    assert "not installed" in lines[0] and "apt-get install etcd-server" in lines[0]
    figures = json.loads((out / "latest.json").read_text())["figures"]
    assert [f for f in figures if f["row"] == "etcd"] == [
        {"row": "etcd", "name": "etcd", "skipped": etcd.NOT_INSTALLED}]
