"""The network's faults (pure) and the supervisor's network actions, with a fake relay."""

from __future__ import annotations

import random
from typing import Any

import pytest

from harness.chaos.plan import parse_schedule, plan_random, steps_from_args
from harness.errors import RefusedError, UnknownPriestError, UsageError
from harness.network.faults import LOSS, PARTITION, Faults, change, parse_value
from harness.record import NetworkChange, Record, Result
from harness.supervisor.core import Supervisor
from tests.unit.test_chaos import FakeLauncher, FakeNetwork

FOUR = ["alpha", "beta", "gamma", "delta"]


def test_unnamed_priests_form_one_more_group() -> None:
    faults = change(Faults(), "partition", parse_value("partition", "alpha/beta", FOUR), FOUR)
    assert faults.groups == (("alpha",), ("beta",), ("gamma", "delta"))
    assert faults.cut("alpha", "beta") and faults.cut("gamma", "alpha")
    assert not faults.cut("gamma", "delta")
    isolated = change(faults, "isolate", "delta", FOUR)  # replaces the partition
    assert isolated.groups == (("delta",), ("alpha", "beta", "gamma"))
    assert change(isolated, "heal", None, FOUR) == Faults()


@pytest.mark.parametrize("action,raw,fragment", [
    ("partition", "alpha,beta,gamma,delta", "nothing is cut"),
    ("partition", "alpha//beta", "an empty group"),
    ("partition", "alpha,beta/alpha", "alpha is in two groups"),
    ("drop", "1.5", "a probability from 0 to 1"),
    ("drop", True, "a probability"),
    ("delay", "40-5", "LO-HI in milliseconds"),
    ("delay", "soon", "LO-HI"),
    ("heal", "now", "takes no value"),
])
def test_bad_values_are_one_line_usage_errors(action: str, raw: object, fragment: str) -> None:
    with pytest.raises(UsageError) as e:
        parse_value(action, raw, FOUR)
    assert fragment in str(e.value) and "\n" not in str(e.value) and e.value.exit_status == 2


def test_an_unknown_priest_in_a_partition_is_named() -> None:
    with pytest.raises(UnknownPriestError) as e:
        parse_value("isolate", "omega", FOUR, where="--")
    assert str(e.value).startswith("--isolate: no priest named 'omega'")


def test_the_same_seed_gives_the_same_fates() -> None:
    faults = Faults(drop=0.3, duplicate=0.2, delay=(5.0, 40.0))

    def fates(seed: int) -> list[tuple[str | None, list[float]]]:
        rng = random.Random(seed)
        return [faults.fate("alpha", "beta", rng) for _ in range(200)]

    assert fates(7) == fates(7) != fates(8)
    got = fates(7)
    assert any(r == LOSS for r, _ in got) and any(len(d) == 2 for _, d in got)
    assert all(0.005 <= d <= 0.040 for _, ds in got for d in ds)
    cut = Faults(groups=(("alpha",), ("beta",)))
    assert cut.fate("alpha", "beta", random.Random(1)) == (PARTITION, [])


def test_network_steps_on_the_command_line_and_in_schedules() -> None:
    steps = steps_from_args([("partition", "alpha/beta"), ("sleep", 1.0), ("drop", "0.25"),
                             ("heal", []), ("ballot", "alpha")], FOUR, "four.yaml")
    assert [(s.at, s.action, s.value) for s in steps] == [
        (0.0, "partition", "alpha/beta/gamma,delta"), (1.0, "drop", 0.25), (1.0, "heal", None),
        (1.0, "ballot", None)]
    raw = [{"at": 0, "isolate": "delta", "seed": 3}, {"at": 1, "delay": "5-40"},
           {"at": 2, "heal": True}]
    steps = parse_schedule(raw, "s.yaml", FOUR)
    assert [(s.action, s.value, s.seed) for s in steps] == [
        ("isolate", "delta", 3), ("delay", "5-40", None), ("heal", None, None)]
    with pytest.raises(UsageError) as e:
        parse_schedule([{"at": 0, "kill": "alpha", "seed": 3}], "s.yaml", FOUR)
    assert "entry 1: seed: an integer 0 to 2^63-1, for a network action only" in str(e.value)


