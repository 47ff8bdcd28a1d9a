"""The datagram codec: round trips, every rejection reason, and fuzzing.

Whatever bytes arrive, `decode` returns a message or raises DatagramError:
nothing a peer sends can stop a priest.
"""

from __future__ import annotations

import hmac
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node.codec import MAX_DATAGRAM, Codec, DatagramError, DropReason, Hmac
from node.config import NAME_RE
from node.flaws import FLAWED_BALLOT_PRIEST
from node.messages import (
    MAX_DECREE,
    MAX_ROUND,
    MIN_DECREE,
    NO_VOTE,
    ZERO,
    Ballot,
    BeginBallot,
    LastVote,
    Message,
    NextBallot,
    Success,
    Vote,
    Voted,
)

ADDRESSES = {"alpha": ("127.0.0.1", 7101), "beta": ("127.0.0.1", 7102),
             "gamma": ("127.0.0.1", 7103)}
KEY = bytes(range(32))
CODEC = Codec("four", ADDRESSES, key=KEY)
B3 = Ballot(3, "alpha")

EXAMPLES: list[tuple[Message, str]] = [
    (NextBallot("alpha", B3),
     '{"v":1,"cluster":"four","type":"NextBallot","src":"alpha","ballot":[3,"alpha"]}'),
    (LastVote("beta", B3, Vote(Ballot(2, "gamma"), 2002)),
     ('{"v":1,"cluster":"four","type":"LastVote","src":"beta","ballot":[3,"alpha"],'
     '"vote":{"ballot":[2,"gamma"],"decree":2002}}')),
    (BeginBallot("alpha", B3, 2002),
     ('{"v":1,"cluster":"four","type":"BeginBallot","src":"alpha","ballot":[3,"alpha"],'
     '"decree":2002}')),
    (Voted("beta", B3),
     '{"v":1,"cluster":"four","type":"Voted","src":"beta","ballot":[3,"alpha"]}'),
    (Success("alpha", B3, 2002),
     ('{"v":1,"cluster":"four","type":"Success","src":"alpha","ballot":[3,"alpha"],'
     '"decree":2002}')),
]


def obj(**changes: Any) -> dict[str, Any]:
    """A valid LastVote from beta as a JSON object, with some keys changed."""
    base: dict[str, Any] = json.loads(EXAMPLES[1][1])
    base.update(changes)
    return base


def raw(o: object) -> bytes:
    """The JSON bytes of a datagram, without its tag."""
    return json.dumps(o, separators=(",", ":")).encode()


def signed(body: bytes) -> bytes:
    """A datagram of `body` with the right tag: what a peer holding the key sends."""
    return CODEC.sign(body)


def reason_of(body: bytes, addr: tuple[str, int] | None = None) -> str:
    """Why `body`, correctly signed, is refused."""
    with pytest.raises(DatagramError) as info:
        CODEC.decode(signed(body), addr)
    return info.value.reason


# --- the format of docs/formats.md ------------------------------------------


@pytest.mark.parametrize(("message", "text"), EXAMPLES, ids=lambda x: type(x).__name__)
def test_each_message_type_matches_the_documented_bytes_and_round_trips(
    message: Message, text: str
) -> None:
    assert CODEC.encode(message) == signed(text.encode())
    assert CODEC.decode(signed(text.encode()), ADDRESSES[message.src]) == message


def test_a_last_vote_for_a_priest_that_never_voted_round_trips() -> None:
    message = LastVote("gamma", Ballot(1, FLAWED_BALLOT_PRIEST), NO_VOTE)
    data = CODEC.encode(message)
    assert b'"vote":{"ballot":[0,""],"decree":0}' in data
    assert CODEC.decode(data) == message


