"""The relay for real: real priests, real datagrams, network faults through `paxos-harness chaos`.

Each test brings a cluster up detached (the relay is the default), faults its
network, and judges by the priests' own files, `status --json`, `verify`,
harness.jsonl and network.jsonl; the `harness` fixture fails it if any
process (the relay included) survives. Nothing here asserts a time.
"""

from __future__ import annotations

import json
import random
import signal
import socket

import psutil
import pytest

from tests.integration.test_chaos import decree

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

FIVE = ["alpha", "beta", "gamma", "delta", "epsilon"]
FOUR = FIVE[:4]


def up(harness, n: int, extra: str = ""):
    config = harness.config(n, extra=extra)
    done = harness.run("up", str(config), "--detach", "--fresh")
    assert done.returncode == 0, done.stderr
    return config


def chaos(harness, *args: str) -> None:
    done = harness.run("chaos", *args)
    assert done.returncode == 0, done.stdout + done.stderr


def network(harness) -> dict:
    status = harness.run("status", "--json")
    assert status.returncode == 0, status.stderr
    return json.loads(status.stdout)["network"]


def records(harness, name: str) -> list[dict]:
    path = harness.cwd / "data" / name
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def learned(harness, names) -> bool:
    return all(decree(harness, n) for n in names)


def verify(harness) -> None:
    done = harness.run("verify", "--wait", "10")
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_minority_cut_off_cannot_decide_the_majority_does_and_all_agree_after_the_heal(
        harness) -> None:
    up(harness, 5)
    chaos(harness, "--partition", "alpha,beta/gamma,delta,epsilon", "--ballot", "alpha")
    # alpha's NextBallot is dropped at the cut: wait until the relay has dropped some.
    harness.wait_until(lambda: network(harness)["links"].get("alpha->gamma", {})
                       .get("dropped", 0) >= 1, what="alpha's datagrams dropped at the cut")
    chaos(harness, "--ballot", "gamma")
    harness.wait_until(lambda: learned(harness, ["gamma", "delta", "epsilon"]),
                       what="the majority decides")
    # Across the cut nothing passes, so the minority cannot have learned anything.
    assert decree(harness, "alpha") is None and decree(harness, "beta") is None
    net = network(harness)
    assert net["faults"]["groups"] == [["alpha", "beta"], ["gamma", "delta", "epsilon"]]
    assert net["links"]["gamma->alpha"]["forwarded"] == 0
    assert net["links"]["alpha->beta"]["forwarded"] >= 1  # inside a group, all passes

    chaos(harness, "--heal", "--ballot", "alpha")
    harness.wait_until(lambda: learned(harness, FIVE), what="every priest learns")
    assert len({decree(harness, n) for n in FIVE}) == 1
    verify(harness)
    changes = [r for r in records(harness, "harness.jsonl") if r["kind"] == "network"]
    assert [r["action"] for r in changes] == ["partition", "heal"]
    cut = [r for r in records(harness, "network.jsonl")
           if r["kind"] == "datagram" and r["fate"] == "dropped"]
    assert cut and all(r["reason"] == "partition" and isinstance(r["t"], int) for r in cut)
    assert harness.run("down").returncode == 0


def test_loss_duplicates_and_delay_still_agree(harness) -> None:
    up(harness, 5)
    chaos(harness, "--drop", "0.3", "--duplicate", "0.2", "--delay", "5-40")
    rng = random.Random(11)
    for _ in range(20):  # ballots from random priests until every priest has learned
        chaos(harness, "--ballot", rng.choice(FIVE))
        try:
            harness.wait_until(lambda: learned(harness, FIVE), timeout=4.0, what="all learn")
            break
        except AssertionError:
            continue
    assert learned(harness, FIVE)
    verify(harness)
    totals = network(harness)["totals"]
    assert totals["dropped"] > 0 and totals["duplicated"] > 0 and totals["delayed"] > 0
    fates = {r["fate"] for r in records(harness, "network.jsonl") if r["kind"] == "datagram"}
    assert fates == {"forwarded", "dropped", "duplicated"}
    assert harness.run("down").returncode == 0


def test_the_proposer_isolated_mid_ballot_another_priest_decides(harness) -> None:
    up(harness, 4)
    # The delay keeps alpha's ballot open long enough for the cut to fall in its middle.
    chaos(harness, "--delay", "30-40", "--ballot", "alpha", "--isolate", "alpha")
    harness.wait_until(lambda: any(r["kind"] == "ballot_started"
                                   for r in records(harness, "alpha/events.jsonl")),
                       what="alpha begins its ballot")
    chaos(harness, "--ballot", "beta")
    harness.wait_until(lambda: learned(harness, ["beta", "gamma", "delta"]),
                       what="beta, gamma, delta decide without alpha")
    assert decree(harness, "alpha") is None  # cut off: not even a Success reaches it
    chaos(harness, "--heal", "--ballot", "alpha")
    harness.wait_until(lambda: learned(harness, FOUR), what="alpha learns after the heal")
    verify(harness)
    assert harness.run("down").returncode == 0


