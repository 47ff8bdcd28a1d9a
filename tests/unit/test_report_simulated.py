"""`simulate --html`: a simulated run in the report's model, and the page drawn from it.

The adapter (`harness.report.simulated`) must give the report exactly what the
simulator recorded: one message per send between two different priests, each
copy that reached a priest that was up as a receipt, lanes down from a crash
to its restart, the partition on the lanes it cut until the heal, and
simulate's own verdict.
"""

from __future__ import annotations

import io
import json
from itertools import pairwise
from pathlib import Path

import pytest

from harness.errors import UsageError
from harness.report import html
from harness.report.run import DOWN, RUNNING
from harness.report.simulated import CRASH, simulated_run
from harness.simulate.runs import Setup, run_seed
from harness.verbs import simulate as simulate_verb
from node.sim import LOST_CUT, LOST_DROP, RECEIVER_DOWN, World
from tests.unit.test_report import Markup
from tests.unit.test_simulate import HARSH, parse

SEED = 1  # under HARSH: a partition, 5 crashes, duplicates, a message that overtook another


@pytest.fixture(scope="module")
def harsh() -> tuple[Setup, World, tuple]:
    setup = Setup(5, HARSH)
    world, violations = run_seed(setup, SEED)
    return setup, world, violations


def sent_between(world: World) -> int:
    """The messages the simulation sent from one priest to another (not to itself)."""
    return sum(1 for s in world.steps if s.kind == "send" and s.priest != s.peer)


def test_every_message_sent_between_two_priests_is_in_the_model(harsh) -> None:
    setup, world, violations = harsh
    run, _ = simulated_run(setup, world, violations)
    assert len(run.between()) == sent_between(world) > 50
    assert len(run.messages) == world.stats["messages"]  # and those to itself, not drawn
    taken = [a for a in world.raw_arrivals if a[2]]
    assert sum(len(m.received) for m in run.messages) == len(taken)
    for m in run.messages:
        assert all(t >= m.sent for t in m.received)
        if m.lost:
            assert m.why in (LOST_CUT, LOST_DROP, RECEIVER_DOWN), m
            assert m.vanished >= m.sent
    assert any(len(m.received) == 2 for m in run.messages)  # a duplicate: two receipts
    assert {m.why for m in run.between() if m.lost} == {LOST_CUT, LOST_DROP, RECEIVER_DOWN}


def test_lanes_go_down_at_a_crash_until_the_restart_and_the_partition_lasts_to_the_heal(harsh) -> None:
    setup, world, violations = harsh
    run, _ = simulated_run(setup, world, violations)
    steps = world.steps
    crashes = [s for s in steps if s.kind == "crash"]
    down = [iv for iv in run.lanes if iv.state == DOWN]
    assert len(down) == len(crashes) and all(iv.cause == CRASH for iv in down)
    for name in world.names:  # each lane is covered end to end, without gaps
        mine = sorted((iv for iv in run.lanes if iv.priest == name), key=lambda iv: iv.start)
        assert mine[0].start == 0 and mine[-1].end == run.t1 and mine[-1].state == RUNNING
        assert all(a.end == b.start for a, b in pairwise(mine))
    (cut,) = [s for s in steps if s.kind == "partition"]
    heal = next(s for s in steps if s.kind == "heal")
    (partition,) = [f for f in run.network if f.kind == "partition"]
    assert set(partition.priests) == set(cut.what) and partition.end == int(heal.time * 1e9)
    assert {f.kind for f in run.network} == {"partition", "drop", "duplicate", "delay"}
    kinds = [t.kind for t in run.ticks]
    assert kinds.count("crash") == len(crashes) and "restart" in kinds and "ballot" in kinds
    assert run.simulated is not None and run.simulated.seed == SEED
    assert f"--seed {SEED}" in run.simulated.replay and run.simulated.html.endswith("--html FILE")


def test_the_verdict_is_simulates_own() -> None:
    setup = Setup(5, flaws=("same-ballot-numbers",))
    world, violations = run_seed(setup, 444)
    _, verdict = simulated_run(setup, world, violations)
    assert verdict.exit_status == 1
    assert verdict.violations == violations
    assert {"disagreement", "ballot_reused"} <= {v.kind for v in violations}
    clean = Setup(5)
    world, violations = run_seed(clean, 3)
    _, verdict = simulated_run(clean, world, violations)
    assert violations == () and verdict.exit_status == 0 and verdict.decree is not None