def test_the_largest_legal_message_fits_in_a_datagram() -> None:
    name = "z" * 32
    assert NAME_RE.match(name)
    codec = Codec("c" * 32, {name: ("127.255.255.255", 65535)}, key=KEY)
    big = Ballot(MAX_ROUND, name)
    for decree in (MIN_DECREE, MAX_DECREE):
        for message in (LastVote(name, big, Vote(big, decree)), BeginBallot(name, big, decree),
                        Success(name, big, decree), NextBallot(name, big), Voted(name, big)):
            data = codec.encode(message)
            assert len(data) < MAX_DATAGRAM
            assert codec.decode(data) == message


# --- every reason a datagram is refused ---------------------------------------


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b" " * (MAX_DATAGRAM - 2) + raw(obj()), "too large"),
        (b'{"v":1,"cluster":"f\xffour"}', "not UTF-8"),
        (b'{"v":1,', "not JSON"),
        (b"\xef\xbb\xbf" + raw(obj()), "not JSON"),  # a BOM is not part of the format
        (b"[1, 2]", "not a JSON object"),
        (b'"LastVote"', "not a JSON object"),
        (raw({k: v for k, v in obj().items() if k != "vote"}), "missing key 'vote'"),
        (raw({k: v for k, v in obj().items() if k != "src"}), "missing key 'src'"),
        (raw(obj(extra=1)), "extra key 'extra'"),
        (raw(obj(decree=5)), "extra key 'decree'"),
        (raw(obj(vote={"ballot": [2, "gamma"], "decree": 1, "x": 0})), "extra key 'x' in vote"),
        (raw(obj(vote={"ballot": [2, "gamma"]})), "missing key 'decree' in vote"),
        (raw(obj(v=2)), "wrong version 2"),
        (raw(obj(v=True)), "wrong version True"),
        (raw(obj(v=1.0)), "wrong version 1.0"),
        (raw(obj(cluster="three")), "other cluster 'three'"),
        (raw(obj(type="Prepare")), "unknown type 'Prepare'"),
        (raw(obj(type=["LastVote"])), "unknown type"),
        (raw(obj(src="mallory")), "unknown sender 'mallory'"),
        (raw(obj(src=FLAWED_BALLOT_PRIEST)), "unknown sender '*'"),
        (raw(obj(ballot=[True, "alpha"])), "ballot round: expected an int, got bool"),
        (raw(obj(ballot=[3.0, "alpha"])), "ballot round: expected an int, got float"),
        (raw(obj(ballot=["3", "alpha"])), "ballot round: expected an int, got str"),
        (raw(obj(vote={"ballot": [2, "gamma"], "decree": False})),
         "vote decree: expected an int, got bool"),
        (raw(obj(ballot=[0, ""])), "ballot round: 0 out of range"),
        (raw(obj(ballot=[-1, "alpha"])), "ballot round: -1 out of range"),
        (raw(obj(ballot=[MAX_ROUND + 1, "alpha"])), f"ballot round: {MAX_ROUND + 1} out of"),
        (raw(obj(ballot=[2**62, "alpha"])), "ballot round: 4611686018427387904 out of"),
        (raw(obj(ballot=[3])), "ballot: expected [round, priest]"),
        (raw(obj(ballot={"round": 3})), "ballot: expected [round, priest]"),
        (raw(obj(ballot=[3, "mallory"])), "ballot: unknown ballot priest 'mallory'"),
        (raw(obj(ballot=[3, ""])), "ballot: unknown ballot priest ''"),
        (raw(obj(vote={"ballot": [0, ""], "decree": 7})), "ballot zero has decree 7"),
        (raw(obj(vote={"ballot": [0, "alpha"], "decree": 0})), "ballot zero must be"),
        (raw(obj(vote=[2, "gamma", 7])), "vote: expected an object"),
        (raw(obj(vote={"ballot": [2, "gamma"], "decree": MAX_DECREE + 1})), "vote decree: 9223"),
        ((b'{"v":1,"cluster":"four","type":"Success","src":"alpha","ballot":[3,"alpha"],'
         b'"decree":-9223372036854775809}'), "decree: -9223372036854775809 out of range"),
        ((b'{"v":1,"cluster":"four","type":"Success","src":"alpha","ballot":[3,"alpha"],'
         b'"decree":NaN}'), "NaN is not a number here"),
        ((b'{"v":1,"cluster":"four","type":"Success","src":"alpha","ballot":[3,"alpha"],'
         b'"decree":-Infinity}'), "-Infinity is not a number here"),
        ((b'{"v":1,"cluster":"four","type":"Success","src":"alpha","ballot":[3,"alpha"],'
         b'"decree":1e400}'), "decree: expected an int, got float"),
        (b'{"v":1,"cluster":"four","type":"Voted","src":"alpha","src":"beta","ballot":[3,"alpha"]}',
         "duplicate key 'src'"),
    ],
)
def test_a_bad_datagram_is_refused_with_its_reason(data: bytes, reason: str) -> None:
    assert reason in reason_of(data)


