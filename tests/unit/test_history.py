"""Reading a run's files: every unusable line or file is reported by name, never fatal."""

from __future__ import annotations

import json
import tempfile
import zlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.check.history import Recovered, load_history, read_decree, recovered_ledger
from harness.record import Kind, Up
from node import ledger
from node.config import Config, parse_config
from node.errors import LedgerError
from node.messages import NO_VOTE, ZERO, Ballot, Vote
from node.record import PriestEvent, RecordError


def config_for(data_dir: Path, names: tuple[str, ...] = ("alpha", "beta")) -> Config:
    priests = {n: {"port": 7201 + i} for i, n in enumerate(names)}
    return parse_config({"data_dir": str(data_dir), "priests": priests}, "c.yaml", "c")


def line(priest: str, t: int, kind: str, **fields: Any) -> str:
    return json.dumps({"t": t, "priest": priest, "pid": 1, "kind": kind, **fields}) + "\n"


def write(data_dir: Path, priest: str, text: str | bytes, name: str = "events.jsonl") -> Path:
    d = data_dir / priest
    d.mkdir(parents=True, exist_ok=True)
    path = d / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def test_events_are_decoded_and_sorted_by_time(tmp_path: Path) -> None:
    write(tmp_path, "alpha", line("alpha", 30, "voted", ballot="2.beta", decree=7, peer="beta")
          + line("alpha", 10, "started", decree=None)
          + line("alpha", 20, "promised", ballot="2.beta", peer="beta"))
    write(tmp_path, "beta", line("beta", 15, "ballot_started", ballot="2.beta"))
    h = load_history(config_for(tmp_path))
    assert h.problems == []
    alpha = h.events["alpha"]
    assert [e.t for e in alpha] == [10, 20, 30]
    assert [e.line for e in alpha] == [2, 3, 1]
    assert alpha[2].ballot == Ballot(2, "beta") and alpha[2].decree == 7 and alpha[2].peer == "beta"
    assert alpha[2].pid == 1
    assert [e.t for e in h.all_events()] == [10, 15, 20, 30]
    assert h.first_time() == 10 and h.event_count() == 4


def test_ties_keep_file_order(tmp_path: Path) -> None:
    write(tmp_path, "alpha", line("alpha", 5, "promised", ballot="1.beta")
          + line("alpha", 5, "voted", ballot="1.beta", decree=1))
    h = load_history(config_for(tmp_path, ("alpha",)))
    assert [e.kind for e in h.events["alpha"]] == ["promised", "voted"]


def test_ballot_zero_and_the_flaw_marker(tmp_path: Path) -> None:
    write(tmp_path, "alpha", line("alpha", 1, "ballot_started", ballot="4.*")
          + line("alpha", 2, "received", ballot="0", decree=3, msg="Success")
          + line("alpha", 3, "learned", ballot=None, decree=3))
    h = load_history(config_for(tmp_path, ("alpha",)))
    assert h.problems == []
    assert [e.ballot for e in h.events["alpha"]] == [Ballot(4, "*"), ZERO, None]


BAD_LINES = [
    ("not json\n", "not a JSON line"),
    ("[1, 2]\n", "not a JSON object"),
    ('{"t": "soon", "priest": "alpha", "kind": "voted"}\n', "'t' is not an int"),
    ('{"t": 1, "priest": "alpha"}\n', "'kind' is not a string"),
    ('{"t": 1, "priest": "beta", "kind": "started"}\n', "not 'alpha'"),
    ('{"t": 1, "priest": "alpha", "kind": "voted", "ballot": "x.y", "decree": 1}\n',
     "not a ballot"),
    ('{"t": 1, "priest": "alpha", "kind": "voted", "ballot": [1, "a"], "decree": 1}\n',
     "not a string"),
    ('{"t": 1, "priest": "alpha", "kind": "voted", "ballot": "1.a", "decree": true}\n',
     "'decree' is not an int"),
    ('{"t": 1, "priest": "alpha", "kind": "voted", "ballot": "1.a"}\n', "without a decree"),
    ('{"t": 1, "priest": "alpha", "kind": "promised", "decree": null}\n', "without a ballot"),
    ('{"t": 1, "priest": "alpha", "kind": "sent", "peer": 3}\n', "'peer' is not a string"),
    ('{"t": 1, "priest": "alpha", "kind": "started"} {"t": 2}\n', "not a JSON line"),
    ('{"t": 1, "priest": "alpha", "kind": "sent", "x": [[[[[[[[[[[[[[[[[[[[[\n', "not a JSON line"),
    ("[" * 100_000 + "\n", "not a JSON line"),
]


