"""The run record: one PriestEvent type, its JSON both ways, and docs/formats.md held to it."""

from __future__ import annotations

import json
import re
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.messages import (
    MAX_ROUND,
    NO_VOTE,
    ZERO,
    Ballot,
    BeginBallot,
    EventKind,
    LastVote,
    LedgerState,
    NextBallot,
    Record,
    Success,
    Vote,
)
from node.record import (
    FIELDS,
    KINDS,
    LEDGER_FIELDS,
    PriestEvent,
    RecordError,
    message_event,
    recorded,
    started_event,
)

FORMATS = Path(__file__).resolve().parents[2] / "docs" / "formats.md"
HEADER = ("t", "priest", "pid", "kind")

# --- docs/formats.md and the code cannot drift ------------------------------------


def doc_table(heading: str) -> list[list[str]]:
    """The rows of the Markdown table under `heading`, as lists of cell texts."""
    text = FORMATS.read_text()
    start = text.index(f"\n{heading}\n")
    rows = []
    for line in text[start:].splitlines()[1:]:
        if not line.startswith("|"):
            if rows:
                break
            continue
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    assert len(rows) > 2, f"no table under {heading}"
    return rows[2:]  # without the header and the |---| line


def names(cell: str) -> tuple[str, ...]:
    return tuple(re.findall(r"`([a-z_]+)`", cell))


def test_the_documented_kinds_are_the_enum_and_their_fields_the_code_s() -> None:
    documented = {}
    for kind, source, always, when_set, never_null, _ in doc_table("### Event kinds"):
        (name,) = names(kind)
        documented[name] = (source, names(always), names(when_set), names(never_null))
    assert list(documented) == [k.value for k in KINDS]
    assert set(documented) == {k.value for k in EventKind}
    for kind, spec in KINDS.items():
        assert documented[kind.value] == (spec.source, spec.fields, spec.optional, spec.required), kind


# A value of each documented JSON type, and a value of another type.
SAMPLES: dict[str, tuple[object, object]] = {
    "int": (7, "7"),
    "string": ("x", 7),
    "ballot": ("3.alpha", [3, "alpha"]),
    "vote": ("2002@3.alpha", 2002),
    "list of names": (["alpha", "beta"], "alpha"),
    "bool": (True, 1),
    "object": ({"bad_tag": 2}, ["bad_tag"]),
}


def test_the_documented_fields_are_the_event_s_and_typed_as_documented() -> None:
    rows = doc_table("### Event fields")
    documented = {names(field)[0]: json_type for field, json_type, _ in rows}
    assert set(documented) == set(FIELDS)
    assert len(rows) == len(FIELDS)
    for name, json_type in documented.items():
        if name in HEADER:
            continue
        good, bad = SAMPLES[json_type]
        assert getattr(PriestEvent.from_json(line_with(name, good)), name) is not None, name
        with pytest.raises(RecordError) as caught:
            PriestEvent.from_json(line_with(name, bad))
        assert caught.value.field == name


def test_every_kind_has_its_fields_and_they_are_event_fields() -> None:
    assert set(KINDS) == set(EventKind)
    for spec in KINDS.values():
        carried = spec.fields + spec.optional
        assert set(carried) <= set(FIELDS) - set(HEADER)
        assert len(set(carried)) == len(carried) and set(spec.required) <= set(carried)
        assert spec.source in ("core", "runtime")
    core = {f.name for f in fields(Record)} - {"kind"}
    assert core <= set(FIELDS)  # what the core records, the event can carry
    assert set(LEDGER_FIELDS) == set(KINDS[EventKind.STARTED].fields) - {"decree", "text"}


def line_with(name: str, value: object) -> dict[str, Any]:
    return {"t": 1, "priest": "alpha", "pid": 9, "kind": "ignored", name: value}


# --- round trips ----------------------------------------------------------------------

B = Ballot(3, "alpha")
FULL: dict[str, object] = {
    "ballot": B, "decree": 2002, "peer": "beta", "text": "votes for decree 2002 in ballot 3.alpha",
    "msg": "LastVote", "vote": Vote(Ballot(2, "gamma"), 7), "last_tried": B,
    "next_bal": Ballot(4, "beta"), "prev_vote": Vote(B, 2002), "reason": "bad JSON",
    "addr": "127.0.0.1:9", "suppressed": 3, "quorum": ("alpha", "beta", "gamma"), "gave_up": True,
    "promised": Ballot(5, "beta"), "conflict": True, "detail": "not JSON: b'\\x00'",
    "dropped": (("bad_tag", 2), ("malformed", 1)), "wall": 1_764_400_000_000_000_000,
}


@pytest.mark.parametrize("kind", list(EventKind))
def test_every_kind_round_trips_with_all_its_fields(kind: EventKind) -> None:
    spec = KINDS[kind]
    event = PriestEvent(10**12, "alpha", kind, 4242, line=7,
                        **{f: FULL[f] for f in spec.fields + spec.optional})
    text = event.to_line()
    assert text.endswith("\n") and text.count("\n") == 1
    assert PriestEvent.from_line(text, 7) == event
    assert list(json.loads(text)) == [*HEADER, *spec.fields, *spec.optional]


