"""Diagrams and reports of foreign priests, drawn from the relay's network.jsonl.

Foreign priests write no events: their messages are the datagrams the relay
recorded (each with a preview of its first bytes), their decree the supervisor's
`decree` records. Hand-written run files, as a real run leaves them.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from harness.check.history import load_history
from harness.check.rules import check
from harness.errors import RunFilesError
from harness.network.record import printable, read_network_log
from harness.network.relay import HEAD_BYTES, Relay, preview
from harness.report import html
from harness.report.run import Unread, judged_run, load_run
from harness.report.steps import collapse
from harness.report.text import draw_run
from node.config import load_config
from node.messages import Ballot, NextBallot
from node.sim import Step
from tests.conftest import free_udp_ports
from tests.unit.test_report import Markup

T = 1_000_000_000_000
MS = 1_000_000
NAMES = ["l1", "l2", "l3"]
NEXT = "NextBallot\r\nballot: 3\r\nfrom: l1\r\n\r\n"


def at(ms: float) -> int:
    return T + int(ms * MS)


def rec(ms: float, kind: str, **fields: object) -> dict[str, object]:
    return {"t": at(ms), "kind": kind, **fields}


def datagram(ms: float, n: int, src: str, dst: str, fate: str, head: str | None = NEXT,
             **more: object) -> dict[str, object]:
    line: dict[str, object] = {"t": at(ms), "kind": "datagram", "n": n, "src": src, "dst": dst,
                               "bytes": 40, "fate": fate, **more}
    if head is not None:
        line["head"] = head
    return line


def write_config(tmp_path: Path, *, mixed: bool = False, extra: str = "") -> Path:
    ports = free_udp_ports(len(NAMES))
    command = '["./naive", "{config}", "{name}"]'
    lines = ["cluster: naive", f"data_dir: {tmp_path / 'data'}", *([] if mixed else
             [f"command: {command}"]), *([extra] if extra else []), "priests:"]
    for name, port in zip(NAMES, ports, strict=True):
        own = f", command: {command}" if mixed and name == "l3" else ""
        lines.append(f"  {name}: {{host: 127.0.0.1, port: {port}{own}}}")
    path = tmp_path / "naive.yaml"
    path.write_text("\n".join(lines) + "\n")
    (tmp_path / "data").mkdir(exist_ok=True)
    return path


def write_lines(path: Path, lines: list[dict[str, object]], tail: str = "") -> None:
    path.write_text("".join(json.dumps(x) + "\n" for x in lines) + tail)


def write_foreign_run(tmp_path: Path, **kw: object) -> Path:
    config = write_config(tmp_path, **kw)  # type: ignore[arg-type]
    data = tmp_path / "data"
    write_lines(data / "harness.jsonl", [
        rec(0, "up", cluster="naive", priests=NAMES, supervisor=9, detached=True,
            network="relay"),
        rec(0.2, "relay_started", pid=8, seed=5, restarts=0, faults={}),
        *[rec(0.5, "priest_started", priest=n, pid=100 + i) for i, n in enumerate(NAMES)],
        rec(9, "chaos", action="ballot", priest="l1", pid=100, outcome="ballot requested",
            result="done"),
        rec(20, "decree", priest="l1", present=True, value=7),
        rec(21, "decree", priest="l2", present=True, value=None, text=""),
        rec(30, "down"),
    ])
    write_lines(data / "network.jsonl", [
        {"t": at(0.2), "kind": "relay_started", "pid": 8, "seed": 5, "faults": {}},
        datagram(10, 1, "l1", "l2", "forwarded", at=[at(10)]),
        datagram(10.1, 2, "l1", "l3", "dropped", reason="loss"),
        datagram(11, 3, "l2", "l1", "duplicated", head="LastVote\r\nballot: 3\r\n",
                 at=[at(11), at(11.5)]),
        datagram(12, 4, "l1", "l2", "forwarded", head=None, at=[at(12)]),  # before `head`
    ])
    return config


def test_the_relay_records_a_preview_of_each_datagram_and_it_reads_back(tmp_path: Path) -> None:
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    pa, pb = free_udp_ports(2)
    spec = {"priests": {"a": {"public": ["127.0.0.1", pa], "private": ["127.0.0.1", 40001]},
                        "b": {"public": ["127.0.0.1", pb], "private": list(sink.getsockname())}},
            "seed": 1, "log": str(tmp_path / "network.jsonl")}
    relay = Relay(spec)
    payloads = [NEXT.encode(), b'{"t":"x\\"}' + bytes(range(250, 256)), b"", b"z" * 100]
    try:
        for data in payloads:
            relay.route(data, ("127.0.0.1", 40001), "b")
        relay.route(b"\x00stranger", ("127.0.0.1", 40002), "b")
    finally:
        relay.close()
        sink.close()
    log = read_network_log(tmp_path)
    assert log is not None and log.skipped == 0
    heads = [d.head for d in log.datagrams]
    assert heads[:4] == [p[:HEAD_BYTES].decode("latin-1") for p in payloads]
    assert heads[4] == "\x00stranger"  # from no priest: recorded too
    assert printable(heads[0]) == "NextBallot / ballot: 3 / from: l1 /  / "
    assert printable(heads[1]) == '{"t":"x\\"}\\xfa\\xfb\\xfc\\xfd\\xfe\\xff'
    line = (tmp_path / "network.jsonl").read_text().splitlines()[0]
    assert line.isascii() and '"head":"NextBallot\\r\\nballot: 3' in line  # readable as is
    assert json.loads(preview(bytes(range(256)))).encode("latin-1") == bytes(range(HEAD_BYTES))


def test_network_log_reads_the_rotated_file_first_and_survives_a_torn_line(tmp_path: Path) -> None:
    write_lines(tmp_path / "network.jsonl.1", [datagram(1, 1, "l1", "l2", "forwarded",
                                                        at=[at(1)])])
    write_lines(tmp_path / "network.jsonl", [datagram(2, 2, "l2", "l1", "dropped", head=None,
                                                      reason="partition")],
                tail='{"t":3,"kind":"datagram","n":3,"src":"l1","dst":"l2","by')
    log = read_network_log(tmp_path)
    assert log is not None and log.skipped == 0  # the torn last line: one being written
    assert [(d.n, d.head) for d in log.datagrams] == [(1, NEXT), (2, None)]  # old: no head
    assert log.cut_at == at(1)  # it begins with a datagram: what came before was rotated away
    (tmp_path / "network.jsonl").write_text("not json\n" + (tmp_path / "network.jsonl").read_text())
    log = read_network_log(tmp_path, since=at(2))
    assert log is not None and log.skipped == 1  # a whole line that is no record
    assert [d.n for d in log.datagrams] == [2]  # the one read before `since` not kept


def test_unread_names_its_first_word_and_shows_one_line() -> None:
    assert Unread("l1", NEXT).word == "NextBallot"
    assert Unread("l1", NEXT).describe() == '"NextBallot / ballot: 3 / from: l1"'
    assert Unread("l1", '{"t":1}').word == "datagram"
    assert Unread("l1", "").describe() == "a datagram (no preview recorded)"
    assert Unread("l1", "GET /").describe() == '"GET /"'  # a '/' of its own is kept
    assert Unread("l1", "\u00aabc").word == "datagram"  # a method is ASCII


def test_foreign_datagrams_alike_in_their_first_bytes_are_not_folded() -> None:
    same = Unread("l1", NEXT)  # two datagrams may differ after the preview's end
    ours = NextBallot("l1", Ballot(1, "l1"))
    rows = collapse([Step(0.1, "send", "l1", "l2", same), Step(0.2, "send", "l1", "l2", same),
                     Step(0.3, "send", "l1", "l2", ours), Step(0.4, "send", "l1", "l2", ours)])
    assert [(r.time, r.note) for r in rows] == [(0.1, ""), (0.2, ""), (0.3, "sent 2 times")]


def test_a_foreign_cluster_is_drawn_from_its_datagrams(tmp_path: Path) -> None:
    config = load_config(str(write_foreign_run(tmp_path)))
    run, _ = judged_run(config, None)
    assert not any("rotated" in note for note in run.notes)  # the record begins with the relay
    assert [(m.src, m.dst, m.type, m.lost, len(m.received)) for m in run.messages] == [
        ("l1", "l2", "NextBallot", False, 1), ("l1", "l3", "NextBallot", True, 0),
        ("l2", "l1", "LastVote", False, 2), ("l1", "l2", "datagram", False, 1)]
    assert run.messages[1].why == "loss"
    rows = "\n".join(draw_run(config, None, everything=True))
    assert "foreign priests l1, l2, l3" in rows
    assert '"NextBallot / ballot: 3 / from: l1"' in rows and "lost" in rows
    assert "delivered twice" in rows
    assert "l1: decree.txt holds 7 (seen by the supervisor)" in rows
    assert "l2: decree.txt holds '', not a decree" in rows
    lines = rows.splitlines()
    (nb,) = [r for r in lines if "NextBallot" in r and "lost" not in r and r[:1] in " !"]
    assert "*" in nb and ">" in nb
    (lost,) = [r for r in lines if "  lost  (loss)" in r]
    assert "*-------x" in lost
    assert "d   |   |   l1: decree.txt holds 7" in rows  # on l1's lane


def test_the_report_of_a_foreign_cluster_keeps_the_markup(tmp_path: Path) -> None:
    config = load_config(str(write_foreign_run(tmp_path)))
    history = load_history(config)
    page = html.render(load_run(config, history), check(config, history, None), generated="now")
    parsed = Markup()
    parsed.feed(page)
    msgs = parsed.having("msg")
    assert [(a["data-from"], a["data-to"], a["data-type"], a["data-ballot"]) for a in msgs] == [
        ("l1", "l2", "NextBallot", ""), ("l1", "l3", "NextBallot", ""),
        ("l2", "l1", "LastVote", ""), ("l1", "l2", "datagram", "")]
    assert ["lost" in a["class"].split() for a in msgs] == [False, True, False, False]
    assert "dup" in msgs[2]["class"].split()
    assert "read by the relay" in page and "foreign priests" in page
    assert [a for _, _, a in parsed.elements if a.get("data-kind") == "decree"]


def test_in_a_mixed_cluster_our_own_pairs_are_drawn_from_events_only(tmp_path: Path) -> None:
    config = load_config(str(write_config(tmp_path, mixed=True)))
    data = tmp_path / "data"
    events = {"l1": [{"t": at(1), "priest": "l1", "pid": 1, "kind": "sent", "peer": "l2",
                      "msg": "NextBallot", "ballot": "1.l1"},
                     {"t": at(1.1), "priest": "l1", "pid": 1, "kind": "sent", "peer": "l3",
                      "msg": "NextBallot", "ballot": "1.l1"}],
              "l2": [{"t": at(2), "priest": "l2", "pid": 2, "kind": "received", "peer": "l1",
                      "msg": "NextBallot", "ballot": "1.l1"}]}
    for name, lines in events.items():
        (data / name).mkdir()
        write_lines(data / name / "events.jsonl", lines)
    write_lines(data / "harness.jsonl", [rec(0, "up", cluster="naive", priests=NAMES,
                                             supervisor=9, detached=True, network="relay")])
    write_lines(data / "network.jsonl", [
        datagram(1.05, 1, "l1", "l2", "forwarded", head='{"t":"NextBallot"', at=[at(1.05)]),
        datagram(1.15, 2, "l1", "l3", "forwarded", head='{"t":"NextBallot"', at=[at(1.15)]),
        datagram(3, 3, "l3", "l1", "forwarded", head="LastVote", at=[at(3)]),
    ])
    run, _ = judged_run(config, None)
    assert [(m.src, m.dst, type(m.message).__name__, m.lost) for m in run.messages] == [
        ("l1", "l2", "NextBallot", False), ("l1", "l3", "NextBallot", False),  # the relay sent it on
        ("l3", "l1", "Unread", False)]


@pytest.mark.parametrize(("extra", "why"), [("network: direct", r"network: direct"),
                                            ("transport: tcp", r"TCP, network: direct")])
def test_foreign_priests_without_the_relay_are_refused_in_one_line(tmp_path: Path, extra: str,
                                                                   why: str) -> None:
    config = load_config(str(write_foreign_run(tmp_path, extra=extra)))
    with pytest.raises(RunFilesError, match=why) as caught:
        judged_run(config, None)
    text = str(caught.value)
    assert "\n" not in text and "nothing saw their messages" in text
    assert "network: relay" in text and "UDP" in text


def test_foreign_priests_with_no_network_log_are_refused(tmp_path: Path) -> None:
    config = load_config(str(write_foreign_run(tmp_path)))
    (tmp_path / "data" / "network.jsonl").unlink()
    with pytest.raises(RunFilesError, match=r"holds no network\.jsonl"):
        judged_run(config, None)
