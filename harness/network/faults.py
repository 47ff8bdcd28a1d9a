"""Network faults: what the relay does to each datagram. Pure: no I/O, randomness passed in.

The state of the network is one frozen `Faults` value: a partition (groups of
priests; a datagram passes only inside a group), a loss rate, a duplication
rate and a delay range, and a loss rate for `Success` datagrams alone. Each network
action (`partition`, `isolate`, `drop`, `duplicate`, `delay`, `drop-success`,
`heal`, in `harness.supervisor.actions`) replaces one part of it (`change`);
`heal` clears all.

The relay is blind to what a datagram says, with one exception, and only
while it is in force: `drop-success` needs each datagram's message type, so
the relay then reads the `type` of the codec's JSON envelope
(`message_type`; it cannot check the tag, it has no key). That is the fault
that lets a quorum vote while nobody hears that the decree passed: a lost
`Success`, the moment two teaching flaws need to show. `fate` decides, for one datagram,
whether it is dropped (and why) and when each copy leaves.

Argument values are parsed here once (`parse_value`), for the command line,
schedules, the random planner and the supervisor alike.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from harness.errors import UnknownPriestError, UsageError

MAX_DELAY_MS = 10_000.0  # a datagram held longer than this is as good as lost

# Why the relay drops a datagram (network.jsonl's `reason`).
PARTITION = "partition"
LOSS = "loss"
SUCCESS_LOST = "success lost"
FOREIGN = "not a priest"
SUCCESS = "Success"  # the message type drop-success loses (node.codec's envelope `type`)


@dataclass(frozen=True)
class Faults:
    """Everything the network does wrong right now; `Faults()` is a whole, perfect network."""

    groups: tuple[tuple[str, ...], ...] = ()  # a partition; () = no partition
    drop: float = 0.0
    duplicate: float = 0.0
    delay: tuple[float, float] | None = None  # milliseconds, uniform in [lo, hi]
    drop_success: float = 0.0  # the loss rate of Success datagrams, on top of `drop`

    @property
    def healthy(self) -> bool:
        return self == Faults()

    def describe(self) -> str:
        """One line: "no faults" or the faults, e.g. "partition alpha,beta/gamma; drop 30%"."""
        parts = []
        if self.groups:
            parts.append("partition " + "/".join(",".join(g) for g in self.groups))
        if self.drop:
            parts.append(f"drop {self.drop:.0%}")
        if self.duplicate:
            parts.append(f"duplicate {self.duplicate:.0%}")
        if self.delay is not None:
            parts.append(f"delay {self.delay[0]:g}-{self.delay[1]:g} ms")
        if self.drop_success:
            parts.append(f"drop-success {self.drop_success:.0%}")
        return "; ".join(parts) if parts else "no faults"

    def to_wire(self) -> dict[str, Any]:
        return {"groups": [list(g) for g in self.groups], "drop": self.drop,
                "duplicate": self.duplicate,
                "delay": list(self.delay) if self.delay is not None else None,
                "drop_success": self.drop_success}

    @classmethod
    def from_wire(cls, raw: dict[str, Any]) -> Faults:
        delay = raw.get("delay")
        return cls(tuple(tuple(g) for g in raw.get("groups", ())), float(raw.get("drop", 0.0)),
                   float(raw.get("duplicate", 0.0)),
                   (float(delay[0]), float(delay[1])) if delay else None,
                   float(raw.get("drop_success", 0.0)))

    def cut(self, src: str, dst: str) -> bool:
        """True if a partition separates `src` from `dst`."""
        if not self.groups or src == dst:
            return False
        for group in self.groups:
            if src in group:
                return dst not in group
        return True  # not in any group: cannot happen for a priest of the config

    def fate(self, src: str, dst: str, rng: random.Random,
             kind: str | None = None) -> tuple[str | None, list[float]]:
        """(why it is dropped, or None; the delay in seconds of each copy sent).

        `kind` is the datagram's message type, needed only with `drop_success`.
        Draws from `rng` in a fixed order (Success loss, loss, duplication, one
        delay per copy), so the same seed and the same datagrams give the same fates.
        """
        if self.cut(src, dst):
            return PARTITION, []
        if self.drop_success and kind == SUCCESS and rng.random() < self.drop_success:
            return SUCCESS_LOST, []
        if self.drop and rng.random() < self.drop:
            return LOSS, []
        copies = 2 if self.duplicate and rng.random() < self.duplicate else 1
        if self.delay is None:
            return None, [0.0] * copies
        lo, hi = self.delay
        return None, [rng.uniform(lo, hi) / 1000.0 for _ in range(copies)]


def change(faults: Faults, action: str, value: Any, names: Sequence[str]) -> Faults:
    """`faults` after network action `action` with its parsed `value` (see `parse_value`)."""
    if action == "heal":
        return Faults()
    if action == "partition":
        return replace(faults, groups=partition_groups(value, names))
    if action == "isolate":
        rest = tuple(n for n in names if n != value)
        return replace(faults, groups=((value,), rest) if rest else ())
    if action == "drop":
        return replace(faults, drop=float(value))
    if action == "duplicate":
        return replace(faults, duplicate=float(value))
    if action == "delay":
        lo, hi = parse_delay(value)
        return replace(faults, delay=None if hi == 0 else (lo, hi))
    if action == "drop-success":
        return replace(faults, drop_success=float(value))
    raise UsageError(f"unknown network action {action!r}")


def message_type(data: bytes) -> str | None:
    """The `type` of a datagram's JSON envelope (before its tag), or None if it has none.

    Not a check: the tag is not verified (the relay has no key); a priest drops
    whatever is forged. Read only while `drop_success` is in force.
    """
    body, _sep, _tag = data.rpartition(b" ")
    try:
        obj = json.loads(body or data)
    except ValueError:  # UnicodeDecodeError too
        return None
    kind = obj.get("type") if isinstance(obj, dict) else None
    return kind if isinstance(kind, str) else None


# --- argument values -----------------------------------------------------------------


def parse_value(action: str, raw: Any, names: Sequence[str], where: str = "") -> Any:
    """The canonical value of network action `action` from text or YAML; UsageError if bad.

    partition: "a,b/c,d" (text); isolate: a name; drop, duplicate: a probability
    (float); delay: "LO-HI" in ms (text); heal: None. `where` prefixes errors.
    """
    prefix = f"{where}{action}: "
    if action == "heal":
        if raw not in (None, True):
            raise UsageError(f"{prefix}takes no value (in a schedule: heal: true), got {raw!r}")
        return None
    if action in ("drop", "duplicate", "drop-success"):
        return probability(raw, prefix)
    if action == "delay":
        lo, hi = parse_delay(raw, prefix)
        return f"{lo:g}-{hi:g}"
    if not isinstance(raw, str):
        raise UsageError(f"{prefix}must be text, got {raw!r}")
    if action == "isolate":
        _known(raw.strip(), names, prefix)
        return raw.strip()
    if action == "partition":
        groups = partition_groups(raw, names, prefix)
        return "/".join(",".join(g) for g in groups)
    raise UsageError(f"unknown network action {action!r}")


def probability(raw: Any, prefix: str = "") -> float:
    if isinstance(raw, bool):
        raise UsageError(f"{prefix}must be a probability from 0 to 1, got {raw!r}")
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise UsageError(f"{prefix}must be a probability from 0 to 1, got {raw!r}") from None
    if not 0.0 <= value <= 1.0:
        raise UsageError(f"{prefix}must be a probability from 0 to 1, got {raw!r}")
    return value


def parse_delay(raw: Any, prefix: str = "") -> tuple[float, float]:
    """(lo, hi) milliseconds from "LO-HI", "N" or a number; 0 (or 0-0) means no delay."""
    bad = (f"{prefix}must be LO-HI in milliseconds (e.g. 5-40; 0 for none), at most "
           f"{MAX_DELAY_MS:g}, got {raw!r}")
    if isinstance(raw, bool):
        raise UsageError(bad)
    text = str(raw).strip()
    lo_text, sep, hi_text = text.partition("-")
    try:
        lo = float(lo_text)
        hi = float(hi_text) if sep else lo
    except ValueError:
        raise UsageError(bad) from None
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 <= lo <= hi <= MAX_DELAY_MS):
        raise UsageError(bad)
    return lo, hi


def partition_groups(raw: str, names: Sequence[str], prefix: str = "partition: "
                     ) -> tuple[tuple[str, ...], ...]:
    """Groups from "a,b/c,d": each name once; the priests not named form one more group."""
    groups: list[tuple[str, ...]] = []
    seen: set[str] = set()
    for part in str(raw).split("/"):
        group = tuple(n.strip() for n in part.split(",") if n.strip())
        if not group:
            raise UsageError(f"{prefix}an empty group in {raw!r}; write groups like "
                             f"alpha,beta/gamma,delta")
        for name in group:
            _known(name, names, prefix)
            if name in seen:
                raise UsageError(f"{prefix}{name} is in two groups of {raw!r}")
            seen.add(name)
        groups.append(group)
    rest = tuple(n for n in names if n not in seen)
    if rest:
        groups.append(rest)
    if len(groups) < 2:
        raise UsageError(f"{prefix}{raw!r} puts every priest in one group: nothing is cut; "
                         f"name two groups, e.g. {','.join(names[:1])}/{','.join(names[1:])}")
    return tuple(groups)


def _known(name: str, names: Sequence[str], prefix: str) -> None:
    if name not in names:
        raise UnknownPriestError(f"{prefix}no priest named {name!r} (known: {', '.join(names)})")