def test_a_random_plan_with_network_faults_is_reproducible_and_heals_the_network_first() -> None:
    def plan(seed: int) -> tuple[Any, ...]:
        return plan_random(FOUR, seed, 20.0, 3.0, faults=("process", "network")).steps

    assert plan(5) == plan(5) != plan(6)
    steps = plan(5)
    assert {s.action for s in steps} >= {"partition", "drop", "kill", "ballot"}
    assert all(s.seed is not None for s in steps if s.action in ("partition", "drop"))
    tail = [s for s in steps if s.note == "heal"]
    assert tail[0].action == "heal" and tail[-1].action == "ballot"
    # Process faults only: the plan of before, step for step.
    assert not {s.action for s in plan_random(FOUR, 5, 20.0, 3.0).steps} & {"drop", "heal"}


def test_the_supervisor_changes_the_network_and_records_each_change() -> None:
    events: list[Record] = []
    net = FakeNetwork()
    sup = Supervisor(FOUR, FakeLauncher(), clock=lambda: 0.0, network=net, record=events.append)
    result = sup.handle({"op": "drop", "arg": "0.3", "seed": 9})
    assert result["ok"] and result["result"]["outcome"] == "network now: drop 30%"
    assert net.sets == [(Faults(drop=0.3), 9)]
    assert events[-1] == NetworkChange(t=0, action="drop", value=0.3, seed=9,
                                       faults=Faults(drop=0.3).to_wire(),
                                       outcome="network now: drop 30%")
    bad = sup.handle({"op": "partition", "arg": "alpha,omega"})
    assert not bad["ok"] and bad["code"] == "unknown_priest"
    last = events[-1]
    assert isinstance(last, NetworkChange) and last.outcome.startswith("refused: ")
    assert last.result is Result.REFUSED and not last.applied
    status = sup.handle({"op": "status"})["result"]["network"]
    assert status["mode"] == "relay" and status["describe"] == "drop 30%"


def test_without_a_relay_network_actions_are_refused() -> None:
    events: list[Record] = []
    sup = Supervisor(FOUR, FakeLauncher(), clock=lambda: 0.0, record=events.append)
    with pytest.raises(RefusedError) as e:
        sup.act_network("heal", None)
    assert "network: direct" in str(e.value) and "\n" not in str(e.value)
    assert isinstance(events[-1], NetworkChange) and sup.network_status()["mode"] == "direct"


def test_the_config_says_relay_or_direct() -> None:
    from node.config import parse_config
    from node.errors import ConfigError

    priests = {"alpha": {"host": "127.0.0.1", "port": 7101}}
    assert parse_config({"priests": priests}, "c.yaml").network == "relay"
    assert parse_config({"priests": priests, "network": "direct"}, "c.yaml").network == "direct"
    with pytest.raises(ConfigError) as e:
        parse_config({"priests": priests, "network": "netem"}, "c.yaml")
    assert str(e.value).startswith("c.yaml: network: must be one of relay, direct")


def test_private_ports_are_free_distinct_and_below_the_ephemeral_range() -> None:
    from harness.network.process import PRIVATE_LOW, _ephemeral_low, private_ports
    from node.config import parse_config

    config = parse_config({"priests": {f"p{i}": {"port": PRIVATE_LOW + i} for i in range(5)}},
                          "c.yaml")
    ports = private_ports(config)
    assert set(ports) == set(config.names) and len(set(ports.values())) == 5
    assert all(PRIVATE_LOW <= port < _ephemeral_low() for port in ports.values())
    assert not set(ports.values()) & {p.port for p in config.priests.values()}
