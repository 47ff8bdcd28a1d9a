"""`paxos-harness chaos` for real: a detached cluster, real signals, real new processes.

Each test runs the CLI as a user would (`python -m harness`, in its own
directory), confirms what happened to the processes through psutil and the
priests' own files, and the `harness` fixture fails it if any process survives.
"""

from __future__ import annotations

import json
from pathlib import Path

import psutil
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

FOUR = ["alpha", "beta", "gamma", "delta"]
SCHEDULES = Path(__file__).resolve().parents[2] / "configs" / "chaos"


def status_of(pid: int) -> str:
    """psutil's status of `pid`, or 'gone' once it has ended (a zombie has ended too)."""
    try:
        status = psutil.Process(pid).status()
    except psutil.NoSuchProcess:
        return "gone"
    return "gone" if status == psutil.STATUS_ZOMBIE else str(status)


def chaos_records(harness) -> list[dict]:
    lines = (harness.cwd / "data" / "harness.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"].startswith("chaos")]


def decree(harness, name: str) -> str | None:
    path = harness.cwd / "data" / name / "decree.txt"
    return path.read_text() if path.exists() else None


def up(harness, n: int, *extra: str) -> Path:
    config = harness.config(n)
    done = harness.run("up", str(config), "--detach", "--fresh", *extra)
    assert done.returncode == 0, done.stderr
    return config


def test_each_action_for_real(harness) -> None:
    up(harness, 4)
    pids = harness.pids()

    done = harness.run("chaos", "--ballot", "alpha")
    assert done.returncode == 0, done.stderr
    assert "ballot requested (SIGTSTP)" in done.stdout and f"pid {pids['alpha']}" in done.stdout
    harness.wait_until(lambda: all(decree(harness, n) for n in FOUR), what="every priest learns")
    chosen = decree(harness, "delta")

    assert harness.run("chaos", "--pause", "gamma").returncode == 0
    assert status_of(pids["gamma"]) == psutil.STATUS_STOPPED
    assert harness.run("chaos", "--resume", "gamma").returncode == 0
    assert status_of(pids["gamma"]) in (psutil.STATUS_RUNNING, psutil.STATUS_SLEEPING)

    ledger = (harness.cwd / "data" / "delta" / "ledger.log").read_text()
    assert harness.run("chaos", "--kill", "delta").returncode == 0
    assert status_of(pids["delta"]) == "gone"
    restart = harness.run("chaos", "--restart", "delta")
    assert restart.returncode == 0, restart.stderr
    new = harness.pids()["delta"]
    assert new != pids["delta"] and status_of(new) != "gone"
    # The same ledger: the old records are still there, and the decree is kept.
    assert (harness.cwd / "data" / "delta" / "ledger.log").read_text().startswith(ledger)
    assert decree(harness, "delta") == chosen
    started = [json.loads(line) for line in (harness.cwd / "data" / "delta" / "events.jsonl")
               .read_text().splitlines() if '"started"' in line]
    assert started[-1]["pid"] == new and started[-1]["decree"] == int(chosen)

    assert harness.run("chaos", "--stop", "beta").returncode == 0
    assert status_of(pids["beta"]) == "gone"
    report = json.loads(harness.run("status", "--json").stdout)
    states = {p["priest"]: (p["state"], p["decree"]) for p in report["priests"]}
    assert states == {"alpha": ("running", int(chosen)), "beta": ("exited", int(chosen)),
                      "gamma": ("running", int(chosen)), "delta": ("running", int(chosen))}

    records = [(r["action"], r["priest"], r["pid"], r["outcome"].split(" ")[0])
               for r in chaos_records(harness) if r["kind"] == "chaos"]
    assert records == [("ballot", "alpha", pids["alpha"], "ballot"),
                       ("pause", "gamma", pids["gamma"], "paused"),
                       ("resume", "gamma", pids["gamma"], "resumed"),
                       ("kill", "delta", pids["delta"], "killed"),
                       ("restart", "delta", new, "started"),
                       ("stop", "beta", pids["beta"], "stopped")]
    assert harness.run("down").returncode == 0


def test_actions_run_in_command_line_order_with_sleeps(harness) -> None:
    up(harness, 3)
    old = harness.pids()["beta"]
    done = harness.run("chaos", "--kill", "beta", "--sleep", "0.2", "--restart", "beta",
                       "--ballot", "beta")
    assert done.returncode == 0, done.stderr
    assert [line.split()[1] for line in done.stdout.splitlines()[:3]] == ["kill", "restart",
                                                                          "ballot"]
    records = [r for r in chaos_records(harness) if r["kind"] == "chaos"]
    assert [r["action"] for r in records] == ["kill", "restart", "ballot"]
    # The --sleep 0.2, on the executor's clock; a record's t is when the supervisor began
    # the action, so the gap between two records also carries their requests' latencies.
    restart_at = float(done.stdout.splitlines()[1].split()[0].strip("+s"))
    assert restart_at >= 0.2 and records[1]["t"] > records[0]["t"]
    assert status_of(old) == "gone" and status_of(harness.pids()["beta"]) != "gone"
    kinds = [r["kind"] for r in chaos_records(harness)]
    assert kinds[0] == "chaos_start" and kinds[-1] == "chaos_end"
    assert harness.run("down").returncode == 0