def test_round_zero_in_a_next_ballot_is_refused() -> None:
    data = raw({"v": 1, "cluster": "four", "type": "NextBallot", "src": "alpha",
                "ballot": [0, ""]})
    assert "ballot round: 0 out of range" in reason_of(data)


def test_too_large_is_checked_before_parsing() -> None:
    assert "too large" in reason_of(b"\xff" * (MAX_DATAGRAM + 1))
    # Exactly the limit is allowed.
    padded = signed(raw(obj()).ljust(MAX_DATAGRAM - 65, b" "))
    assert len(padded) == MAX_DATAGRAM and CODEC.decode(padded) == EXAMPLES[1][0]


def test_a_forged_source_address_is_refused() -> None:
    data = raw(obj())  # from beta
    reason = reason_of(data, ("127.0.0.1", 5555))
    assert reason.startswith("forged sender")
    assert "127.0.0.1:5555" in reason and "beta" in reason
    assert "forged sender" in reason_of(data, ADDRESSES["alpha"])
    assert "forged sender" in reason_of(data, ("127.0.0.2", 7102))
    assert CODEC.decode(signed(data), ADDRESSES["beta"]) == EXAMPLES[1][0]


@pytest.mark.parametrize(("data", "kind"), [
    (b" " * (MAX_DATAGRAM - 2) + raw(obj()), DropReason.TOO_LARGE),
    (b'{"v":1,"cluster":"f\xffour"}', DropReason.NOT_JSON),
    (b"[1, 2]", DropReason.NOT_JSON),
    (raw(obj(v=2)), DropReason.BAD_VERSION),
    (raw(obj(cluster="three")), DropReason.OTHER_CLUSTER),
    (raw(obj(type="Prepare")), DropReason.UNKNOWN_TYPE),
    (raw(obj(src="mallory")), DropReason.UNKNOWN_SENDER),
    (raw(obj(extra=1)), DropReason.MALFORMED),
    (raw(obj(ballot=[2**62, "alpha"])), DropReason.MALFORMED),
])
def test_a_refusal_carries_one_of_the_fixed_reasons(data: bytes, kind: DropReason) -> None:
    with pytest.raises(DatagramError) as info:
        CODEC.decode(signed(data))
    assert info.value.kind is kind


def test_a_forged_sender_is_its_own_reason() -> None:
    with pytest.raises(DatagramError) as info:
        CODEC.decode(signed(raw(obj())), ("127.0.0.1", 5555))
    assert info.value.kind is DropReason.FORGED_SENDER


@given(st.binary(max_size=600), st.booleans())
def test_every_refusal_has_a_fixed_reason(data: bytes, sign: bool) -> None:
    try:
        CODEC.decode(signed(data) if sign else data)
    except DatagramError as exc:
        assert isinstance(exc.kind, DropReason)


def test_a_reason_quotes_a_long_peer_value_only_briefly() -> None:
    reason = reason_of(raw(obj(src="m" * 300)))
    assert reason.startswith("unknown sender") and len(reason) < 80


# --- encode refuses what we should never send --------------------------------


class _LookalikeBallot(Ballot):
    """Prints like a Ballot but is not one: decoding it gives a different value."""