@pytest.mark.parametrize("bad, reason", BAD_LINES, ids=[r for _, r in BAD_LINES])
def test_a_bad_line_is_reported_and_skipped(tmp_path: Path, bad: str, reason: str) -> None:
    path = write(tmp_path, "alpha", line("alpha", 1, "started") + bad + line("alpha", 2, "stopped"))
    h = load_history(config_for(tmp_path, ("alpha",)))
    (problem,) = h.problems
    assert problem.path == str(path) and problem.line == 2
    assert reason in problem.reason
    assert [e.kind for e in h.events["alpha"]] == ["started", "stopped"]
    assert f"{path}:2: " in str(problem)


def test_blank_and_padded_lines(tmp_path: Path) -> None:
    write(tmp_path, "alpha", "\n" + "  " + line("alpha", 1, "started") + "\n")
    h = load_history(config_for(tmp_path, ("alpha",)))
    assert h.problems == [] and [e.line for e in h.events["alpha"]] == [2]


def test_torn_last_line(tmp_path: Path) -> None:
    path = write(tmp_path, "alpha", line("alpha", 1, "started") + line("alpha", 2, "stopped")
                 + '{"t": 3, "priest": "alpha", "kind": "vo')
    h = load_history(config_for(tmp_path, ("alpha",)))
    (problem,) = h.problems
    assert (problem.path, problem.line) == (str(path), 3) and "torn" in problem.reason
    assert len(h.events["alpha"]) == 2


def test_invalid_utf8_costs_only_its_line(tmp_path: Path) -> None:
    raw = (line("alpha", 1, "started") + "\n").encode() + b'{"t": 2, "\xff"}\n' \
        + line("alpha", 3, "stopped").encode()
    write(tmp_path, "alpha", raw)
    h = load_history(config_for(tmp_path, ("alpha",)))
    (problem,) = h.problems
    assert problem.line == 3 and "UTF-8" in problem.reason
    assert [e.line for e in h.events["alpha"]] == [1, 4]


def test_missing_directory_and_missing_events_file(tmp_path: Path) -> None:
    (tmp_path / "beta").mkdir()
    h = load_history(config_for(tmp_path))
    reasons = {Path(p.path).name: p.reason for p in h.problems}
    assert "no directory" in reasons["alpha"]
    assert "missing" in reasons["events.jsonl"]
    assert h.events == {"alpha": [], "beta": []}
    assert not h.decrees["alpha"].present and not h.decrees["beta"].present


@pytest.mark.parametrize("text, value", [(b"42\n", 42), (b"-7\n", -7), (b"0\n", 0),
                                         (b"9223372036854775807\n", 2**63 - 1),
                                         (b"-9223372036854775808\n", -(2**63))])
def test_decree_file_good(tmp_path: Path, text: bytes, value: int) -> None:
    path = tmp_path / "decree.txt"
    path.write_bytes(text)
    f = read_decree(path)
    assert f.present and f.value == value and f.problem is None


BAD_DECREES = [b"", b"\n", b"forty\n", b"4 2\n", b"42\n\n", b"+42\n", b"\xff\xfe", b"4.2\n",
               b"\xd9\xa3\n", b"0", b"42", b"9223372036854775808\n", b"-9223372036854775809\n"]


@pytest.mark.parametrize("text", BAD_DECREES)
def test_decree_file_bad(tmp_path: Path, text: bytes) -> None:
    path = tmp_path / "decree.txt"
    path.write_bytes(text)
    f = read_decree(path)
    assert f.present and f.value is None and f.problem
    with pytest.raises(LedgerError):  # the priest refuses exactly what the checker reports
        ledger.read_decree(path)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=24), st.integers().map(lambda n: f"{n}\n".encode()),
                 st.integers().map(lambda n: str(n).encode())))