def test_refusals(harness) -> None:
    config = up(harness, 4)
    pids = harness.pids()
    # An unknown name: nothing runs, not even the valid action before it.
    unknown = harness.run("chaos", "--pause", "alpha", "--kill", "omega")
    assert unknown.returncode == 2
    assert unknown.stderr.count("\n") == 1 and "omega" in unknown.stderr
    assert "known: alpha, beta, gamma, delta" in unknown.stderr
    assert status_of(pids["alpha"]) != psutil.STATUS_STOPPED
    # A kill of a dead priest: refused by the supervisor, and the rest is not tried.
    dead = harness.run("chaos", str(config), "--kill", "delta", "--kill", "delta",
                       "--ballot", "alpha")
    assert dead.returncode == 1
    assert "cannot kill priest delta: it is killed" in dead.stderr
    assert dead.stderr.count("\n") == 1
    assert "REFUSED" in dead.stdout and "ballot requested" not in dead.stdout
    outcomes = [(r["action"], r["outcome"]) for r in chaos_records(harness)
                if r["kind"] == "chaos"]
    assert outcomes[0] == ("kill", "killed (SIGKILL)")
    assert outcomes[1][0] == "kill" and outcomes[1][1].startswith("refused: ")
    assert len(outcomes) == 2
    # A refusal the supervisor gives with a pid shows that pid, not "pid -".
    paused = harness.run("chaos", "--pause", "alpha", "--pause", "alpha")
    assert paused.returncode == 1 and f"(pid {pids['alpha']})" in paused.stderr
    refused = [line for line in paused.stdout.splitlines() if "REFUSED" in line]
    assert len(refused) == 1 and f"pid {pids['alpha']}" in refused[0], paused.stdout
    assert "pid -" not in paused.stdout
    bad = harness.cwd / "bad.yaml"
    bad.write_text("- {at: 0, ballot: alpha}\n- {at: 1, kill: omega}\n")
    schedule = harness.run("chaos", "--schedule", str(bad))
    assert schedule.returncode == 2 and "entry 2: kill: no priest named 'omega'" in schedule.stderr
    assert len(chaos_records(harness)) == 8  # two runs of start, action, refusal, end
    assert harness.run("down").returncode == 0
    not_up = harness.run("chaos", "--ballot", "alpha")
    assert not_up.returncode == 1 and "is not up" in not_up.stderr


def schedule_header(path: Path) -> tuple[int, str | None, list[tuple[str, str]]]:
    """(priests, --only list, claims) from a shipped schedule's `# priests:`, `# only:`,
    `# claim: PRIEST: TEXT` comment lines."""
    priests, only, claims = 4, None, []
    for line in path.read_text().splitlines():
        if line.startswith("# priests:"):
            priests = int(line.split(":", 1)[1])
        elif line.startswith("# only:"):
            only = line.split(":", 1)[1].strip()
        elif line.startswith("# claim:"):
            priest, text = line.split(":", 1)[1].split(":", 1)
            claims.append((priest.strip(), text.strip()))
    return priests, only, claims


def narration(harness, name: str) -> list[str]:
    """The steps a priest narrated: priest.log without the message lines."""
    lines = (harness.cwd / "data" / name / "priest.log").read_text().splitlines()
    return [line.split(" | ", 1)[1] for line in lines
            if " | " in line and not line.split(" | ", 1)[1].split(" ", 1)[1].startswith(("->", "<-"))]


@pytest.mark.parametrize("name", sorted(p.name for p in SCHEDULES.glob("*.yaml")))
def test_a_shipped_schedule_does_what_its_notes_claim_and_ends_in_agreement(
        harness, name: str) -> None:
    priests, only, claims = schedule_header(SCHEDULES / name)
    assert claims, f"{name} makes no checkable claim"
    up(harness, priests, *(("--only", only) if only else ()))
    try:
        done = harness.run("chaos", "--schedule", str(SCHEDULES / name))
        assert done.returncode == 0, done.stdout + done.stderr
        verify = harness.run("verify", "--wait", "10")
        assert verify.returncode == 0, verify.stdout + verify.stderr
    finally:
        assert harness.run("down").returncode == 0
    names = FOUR + ["epsilon"] if priests == 5 else FOUR
    assert len({decree(harness, n) for n in names}) == 1 and decree(harness, "alpha")
    for priest, text in claims:
        said = narration(harness, priest)
        assert any(text in line for line in said), (
            f"{name}: {priest} never said {text!r}; it said:\n" + "\n".join(said))


