"""The pictures of a real run, from a hand-made run record: pairing, lanes, diagram, HTML markup.

The record below is written line by line as the priests, the supervisor and
the relay write theirs (docs/formats.md): three priests, alpha begins ballot
1.alpha while gamma is cut off; a datagram to gamma is dropped by the
partition, one BeginBallot is duplicated, beta is paused and resumed, gamma
is killed and restarted. No process runs.
"""

from __future__ import annotations

import json
import zlib
from html.parser import HTMLParser
from pathlib import Path

import pytest

from harness.check.history import load_history
from harness.check.rules import check
from harness.network.record import read_network_log
from harness.report import html
from harness.report import steps as run_steps
from harness.report.diagram import diagram
from harness.report.run import DOWN, PAUSED, RUNNING, load_run
from harness.report.text import draw_run
from node.config import load_config
from tests.conftest import write_config

T = 1_000_000_000_000  # a monotonic clock's ns
MS = 1_000_000


def ev(priest: str, ms: float, kind: str, **fields: object) -> dict[str, object]:
    return {"t": T + int(ms * MS), "priest": priest, "pid": 100, "kind": kind, **fields}


def msg(priest: str, ms: float, kind: str, peer: str, m: str, ballot: str, **more: object):
    return ev(priest, ms, kind, peer=peer, msg=m, ballot=ballot, **more)


def core(priest: str, ms: float, kind: str, ballot: str | None, decree: int | None = None,
         peer: str | None = None):
    return ev(priest, ms, kind, ballot=ballot, decree=decree, peer=peer, text=kind)


def started(priest: str, ms: float, **ledger: object):
    fields = {"last_tried": "0", "next_bal": "0", "prev_vote": "none", "decree": None,
              "text": "starts", **ledger}
    return ev(priest, ms, "started", **fields)


def rec(ms: float, kind: str, **fields: object) -> dict[str, object]:
    return {"t": T + int(ms * MS), "kind": kind, **fields}


def datagram(ms: float, n: int, src: str, dst: str, fate: str, **more: object):
    return {"t": T + int(ms * MS), "kind": "datagram", "n": n, "src": src, "dst": dst,
            "bytes": 100, "fate": fate, **more}


FAULTS_CUT = {"groups": [["alpha", "beta"], ["gamma"]], "drop": 0.0, "duplicate": 0.0,
              "delay": None}
HEALED = {"groups": [], "drop": 0.0, "duplicate": 0.0, "delay": None}