def test_decree_file_checker_agrees_with_priest(text: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "decree.txt"
        path.write_bytes(text)
        f = read_decree(path)
        try:
            value = ledger.read_decree(path)
        except LedgerError:
            assert f.present and f.value is None and f.problem
        else:
            assert f.present and f.value == value and f.problem is None


def test_decree_file_absent_or_unreadable(tmp_path: Path) -> None:
    assert not read_decree(tmp_path / "decree.txt").present
    (tmp_path / "decree.txt").mkdir()  # a directory where the file should be
    f = read_decree(tmp_path / "decree.txt")
    assert f.present and f.value is None and "cannot read" in (f.problem or "")


def test_harness_events(tmp_path: Path) -> None:
    config = config_for(tmp_path, ("alpha",))
    assert load_history(config).harness == []
    down = {"t": 9, "kind": "down", "cluster": "c", "supervisor": 1, "stopped": ["alpha"]}
    up = {"t": 3, "kind": "up", "cluster": "c", "priests": ["alpha"], "supervisor": 1,
          "detached": True}
    (tmp_path / "harness.jsonl").write_text(
        json.dumps(down) + "\n" + "junk\n" + json.dumps(up) + "\n"
        + json.dumps({"kind": "chaos"}) + "\n" + json.dumps({"t": 4, "kind": "up"}) + "\n")
    h = load_history(config)
    assert [r.KIND for r in h.harness] == [Kind.UP, Kind.DOWN]
    assert h.harness[0] == Up(t=3, cluster="c", priests=("alpha",), supervisor=1, detached=True)
    harness_problems = [(p.line, p.reason) for p in h.problems if p.path.endswith("harness.jsonl")]
    assert harness_problems == [
        (2, "not a JSON line: 'junk'"),
        (4, "not a harness record: 't' is not an int"),
        (5, "not a harness record: no 'cluster' (every up record has one)")]


def test_started_carries_the_recovered_ledger(tmp_path: Path) -> None:
    write(tmp_path, "alpha", line("alpha", 1, "started", last_tried="0", next_bal="0",
                                  prev_vote="none", decree=None)
          + line("alpha", 2, "started", last_tried="3.alpha", next_bal="4.beta",
                 prev_vote="-7@3.alpha", decree=None)
          + line("alpha", 3, "started", decree=5))
    h = load_history(config_for(tmp_path, ("alpha",)))
    assert h.problems == []
    first, second, third = h.events["alpha"]
    assert recovered_ledger(first) is None and recovered_ledger(third) is None
    assert recovered_ledger(second) == Recovered(Ballot(4, "beta"), Vote(Ballot(3, "alpha"), -7))


@pytest.mark.parametrize("fields, key", [
    ({"next_bal": "4.beta", "prev_vote": "7@0"}, "prev_vote"),
    ({"next_bal": "4.beta", "prev_vote": "7"}, "prev_vote"),
    ({"next_bal": "4.beta", "prev_vote": "x@3.alpha"}, "prev_vote"),
    ({"next_bal": "4.beta", "prev_vote": "07@3.alpha"}, "prev_vote"),
    ({"next_bal": "4.beta", "prev_vote": "-0@3.alpha"}, "prev_vote"),
    ({"next_bal": "4.beta", "prev_vote": "7@03.alpha"}, "prev_vote"),
    ({"next_bal": "4.beta", "prev_vote": "9223372036854775808@3.alpha"}, "prev_vote"),
    ({"next_bal": "4.beta", "prev_vote": 7}, "prev_vote"),
    ({"next_bal": "four", "prev_vote": "none"}, "next_bal"),
    ({"next_bal": 4, "prev_vote": "none"}, "next_bal"),
])
def test_malformed_recovered_ledger_is_reported_event_kept(tmp_path: Path, fields: dict[str, Any],
                                                           key: str) -> None:
    write(tmp_path, "alpha", line("alpha", 1, "started", decree=3, **fields))
    h = load_history(config_for(tmp_path, ("alpha",)))
    (p,) = h.problems
    assert p.line == 1 and key in p.reason and "ignored" in p.reason
    (e,) = h.events["alpha"]
    assert e.kind == "started" and e.decree == 3
    assert recovered_ledger(e) is None  # ignored: read as the initial ledger


def test_no_vote_recovered_is_the_empty_vote(tmp_path: Path) -> None:
    write(tmp_path, "alpha", line("alpha", 1, "started", next_bal="2.beta", prev_vote="none"))
    (e,) = load_history(config_for(tmp_path, ("alpha",))).events["alpha"]
    assert recovered_ledger(e) == Recovered(Ballot(2, "beta"), NO_VOTE)


def _ledger_reads_vote(text: str) -> Vote | None:
    """The vote a ledger record with prev_vote=text holds, or None if the ledger refuses it."""
    body = f"v1 last_tried=0 next_bal=0 prev_vote={text}"
    crc = f"{zlib.crc32(body.encode()) & 0xFFFFFFFF:08x}"
    try:
        return ledger.decode_record(f"{body} crc={crc}").prev_vote
    except ValueError:
        return None


VOTE_TEXT = st.one_of(
    st.text(alphabet="0123456789-@.abn", max_size=14),
    st.builds(lambda d, r, p: f"{d}@{r}.{p}", st.integers(-(2**64), 2**64),
              st.integers(-1, 2**63), st.sampled_from(["alpha", "b", "*"])),
    st.just("none"),
)


@settings(max_examples=400, deadline=None)
@given(VOTE_TEXT)
def test_checker_reads_votes_as_the_ledger_does(text: str) -> None:
    expected = _ledger_reads_vote(text)
    try:
        got: Vote | None = PriestEvent.from_json({"t": 1, "priest": "a", "kind": "started",
                                                  "prev_vote": text}).prev_vote
    except RecordError:
        got = None
    assert got == expected
