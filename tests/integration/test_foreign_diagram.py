"""`diagram` and `report` of foreign priests: examples/naive-priest/ behind the relay, drawn
from the datagrams the relay recorded; without the relay, a one-line refusal.

Real processes on free loopback ports; the `harness` fixture fails a test that
leaves any process behind.
"""

from __future__ import annotations

import json

import pytest

from tests.integration.test_foreign import NAMES, decree, foreign_config
from tests.unit.test_report import Markup

pytestmark = pytest.mark.timeout(120)


def network_lines(harness) -> list[dict]:
    path = harness.cwd / "data" / "network.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines() if x.endswith("}")] \
        if path.exists() else []


def test_a_naive_cluster_behind_the_relay_is_drawn_from_its_datagrams(harness) -> None:
    config = foreign_config(harness)
    assert harness.run("up", str(config), "--detach").returncode == 0
    try:
        ballot = harness.run("chaos", str(config), "--ballot", "l1")  # SIGTSTP to l1
        assert ballot.returncode == 0, ballot.stdout + ballot.stderr
        harness.wait_until(lambda: all(decree(harness, n) is not None for n in NAMES),
                           timeout=20, what="every naive priest's decree")
        # Every datagram lost from now on; a second ballot's messages are dropped.
        lossy = harness.run("chaos", str(config), "--drop", "1.0", "--ballot", "l2")
        assert lossy.returncode == 0, lossy.stdout + lossy.stderr
        harness.wait_until(lambda: any(x.get("fate") == "dropped" for x in network_lines(harness)),
                           timeout=20, what="a dropped datagram in network.jsonl")
    finally:
        assert harness.run("down", str(config)).returncode == 0
    heads = [x.get("head", "") for x in network_lines(harness) if x["kind"] == "datagram"]
    assert any(h.startswith("NextBallot") for h in heads), heads[:5]
    drawn = harness.run("diagram", str(config), "--all")
    assert drawn.returncode == 0, drawn.stderr
    out = drawn.stdout
    assert "foreign priests l1, l2, l3" in out
    rows = out.splitlines()
    arrows = [r for r in rows if '"NextBallot' in r and "lost" not in r]
    assert arrows and all("*" in r and (">" in r or "<" in r) for r in arrows), out
    assert any('"NextBallot' in r and "lost  (loss)" in r and "x" in r for r in rows), out
    assert "decree.txt holds" in out and "(seen by the supervisor)" in out
    page = harness.cwd / "report.html"
    report = harness.run("report", str(config), "-o", str(page))
    assert report.returncode == 0, report.stderr
    parsed = Markup()
    parsed.feed(page.read_text())
    msgs = parsed.having("msg")
    kinds = {(a["data-type"], a["data-ballot"]) for a in msgs}
    assert ("NextBallot", "") in kinds, kinds
    assert {a["data-from"] for a in msgs} <= set(NAMES)
    assert [a for a in msgs if "lost" in a["class"].split()]


@pytest.mark.parametrize("tcp", [False, True], ids=["direct", "tcp"])
def test_foreign_priests_without_the_relay_are_refused_in_one_line(harness, tcp: bool) -> None:
    config = foreign_config(harness, tcp=tcp, extra="" if tcp else "network: direct")
    assert harness.run("up", str(config), "--detach").returncode == 0
    try:
        assert harness.run("chaos", str(config), "--ballot", "l1").returncode == 0
    finally:
        assert harness.run("down", str(config)).returncode == 0
    for verb in (["diagram"], ["report", "-o", str(harness.cwd / "r.html")]):
        done = harness.run(verb[0], str(config), *verb[1:])
        assert done.returncode == 2, done.stdout + done.stderr
        said = done.stderr.strip()
        assert "\n" not in said and "nothing saw their messages" in said, said
        assert "network: relay" in said and "UDP" in said, said
    assert not (harness.cwd / "r.html").exists()
