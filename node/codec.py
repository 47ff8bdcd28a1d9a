"""Bytes <-> the five messages: the datagram format of docs/formats.md, strictly.

A datagram is one compact UTF-8 JSON object, a space, and its tag: the
HMAC-SHA256 of the JSON bytes under the cluster's key, as 64 lowercase hex
digits; at most 512 bytes in all. `decode` checks the tag first (in constant
time), then everything a peer could get wrong (size, encoding,
keys, types, ranges, sender name and source address) and raises
`DatagramError` with one of the fixed `DropReason`s and a short text, never
anything else: a misbehaving peer is dropped, it cannot stop a priest.
`encode` refuses a message we should never have built with a `ValueError`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, NoReturn

from node.flaws import FLAWED_BALLOT_PRIEST
from node.messages import (
    MAX_DECREE,
    MAX_ROUND,
    MESSAGE_TYPES,
    MIN_DECREE,
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

try:
    # The interpreter's own SHA-256, not OpenSSL's: the stdlib `hmac` and `hashlib` load
    # libcrypto, which alone adds about 3.5 MB to a priest's resident memory.
    from _sha2 import sha256  # type: ignore[import-not-found, unused-ignore]  # CPython 3.12+
except ImportError:  # pragma: no cover - depends on the interpreter
    try:
        from _sha256 import sha256  # type: ignore[import-not-found, no-redef, unused-ignore]
    except ImportError:
        from hashlib import sha256  # type: ignore[assignment, unused-ignore]
from _operator import _compare_digest as compare_digest  # what hmac.compare_digest falls back on

MAX_DATAGRAM = 512  # bytes, tag included
TAG_HEX = 64  # HMAC-SHA256 as lowercase hex
TAG_SEP = b" "
VERSION = 1
COMMON_KEYS = ("v", "cluster", "type", "src")
# The keys each type carries beyond the common ones.
TYPE_KEYS: dict[str, tuple[str, ...]] = {
    "NextBallot": ("ballot",),
    "LastVote": ("ballot", "vote"),
    "BeginBallot": ("ballot", "decree"),
    "Voted": ("ballot",),
    "Success": ("ballot", "decree"),
}
VOTE_KEYS = ("ballot", "decree")


class DropReason(StrEnum):
    """Why a datagram was dropped: a fixed set, so no peer can invent a new one.

    The runtime keys its rate limit and its counters on these; the peer-chosen
    details go only into the (length-bounded) text of a logged line.
    """

    TOO_LARGE = "too_large"          # over MAX_DATAGRAM bytes
    BAD_TAG = "bad_tag"              # no valid HMAC tag under the cluster's key
    NOT_JSON = "not_json"            # not UTF-8, not a JSON object, duplicate keys
    BAD_VERSION = "bad_version"      # another format version
    OTHER_CLUSTER = "other_cluster"  # another cluster's name
    UNKNOWN_TYPE = "unknown_type"    # not one of the five messages
    MALFORMED = "malformed"          # missing/extra keys, wrong types, out-of-range numbers
    UNKNOWN_SENDER = "unknown_sender"  # src is not a priest of the config
    FORGED_SENDER = "forged_sender"  # src's configured address is not where it came from


class DatagramError(Exception):
    """A peer's datagram that breaks the format: `kind` is the fixed reason, `reason`
    says how in a few words (it may quote the peer, cut short)."""

    def __init__(self, reason: str, kind: DropReason = DropReason.MALFORMED) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


def _fail(reason: str, kind: DropReason = DropReason.MALFORMED) -> NoReturn:
    raise DatagramError(reason, kind)


def _show(value: object) -> str:
    """A peer's value for a reason text, cut short: peers choose its length."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _no_constant(name: str) -> NoReturn:
    _fail(f"{name} is not a number here", DropReason.NOT_JSON)


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            _fail(f"duplicate key {_show(key)}", DropReason.NOT_JSON)
        obj[key] = value
    return obj


def _is_int(value: object) -> bool:
    # bool is a subclass of int in Python; JSON true is not a number.
    return isinstance(value, int) and not isinstance(value, bool)


