"""A deliberate flaw, switched on in a real cluster's config, is caught by verify."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cluster import free_udp_ports
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


SHIPPED = Path(__file__).resolve().parents[2] / "configs"


def _on_free_ports(shipped: Path, here: Path) -> Path:
    """The shipped config, moved to free ports and a data dir under `here`: nothing else changes."""
    text = shipped.read_text()
    for port in free_udp_ports(4):
        text = re.sub(r"port: 7\d\d\d\b", f"port: {port}", text, count=1)
    text = re.sub(r"(?m)^data_dir: .*$", "data_dir: data", text)
    path = here / shipped.name
    path.write_text(text)
    return path


@pytest.mark.parametrize("name, flaw", [("flawed-ballots", "same-ballot-numbers"),
                                        ("flawed-promises", "forget-promises"),
                                        ("flawed-votes", "ignore-previous-votes")])
def test_each_shipped_flaw_config_switches_on_its_flaw_alone(name: str, flaw: str) -> None:
    config = load_config(SHIPPED / f"{name}.yaml")
    assert config.flaws == (flaw,) and config.cluster == name
    assert str(config.data_dir) == f"logs/{name}"  # its own data: it never mixes with four's


def test_the_readme_flaw_recipe_breaks_a_real_cluster(harness, no_leaks) -> None:
    config = str(_on_free_ports(SHIPPED / "flawed-ballots.yaml", harness.cwd))
    recipe = ["chaos", "--ballot", "alpha", "--ballot", "beta", "--ballot", "gamma",
              "--ballot", "delta", "--sleep", "1"]
    up = harness.run("up", config, "--detach", "--fresh")
    assert up.returncode == 0, up.stderr
    try:
        # Loud when on: up, every priest's first lines, status.
        assert "WARNING: flaw same-ballot-numbers is ON" in up.stderr
        log = (harness.cwd / "data" / "alpha" / "priest.log").read_text().splitlines()
        assert "WARNING: flaw same-ballot-numbers is ON" in log[1]
        status = harness.run("status")
        assert "FLAWED on purpose: same-ballot-numbers" in status.stdout
        assert json.loads(harness.run("status", "--json").stdout)["flaws"] == ["same-ballot-numbers"]
        for _ in range(3):  # the README's one round almost always suffices; a learner may repeat
            assert harness.run(*recipe).returncode == 0
            verify = harness.run("verify", "--json")
            if verify.returncode == 1:
                break
        assert json.loads(verify.stdout)["flaws"] == ["same-ballot-numbers"]
        assert "FLAWED on purpose: same-ballot-numbers" in harness.run("verify").stdout
        violations = json.loads(verify.stdout)["violations"]
        kinds = {v["kind"] for v in violations}
        assert verify.returncode == 1 and "ballot_reused" in kinds, verify.stdout
        # The evidence gives each event's time as its priest's narration shows it, too.
        cited = re.findall(r"\((\d\d:\d\d:\d\d\.\d{3}) in (\w+)'s priest\.log\)",
                           " ".join(v["message"] for v in violations))
        assert cited
        for stamp, priest in cited:
            log = (harness.cwd / "data" / priest / "priest.log").read_text().splitlines()
            stamps = [line.split(" | ", 1)[1][:12] for line in log if " | " in line]
            assert min(abs(_ms(stamp) - _ms(s)) for s in stamps) <= 5, (stamp, priest)
    finally:
        assert harness.run("down").returncode == 0


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


def _ms(stamp: str) -> int:
    """HH:MM:SS.mmm as milliseconds since midnight."""
    hours, minutes, seconds = stamp.split(":")
    return round((int(hours) * 3600 + int(minutes) * 60 + float(seconds)) * 1000)


def test_a_forgotten_promise_is_broken_on_real_priests(harness) -> None:
    """configs/chaos/forgotten-promise.yaml with the flaw: gamma, killed right after it
    promised 1.delta, comes back having forgotten it and votes in the lower 1.alpha."""
    config = harness.config(5, extra="flaws: [forget-promises]\n")
    assert harness.run("up", str(config), "--detach", "--fresh").returncode == 0
    try:
        done = harness.run("chaos", "--schedule", str(SHIPPED / "chaos" / "forgotten-promise.yaml"))
        assert done.returncode == 0, done.stdout + done.stderr
        verify = harness.run("verify", "--wait", "10", "--json")
    finally:
        assert harness.run("down").returncode == 0
    violations = {v["kind"]: v for v in json.loads(verify.stdout)["violations"]}
    assert verify.returncode == 1 and "promise_broken" in violations, verify.stdout
    broken = violations["promise_broken"]
    assert broken["priests"] == ["gamma"] and "promised ballot 1.delta" in broken["message"]
    assert "in the lower ballot 1.alpha" in broken["message"]
    # The flaw itself, and the kill that fired at gamma's promise among the faults before it.
    lost = violations["ledger_lost"]
    assert {(f["action"], f["priest"]) for f in lost["after"]} >= {
        ("kill-after-promise", "gamma"), ("kill", "gamma")}
