"""Campaigns, pure parts: each run's seed, config, plan and replay line; drop-success; bad options."""

from __future__ import annotations

import random
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.campaign.pool import Outcome, _ended
from harness.campaign.report import REPLAY_NOTE, failure, passed_over_line, to_json
from harness.campaign.report import summary as summary_line
from harness.campaign.run import RunResult, Status, passed_over
from harness.campaign.spec import (
    Campaign,
    config_text,
    replay_command,
    run_config,
    run_plan,
    run_seed,
)
from harness.chaos.plan import plan_random
from harness.cli import main
from harness.network.faults import (
    SUCCESS_LOST,
    Faults,
    change,
    message_type,
    parse_value,
)
from node.codec import Codec
from node.config import load_config
from node.messages import Ballot, Success, Voted

FIVE = ["alpha", "beta", "gamma", "delta", "epsilon"]


def _config(tmp_path: Path, extra: str = "") -> Path:
    lines = ["cluster: five", f"data_dir: {tmp_path / 'data'}", "priests:"]
    lines += [f"  {n}: {{host: 127.0.0.1, port: {7300 + i}}}" for i, n in enumerate(FIVE)]
    path = tmp_path / "five.yaml"
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


def test_each_run_has_its_own_seed_and_the_same_one_every_time() -> None:
    seeds = [run_seed(1, k) for k in range(1, 301)]
    assert len(set(seeds)) == 300 and all(0 <= s < 2**31 for s in seeds)
    assert seeds == [run_seed(1, k) for k in range(1, 301)]
    assert run_seed(2, 1) != run_seed(1, 1)


def test_a_runs_plan_is_what_chaos_random_draws_from_its_seed(tmp_path: Path) -> None:
    campaign = Campaign(load_config(_config(tmp_path)), seed=7, duration=2.0, rate=2.0)
    plan = run_plan(campaign, 3)
    assert plan == plan_random(FIVE, run_seed(7, 3), 2.0, 2.0, faults=("process", "network"))
    assert plan.steps[-1].action == "ballot" and plan.steps[-1].note == "heal"


def test_a_runs_config_moves_the_priests_to_its_ports_and_directory(tmp_path: Path) -> None:
    config = load_config(_config(tmp_path, "flaws: [forget-promises]\n"
                                           "timing: {ballot_timeout: 0.4}\n"))
    campaign = Campaign(config, seed=3, flaws=("same-ballot-numbers", "forget-promises"))
    run_dir = tmp_path / "data" / "campaign" / "3" / "run-1"
    data = run_config(campaign, run_dir, [40001, 40002, 40003, 40004, 40005])
    written = tmp_path / "run.yaml"
    written.write_text(config_text(campaign, 1, data))
    again = load_config(written)
    assert again.names == FIVE and again.data_dir == run_dir
    assert [p.port for p in again.priests.values()] == [40001, 40002, 40003, 40004, 40005]
    assert again.flaws == ("forget-promises", "same-ballot-numbers")
    assert again.timing.ballot_timeout == 0.4 and again.key_file is None
    assert campaign.root == tmp_path / "data" / "campaign" / "3"


def test_the_replay_line_names_the_seed_the_run_and_the_options(tmp_path: Path) -> None:
    config = load_config(_config(tmp_path))
    campaign = Campaign(config, seed=11, duration=1.5, rate=3.0, flaws=("forget-promises",))
    line = replay_command(campaign, 17)
    assert line.startswith(f"paxos-harness campaign {config.path} --seed 11 --duration 1.5 "
                           f"--rate 3")
    assert line.endswith("--flaw forget-promises --run 17")
    r = RunResult(17, run_seed(11, 17), Status.VIOLATION, str(tmp_path / "run-17"), kept=True,
                  rules=["chosen_changed"], evidence="VIOLATION (exit 1): ...\n")
    text = "\n".join(failure(campaign, r))
    assert "VIOLATION in run 17" in text and "chosen_changed" in text
    assert line in text and REPLAY_NOTE in text and "chaos" in text and str(r.seed) in text


# --- drop-success: the relay loses Success datagrams alone ----------------------------


def _datagram(message: object) -> bytes:
    codec = Codec("five", {n: ("127.0.0.1", 7300 + i) for i, n in enumerate(FIVE)}, key=b"k" * 32)
    return codec.encode(message)  # type: ignore[arg-type]


def test_drop_success_loses_success_and_nothing_else() -> None:
    faults = change(Faults(), "drop-success", parse_value("drop-success", "1", FIVE), FIVE)
    assert faults.describe() == "drop-success 100%"
    assert Faults.from_wire(faults.to_wire()) == faults
    rng = random.Random(1)
    success = _datagram(Success("alpha", Ballot(1, "alpha"), 1001))
    voted = _datagram(Voted("beta", Ballot(1, "alpha")))
    assert message_type(success) == "Success" and message_type(voted) == "Voted"
    assert faults.fate("alpha", "beta", rng, message_type(success)) == (SUCCESS_LOST, [])
    assert faults.fate("beta", "alpha", rng, message_type(voted)) == (None, [0.0])
    assert message_type(b"\xff not json") is None and message_type(b"[1] tag") is None
    assert change(faults, "heal", None, FIVE) == Faults()


