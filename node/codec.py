"""Bytes <-> the five messages: the datagram format of docs/formats.md, strictly.

A datagram is one compact UTF-8 JSON object of at most 512 bytes. `decode`
checks everything a peer could get wrong (size, encoding, keys, types, ranges,
sender name and source address) and raises `DatagramError` with a short reason,
never anything else: a misbehaving peer is dropped, it cannot stop a priest.
`encode` refuses a message we should never have built with a `ValueError`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
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

MAX_DATAGRAM = 512
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


class DatagramError(Exception):
    """A peer's datagram that breaks the format; `reason` says how, in a few words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _fail(reason: str) -> NoReturn:
    raise DatagramError(reason)


def _show(value: object) -> str:
    """A peer's value for a reason text, cut short: peers choose its length."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _no_constant(name: str) -> NoReturn:
    _fail(f"{name} is not a number here")


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            _fail(f"duplicate key {_show(key)}")
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


class Codec:
    """Encodes and strictly decodes the datagrams of one cluster."""

    def __init__(self, cluster: str, addresses: Mapping[str, tuple[str, int]]) -> None:
        self.cluster = cluster
        self.addresses = {name: (host, port) for name, (host, port) in addresses.items()}

    def encode(self, message: Message) -> bytes:
        """Compact JSON bytes; ValueError if the message could not be decoded back."""
        try:
            obj = self._to_json(message)
            data = json.dumps(obj, separators=(",", ":")).encode("utf-8")
        except (AttributeError, TypeError, ValueError) as exc:
            raise ValueError(f"cannot encode {message!r}: {exc}") from None
        try:
            back = self.decode(data)
        except DatagramError as exc:
            raise ValueError(f"cannot encode {message!r}: {exc.reason}") from None
        if back != message:
            raise ValueError(f"cannot encode {message!r}: it decodes as {back!r}")
        return data

    def decode(self, data: bytes, addr: tuple[str, int] | None = None) -> Message:
        """The message in `data`, sent from `addr` (None: skip the sender check)."""
        if len(data) > MAX_DATAGRAM:
            _fail(f"too large ({len(data)} bytes > {MAX_DATAGRAM})")
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError:
            _fail("not UTF-8")
        try:
            obj = json.loads(text, object_pairs_hook=_unique_object, parse_constant=_no_constant)
        except (ValueError, RecursionError):
            _fail("not JSON")
        if not isinstance(obj, dict):
            _fail(f"not a JSON object but a {type(obj).__name__}")
        return self._message(obj, addr)

    # --- decoding, one check at a time ----------------------------------

    def _message(self, obj: dict[str, Any], addr: tuple[str, int] | None) -> Message:
        for key in COMMON_KEYS:
            if key not in obj:
                _fail(f"missing key {key!r}")
        if not _is_int(obj["v"]) or obj["v"] != VERSION:
            _fail(f"wrong version {_show(obj['v'])} (expected {VERSION})")
        if obj["cluster"] != self.cluster:
            _fail(f"other cluster {_show(obj['cluster'])}")
        kind = obj["type"]
        if not isinstance(kind, str) or kind not in TYPE_KEYS:
            _fail(f"unknown type {_show(kind)}")
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
            _fail(f"unknown sender {_show(src)}")
        if addr is not None:
            host, port = self.addresses[src]
            if tuple(addr[:2]) != (host, port):
                _fail(f"forged sender: datagram from {addr[0]}:{addr[1]} claims to be {src} "
                      f"(configured at {host}:{port})")
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


__all__ = ["Codec", "DatagramError", "MAX_DATAGRAM"]