def write_run(tmp_path: Path) -> Path:
    config = write_config(tmp_path, 3)
    data = tmp_path / "data"
    events = {
        "alpha": [
            started("alpha", 1),
            core("alpha", 10, "ballot_started", "1.alpha"),
            msg("alpha", 10.1, "sent", "alpha", "NextBallot", "1.alpha"),
            msg("alpha", 10.2, "sent", "beta", "NextBallot", "1.alpha"),
            msg("alpha", 10.3, "sent", "gamma", "NextBallot", "1.alpha"),
            msg("alpha", 10.4, "received", "alpha", "NextBallot", "1.alpha"),
            core("alpha", 10.5, "promised", "1.alpha", peer="alpha"),
            msg("alpha", 12, "received", "beta", "LastVote", "1.alpha", vote="none"),
            core("alpha", 12.5, "proposed", "1.alpha", 7),
            core("alpha", 12.55, "voted", "1.alpha", 7, peer="alpha"),
            msg("alpha", 12.6, "sent", "beta", "BeginBallot", "1.alpha", decree=7),
            msg("alpha", 14, "received", "beta", "Voted", "1.alpha"),
            core("alpha", 14.5, "learned", "1.alpha", 7),
        ],
        "beta": [
            started("beta", 1),
            msg("beta", 11, "received", "alpha", "NextBallot", "1.alpha"),
            core("beta", 11.2, "promised", "1.alpha", peer="alpha"),
            msg("beta", 11.3, "sent", "alpha", "LastVote", "1.alpha", vote="none"),
            msg("beta", 13, "received", "alpha", "BeginBallot", "1.alpha", decree=7),
            core("beta", 13.1, "voted", "1.alpha", 7, peer="alpha"),
            msg("beta", 13.2, "sent", "alpha", "Voted", "1.alpha"),
            msg("beta", 13.5, "received", "alpha", "BeginBallot", "1.alpha", decree=7),
        ],
        "gamma": [started("gamma", 1), started("gamma", 60)],
    }
    for name, lines in events.items():
        (data / name).mkdir(parents=True)
        (data / name / "events.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    harness = [
        rec(0, "up", cluster="test", priests=["alpha", "beta", "gamma"], supervisor=9,
            detached=True, network="relay"),
        rec(0.2, "relay_started", pid=8, seed=5, restarts=0, faults=HEALED),
        *[rec(0.5, "priest_started", priest=n, pid=100) for n in ("alpha", "beta", "gamma")],
        rec(5, "network", action="isolate", value="gamma", seed=None, outcome="network now: ...",
            faults=FAULTS_CUT, result="done"),
        rec(9, "chaos", action="ballot", priest="alpha", pid=100, outcome="ballot requested",
            result="done"),
        rec(20, "chaos", action="pause", priest="beta", pid=100, outcome="paused", result="done"),
        rec(30, "chaos", action="resume", priest="beta", pid=100, outcome="resumed",
            result="done"),
        rec(40, "chaos", action="kill", priest="gamma", pid=100, outcome="killed (SIGKILL)",
            result="done"),
        rec(40.5, "priest_exited", priest="gamma", pid=100, status=-9),
        rec(45, "network", action="heal", value=None, seed=None, outcome="network now: no faults",
            faults=HEALED, result="done"),
        rec(50, "chaos", action="restart", priest="gamma", pid=101, outcome="started",
            result="done"),
        rec(55, "priest_started", priest="gamma", pid=101),
        rec(56, "chaos", action="kill", priest="beta", pid=None, outcome="refused: ...",
            result="refused"),
    ]
    (data / "harness.jsonl").write_text("".join(json.dumps(x) + "\n" for x in harness))
    network = [
        {"t": T + int(0.2 * MS), "kind": "relay_started", "pid": 8, "seed": 5, "faults": HEALED},
        datagram(10.25, 1, "alpha", "beta", "forwarded", at=[T + int(10.9 * MS)]),
        datagram(10.35, 2, "alpha", "gamma", "dropped", reason="partition"),
        datagram(11.4, 3, "beta", "alpha", "forwarded", at=[T + int(11.9 * MS)]),
        datagram(12.7, 4, "alpha", "beta", "duplicated",
                 at=[T + int(12.9 * MS), T + int(13.4 * MS)]),
        datagram(13.3, 5, "beta", "alpha", "forwarded", at=[T + int(13.9 * MS)]),
    ]
    (data / "network.jsonl").write_text("".join(json.dumps(x) + "\n" for x in network))
    for name, tried in (("alpha", "1.alpha"), ("beta", "0")):
        record = f"v1 last_tried={tried} next_bal=1.alpha prev_vote=7@1.alpha"
        (data / name / "ledger.log").write_text(
            "# paxos-harness ledger v1: the last valid record is the state\n"
            f"{record} crc={zlib.crc32(record.encode()):08x}\n")
    (data / "alpha" / "decree.txt").write_text("7\n")
    (data / "beta" / "decree.txt").write_text("7\n")
    return config


@pytest.fixture
def recorded(tmp_path: Path):
    config = load_config(str(write_run(tmp_path)))
    history = load_history(config)
    return config, history, load_run(config, history)


