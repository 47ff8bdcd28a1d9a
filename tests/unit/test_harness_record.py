"""harness.jsonl's records (harness/record.py): round trips, old files, bad lines, the documented table."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from harness.record import (
    RECORDS,
    ChaosAction,
    ChaosEnd,
    ChaosStart,
    DecreeSeen,
    Down,
    Garbage,
    Kind,
    NetworkChange,
    PriestExited,
    PriestFiles,
    PriestStarted,
    Record,
    RecordError,
    RelayExited,
    RelayStarted,
    Result,
    Up,
    field_names,
)
from harness.supervisor.state import record_event

ROOT = Path(__file__).resolve().parents[2]

EXAMPLES: list[Record] = [
    Up(t=1, cluster="four", priests=("alpha", "beta"), supervisor=42, detached=True),
    PriestStarted(t=2, priest="alpha", pid=43),
    PriestExited(t=3, priest="alpha", pid=43, status=-9),
    ChaosAction(t=4, action="kill", priest="alpha", pid=43, outcome="killed (SIGKILL)"),
    ChaosAction(t=5, action="pause", priest="delta", pid=None, outcome="refused: not started",
                result=Result.REFUSED),
    Down(t=6, cluster="four", supervisor=42, stopped=("beta",)),
    ChaosStart(t=7, source="the random nemesis", seed=7, steps=12, duration=10.0, rate=1.5),
    ChaosEnd(t=8, source="the random nemesis", seed=7, done=11, refused=1, elapsed=9.87,
             outcome="refused"),
    NetworkChange(t=9, action="partition", value=[["alpha"], ["beta", "gamma"]], seed=None,
                  outcome="network now: partition alpha / beta, gamma",
                  faults={"groups": [["alpha"], ["beta", "gamma"]], "drop": 0.0,
                          "duplicate": 0.0, "delay": None}),
    NetworkChange(t=10, action="drop", value="2", seed=None, outcome="refused: not a probability",
                  result=Result.REFUSED),
    RelayStarted(t=11, pid=44, seed=99, restarts=0,
                 faults={"groups": [], "drop": 0.0, "duplicate": 0.0, "delay": None}),
    RelayExited(t=12, pid=44, status=-9),
    DecreeSeen(t=13, priest="l1", present=True, value=3),
    DecreeSeen(t=14, priest="l1", present=True, text=""),
    DecreeSeen(t=15, priest="l1", present=False),
    Garbage(t=16, priest="l2", transport="tcp", port=7301,
            inputs=[{"t": 16, "kind": "random bytes", "data": "\\x00\\xff"}], died_after=0),
    PriestFiles(t=17, priest="l1", created=("l1/decree.txt", "l2")),
]


def test_every_kind_has_one_record_type_and_an_example() -> None:
    assert set(RECORDS) == {k.value for k in Kind}
    assert {type(r).KIND for r in EXAMPLES} == set(Kind)


@pytest.mark.parametrize("record", EXAMPLES, ids=lambda r: type(r).__name__)
def test_each_record_round_trips_through_a_json_line(record: Record) -> None:
    obj = json.loads(json.dumps(record.to_json()))
    assert list(obj) == ["t", "kind", *field_names(type(record))]
    assert Record.from_json(obj) == record


def test_the_writer_appends_lines_the_reader_reads_back(tmp_path: Path) -> None:
    for record in EXAMPLES:
        record_event(tmp_path, record)
    lines = (tmp_path / "harness.jsonl").read_text().splitlines()
    assert [Record.from_json(json.loads(line)) for line in lines] == EXAMPLES


@pytest.mark.parametrize(("outcome", "result"), [
    ("killed (SIGKILL)", Result.DONE),
    ("already dead", Result.DONE),
    ("refused: cannot kill priest delta: it is not started", Result.REFUSED),
    ("failed: priest delta did not start: port taken", Result.FAILED),
])
def test_a_chaos_line_written_before_result_existed_still_reads(outcome: str,
                                                               result: Result) -> None:
    old = {"t": 9, "kind": "chaos", "action": "kill", "priest": "delta", "pid": None,
           "outcome": outcome}
    record = Record.from_json(old)
    assert isinstance(record, ChaosAction)
    assert record.result is result and record.applied == (result is Result.DONE)


def test_keys_a_reader_does_not_know_are_ignored() -> None:
    newer = {**EXAMPLES[1].to_json(), "cgroup": "/paxos"}
    assert Record.from_json(newer) == EXAMPLES[1]


@pytest.mark.parametrize(("obj", "reason"), [
    ([], "not a JSON object"),
    ({"kind": "up"}, "'t' is not an int"),
    ({"t": 1.5, "kind": "up"}, "'t' is not an int"),
    ({"t": 1, "kind": "reboot"}, "unknown kind 'reboot'"),
    ({"t": 1, "kind": "priest_started", "priest": "alpha"}, "no 'pid'"),
    ({"t": 1, "kind": "priest_started", "priest": "alpha", "pid": True}, "'pid' is not an int"),
    ({"t": 1, "kind": "priest_started", "priest": 3, "pid": 1}, "'priest' is not a string"),
    ({"t": 1, "kind": "down", "cluster": "c", "supervisor": 1, "stopped": "alpha"},
     "'stopped' is not a list of strings"),
    ({"t": 1, "kind": "chaos", "action": "kill", "priest": "a", "pid": 1, "outcome": "x",
      "result": "maybe"}, "'result' is 'maybe', not one of done, refused, failed"),
])
def test_what_is_not_a_record_says_why(obj: object, reason: str) -> None:
    with pytest.raises(RecordError, match=re.escape(reason)):
        Record.from_json(obj)


# --- docs/formats.md and the code cannot drift ------------------------------------


def documented_records() -> dict[str, tuple[str, ...]]:
    """kind -> field names, from the table of the harness.jsonl section of docs/formats.md."""
    text = (ROOT / "docs" / "formats.md").read_text()
    section = text.split("## `harness.jsonl`", 1)[1].split("\n## ", 1)[0]
    table: dict[str, tuple[str, ...]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 2 or not cells[0].startswith("`"):
            continue  # prose, the header or its rule
        # The field names are the quoted words outside parentheses (which explain values).
        names = re.sub(r"\([^)]*\)", "", cells[1])
        table[cells[0].strip("`")] = tuple(re.findall(r"`([a-z_]+)`", names))
    return table


def test_the_documented_kinds_and_fields_are_the_records() -> None:
    documented = documented_records()
    assert documented == {kind: field_names(cls) for kind, cls in RECORDS.items()}


def test_the_documented_results_are_the_enum() -> None:
    text = (ROOT / "docs" / "formats.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| `chaos` |"))
    explained = re.search(r"`result` \(([^)]*)\)", row)
    assert explained is not None
    assert re.findall(r"`(\w+)`", explained.group(1)) == [r.value for r in Result]