@pytest.mark.parametrize(
    "message",
    [
        NextBallot("alpha", ZERO),
        Voted("mallory", B3),
        Success("alpha", Ballot(3, "mallory"), 1),
        BeginBallot("alpha", B3, MAX_DECREE + 1),
        BeginBallot("alpha", B3, True),
        LastVote("beta", B3, Vote(ZERO, 5)),
        NextBallot("alpha", Ballot(MAX_ROUND + 1, "alpha")),
        NextBallot("alpha", (3, "alpha")),  # type: ignore[arg-type]
        "NextBallot",  # type: ignore[list-item]
        NextBallot("alpha", _LookalikeBallot(3, "alpha")),  # would decode as another value
    ],
    ids=repr,
)
def test_encode_refuses_an_invalid_message(message: Message) -> None:
    with pytest.raises(ValueError):
        CODEC.encode(message)


def test_a_message_sent_to_every_priest_is_encoded_once() -> None:
    m = BeginBallot("alpha", B3, 7)
    data = CODEC.encode(m)
    assert CODEC.encode(m) is data  # the same object again: the datagram already made
    assert CODEC.decode(data) == m
    other = BeginBallot("alpha", B3, 8)  # an equal-looking value is encoded on its own
    assert CODEC.encode(other) != data and CODEC.decode(CODEC.encode(other)) == other
    with pytest.raises(ValueError):
        CODEC.encode(BeginBallot("alpha", B3, True))  # never answered from the last one


# --- properties ----------------------------------------------------------------

NAMES = list(ADDRESSES)
decrees = st.integers(MIN_DECREE, MAX_DECREE)
ballot_priests = st.sampled_from([*NAMES, FLAWED_BALLOT_PRIEST])
ballots = st.builds(Ballot, st.integers(1, MAX_ROUND), ballot_priests)
votes = st.one_of(st.just(NO_VOTE), st.builds(Vote, ballots, decrees))
srcs = st.sampled_from(NAMES)
messages = st.one_of(
    st.builds(NextBallot, srcs, ballots),
    st.builds(LastVote, srcs, ballots, votes),
    st.builds(BeginBallot, srcs, ballots, decrees),
    st.builds(Voted, srcs, ballots),
    st.builds(Success, srcs, ballots, decrees),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
    | st.sampled_from([*NAMES, "four", "*", "", "LastVote", "Success", 0, 1]),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def decode_outcome(data: bytes, addr: tuple[str, int] | None = None) -> Message | None:
    """The message, or None for a DatagramError; any other exception fails the test."""
    try:
        message = CODEC.decode(data, addr)
    except DatagramError as exc:
        assert exc.reason
        return None
    # Whatever decodes is valid: it encodes, and the encoding decodes to it again.
    assert CODEC.decode(CODEC.encode(message)) == message
    return message


@given(messages)
def test_every_valid_message_round_trips(message: Message) -> None:
    data = CODEC.encode(message)
    assert len(data) <= MAX_DATAGRAM
    assert CODEC.decode(data, ADDRESSES[message.src]) == message


@given(st.binary(max_size=MAX_DATAGRAM + 8), st.booleans())
def test_arbitrary_bytes_decode_or_raise_datagram_error(data: bytes, sign: bool) -> None:
    decode_outcome(signed(data) if sign else data)


@given(json_values)
def test_arbitrary_json_decodes_or_raises_datagram_error(value: object) -> None:
    decode_outcome(signed(json.dumps(value).encode()))


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(messages, st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255),
                                    st.sampled_from(["flip", "insert", "delete"])),
                          min_size=1, max_size=4))
def test_mutated_bytes_of_a_valid_datagram_decode_or_raise(
    message: Message, edits: list[tuple[int, int, str]]
) -> None:
    # Mutate the JSON and sign the result (a peer with the key), or mutate a signed datagram.
    resign = edits[0][1] % 2 == 0
    data = bytearray(CODEC.encode(message)[:-65] if resign else CODEC.encode(message))
    for position, byte, how in edits:
        i = position % (len(data) + 1)
        if how == "insert":
            data.insert(i, byte)
        elif i < len(data):
            if how == "flip":
                data[i] = byte
            else:
                del data[i]
    decode_outcome(signed(bytes(data)) if resign else bytes(data), ADDRESSES[message.src])