def test_the_relay_log_reads_back_each_kind_of_line(tmp_path: Path) -> None:
    write_run(tmp_path)
    log = read_network_log(tmp_path / "data")
    assert log is not None and log.skipped == 0
    assert [d.fate for d in log.datagrams] == ["forwarded", "dropped", "forwarded", "duplicated",
                                               "forwarded"]
    assert log.datagrams[1].reason == "partition" and len(log.datagrams[3].at) == 2
    assert read_network_log(tmp_path / "nowhere") is None


def test_each_send_is_paired_with_its_datagram_and_its_receipts(recorded) -> None:
    _, _, run = recorded
    between = run.between()
    assert len(between) == 5 and len(run.messages) == 6  # and alpha's NextBallot to itself
    fates = {(m.src, m.dst, m.type): m for m in between}
    lost = fates[("alpha", "gamma", "NextBallot")]
    assert lost.lost and lost.why == "partition" and lost.vanished == T + int(10.35 * MS)
    dup = fates[("alpha", "beta", "BeginBallot")]
    assert dup.received == (T + 13 * MS, T + int(13.5 * MS))
    assert fates[("beta", "alpha", "Voted")].received == (T + 14 * MS,)


def test_lanes_show_running_paused_and_down_and_the_cut(recorded) -> None:
    _, _, run = recorded
    beta = [(iv.state, iv.cause) for iv in run.lanes if iv.priest == "beta"]
    assert beta == [(RUNNING, ""), (PAUSED, "pause"), (RUNNING, "")]  # started before t0
    gamma = [(iv.state, iv.cause) for iv in run.lanes if iv.priest == "gamma"]
    assert (DOWN, "kill") in gamma and gamma[-1] == (RUNNING, "")
    (cut,) = run.network
    assert (cut.kind, cut.priests, cut.start, cut.end) == ("isolate", ("gamma",), T + 5 * MS,
                                                           T + 45 * MS)
    (bar,) = run.ballots
    assert (bar.ballot, bar.priest, bar.decree, bar.outcome) == ("1.alpha", "alpha", 7, "decided 7")


def test_the_terminal_diagram_has_a_row_per_step_faults_and_lost_datagrams(recorded) -> None:
    _, _, run = recorded
    every = run_steps.steps(run)
    rows = diagram(run.names, every)
    text = "\n".join(rows)
    assert "*-------------x" in text  # alpha -> gamma, lost in the partition
    assert "NextBallot(1.alpha)  lost  (partition)" in text
    assert "BeginBallot(1.alpha, 7)  delivered twice" in text
    for words in ("network: isolate gamma", "beta: paused (SIGSTOP)", "beta: resumed (SIGCONT)",
                  "gamma: CRASH", "gamma: restarts", "network: heal", "alpha: asked to begin"):
        assert words in text, words
    assert "refused" not in text  # a refused action did nothing: no row
    assert len(rows) == 2 + len(every)


def test_retransmissions_fold_into_their_first_copy() -> None:
    from node.messages import Ballot, NextBallot
    from node.sim import Step

    m = NextBallot("alpha", Ballot(1, "alpha"))
    sends = [Step(0.1 * i, "send", "alpha", "beta", m, "lost" if i < 3 else "") for i in range(4)]
    (first,) = run_steps.collapse(sends)
    assert first.note == "sent 4 times, 3 lost" and first.fate == "lost"


def test_draw_run_names_the_verdict_and_refuses_an_unknown_ballot(recorded) -> None:
    from harness.errors import UsageError

    config, _, _ = recorded
    lines = draw_run(config, None)
    assert lines[0].startswith("cluster test: a run of") and "5 messages between priests (1 lost)" \
        in lines[0]
    assert lines[1].startswith("verdict: ")
    one = draw_run(config, None, ballot="1.alpha")
    assert any("BeginBallot(1.alpha, 7)" in line for line in one)
    with pytest.raises(UsageError, match=r"ballots begun: 1\.alpha"):
        draw_run(config, None, ballot="9.beta")