@pytest.mark.parametrize("kind", list(EventKind))
def test_every_kind_round_trips_with_only_what_it_needs(kind: EventKind) -> None:
    spec = KINDS[kind]
    event = PriestEvent(5, "alpha", kind, None, **{f: FULL[f] for f in spec.required})
    obj = event.to_json()
    assert list(obj) == [*HEADER, *spec.fields]  # "always" fields are written, as null
    assert PriestEvent.from_json(obj) == event


def test_the_line_is_the_runtime_s_compact_format() -> None:
    event = PriestEvent(1234567890123, "alpha", EventKind.VOTED, 4242, B, 2002, "alpha",
                        "votes for decree 2002 in ballot 3.alpha")
    assert event.to_line() == (
        '{"t":1234567890123,"priest":"alpha","pid":4242,"kind":"voted","ballot":"3.alpha",'
        '"decree":2002,"peer":"alpha","text":"votes for decree 2002 in ballot 3.alpha"}\n')
    assert json.loads(event.to_line()) == json.loads(json.dumps(event.to_json()))


def test_the_line_number_is_not_written() -> None:
    event = PriestEvent(1, "alpha", EventKind.STOPPED, 3, text="asked to stop", line=12)
    assert "line" not in event.to_json()
    assert PriestEvent.from_json(event.to_json(), 12) == event
    assert PriestEvent.from_json(event.to_json()).line == 0


BALLOTS = st.just(ZERO) | st.builds(Ballot, st.integers(1, MAX_ROUND), st.sampled_from(["alpha", "b", "*"]))
VOTES = st.just(NO_VOTE) | st.builds(Vote, BALLOTS.filter(lambda b: not b.is_zero()),
                                     st.integers(-(2**63), 2**63 - 1))
TEXT = st.text(max_size=20)
VALUES: dict[str, st.SearchStrategy[Any]] = {
    "pid": st.integers(1, 2**22), "ballot": BALLOTS, "decree": st.integers(-(2**63), 2**63 - 1),
    "peer": TEXT, "text": TEXT, "msg": TEXT, "vote": VOTES, "last_tried": BALLOTS,
    "next_bal": BALLOTS, "prev_vote": VOTES, "reason": TEXT, "addr": TEXT,
    "suppressed": st.integers(0, 10**6), "quorum": st.lists(TEXT, max_size=5).map(tuple),
    "gave_up": st.booleans(), "promised": BALLOTS, "conflict": st.booleans(), "detail": TEXT,
    "wall": st.integers(0, 2**63), "dropped": st.dictionaries(TEXT, st.integers(0, 10**9), max_size=4).map(
        lambda d: tuple(sorted(d.items()))),
}


@st.composite
def events(draw: st.DrawFn) -> PriestEvent:
    kind = draw(st.sampled_from(list(EventKind)))
    spec = KINDS[kind]
    chosen = {f: draw(VALUES[f]) for f in spec.fields + spec.optional if draw(st.booleans())}
    chosen |= {f: draw(VALUES[f]) for f in spec.required}
    return PriestEvent(draw(st.integers(0, 2**63)), draw(TEXT), kind, draw(st.none() | VALUES["pid"]),
                       line=draw(st.integers(0, 10**6)), **chosen)


@settings(max_examples=300, deadline=None)
@given(events())
def test_any_event_round_trips(event: PriestEvent) -> None:
    assert PriestEvent.from_line(event.to_line(), event.line) == event
    assert len(PriestEvent.from_json(event.to_json())) == len(PriestEvent._fields)


# --- bad input: a typed error, naming the field ------------------------------------------