def _int(value: object, what: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(f"{what}: expected an int, got {type(value).__name__} {_show(value)}")
    if not low <= value <= high:
        _fail(f"{what}: {_show(value)} out of range {low}..{high}")
    return value


def _exact_keys(obj: dict[str, Any], keys: tuple[str, ...], where: str) -> None:
    for key in keys:
        if key not in obj:
            _fail(f"missing key {key!r}{where}")
    for key in obj:
        if key not in keys:
            _fail(f"extra key {_show(key)}{where}")


class Hmac:
    """HMAC-SHA256 (RFC 2104) under one key, as the stdlib's `hmac` computes it.

    The two padded keys are hashed once; each tag then copies those states.
    """

    BLOCK = 64  # SHA-256's block size in bytes

    def __init__(self, key: bytes) -> None:
        if len(key) > self.BLOCK:
            key = sha256(key).digest()
        key = key.ljust(self.BLOCK, b"\0")
        self._inner = sha256(bytes(b ^ 0x36 for b in key))
        self._outer = sha256(bytes(b ^ 0x5C for b in key))

    def hexdigest(self, data: bytes) -> str:
        inner = self._inner.copy()
        inner.update(data)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return str(outer.hexdigest())


class Codec:
    """Encodes and strictly decodes the datagrams of one cluster."""

    def __init__(self, cluster: str, addresses: Mapping[str, tuple[str, int]], *,
                 key: bytes) -> None:
        self.cluster = cluster
        self.addresses = {name: (host, port) for name, (host, port) in addresses.items()}
        self._hmac = Hmac(bytes(key))
        # The last message encoded and its datagram: the core sends one message
        # object to every priest, so it is encoded (and checked) once, not per priest.
        self._last: tuple[Message, bytes] | None = None

    def tag(self, body: bytes) -> bytes:
        """The tag of a datagram's JSON bytes: HMAC-SHA256 under the key, in hex."""
        return self._hmac.hexdigest(body).encode()

    def sign(self, body: bytes) -> bytes:
        """The datagram carrying `body`: body, a space, its tag."""
        return body + TAG_SEP + self.tag(body)

    def encode(self, message: Message) -> bytes:
        """The signed datagram; ValueError if the message could not be decoded back."""
        last = self._last
        if last is not None and last[0] is message:  # frozen: the same value
            return last[1]
        try:
            obj = self._to_json(message)
            body = json.dumps(obj, separators=(",", ":")).encode("utf-8")
        except (AttributeError, TypeError, ValueError) as exc:
            raise ValueError(f"cannot encode {message!r}: {exc}") from None
        data = self.sign(body)
        try:
            if len(data) > MAX_DATAGRAM:
                _fail(f"too large ({len(data)} bytes > {MAX_DATAGRAM})", DropReason.TOO_LARGE)
            back = self._decode_body(body, None)  # our own tag needs no check
        except DatagramError as exc:
            raise ValueError(f"cannot encode {message!r}: {exc.reason}") from None
        if back != message:
            raise ValueError(f"cannot encode {message!r}: it decodes as {back!r}")
        self._last = (message, data)
        return data

    def decode(self, data: bytes, addr: tuple[str, int] | None = None) -> Message:
        """The message in `data`, sent from `addr` (None: skip the sender check)."""
        if len(data) > MAX_DATAGRAM:
            _fail(f"too large ({len(data)} bytes > {MAX_DATAGRAM})", DropReason.TOO_LARGE)
        return self._decode_body(self.verify(bytes(data)), addr)

    def _decode_body(self, body: bytes, addr: tuple[str, int] | None) -> Message:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            _fail("not UTF-8", DropReason.NOT_JSON)
        try:
            obj = json.loads(text, object_pairs_hook=_unique_object, parse_constant=_no_constant)
        except (ValueError, RecursionError):
            _fail("not JSON", DropReason.NOT_JSON)
        if not isinstance(obj, dict):
            _fail(f"not a JSON object but a {type(obj).__name__}", DropReason.NOT_JSON)
        return self._message(obj, addr)

    def verify(self, data: bytes) -> bytes:
        """The JSON bytes of a datagram whose tag is right; DatagramError (BAD_TAG) otherwise."""
        cut = len(data) - TAG_HEX - len(TAG_SEP)
        if cut < 0 or data[cut:cut + len(TAG_SEP)] != TAG_SEP:
            _fail("no tag (every datagram ends with a space and its HMAC-SHA256 in hex)",
                  DropReason.BAD_TAG)
        body = data[:cut]
        if not compare_digest(self.tag(body), data[cut + len(TAG_SEP):]):
            _fail("wrong tag (not signed with this cluster's key)", DropReason.BAD_TAG)
        return body

    # --- decoding, one check at a time ----------------------------------

    def _message(self, obj: dict[str, Any], addr: tuple[str, int] | None) -> Message:
        for key in COMMON_KEYS:
            if key not in obj:
                _fail(f"missing key {key!r}")
        if not _is_int(obj["v"]) or obj["v"] != VERSION:
            _fail(f"wrong version {_show(obj['v'])} (expected {VERSION})", DropReason.BAD_VERSION)
        if obj["cluster"] != self.cluster:
            _fail(f"other cluster {_show(obj['cluster'])}", DropReason.OTHER_CLUSTER)
        kind = obj["type"]
        if not isinstance(kind, str) or kind not in TYPE_KEYS:
            _fail(f"unknown type {_show(kind)}", DropReason.UNKNOWN_TYPE)
        _exact_keys(obj, COMMON_KEYS + TYPE_KEYS[kind], "")
        src = self._sender(obj["src"], addr)
        # Success may carry ballot zero: a restarted priest keeps its decree, not the ballot.
        ballot = self._ballot(obj["ballot"], "ballot", zero_ok=(kind == "Success"))
        if kind == "NextBallot":
            return NextBallot(src, ballot)
        if kind == "Voted":
            return Voted(src, ballot)
        if kind == "LastVote":
            return LastVote(src, ballot, self._vote(obj["vote"]))
        decree = _int(obj["decree"], "decree", MIN_DECREE, MAX_DECREE)
        if kind == "BeginBallot":
            return BeginBallot(src, ballot, decree)
        return Success(src, ballot, decree)

    def _sender(self, src: object, addr: tuple[str, int] | None) -> str:
        if not isinstance(src, str) or src not in self.addresses:
            _fail(f"unknown sender {_show(src)}", DropReason.UNKNOWN_SENDER)
        if addr is not None:
            host, port = self.addresses[src]
            if tuple(addr[:2]) != (host, port):
                _fail(f"forged sender: datagram from {addr[0]}:{addr[1]} claims to be {src} "
                      f"(configured at {host}:{port})", DropReason.FORGED_SENDER)
        return src

    def _ballot(self, raw: object, what: str, zero_ok: bool) -> Ballot:
        if not isinstance(raw, list) or len(raw) != 2:
            _fail(f"{what}: expected [round, priest], got {_show(raw)}")
        round_, priest = raw
        if zero_ok and _is_int(round_) and round_ == 0:
            if priest != "":
                _fail(f"{what}: ballot zero must be [0, \"\"], got {_show(raw)}")
            return ZERO
        _int(round_, f"{what} round", 1, MAX_ROUND)
        if not isinstance(priest, str) or (priest not in self.addresses
                                           and priest != FLAWED_BALLOT_PRIEST):
            _fail(f"{what}: unknown ballot priest {_show(priest)}")
        return Ballot(round_, priest)

    def _vote(self, raw: object) -> Vote:
        if not isinstance(raw, dict):
            _fail(f"vote: expected an object, got {_show(raw)}")
        _exact_keys(raw, VOTE_KEYS, " in vote")
        ballot = self._ballot(raw["ballot"], "vote ballot", zero_ok=True)
        decree = _int(raw["decree"], "vote decree", MIN_DECREE, MAX_DECREE)
        if ballot.is_zero() and decree != 0:
            _fail(f"vote with ballot zero has decree {decree}, expected 0")
        return Vote(ballot, decree)

    # --- encoding ---------------------------------------------------------

    def _to_json(self, m: Message) -> dict[str, Any]:
        if type(m) not in MESSAGE_TYPES:
            raise TypeError("not one of the five messages")
        obj: dict[str, Any] = {"v": VERSION, "cluster": self.cluster, "type": type(m).__name__,
                               "src": m.src, "ballot": m.ballot.to_json()}
        if isinstance(m, LastVote):
            obj["vote"] = {"ballot": m.vote.ballot.to_json(), "decree": m.vote.decree}
        if isinstance(m, (BeginBallot, Success)):
            obj["decree"] = m.decree
        return obj


__all__ = ["Hmac", "Codec", "DatagramError", "DropReason", "MAX_DATAGRAM", "sha256"]
