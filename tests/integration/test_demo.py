"""`make demo` cannot rot: the demo script runs end to end on free ports and leaves nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def test_the_demo_runs_and_ends_in_agreement(make_config, tmp_path: Path) -> None:
    config = make_config(4, cluster="four")
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "demo.py"), str(config)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=150)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "AGREEMENT (exit 0)" in out and "cluster four is down" in out
    # What its titles promise: alpha's ballot finds no quorum and dies with it open...
    assert "begins ballot 1.alpha" in out and "killed" in out
    assert "a quorum promised ballot 1.alpha" not in out
    # ...beta's ballot decides, with gamma and delta...
    assert "a quorum (beta, delta, gamma) voted in ballot 2.beta: the decree is 2002" in out
    assert "gamma | " in out and "votes for decree 2002 in ballot 2.beta" in out
    # ...and alpha, back on its ledger, is told the decree is already decided.
    assert "comes after the decision: the decree is already 2002" in out
    assert "sent Success: the decree is 2002" in out.split("# alpha:")[1]
    decrees = {p.read_text() for p in (tmp_path / "data").glob("*/decree.txt")}
    assert decrees == {"2002\n"} and len(list((tmp_path / "data").glob("*/decree.txt"))) == 4
    left = [p for p in psutil.process_iter(["cmdline"])
            if str(config) in " ".join(p.info["cmdline"] or [])]
    assert not left, f"the demo left processes: {[p.pid for p in left]}"