BAD: list[tuple[object, str, str | None]] = [
    ([1, 2], "not a JSON object", None),
    ({"priest": "alpha", "kind": "voted"}, "'t' is not an int", "t"),
    ({"t": True, "priest": "alpha", "kind": "stopped"}, "'t' is not an int", "t"),
    ({"t": 1, "priest": "alpha"}, "'kind' is not a string", "kind"),
    ({"t": 1, "priest": "alpha", "kind": "recovered"}, "unknown kind 'recovered'", "kind"),
    ({"t": 1, "kind": "stopped"}, "'priest' is not a string", "priest"),
    ({"t": 1, "priest": "alpha", "kind": "stopped", "when": 3}, "unknown field 'when'", "when"),
    ({"t": 1, "priest": "alpha", "kind": "stopped", "line": 3}, "unknown field 'line'", "line"),
    ({"t": 1, "priest": "alpha", "kind": "voted", "ballot": "1.a"}, "a voted event without a decree",
     "decree"),
    ({"t": 1, "priest": "alpha", "kind": "promised", "decree": None}, "a promised event without a ballot",
     "ballot"),
    ({"t": 1, "priest": "alpha", "kind": "voted", "ballot": "x.y", "decree": 1},
     "'ballot' is not a ballot: 'x.y'", "ballot"),
    ({"t": 1, "priest": "alpha", "kind": "voted", "ballot": "1.a", "decree": True},
     "'decree' is not an int: True", "decree"),
    ({"t": 1, "priest": "alpha", "kind": "sent", "peer": 3}, "'peer' is not a string: 3", "peer"),
    ({"t": 1, "priest": "alpha", "kind": "sent", "pid": "1"}, "'pid' is not an int", "pid"),
    ({"t": 1, "priest": "alpha", "kind": "received", "vote": "7@0"}, "'vote' is not a vote", "vote"),
    ({"t": 1, "priest": "alpha", "kind": "started", "next_bal": 4}, "'next_bal' is not a string",
     "next_bal"),
    ({"t": 1, "priest": "alpha", "kind": "started", "prev_vote": "07@3.alpha"}, "'prev_vote' is not a vote",
     "prev_vote"),
    ({"t": 1, "priest": "alpha", "kind": "proposed", "ballot": "1.a", "decree": 1, "quorum": [1]},
     "'quorum' is not a list of names", "quorum"),
    ({"t": 1, "priest": "alpha", "kind": "ignored", "conflict": "yes"}, "'conflict' is not a bool",
     "conflict"),
]


@pytest.mark.parametrize("obj, reason, field", BAD, ids=[r for _, r, _ in BAD])
def test_bad_input_is_a_record_error_naming_the_field(obj: object, reason: str, field: str | None) -> None:
    with pytest.raises(RecordError) as caught:
        PriestEvent.from_json(obj)
    assert reason in str(caught.value) and caught.value.field == field
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("text", ["not json", "", '{"t": 1', "[" * 100_000])
def test_a_line_that_is_not_json_is_a_record_error(text: str) -> None:
    with pytest.raises(RecordError, match="not a JSON line"):
        PriestEvent.from_line(text)


def test_null_is_unset_and_the_flaw_marker_is_a_ballot() -> None:
    event = PriestEvent.from_json({"t": 1, "priest": "a", "kind": "learned", "ballot": None,
                                   "decree": 3, "peer": None, "text": None})
    assert event.ballot is None and event.decree == 3
    assert PriestEvent.from_json({"t": 1, "priest": "a", "kind": "ballot_started",
                                  "ballot": "4.*"}).ballot == Ballot(4, "*")


# --- what the writers record ------------------------------------------------------------------


def test_a_record_effect_becomes_an_event_with_ballot_zero_as_null() -> None:
    r = Record(EventKind.LEARNED, "beta sent Success: the decree is 7", ZERO, 7)
    event = recorded(r, 5, "alpha", 42, 3)
    assert event == PriestEvent(5, "alpha", EventKind.LEARNED, 42, None, 7, None, r.text, line=3)
    assert event.to_json()["ballot"] is None
    p = Record(EventKind.PROPOSED, "proposes", B, 7, quorum=("a", "b"))
    assert recorded(p, 5, "alpha", 1).to_json()["quorum"] == ["a", "b"]
    ignored = Record(EventKind.IGNORED, "below", B, peer="b", promised=Ballot(4, "c"), conflict=None)
    assert recorded(ignored, 5, "alpha", 1).to_json()["promised"] == "4.c"


def test_message_events_carry_type_ballot_and_decree_or_vote() -> None:
    lv = message_event(EventKind.RECEIVED, LastVote("beta", B, Vote(Ballot(2, "g"), 7)), "beta", 1, "alpha", 2)
    assert lv.to_json() == {"t": 1, "priest": "alpha", "pid": 2, "kind": "received", "peer": "beta",
                            "msg": "LastVote", "ballot": "3.alpha", "vote": "7@2.g"}
    bb = message_event(EventKind.SENT, BeginBallot("alpha", B, 9), "gamma", 1, "alpha", 2).to_json()
    assert bb["decree"] == 9 and "vote" not in bb
    s = message_event(EventKind.RECEIVED, Success("beta", ZERO, 9), "beta", 1, "alpha", 2).to_json()
    assert s["ballot"] == "0" and s["decree"] == 9  # a message's ballot is written as it is
    nb = message_event(EventKind.SENT, NextBallot("alpha", B), "beta", 1, "alpha", 2).to_json()
    assert "decree" not in nb and "vote" not in nb


def test_started_carries_the_recovered_ledger() -> None:
    ledger = LedgerState(B, Ballot(4, "beta"), Vote(B, 2002))
    event = started_event(1, "alpha", 3, ledger, 2002, "listening on 127.0.0.1:7101")
    assert event.to_json() == {"t": 1, "priest": "alpha", "pid": 3, "kind": "started",
                               "last_tried": "3.alpha", "next_bal": "4.beta",
                               "prev_vote": "2002@3.alpha", "decree": 2002,
                               "text": "listening on 127.0.0.1:7101"}
    assert PriestEvent.from_line(event.to_line()) == event
