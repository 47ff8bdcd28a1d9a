"""A deliberate flaw, switched on in a real cluster's config, is caught by verify."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from node.config import load_config
from tests.integration.priests import Priests

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def _verify(config: Path, cwd: Path) -> tuple[int, dict]:
    done = subprocess.run([sys.executable, "-m", "harness", "verify", str(config), "--json"],
                          cwd=cwd, capture_output=True, text=True, timeout=60)
    return done.returncode, json.loads(done.stdout)


@pytest.mark.parametrize("flawed", [True, False])
def test_same_ballot_numbers_breaks_a_real_cluster_and_verify_says_so(
        make_config, tmp_path: Path, no_leaks, flawed: bool) -> None:
    extra = "flaws: [same-ballot-numbers]\n" if flawed else ""
    path = make_config(4, extra=extra)
    priests = Priests(load_config(path), tmp_path)
    try:
        names = priests.config.names
        for name in names:
            priests.start(name)
        for _ in range(3):  # all at once, a few times: the flawed numbering collides at once
            for name in names:
                priests.ballot(name)
        held = priests.wait_decrees(names)
    finally:
        priests.stop_all()
    status, verdict = _verify(path, tmp_path)
    kinds = {v["kind"] for v in verdict["violations"]}
    if flawed:
        assert status == 1 and "ballot_reused" in kinds, verdict
    else:
        assert status == 0 and not kinds and len(set(held.values())) == 1, verdict


@pytest.mark.parametrize("flawed", [True, False])
def test_forget_promises_shows_at_the_first_restart_as_a_lost_ledger(
        make_config, tmp_path: Path, no_leaks, flawed: bool) -> None:
    extra = "flaws: [forget-promises]\n" if flawed else ""
    path = make_config(4, extra=extra)
    priests = Priests(load_config(path), tmp_path)
    try:
        names = priests.config.names
        for name in names:
            priests.start(name)
        priests.ballot("alpha")
        held = priests.wait_decrees(names)
        assert None not in held.values(), held
        priests.kill("beta")  # beta had promised and voted in alpha's ballot
        priests.start("beta")
    finally:
        priests.stop_all()
    status, verdict = _verify(path, tmp_path)
    if flawed:
        (lost,) = verdict["violations"]
        assert status == 1 and lost["kind"] == "ledger_lost" and lost["priests"] == ["beta"]
        assert "recovered next_bal=0 prev_vote=none" in lost["message"], lost
    else:
        assert status == 0, verdict
