"""The ledger: records, recovery after a torn append, corruption, decree.txt, the lock."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.errors import LedgerError, StartupError
from node.ledger import (
    COMPACT_AFTER,
    DECREE,
    HEADER,
    LEDGER,
    Ledger,
    atomic_write_text,
    decode_learned,
    decode_record,
    encode_learned,
    encode_record,
    parse_decree,
    parse_decree_text,
    parse_vote,
    read_ledger,
)
from node.messages import (
    MAX_DECREE,
    MAX_ROUND,
    MIN_DECREE,
    NO_VOTE,
    ZERO,
    Ballot,
    LedgerState,
    ProtocolBug,
    Vote,
)

NAMES = st.from_regex(r"[a-z][a-z0-9_-]{0,31}", fullmatch=True) | st.just("*")
BALLOTS = st.just(ZERO) | st.builds(Ballot, st.integers(1, MAX_ROUND), NAMES)
VOTES = st.just(NO_VOTE) | st.builds(
    Vote, st.builds(Ballot, st.integers(1, MAX_ROUND), NAMES), st.integers(MIN_DECREE, MAX_DECREE))
STATES = st.builds(LedgerState, BALLOTS, BALLOTS, VOTES)


def state(i: int) -> LedgerState:
    """A distinct, non-trivial state for each i."""
    return LedgerState(Ballot(i, "alpha"), Ballot(i + 1, "beta"),
                       Vote(Ballot(i, "gamma"), 1000 - i))


def record_line(s: LedgerState) -> bytes:
    return (encode_record(s) + "\n").encode()


def write_log(directory: Path, body: bytes) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LEDGER
    path.write_bytes(body)
    return path


# --- records -----------------------------------------------------------------


def test_record_matches_documented_format() -> None:
    s = LedgerState(Ballot(3, "alpha"), Ballot(4, "beta"), Vote(Ballot(3, "alpha"), 2002))
    line = encode_record(s)
    text, crc = line.split(" crc=")
    assert text == "v1 last_tried=3.alpha next_bal=4.beta prev_vote=2002@3.alpha"
    assert int(crc, 16) == zlib.crc32(text.encode())
    empty = encode_record(LedgerState())
    assert empty.startswith("v1 last_tried=0 next_bal=0 prev_vote=none crc=")


@given(STATES)
def test_encode_decode_round_trip(s: LedgerState) -> None:
    assert decode_record(encode_record(s)) == s


@given(STATES, st.integers(0, 200), st.characters(codec="ascii"))
def test_any_single_character_change_is_rejected(s: LedgerState, pos: int, ch: str) -> None:
    line = encode_record(s)
    pos %= len(line)
    if line[pos] == ch:
        return
    damaged = line[:pos] + ch + line[pos + 1:]
    with pytest.raises(ValueError):
        decode_record(damaged)


@pytest.mark.parametrize("line", [
    "v1 last_tried=01.alpha next_bal=0 prev_vote=none",
    "v1 last_tried=0 next_bal=0 prev_vote=5@0",
    "v1 last_tried=0 next_bal=0 prev_vote=+5@1.alpha",
    "v1 last_tried=0 next_bal=0 prev_vote=99999999999999999999@1.alpha",
    "v1 last_tried=0  next_bal=0 prev_vote=none",
    "v2 last_tried=0 next_bal=0 prev_vote=none",
])
def test_non_canonical_records_with_a_good_crc_are_rejected(line: str) -> None:
    with pytest.raises(ValueError):
        decode_record(f"{line} crc={zlib.crc32(line.encode()):08x}")


# --- persist and recover -----------------------------------------------------------


def test_fresh_directory_has_header_and_initial_state(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "data" / "alpha") as ledger:
        assert ledger.state == LedgerState()
        assert ledger.decree is None
    assert (tmp_path / "data" / "alpha" / LEDGER).read_text() == HEADER
    assert read_ledger(tmp_path / "data" / "alpha") == (LedgerState(), None)


def test_round_trip_of_many_states_recovers_the_last(tmp_path: Path) -> None:
    for i in range(1, 60):
        with Ledger.open(tmp_path) as ledger:
            assert ledger.state == (state(i - 1) if i > 1 else LedgerState())
            ledger.persist(state(i))
            ledger.persist(state(i + 1000))
            ledger.persist(state(i))
        assert read_ledger(tmp_path)[0] == state(i)


def test_each_record_is_on_disk_when_persist_returns(tmp_path: Path) -> None:
    with Ledger.open(tmp_path) as ledger:
        for i in range(1, 20):
            ledger.persist(state(i))
            assert read_ledger(tmp_path)[0] == state(i)


@pytest.mark.parametrize("tail", [
    b"v1 last_tried=9.alpha next_bal=9",                       # no newline
    record_line(state(9))[:-1],                                 # whole record but no newline
    record_line(state(9)).replace(b"9.alpha", b"8.alpha", 1),   # bad crc
    b"\x00\x00\x00\x00\x00\x00",                                # zeros after a power cut
    b"\xff\xfe garbage\n",
])
def test_torn_final_line_is_dropped_and_truncated(tmp_path: Path, tail: bytes) -> None:
    good = HEADER.encode() + record_line(state(1)) + record_line(state(2))
    path = write_log(tmp_path, good + tail)
    assert read_ledger(tmp_path)[0] == state(2)
    assert path.read_bytes() == good + tail  # read_ledger repairs nothing
    with Ledger.open(tmp_path) as ledger:
        assert ledger.state == state(2)
        assert path.read_bytes() == good
        ledger.persist(state(3))
    assert path.read_bytes() == good + record_line(state(3))
    assert read_ledger(tmp_path)[0] == state(3)


def test_torn_first_record_leaves_initial_state(tmp_path: Path) -> None:
    path = write_log(tmp_path, HEADER.encode() + record_line(state(1))[:10])
    with Ledger.open(tmp_path) as ledger:
        assert ledger.state == LedgerState()
    assert path.read_text() == HEADER


@pytest.mark.parametrize("bad, line", [
    (record_line(state(2)).replace(b"2.alpha", b"7.alpha", 1), 3),
    (b"\n", 3),
    (b"hello\n", 3),
])
def test_bad_record_before_the_last_is_corruption(tmp_path: Path, bad: bytes, line: int) -> None:
    body = HEADER.encode() + record_line(state(1)) + bad + record_line(state(3))
    path = write_log(tmp_path, body)
    for attempt in (lambda: read_ledger(tmp_path), lambda: Ledger.open(tmp_path)):
        with pytest.raises(LedgerError, match=rf"{LEDGER}: line {line}: bad record"):
            attempt()
    assert path.read_bytes() == body  # never silently reset


def test_bad_line_followed_by_a_torn_tail_is_corruption(tmp_path: Path) -> None:
    bad = record_line(state(2)).replace(b"beta", b"bet4", 1)
    write_log(tmp_path, HEADER.encode() + bad + record_line(state(3))[:5])
    with pytest.raises(LedgerError, match="line 2"):
        Ledger.open(tmp_path)


@pytest.mark.parametrize("body", [
    b"",                                           # empty file
    record_line(state(1)),                         # missing header
    HEADER.encode()[:-1],                          # header without its newline
    b"# paxos-harness ledger v2\n" + record_line(state(1)),
    b"\x89PNG\r\n\x1a\n\x00\x00garbage" * 20,      # garbage
])
def test_empty_headerless_or_garbage_file_is_corruption(tmp_path: Path, body: bytes) -> None:
    write_log(tmp_path, body)
    with pytest.raises(LedgerError, match=rf"{LEDGER}: line 1"):
        Ledger.open(tmp_path)
    with pytest.raises(LedgerError):
        read_ledger(tmp_path)


def test_compaction_keeps_the_state_and_shrinks_the_file(tmp_path: Path) -> None:
    path = tmp_path / LEDGER
    with Ledger.open(tmp_path, sync=False) as ledger:
        for i in range(1, COMPACT_AFTER + 1):
            ledger.persist(state(i))
        big = path.stat().st_size
        assert path.read_text().count("\n") == COMPACT_AFTER + 1
        ledger.persist(state(5000))
        assert path.stat().st_size < big / 100
        assert path.read_bytes() == HEADER.encode() + record_line(state(5000))
        ledger.persist(state(5001))  # appends to the new file, not the replaced one
    assert read_ledger(tmp_path)[0] == state(5001)
    assert path.read_text().count("\n") == 3


def test_compaction_counts_records_recovered_on_open(tmp_path: Path) -> None:
    body = HEADER.encode() + b"".join(record_line(state(i)) for i in range(1, COMPACT_AFTER + 1))
    path = write_log(tmp_path, body)
    with Ledger.open(tmp_path, sync=False) as ledger:
        ledger.persist(state(7))
    assert path.read_bytes() == HEADER.encode() + record_line(state(7))


def test_compaction_threshold_can_be_lowered(tmp_path: Path) -> None:
    path = tmp_path / LEDGER
    with Ledger.open(tmp_path, compact_after=2) as ledger:
        for i in range(1, 8):
            ledger.persist(state(i))
            assert read_ledger(tmp_path)[0] == state(i)
            assert path.read_text().count("\n") <= 3
    assert path.read_bytes() == HEADER.encode() + record_line(state(7))


def test_unrecordable_state_is_refused_before_writing(tmp_path: Path) -> None:
    with Ledger.open(tmp_path) as ledger:
        with pytest.raises(ProtocolBug):
            ledger.persist(LedgerState(Ballot(1, "two words")))
        with pytest.raises(ProtocolBug):
            ledger.persist(LedgerState(prev_vote=Vote(ZERO, 5)))
    assert (tmp_path / LEDGER).read_text() == HEADER


def test_persist_after_close_is_a_bug(tmp_path: Path) -> None:
    ledger = Ledger.open(tmp_path)
    ledger.close()
    ledger.close()
    with pytest.raises(ProtocolBug):
        ledger.persist(state(1))


def test_leftover_temp_files_are_removed_on_open(tmp_path: Path) -> None:
    (tmp_path / "decree.txt.tmp1a2b").write_text("12")
    (tmp_path / "ledger.log.tmpxyz").write_text("")
    (tmp_path / "notes.txt").write_text("kept\n")
    with Ledger.open(tmp_path) as ledger:
        assert ledger.decree is None
    assert sorted(p.name for p in tmp_path.iterdir()) == [LEDGER, "notes.txt", "priest.lock"]


# --- decree.txt ---------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "abc\n", "12", "1 2\n", "+12\n", " 12\n", "12\n\n",
                                  "１２\n", "1_000\n", "9223372036854775808\n", "012\n",
                                  "-0\n", "-012\n", "00\n", "12 \n", "12\r\n"])
def test_malformed_decree_file_is_an_error_naming_it(tmp_path: Path, text: str) -> None:
    (tmp_path / DECREE).write_text(text)
    with pytest.raises(LedgerError, match=DECREE):
        Ledger.open(tmp_path)
    with pytest.raises(LedgerError, match=DECREE):
        read_ledger(tmp_path)


@pytest.mark.parametrize("decree", [0, 7, -7, MAX_DECREE, MIN_DECREE])
def test_decree_is_written_once_and_recovered(tmp_path: Path, decree: int) -> None:
    with Ledger.open(tmp_path) as ledger:
        ledger.write_decree(decree)
        ledger.write_decree(decree)  # the same decree again: nothing happens
        assert ledger.decree == decree
    assert (tmp_path / DECREE).read_text() == f"{decree}\n"
    with Ledger.open(tmp_path) as ledger:
        assert ledger.decree == decree
        ledger.write_decree(decree)
        with pytest.raises(ProtocolBug):
            ledger.write_decree(decree + 1 if decree < MAX_DECREE else 0)
    assert read_ledger(tmp_path)[1] == decree
    assert sorted(p.name for p in tmp_path.iterdir()) == [DECREE, LEDGER, "priest.lock"]


def test_a_learned_decree_is_a_ledger_record_and_decree_txt_its_view(tmp_path: Path) -> None:
    with Ledger.open(tmp_path) as ledger:
        ledger.persist(state(3))
        ledger.write_decree(-42)
    assert (tmp_path / LEDGER).read_text().splitlines()[1:] == [encode_record(state(3)),
                                                                 encode_learned(-42)]
    assert decode_learned(encode_learned(-42)) == -42
    (tmp_path / DECREE).unlink()  # a crash between the record and the rename
    assert read_ledger(tmp_path) == (state(3), -42)
    with Ledger.open(tmp_path) as ledger:
        assert (ledger.state, ledger.decree) == (state(3), -42)
    assert (tmp_path / DECREE).read_text() == "-42\n"  # rebuilt from the ledger


@pytest.mark.parametrize("text", ["", "\0\0\0", "4"])
def test_a_decree_txt_a_power_cut_tore_is_rebuilt_from_the_ledger(tmp_path: Path,
                                                                   text: str) -> None:
    with Ledger.open(tmp_path) as ledger:
        ledger.write_decree(41)
    (tmp_path / DECREE).write_text(text)
    with Ledger.open(tmp_path) as ledger:
        assert ledger.decree == 41
    assert (tmp_path / DECREE).read_text() == "41\n"


def test_a_decree_txt_other_than_the_ledgers_decree_is_corruption(tmp_path: Path) -> None:
    with Ledger.open(tmp_path) as ledger:
        ledger.write_decree(41)
    (tmp_path / DECREE).write_text("42\n")
    with pytest.raises(LedgerError, match=r"holds 42, but .* learned 41"):
        Ledger.open(tmp_path)


def test_a_torn_learned_record_is_dropped_and_a_damaged_one_before_the_end_is_corruption(
        tmp_path: Path) -> None:
    torn = encode_learned(41)[:-3]
    write_log(tmp_path, HEADER.encode() + record_line(state(1)) + torn.encode() + b"\n")
    with Ledger.open(tmp_path) as ledger:
        assert (ledger.state, ledger.decree) == (state(1), None)
    write_log(tmp_path, HEADER.encode() + torn.encode() + b"\n" + record_line(state(1)))
    with pytest.raises(LedgerError, match="line 2"):
        Ledger.open(tmp_path)


def test_two_learned_decrees_in_one_ledger_are_corruption(tmp_path: Path) -> None:
    write_log(tmp_path, HEADER.encode() + b"".join(
        (encode_learned(d) + "\n").encode() for d in (1, 2, 3)))
    with pytest.raises(LedgerError, match="a decree never changes"):
        Ledger.open(tmp_path)


def test_compaction_keeps_the_learned_decree(tmp_path: Path) -> None:
    with Ledger.open(tmp_path, compact_after=2) as ledger:
        ledger.write_decree(9)
        for i in range(1, 6):
            ledger.persist(state(i))
    (tmp_path / DECREE).unlink()
    assert (tmp_path / LEDGER).read_text().count("\n") <= 4
    with Ledger.open(tmp_path) as ledger:
        assert (ledger.state, ledger.decree) == (state(5), 9)


def test_atomic_write_text_replaces_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    atomic_write_text(target, "old\n" * 1000)
    atomic_write_text(target, "new\n")
    assert target.read_text() == "new\n"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


# --- the lock -----------------------------------------------------------------------


def test_second_open_on_the_same_directory_is_refused(tmp_path: Path) -> None:
    first = Ledger.open(tmp_path)
    try:
        with pytest.raises(StartupError, match="another priest is already running"):
            Ledger.open(tmp_path)
        assert read_ledger(tmp_path) == (LedgerState(), None)  # readers need no lock
    finally:
        first.close()
    with Ledger.open(tmp_path) as again:  # released by close
        assert again.state == LedgerState()


def test_refused_open_does_not_touch_the_files(tmp_path: Path) -> None:
    with Ledger.open(tmp_path) as first:
        first.persist(state(1))
        (tmp_path / "decree.txt.tmp99").write_text("4")
        with pytest.raises(StartupError):
            Ledger.open(tmp_path)
        assert (tmp_path / "decree.txt.tmp99").exists()
        first.persist(state(2))
    assert read_ledger(tmp_path)[0] == state(2)


def test_open_without_lock_is_allowed_twice(tmp_path: Path) -> None:
    with Ledger.open(tmp_path, lock=False), Ledger.open(tmp_path, lock=False) as second:
        assert second.state == LedgerState()


# --- a directory or file the priest cannot use ---------------------------------


def _in_the_way(tmp_path: Path, what: str) -> tuple[Path, str]:
    """A priest directory made unusable by `what`; (directory, the path the error names)."""
    directory = tmp_path / "data" / "alpha"
    if what == "data_dir is a file":
        (tmp_path / "data").write_text("x")
        return directory, str(tmp_path / "data")
    if what == "priest dir is a file":
        directory.parent.mkdir()
        directory.write_text("x")
        return directory, str(directory)
    directory.mkdir(parents=True)
    (directory / what).mkdir()  # a directory where the file belongs
    return directory, str(directory / what)


@pytest.mark.parametrize("what", ["data_dir is a file", "priest dir is a file", LEDGER, DECREE,
                                  "priest.lock"])
def test_unusable_directory_is_one_line_naming_the_path(tmp_path: Path, what: str) -> None:
    directory, named = _in_the_way(tmp_path, what)
    with pytest.raises(StartupError) as err:
        Ledger.open(directory)
    message = str(err.value)
    assert "\n" not in message and named in message and "cannot use" in message


def test_unusable_ledger_releases_the_lock(tmp_path: Path) -> None:
    (tmp_path / LEDGER).mkdir()
    with pytest.raises(StartupError):
        Ledger.open(tmp_path)
    (tmp_path / LEDGER).rmdir()
    with Ledger.open(tmp_path) as ledger:  # the failed open left no lock behind
        assert ledger.state == LedgerState()


@pytest.mark.parametrize("text", ["0", "7", "-7", "1001", "9223372036854775807",
                                  "-9223372036854775808"])
def test_a_decree_is_spelled_one_way_in_decree_txt_and_in_a_vote(text: str) -> None:
    assert parse_decree_text(text) == int(text) and str(int(text)) == text
    assert parse_decree(f"{text}\n".encode()) == int(text)
    assert parse_vote(f"{text}@1.alpha").decree == int(text)


@pytest.mark.parametrize("text", ["01001", "+1001", "-0", "00", " 1", "1e3", "0x10", ""])
def test_any_other_spelling_of_a_decree_is_refused_by_both(text: str) -> None:
    with pytest.raises(ValueError):
        parse_decree_text(text)
    with pytest.raises(ValueError):
        parse_decree(f"{text}\n".encode())
    with pytest.raises(ValueError):
        parse_vote(f"{text}@1.alpha")


@pytest.mark.parametrize("text", ["none", "5@1.alpha", "-9223372036854775808@281474976710655.b"])
def test_parse_vote_reads_what_the_ledger_writes(text: str) -> None:
    assert str(parse_vote(text)) == text


@pytest.mark.parametrize("text", ["", "5", "5@0", "05@1.alpha", "-0@1.alpha", "5@01.alpha",
                                  "5@1.", "x@1.alpha", "9223372036854775808@1.alpha", "None"])
def test_parse_vote_refuses_anything_else(text: str) -> None:
    with pytest.raises(ValueError):
        parse_vote(text)


def _whole_record(text: str) -> bytes:
    """A record with a valid CRC, whatever it holds (as an older version could write)."""
    return f"{text} crc={zlib.crc32(text.encode()) & 0xFFFFFFFF:08x}\n".encode()


@pytest.mark.parametrize("last", [True, False])
def test_a_whole_record_above_the_round_bound_is_refused_never_dropped(
        tmp_path: Path, last: bool) -> None:
    """A CRC-valid record was written whole: it is no torn append, even as the last line."""
    huge = _whole_record(f"v1 last_tried=0 next_bal={2**62}.beta prev_vote=none")
    body = HEADER.encode() + record_line(state(1)) + huge + (b"" if last else record_line(state(3)))
    path = write_log(tmp_path, body)
    for attempt in (lambda: read_ledger(tmp_path), lambda: Ledger.open(tmp_path)):
        with pytest.raises(LedgerError) as err:
            attempt()
        message = str(err.value)
        assert "\n" not in message and f"{LEDGER}: line 3:" in message
        assert str(MAX_ROUND) in message and "--fresh" in message
    assert path.read_bytes() == body  # never silently reset


def test_a_record_at_the_round_bound_is_read_back(tmp_path: Path) -> None:
    top = LedgerState(Ballot(MAX_ROUND, "alpha"), Ballot(MAX_ROUND, "beta"),
                      Vote(Ballot(MAX_ROUND, "beta"), MAX_DECREE))
    with Ledger.open(tmp_path) as ledger:
        ledger.persist(top)
    assert read_ledger(tmp_path)[0] == top


# --- links: never followed -----------------------------------------------------


@pytest.mark.parametrize("linked", ["logs", "logs/four", "logs/four/alpha"])
def test_every_component_of_a_relative_data_dir_is_checked_for_links(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, linked: str) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    Path(linked).parent.mkdir(parents=True, exist_ok=True)
    Path(linked).symlink_to(tmp_path / "elsewhere")
    with pytest.raises(StartupError, match=rf"^{linked}: is a symbolic link"):
        Ledger.open(Path("logs/four/alpha"))
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_an_absolute_data_dir_may_sit_below_a_linked_parent(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "via").symlink_to(tmp_path / "real")
    with Ledger.open(tmp_path / "via" / "data" / "alpha") as ledger:
        ledger.persist(state(1))
    assert read_ledger(tmp_path / "real" / "data" / "alpha")[0] == state(1)


def test_a_fifo_in_place_of_the_ledger_is_refused_not_waited_on(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / LEDGER)
    with pytest.raises(StartupError, match="not a regular file"):
        Ledger.open(tmp_path)