def test_a_datagram_from_a_stranger_is_dropped_and_counted(harness) -> None:
    config = up(harness, 3)
    port = next(int(line.split("port: ")[1].rstrip("}")) for line in
                config.read_text().splitlines() if "alpha:" in line)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
        stranger.sendto(b'{"v":1,"type":"Success"}', ("127.0.0.1", port))
        where = f"127.0.0.1:{stranger.getsockname()[1]}"
    harness.wait_until(lambda: network(harness)["links"].get("outside->alpha", {})
                       .get("dropped") == 1, what="the relay counts the stranger's datagram")
    assert network(harness)["totals"]["dropped"] == 1
    dropped = [r for r in records(harness, "network.jsonl") if r.get("fate") == "dropped"]
    assert [(r["src"], r["dst"], r["reason"], r["from"]) for r in dropped] == [
        (None, "alpha", "not a priest", where)]
    # It never reached the priest.
    assert not [r for r in records(harness, "alpha/events.jsonl") if r["kind"] == "dropped"]
    assert harness.run("down").returncode == 0


def test_the_relay_killed_is_restarted_and_the_cluster_goes_on(harness) -> None:
    up(harness, 4)
    before = harness.pids()
    relay = network(harness)["relay"]
    harness.seen.add(psutil.Process(relay))
    chaos(harness, "--drop", "0.1")
    psutil.Process(relay).send_signal(signal.SIGKILL)
    harness.wait_until(lambda: network(harness)["restarts"] == 1
                       and network(harness)["state"] == "running", what="the relay restarted")
    net = network(harness)
    assert net["relay"] != relay and net["last_exit"] == -signal.SIGKILL
    assert net["faults"]["drop"] == 0.1  # the faults in force survive the restart
    harness.seen.add(psutil.Process(net["relay"]))
    text = harness.run("status").stdout
    assert f"relay pid {net['relay']}, restarted 1x" in text
    kinds = [(r["kind"], r.get("status")) for r in records(harness, "harness.jsonl")
             if r["kind"].startswith("relay_")]
    assert kinds == [("relay_started", None), ("relay_exited", -9), ("relay_started", None)]
    assert harness.pids() == before  # priests untouched
    chaos(harness, "--heal", "--ballot", "beta")
    harness.wait_until(lambda: learned(harness, FOUR), what="the cluster decides")
    verify(harness)
    assert harness.run("down").returncode == 0
    assert not psutil.pid_exists(net["relay"]) or psutil.Process(net["relay"]).status() == \
        psutil.STATUS_ZOMBIE


def test_with_network_direct_network_faults_are_refused_in_one_line(harness) -> None:
    config = up(harness, 3, extra="network: direct\n")
    assert "network: direct" in harness.run("status").stdout
    assert network(harness)["mode"] == "direct"
    for args in (["--drop", "0.3"], ["--partition", "alpha/beta"], ["--heal"]):
        done = harness.run("chaos", *args)
        assert done.returncode == 1, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and "network: direct" in done.stderr
    plan = harness.run("chaos", str(config), "--random", "--faults", "network", "--dry-run")
    assert plan.returncode == 2 and "network: direct" in plan.stderr
    default = harness.run("chaos", str(config), "--random", "--seed", "3", "--dry-run")
    assert default.returncode == 0 and "drop" not in default.stdout  # process faults only
    chaos(harness, "--ballot", "alpha")  # priests talk directly, and still agree
    harness.wait_until(lambda: learned(harness, FIVE[:3]), what="all learn")
    assert not (harness.cwd / "data" / "network.jsonl").exists()
    assert harness.run("down").returncode == 0


def test_network_faults_in_schedules_and_random_plans(harness) -> None:
    config = up(harness, 4)
    args = ("--random", "--seed", "4242", "--duration", "3", "--rate", "6")
    first = harness.run("chaos", str(config), *args, "--dry-run")
    again = harness.run("chaos", str(config), *args, "--dry-run")
    assert first.returncode == 0 and first.stdout == again.stdout
    steps = [line.split()[2] for line in first.stdout.splitlines()[1:]
               if line.split()[0].isdigit()]
    assert {"partition", "isolate", "drop"} & set(steps) and {"kill", "ballot"} & set(steps)
    heal = steps.index("heal", len(steps) - len(FOUR) - 2)
    assert all(s in ("restart", "resume", "ballot") for s in steps[heal + 1:])  # network first
    process = harness.run("chaos", str(config), *args, "--faults", "process", "--dry-run")
    assert not {"partition", "isolate", "drop", "duplicate", "delay", "heal"} & {
        line.split()[2] for line in process.stdout.splitlines()[1:]
        if line.split()[0].isdigit()}
    done = harness.run("chaos", str(config), *args)
    assert done.returncode == 0, done.stdout + done.stderr
    planned = [line.split()[2:4] for line in first.stdout.splitlines()[1:]
               if line.split()[0].isdigit()]
    applied = [line.split()[1:3] for line in done.stdout.splitlines()[1:-1]]
    assert applied == planned
    seeded = [r for r in records(harness, "harness.jsonl") if r["kind"] == "network"
              and r["action"] != "heal"]
    assert seeded and all(isinstance(r["seed"], int) for r in seeded)
    schedule = harness.cwd / "net.yaml"
    schedule.write_text('- {at: 0, partition: "alpha,beta/gamma,delta", note: split}\n'
                        '- {at: 0.1, drop: 0.3, seed: 5}\n- {at: 0.2, delay: "5-10"}\n'
                        '- {at: 0.3, heal: true}\n- {at: 0.4, ballot: gamma}\n')
    dry = harness.run("chaos", "--schedule", str(schedule), "--dry-run")
    assert "partition  alpha,beta/gamma,delta  # split" in dry.stdout
    assert "drop       0.3 (seed 5)" in dry.stdout
    chaos(harness, "--schedule", str(schedule))
    verify(harness)
    assert harness.run("down").returncode == 0