def test_the_page_carries_the_documented_markup(harsh) -> None:
    setup, world, violations = harsh
    run, verdict = simulated_run(setup, world, violations)
    page = html.render(run, verdict, generated="now")
    parsed = Markup()
    parsed.feed(page)
    msgs = parsed.having("msg")
    assert len(msgs) == sent_between(world)
    assert {a["data-from"] for a in msgs} <= set(world.names)
    assert len([a for a in msgs if "lost" in a["class"].split()]) == sum(
        m.lost for m in run.between())
    faults = {(a["data-kind"], a["data-priest"]) for a in parsed.having("fault")}
    assert {k for k, _ in faults} == {CRASH, "partition", "drop", "duplicate", "delay"}
    (v,) = [a for _, _, a in parsed.elements if a.get("id") == "verdict"]
    assert v["data-exit"] == "0"
    assert 'id="simulation"' in page and f"simulated run, seed {SEED}" in page
    assert 'id="chaos"' not in page and 'id="config"' not in page
    assert "http://" not in page and "https://" not in page
    again = html.render(*simulated_run(setup, *run_seed(setup, SEED)), generated="now")
    assert again == page  # same seed, same page


def test_evidence_links_zoom_the_timeline() -> None:
    setup = Setup(5, flaws=("same-ballot-numbers",))
    page = html.render(*simulated_run(setup, *run_seed(setup, 444)), generated="now")
    assert 'class="show" href="#t=' in page
    assert 'data-span="' in page


# --- the verb -------------------------------------------------------------------------


def simulate(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    status = simulate_verb.run(parse(*argv, "--jobs", "1"), out)
    return status, out.getvalue()


def test_html_with_a_seed_writes_that_seeds_report(tmp_path: Path) -> None:
    path = tmp_path / "run.html"
    status, out = simulate("--seed", "444", "--flaw", "same-ballot-numbers", "--html", str(path))
    assert status == 1
    assert "report of seed 444 (the seed asked for)" in out and f"wrote {path}" in out
    assert 'data-exit="1"' in path.read_text()
    status, out = simulate("--seed", "3", "--html", str(path))  # a clean seed: written too,
    assert status == 0 and "report of seed 3" in out and 'data-exit="0"' in path.read_text()
    assert "trace of seed" not in out  # and its trace is not printed unless asked for


def test_html_with_seeds_writes_the_report_of_the_run_that_broke_a_rule(tmp_path: Path) -> None:
    path = tmp_path / "caught.html"
    status, out = simulate("--seeds", "50", "--flaw", "same-ballot-numbers", "--html", str(path),
                           "--json")
    data = json.loads(out)
    seed = data["violation"]["seed"]
    assert status == 1 and data["html"]["seed"] == seed and data["html"]["path"] == str(path)
    assert f"seed {seed}" in path.read_text()
    status, out = simulate("--seeds", "5", "--html", str(tmp_path / "none.html"))
    assert status == 0 and "no report written: no run of seeds 0..4 broke a rule" in out
    assert not (tmp_path / "none.html").exists()


def test_an_existing_file_is_replaced_a_link_or_a_directory_refused(tmp_path: Path) -> None:
    path = tmp_path / "old.html"
    path.write_text("old")
    assert simulate("--seed", "3", "--html", str(path))[0] == 0
    assert path.read_text().startswith("<!doctype html>")
    link = tmp_path / "link.html"
    link.symlink_to(tmp_path / "elsewhere.html")
    cases = {str(link): "a symbolic link", str(tmp_path): "a directory",
             str(tmp_path / "no" / "x.html"): "no directory"}
    for where, words in cases.items():
        with pytest.raises(UsageError, match=words) as exc:
            simulate("--seed", "3", "--html", where)
        assert exc.value.exit_status == 2 and "\n" not in str(exc.value)
    assert not (tmp_path / "elsewhere.html").exists()


# --- the trace: delays, reorders, losses -------------------------------------------------


def test_the_trace_says_when_each_message_arrives_and_what_it_overtook(harsh) -> None:
    _, world, _ = harsh
    sends = [s for s in world.steps if s.kind == "send"]
    notes = [s.note for s in sends]
    assert all(n.startswith("arrives in ") for s, n in zip(sends, notes, strict=True)
               if s.fate != "lost")
    assert any("overtaking 1 sent before it" in n for n in notes)
    assert {s.note for s in sends if s.fate == "lost"} == {LOST_CUT, LOST_DROP, RECEIVER_DOWN}
    assert any(" and " in s.note for s in sends if s.fate == "duplicated")  # two arrivals
    text = "\n".join(world.trace)
    assert "(lost: partition)" in text and "arrives in" in text


def test_a_longer_faulty_phase_is_part_of_the_replay(tmp_path: Path) -> None:
    setup = Setup(5, horizon=30.0)
    world, violations = run_seed(setup, 2)
    run, _ = simulated_run(setup, world, violations)
    assert run.simulated is not None and "--horizon 30" in run.simulated.replay
    assert run.simulated.heal == 30_000_000_000 and run.t1 > run.simulated.heal
    status, out = simulate("--seed", "2", "--horizon", "30", "--html", str(tmp_path / "long.html"))
    assert status == 0 and "in 30 s" in out.splitlines()[0]