@given(messages, st.data())
def test_mutated_fields_of_a_valid_datagram_decode_or_raise(
    message: Message, data: st.DataObject
) -> None:
    o = json.loads(CODEC.encode(message)[:-65])
    target = o["vote"] if "vote" in o and data.draw(st.booleans()) else o
    how = data.draw(st.sampled_from(["replace", "delete", "add"]))
    if how == "delete":
        del target[data.draw(st.sampled_from(sorted(target)))]
    elif how == "add":
        target["extra"] = data.draw(json_values)
    else:
        target[data.draw(st.sampled_from(sorted(target)))] = data.draw(json_values)
    outcome = decode_outcome(signed(json.dumps(o).encode()), ADDRESSES[message.src])
    if how != "replace":
        assert outcome is None  # a missing or extra key is never accepted


def test_success_from_a_restarted_priest_may_carry_ballot_zero() -> None:
    from node.messages import ZERO
    message = Success("alpha", ZERO, 7)
    assert CODEC.decode(CODEC.encode(message)) == message
    assert NextBallot("alpha", ZERO) != CODEC.decode(CODEC.encode(NextBallot("alpha", B3)))


# --- the tag ---------------------------------------------------------------------


def test_a_datagram_without_its_tag_or_with_a_wrong_one_is_refused() -> None:
    body = EXAMPLES[4][1].encode()  # a Success
    good = signed(body)
    other_key = Codec("four", ADDRESSES, key=bytes(32)).sign(body)
    flipped = good[:-1] + (b"0" if good[-1:] != b"0" else b"1")
    upper = body + b" " + CODEC.tag(body).upper()
    for data in (body, body + b" ", other_key, flipped, upper, good[:-1], b" " + good,
                 signed(body)[:-65] + b"\n" + CODEC.tag(body)):
        with pytest.raises(DatagramError) as info:
            CODEC.decode(data)
        assert info.value.kind in (DropReason.BAD_TAG, DropReason.NOT_JSON), data
    assert CODEC.decode(good) == EXAMPLES[4][0]


def test_the_tag_covers_every_byte_of_the_body() -> None:
    body = EXAMPLES[2][1].encode()
    tag = CODEC.tag(body)
    for i in range(len(body)):
        changed = body[:i] + bytes([body[i] ^ 1]) + body[i + 1:]
        with pytest.raises(DatagramError) as info:
            CODEC.decode(changed + b" " + tag)
        assert info.value.kind is DropReason.BAD_TAG


def test_another_clusters_key_never_verifies_here() -> None:
    theirs = Codec("four", ADDRESSES, key=b"\x01" * 32)
    with pytest.raises(DatagramError) as info:
        CODEC.decode(theirs.encode(EXAMPLES[0][0]))
    assert info.value.kind is DropReason.BAD_TAG


# RFC 4231 test cases 1, 2 and 6 (a key longer than SHA-256's block is hashed first).
RFC_4231 = [
    (b"\x0b" * 20, b"Hi There",
     "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
    (b"Jefe", b"what do ya want for nothing?",
     "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
    (b"\xaa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First",
     "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
]


@pytest.mark.parametrize(("key", "data", "tag"), RFC_4231)
def test_the_tag_is_hmac_sha256_as_rfc_4231_gives_it(key: bytes, data: bytes, tag: str) -> None:
    assert Hmac(key).hexdigest(data) == tag


@given(st.binary(max_size=100), st.binary(max_size=600))
def test_the_tag_is_what_the_stdlib_hmac_computes(key: bytes, data: bytes) -> None:
    assert Hmac(key).hexdigest(data) == hmac.new(key, data, "sha256").hexdigest()