def test_the_random_nemesis_on_five_priests_ends_in_agreement(harness) -> None:
    config = up(harness, 5)
    args = ("--random", "--seed", "20240607", "--duration", "4", "--rate", "8")
    plan = harness.run("chaos", str(config), *args, "--dry-run")
    assert plan.returncode == 0
    done = harness.run("chaos", str(config), *args)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "seed 20240607" in done.stdout.splitlines()[0]
    planned = [line.split()[2:4] for line in plan.stdout.splitlines()[1:]
               if line.split()[0].isdigit()]
    applied = [line.split()[1:3] for line in done.stdout.splitlines()[1:-1]]
    assert applied == planned  # the dry run showed exactly what ran
    assert {a for a, _ in applied} >= {"kill", "restart", "ballot"}
    start, *_, end = chaos_records(harness)
    assert start["kind"] == "chaos_start" and start["seed"] == 20240607
    assert end["kind"] == "chaos_end" and end["refused"] == 0 and end["done"] == len(planned)
    verify = harness.run("verify", "--wait", "10")
    assert verify.returncode == 0, verify.stdout
    names = ["alpha", "beta", "gamma", "delta", "epsilon"]
    decrees = {n: decree(harness, n) for n in names}
    assert None not in decrees.values() and len(set(decrees.values())) == 1, decrees
    assert harness.run("down").returncode == 0


def events_of(harness, name: str, pid: int | None = None) -> list[dict]:
    lines = (harness.cwd / "data" / name / "events.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if pid is None or e["pid"] == pid]


def harness_records(harness) -> list[dict]:
    lines = (harness.cwd / "data" / "harness.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def fired(harness) -> dict | None:
    """The `kill` record of a kill-after-promise that fired (written once the priest is reaped)."""
    return next((r for r in harness_records(harness) if r["kind"] == "chaos"
                 and r["action"] == "kill" and "kill-after-promise" in r["outcome"]), None)


def test_kill_after_promise_kills_the_priest_right_after_its_promise(harness) -> None:
    up(harness, 4)
    try:
        _kill_after_promise(harness, harness.pids())
    finally:
        assert harness.run("down").returncode == 0


def _kill_after_promise(harness, pids: dict[str, int]) -> None:
    # beta and gamma alone: beta's NextBallot reaches gamma, but two of four are no quorum,
    # so nothing follows gamma's promise but the same ballot's resends.
    assert harness.run("chaos", "--partition", "beta,gamma").returncode == 0
    armed = harness.run("chaos", "--kill-after-promise", "gamma")
    assert armed.returncode == 0, armed.stderr
    assert "armed: killed (SIGKILL) right after its next promise" in armed.stdout
    assert status_of(pids["gamma"]) != "gone"
    report = json.loads(harness.run("status", "--json").stdout)
    assert {p["priest"]: p["armed"] for p in report["priests"]}["gamma"] == "kill-after-promise"
    assert "gamma: armed (kill-after-promise)" in harness.run("status").stdout

    assert harness.run("chaos", "--ballot", "beta").returncode == 0
    harness.wait_until(lambda: fired(harness) is not None, what="gamma's kill recorded")
    assert status_of(pids["gamma"]) == "gone"
    mine = events_of(harness, "gamma", pids["gamma"])
    promises = [i for i, e in enumerate(mine) if e["kind"] == "promised"]
    assert len(promises) == 1 and mine[promises[0]]["ballot"] == "1.beta", mine
    # Its events end in that promise: after it, only the LastVote it sent and the resends.
    after = mine[promises[0] + 1:]
    assert all(e["kind"] in ("sent", "received") and e["ballot"] == "1.beta" for e in after), after

    kill = fired(harness)
    assert kill is not None
    assert (kill["priest"], kill["pid"], kill["result"]) == ("gamma", pids["gamma"], "done")
    assert kill["outcome"] == ("killed (SIGKILL) right after it promised ballot 1.beta "
                               "(kill-after-promise)")
    assert kill["t"] > mine[promises[0]]["t"]
    exited = next(r for r in harness_records(harness)
                  if r["kind"] == "priest_exited" and r["priest"] == "gamma")
    assert exited["status"] == -9
    report = json.loads(harness.run("status", "--json").stdout)
    assert {p["priest"]: (p["state"], p["armed"]) for p in report["priests"]}["gamma"] == (
        "killed", None)

    # A restart of a priest still armed kills it first: what follows finds it down.
    assert harness.run("chaos", "--kill-after-promise", "alpha").returncode == 0
    restart = harness.run("chaos", "--restart", "alpha", "--restart", "gamma", "--heal")
    assert restart.returncode == 0, restart.stderr
    assert "killed (SIGKILL) before any promise, for this restart" in restart.stdout
    assert status_of(pids["alpha"]) == "gone"
    assert harness.run("chaos", "--ballot", "delta").returncode == 0
    verify = harness.run("verify", "--wait", "10")
    assert verify.returncode == 0, verify.stdout
    diagram = harness.run("diagram", "--all")
    assert diagram.returncode == 0, diagram.stderr
    assert "gamma: armed: SIGKILL right after its next promise" in diagram.stdout