class Markup(HTMLParser):
    """Every element's tag, classes and attributes, and the text of <script> and <link>."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, set[str], dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.elements.append((tag, set(a.get("class", "").split()), a))

    def having(self, cls: str) -> list[dict[str, str]]:
        return [a for _, classes, a in self.elements if cls in classes]


def test_the_report_carries_the_documented_markup(recorded) -> None:
    config, history, run = recorded
    page = html.render(run, check(config, history, None), generated="now")
    parsed = Markup()
    parsed.feed(page)
    (verdict,) = [a for _, _, a in parsed.elements if a.get("id") == "verdict"]
    assert verdict["data-exit"] == "3"  # gamma holds no decree yet
    msgs = parsed.having("msg")
    assert len(msgs) == 5
    assert {(a["data-from"], a["data-to"], a["data-type"], a["data-ballot"]) for a in msgs} == {
        ("alpha", "beta", "NextBallot", "1.alpha"), ("alpha", "gamma", "NextBallot", "1.alpha"),
        ("beta", "alpha", "LastVote", "1.alpha"), ("alpha", "beta", "BeginBallot", "1.alpha"),
        ("beta", "alpha", "Voted", "1.alpha")}
    (lost,) = [a for a in msgs if "lost" in a["class"].split()]
    assert lost["data-to"] == "gamma"
    faults = {(a["data-kind"], a["data-priest"]) for a in parsed.having("fault")}
    assert faults == {("pause", "beta"), ("kill", "gamma"), ("isolate", "gamma")}
    (bar,) = parsed.having("ballot")
    assert (bar["data-ballot"], bar["data-outcome"]) == ("1.alpha", "decided 7")
    # Self-contained: nothing is fetched.
    assert not [a for tag, _, a in parsed.elements
                if tag in ("script", "img", "link", "iframe") and ("src" in a or "href" in a)]
    assert "http://" not in page and "https://" not in page
    assert "NextBallot(1.alpha) alpha → gamma" in page  # the hover: the paper's notation
    assert "seeded 5" in page  # the relay's seed, with the chaos plan


def test_a_violation_is_listed_first_with_its_evidence(tmp_path: Path) -> None:
    config = load_config(str(write_run(tmp_path)))
    (tmp_path / "data" / "beta" / "decree.txt").write_text("8\n")  # beta's file disagrees
    history = load_history(config)
    page = html.render(load_run(config, history), check(config, history, None))
    parsed = Markup()
    parsed.feed(page)
    (verdict,) = [a for _, _, a in parsed.elements if a.get("id") == "verdict"]
    assert verdict["data-exit"] == "1"
    kinds = {a["data-kind"] for a in parsed.having("violation")}
    assert "disagreement" in kinds
    assert page.index('id="verdict"') < page.index('id="timeline"')


def test_a_shortened_diagram_keeps_the_lanes_what_came_before_made_them() -> None:
    from node.messages import Ballot, NextBallot
    from node.sim import Step

    names = ["alpha", "beta", "gamma"]
    cut = Step(0.1, "network", "", None, ("network: isolate gamma", "isolate", "gamma",
                                           ("gamma",)))
    paused = Step(0.2, "pause", "beta", None, "beta: paused (SIGSTOP)")
    send = Step(0.5, "send", "alpha", "beta", NextBallot("alpha", Ballot(2, "alpha")), "")
    row = diagram(names, [send], before=[cut, paused])[-1]
    assert row.rstrip().endswith("NextBallot(2.alpha)")
    width = 7  # the longest name and two spaces
    lane = {n: 12 + i * width + width // 2 for i, n in enumerate(names)}  # flag, time, 2 spaces
    assert row[lane["gamma"]] == "%"  # gamma is still cut off when the send is drawn
    bare = diagram(names, [send])[-1]
    assert bare[lane["gamma"]] == "|"  # without what came before, it would look connected
