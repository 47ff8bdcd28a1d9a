"""Foreign priests under the harness: examples/naive-priest/ started, balloted, faulted, checked.

Real processes, real datagrams and connections, real signals, on free loopback
ports; the `harness` fixture fails a test that leaves any process behind, and
each test also looks for a process still working in its data dir.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import yaml

from bench.cluster import free_for_both
from tests.conftest import free_udp_ports
from tests.integration.conftest import working_under

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]
NAIVE = ROOT / "examples" / "naive-priest" / "naive_priest.py"
DUEL = ROOT / "examples" / "naive-priest" / "duel.yaml"
NAMES = ["l1", "l2", "l3"]


def foreign_config(harness, *, tcp: bool = False, command: str | None = None,
                   extra: str = "") -> Path:
    ports = free_for_both(len(NAMES)) if tcp else free_udp_ports(len(NAMES))
    args = '"{config}", "{name}"' + (", --tcp" if tcp else "")
    lines = [
        "cluster: naive",
        "data_dir: data",
        f"command: {command or f'[{NAIVE}, {args}]'}",
        "config_format: legislators-json",
        "stop_signal: SIGINT",
        "tty: true",
        *(["transport: tcp"] if tcp else []),
        *([extra] if extra else []),
        "priests:",
        *(f"  {n}: {{host: 127.0.0.1, port: {p}}}" for n, p in zip(NAMES, ports, strict=True)),
    ]
    path = harness.cwd / "naive.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def records(harness, kind: str) -> list[dict]:
    lines = (harness.cwd / "data" / "harness.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def decree(harness, name: str) -> int | None:
    try:
        return int((harness.cwd / "data" / name / "decree.txt").read_text())
    except (FileNotFoundError, ValueError):
        return None


def agreed(harness, config: Path) -> dict:
    """verify --wait --json, asserting agreement: no violation but the naive priest's torn
    write (mistake 3: its decree.txt seen empty while rewritten in place, a true finding
    that any run may make)."""
    done = harness.run("verify", str(config), "--wait", "10", "--json")
    verdict = json.loads(done.stdout)
    torn = [v for v in verdict["violations"]
            if v["kind"] == "malformed_decree" and "held '', not a decree" in v["message"]]
    assert verdict["violations"] == torn, done.stdout
    assert done.returncode == (1 if torn else 0)
    assert verdict["waiting"] == [] and len({p["decree"] for p in verdict["priests"]}) == 1
    return verdict


def test_foreign_priests_start_agree_and_stop_under_the_harness(harness) -> None:
    config = foreign_config(harness)
    up = harness.run("up", str(config), "--detach")
    assert up.returncode == 0, up.stderr
    pids = harness.pids()
    assert set(pids) == {"supervisor", *NAMES}
    status = harness.run("status", str(config))
    assert status.returncode == 0 and status.stdout.count("running") == 3, status.stdout
    ballot = harness.run("chaos", str(config), "--ballot", "l1")
    assert ballot.returncode == 0, ballot.stdout + ballot.stderr
    verdict = agreed(harness, config)
    assert verdict["unchecked"]["priests"] == NAMES
    assert "promise_broken" in verdict["unchecked"]["rules"]
    assert "not checked for l1, l2, l3: " in harness.run("verify", str(config)).stdout
    held = {decree(harness, n) for n in NAMES}
    assert len(held) == 1 and None not in held
    seen = records(harness, "decree")  # the supervisor watched each decree.txt appear
    assert {r["priest"] for r in seen if r["value"] is not None} == set(NAMES)
    # Its output, on a pseudo-terminal: stamped lines in priest.log, colour codes removed.
    log = (harness.cwd / "data" / "l1" / "priest.log").read_text()
    assert re.search(r"^ +l1 \| \d\d:\d\d:\d\d\.\d{3} l1 is initiating ballot 0$", log, re.M), log
    assert "\033[" not in log
    # Behind the relay: its config gives its own entry the private port the relay forwards to.
    written = json.loads((harness.cwd / "data" / "l1.config.json").read_text())
    mine = next(x for x in written["legislators"] if x["name"] == "l1")
    others = {x["name"]: x["port"] for x in written["legislators"] if x["name"] != "l1"}
    configured = {line.split(":")[0].strip(): int(line.rsplit(":", 1)[1].strip(" }"))
                  for line in config.read_text().splitlines() if line.startswith("  l")}
    assert mine["port"] != configured["l1"]
    assert others == {n: configured[n] for n in ("l2", "l3")}
    down = harness.run("down", str(config))
    assert down.returncode == 0, down.stderr
    exits = records(harness, "priest_exited")
    assert {r["priest"] for r in exits} == set(NAMES)
    assert all(r["status"] == 0 and r["by_harness"] for r in exits), exits  # SIGINT: status 0
    assert not working_under(harness.cwd / "data")


def test_verify_catches_the_naive_priests_duel_with_its_evidence(harness) -> None:
    config = foreign_config(harness)
    assert harness.run("up", str(config), "--detach").returncode == 0
    try:
        duel = harness.run("chaos", str(config), "--schedule", str(DUEL))
        assert duel.returncode == 0, duel.stdout + duel.stderr
        verify = harness.run("verify", str(config), "--wait", "3")
    finally:
        assert harness.run("down", str(config)).returncode == 0
    assert verify.returncode == 1, verify.stdout
    out = verify.stdout
    assert "learned_different: priests learned different decrees" in out, out
    assert re.search(r"decree_changed: l[12]'s decree.txt held \d+ at \+[\d.]+s, then \d+", out), out
    assert "after: delay 30-30" in out and "ballot l1" in out and "ballot l2" in out
    assert "unproposed_decree:" not in out  # a foreign priest's proposals are not its to judge
    as_json = json.loads(harness.run("verify", str(config), "--json").stdout)
    kinds = {v["kind"] for v in as_json["violations"]}
    assert {"learned_different", "decree_changed"} <= kinds
    assert as_json["unchecked"]["priests"] == NAMES


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_garbage_that_kills_a_foreign_priest_is_crashed_on_input(harness, tcp: bool) -> None:
    config = foreign_config(harness, tcp=tcp)
    assert harness.run("up", str(config), "--detach").returncode == 0
    try:
        sent = harness.run("chaos", str(config), "--garbage", "l2", "--count", "1")
        assert sent.returncode == 0, sent.stdout + sent.stderr
        assert re.search(r"\(seed \d+\); it died after input 1 \(", sent.stdout), sent.stdout
        verify = harness.run("verify", str(config))
        status = harness.run("status", str(config))
    finally:
        assert harness.run("down", str(config)).returncode == 0
    assert verify.returncode == 1, verify.stdout
    transport = "TCP" if tcp else "UDP"
    assert re.search(rf"crashed_on_input: l2 died \(exit status 1, seen at \+[\d.]+s\) after "
                     rf"malformed input to its {transport} port \d+: input 1 of 1 \(", verify.stdout)
    assert re.search(r"^l2 +\d+ +exited", status.stdout, re.M), status.stdout
    (garbage,) = records(harness, "garbage")
    assert garbage["priest"] == "l2" and garbage["died_after"] == 0
    assert garbage["transport"] == ("tcp" if tcp else "udp")


def test_network_faults_are_refused_in_one_line_for_tcp_priests(harness) -> None:
    config = foreign_config(harness, tcp=True)
    assert harness.run("up", str(config), "--detach").returncode == 0
    try:
        cut = harness.run("chaos", str(config), "--partition", "l1/l2,l3")
        ballot = harness.run("chaos", str(config), "--ballot", "l3")
        agreed(harness, config)
    finally:
        assert harness.run("down", str(config)).returncode == 0
    assert cut.returncode == 1
    assert "the relay carries UDP datagrams only" in cut.stdout + cut.stderr
    assert ballot.returncode == 0


def test_garbage_does_not_kill_the_harness_own_priest(harness) -> None:
    config = harness.config(3)
    assert harness.run("up", str(config), "--detach").returncode == 0
    try:
        sent = harness.run("chaos", str(config), "--garbage", "alpha", "--count", "30")
        ballot = harness.run("chaos", str(config), "--ballot", "alpha")
        verify = harness.run("verify", str(config), "--wait", "10")
    finally:
        assert harness.run("down", str(config)).returncode == 0
    assert sent.returncode == 0 and "it is still running" in sent.stdout, sent.stdout
    assert ballot.returncode == 0
    assert verify.returncode == 0, verify.stdout
    (garbage,) = records(harness, "garbage")
    assert len(garbage["inputs"]) == 30 and garbage["died_after"] is None


@pytest.mark.parametrize(("command", "extra", "message"), [
    ('["./no-such-program", "{config}"]', "",
     r"priest l1 did not start: no such program: .*no-such-program \(a relative path"),
    ('["/bin/false"]', "", r"priest l1 did not start: exited with status 1 before it was ready"),
    ('["/bin/sleep", "30"]', "ready_timeout: 0.5",
     r"priest l1 did not start: not ready after 0.5 s: it never bound UDP port \d+"),
    ('["sh", "-c", "echo about to fail; exit 3"]', "",
     r"exited with status 3 before it was ready .*its last lines of output:\n +about to fail"),
], ids=["missing", "exits", "never-binds", "shows-output"])
def test_a_foreign_priest_that_cannot_start_is_one_error_and_leaves_nothing(
        harness, command: str, extra: str, message: str) -> None:
    config = foreign_config(harness, command=command, extra=extra)
    up = harness.run("up", str(config), "--detach")
    assert up.returncode == 1
    assert re.search(message, up.stderr), up.stderr
    assert harness.pids() == {}
    assert not working_under(harness.cwd / "data")


def test_a_link_planted_for_a_later_priest_stops_up_and_leaves_nothing(harness) -> None:
    # l1 starts first, then l2's priest.log is found to be a link. l1 ignores its
    # stop_signal (the kernel's parent-death signal cannot end it): only the supervisor's
    # SIGKILL after the grace period can, so it must still know of l1.
    ports = free_udp_ports(2)
    bind = ("import socket, time; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
            "s.bind(('127.0.0.1', {port})); time.sleep(60)")
    config = harness.cwd / "links.yaml"
    config.write_text(yaml.safe_dump({
        "cluster": "links", "data_dir": "data", "network": "direct",
        "command": ["/bin/sh", "-c", f"trap '' TERM INT; exec {sys.executable} -c \"{bind}\""],
        "priests": {n: {"host": "127.0.0.1", "port": p} for n, p in zip(["l1", "l2"], ports,
                                                                          strict=True)}}))
    (harness.cwd / "data" / "l2").mkdir(parents=True)
    (harness.cwd / "data" / "l2" / "priest.log").symlink_to(harness.cwd / "elsewhere.log")
    up = harness.run("up", str(config), "--detach")
    left = working_under(harness.cwd / "data")
    described = [" ".join(p.cmdline())[:80] for p in left]
    for p in left:
        p.kill()
    assert not left, described
    assert up.returncode == 1, up.stdout + up.stderr
    assert "priest l2 did not start" in up.stderr and "a symbolic link" in up.stderr, up.stderr
    assert not (harness.cwd / "elsewhere.log").exists()
    assert harness.pids() == {}


def test_fresh_removes_what_foreign_runs_created_and_nothing_of_yours(harness) -> None:
    config = foreign_config(harness)
    assert harness.run("up", str(config), "--detach").returncode == 0
    assert harness.run("chaos", str(config), "--ballot", "l1").returncode == 0
    agreed(harness, config)
    assert harness.run("down", str(config)).returncode == 0
    created = {c for r in records(harness, "priest_files") for c in r["created"]}
    assert {"l1/decree.txt", "l1/next-bal.txt"} <= created
    mine = harness.cwd / "data" / "l2" / "notes.txt"
    mine.write_text("my notes\n")
    refused = harness.run("up", str(config), "--detach", "--fresh")
    assert refused.returncode == 2 and "notes.txt" in refused.stderr
    assert "no run of foreign priest l2 created it" in refused.stderr
    assert mine.read_text() == "my notes\n" and decree(harness, "l1") is not None
    mine.unlink()
    fresh = harness.run("up", str(config), "--detach", "--fresh")
    assert fresh.returncode == 0, fresh.stderr
    assert harness.run("down", str(config)).returncode == 0
    assert decree(harness, "l1") is None  # the earlier run's files went; this one balloted nothing


def test_fresh_removes_what_a_priest_that_did_not_start_created(harness) -> None:
    config = foreign_config(harness, command='["/bin/sh", "-c", "echo 1 > {dir}/state.txt; '
                                              'echo cannot listen; exit 1"]')
    first = harness.run("up", str(config), "--detach")
    assert first.returncode == 1 and "did not start" in first.stderr, first.stderr
    assert (harness.cwd / "data" / "l1" / "state.txt").exists()
    again = harness.run("up", str(config), "--detach", "--fresh")
    assert again.returncode == 1 and "did not start" in again.stderr, again.stderr  # not refused
    assert harness.pids() == {}


def test_under_a_foreground_up_its_lines_reach_the_terminal_stamped(harness) -> None:
    config = foreign_config(harness)
    proc = subprocess.Popen([sys.executable, "-m", "harness", "up", str(config)],
                            cwd=harness.cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, "NO_COLOR": "1"})
    try:
        lines: list[str] = []
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "cluster naive is up" in line:
                break
        harness.remember()
        assert harness.run("chaos", str(config), "--ballot", "l3").returncode == 0
        for line in proc.stdout:
            lines.append(line)
            if "Received success" in line:
                break
        proc.send_signal(signal.SIGINT)
        proc.wait(20)
        # Through the same file object: lines it has read ahead since the loop above are in
        # its buffer, which communicate() would skip (it reads the descriptor itself).
        rest = proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    text = "".join(lines) + rest
    assert re.search(r"^ +l3 \| \d\d:\d\d:\d\d\.\d{3} l3 is initiating ballot 0$", text, re.M), text
    assert re.search(r"^ +l[12] \| .*Received success, the new decree is now: \d+", text, re.M)
    assert proc.returncode == 130
    assert not working_under(harness.cwd / "data")


def test_foreign_priests_end_with_a_supervisor_killed_and_down_clears_it(harness) -> None:
    config = foreign_config(harness)
    assert harness.run("up", str(config), "--detach").returncode == 0
    pids = harness.pids()
    supervisor = psutil.Process(pids.pop("supervisor"))
    priests = [psutil.Process(pid) for pid in pids.values()]
    supervisor.kill()
    gone, alive = psutil.wait_procs(priests, timeout=10)  # the kernel tells them: stop_signal
    assert not alive and len(gone) == 3
    down = harness.run("down", str(config))
    assert down.returncode == 0, down.stdout + down.stderr
    assert not working_under(harness.cwd / "data")


def test_a_campaign_runs_foreign_priests(harness) -> None:
    config = foreign_config(harness)
    done = harness.run("campaign", str(config), "--runs", "2", "--duration", "1", "--seed", "3",
                       "--keep-going", "--jobs", "1", "--json", timeout=120)
    assert done.returncode in (0, 1), done.stdout + done.stderr
    summary = json.loads(done.stdout)
    assert summary["done"] == 2 and len(summary["results"]) == 2, summary
    assert summary["exit_status"] == done.returncode
    for result in summary["results"]:
        # Each run judged: a verdict of its own (the naive priest may well break a rule),
        # its phases timed from up to down.
        assert result["status"] in ("pass", "violation", "undecided"), result
        assert {"up", "chaos", "verify", "down"} <= set(result["phases"]), result
    failed = [r for r in summary["results"] if r["status"] == "violation"]
    assert len(summary["failures"]) == len(failed)
    for failure in summary["failures"]:  # its files kept, with the plan and the verdict
        kept = Path(failure["directory"])
        assert (kept / "plan.txt").exists() and (kept / "verdict.txt").exists()
    assert not working_under(harness.cwd / "data")


def test_the_readmes_walkthrough_does_what_its_comments_say(harness) -> None:
    """The commands of README's "Test your own implementation", in order, on configs/naive.yaml
    (on free ports, its data in the test's directory): each exits as its comment says."""
    section = (ROOT / "README.md").read_text().split("### Test your own implementation", 1)[1]
    block = re.search(r"\n\n((?:    paxos-harness .*\n)+)", section)
    assert block is not None
    text = (ROOT / "configs" / "naive.yaml").read_text()
    replaced = {"data_dir: logs/naive": "data_dir: data",
                "../examples/naive-priest/naive_priest.py": str(NAIVE)}
    replaced.update({f"port: {old}": f"port: {new}"
                     for old, new in zip((7601, 7602, 7603), free_udp_ports(3), strict=True)})
    for old, new in replaced.items():
        assert old in text
        text = text.replace(old, new)
    config = harness.cwd / "naive.yaml"
    config.write_text(text)
    try:
        for line in block.group(1).splitlines():
            command, _, comment = line.strip().partition("#")
            args = [str(config) if a == "configs/naive.yaml" else
                    str(ROOT / a) if a.startswith("examples/") else a
                    for a in shlex.split(command)[1:]]
            done = harness.run(*args)
            said = f"{command}\n{done.stdout}{done.stderr}"
            if "exit 1:" in comment:
                assert done.returncode == 1, said
                for kind in re.findall(r"[a-z]+_[a-z_]+", comment.split("exit 1:")[1]):
                    assert f"{kind}:" in done.stdout, said
            elif "agreement (or" in comment:  # or the naive priest's torn write, seen
                assert done.returncode in (0, 1), said
            else:
                assert done.returncode == 0, said
    finally:
        harness.run("down", str(config))
    assert not working_under(harness.cwd / "data")


def test_a_mixed_cluster_with_our_own_priest_run_as_a_foreign_one_agrees(harness) -> None:
    """gamma is `python -m node` started from a command, behind the relay: the YAML written
    for it keeps the cluster's settings (its data dir, absolute), and verify judges the
    cluster without calling the foreign priest's missing events unverifiable."""
    ports = free_udp_ports(3)
    config = harness.cwd / "mixed.yaml"
    config.write_text("\n".join([
        "cluster: mixed",
        "data_dir: data",
        "priests:",
        f"  alpha: {{host: 127.0.0.1, port: {ports[0]}}}",
        f"  beta: {{host: 127.0.0.1, port: {ports[1]}}}",
        (f"  gamma: {{host: 127.0.0.1, port: {ports[2]}, "
         f"command: [{sys.executable}, -m, node, '{{config}}', '{{name}}']}}"),
    ]) + "\n")
    assert harness.run("up", str(config), "--detach").returncode == 0
    try:
        assert harness.run("chaos", str(config), "--ballot", "gamma").returncode == 0
        verify = harness.run("verify", str(config), "--wait", "10")
    finally:
        assert harness.run("down", str(config)).returncode == 0
    assert verify.returncode == 0, verify.stdout
    assert "not checked for gamma" in verify.stdout
    assert (harness.cwd / "data" / "gamma" / "decree.txt").exists()  # not data/data/gamma
    written = yaml.safe_load((harness.cwd / "data" / "gamma.config.yaml").read_text())
    assert written["data_dir"] == str(harness.cwd / "data")