def test_the_nemesis_draws_drop_success_among_network_faults() -> None:
    actions = {s.action for seed in range(50)
               for s in plan_random(FIVE, seed, 10, 2, faults=("network",)).steps}
    assert "drop-success" in actions


# --- bad options: one line, exit 2, nothing started --------------------------------------


@pytest.mark.parametrize("argv,fragment", [
    (["--run", "3"], "--run K replays run K of a campaign: give that campaign's --seed too"),
    (["--runs", "0"], "must be 1 to"),
    (["--duration", "-1"], "--duration"),
    (["--flaw", "nonsense"], "invalid choice"),
    (["--until", "ledger_gone"], "invalid choice"),
    (["--faults", "weather"], "choose from process, network"),
    (["--seed", "1", "--runs", "5", "--run", "9"], "--run 9 is not one of the --runs 5"),
])
def test_a_bad_option_is_one_line_and_exit_2(tmp_path: Path, capsys, argv: list[str],
                                             fragment: str) -> None:
    status = main(["campaign", str(_config(tmp_path)), *argv])
    err = capsys.readouterr().err
    assert status == 2 and fragment in err, err
    assert len([line for line in err.splitlines() if "error" in line]) == 1
    assert not (tmp_path / "data").exists()


def test_a_bad_config_is_one_line_and_exit_2(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("priests: {alpha: {host: 127.0.0.1, port: 99999}}\n")
    assert main(["campaign", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "priests.alpha.port" in err[0]
    direct = _config(tmp_path, "network: direct\n")
    assert main(["campaign", str(direct), "--faults", "network"]) == 2
    assert "network: direct" in capsys.readouterr().err


# --- --until: the rules sought; runs breaking only others are passed over ---------------


def _result(k: int, rules: list[str]) -> RunResult:
    status = Status.VIOLATION if rules else Status.PASS
    return RunResult(k, run_seed(1, k), status, f"/runs/run-{k}", rules=rules,
                     evidence="VIOLATION ..." if rules else "", elapsed=2.3)


def test_without_until_any_broken_rule_is_sought(tmp_path: Path) -> None:
    campaign = Campaign(load_config(_config(tmp_path)))
    assert campaign.sought(["ledger_lost"]) and not campaign.sought([])
    assert not passed_over(campaign, _result(1, ["ledger_lost"]))


def test_with_until_only_its_rules_stop_the_campaign(tmp_path: Path) -> None:
    campaign = Campaign(load_config(_config(tmp_path)), seed=1,
                        until=("promise_broken", "disagreement"))
    assert not campaign.sought(["ledger_lost"])
    assert campaign.sought(["ledger_lost", "promise_broken"]) and campaign.sought(["disagreement"])
    results = [_result(1, ["ledger_lost"]), _result(2, []),
               _result(3, ["chosen_changed", "ledger_lost"]), _result(4, ["promise_broken"])]
    assert [passed_over(campaign, r) for r in results] == [True, False, True, False]
    outcome = Outcome(results=results, stopped=True, elapsed=10.0)
    summary = to_json(campaign, outcome, 1)
    assert summary["until"] == ["promise_broken", "disagreement"]
    assert summary["passed_over"] == {"chosen_changed": 1, "ledger_lost": 2}
    assert [f["run"] for f in summary["failures"]] == [4]
    assert summary["results"][0]["rules"] == ["ledger_lost"]
    line = summary_line(campaign, outcome)
    assert ("passed over (--until promise_broken disagreement), runs breaking other rules: "
            "chosen_changed in 1, ledger_lost in 2") in line
    assert "stopped at the first violation of promise_broken, disagreement" in line
    assert passed_over_line(campaign, results[0]) == (
        f"run 1 (plan seed {run_seed(1, 1)}): ledger_lost; passed over (--until promise_broken "
        f"disagreement), its files removed")


def test_a_run_passed_over_does_not_stop_the_others(tmp_path: Path) -> None:
    campaign = Campaign(load_config(_config(tmp_path)), until=("promise_broken",))
    seen: list[int] = []
    outcome = Outcome()
    for k, rules in ((1, ["ledger_lost"]), (2, ["promise_broken"])):
        worker = SimpleNamespace(error=None, result=_result(k, rules), interrupted=False)
        _ended(worker, campaign, outcome, lambda r: seen.append(r.run), [])  # type: ignore[arg-type]
        assert outcome.stopped == (k == 2)
    assert seen == [1, 2]
