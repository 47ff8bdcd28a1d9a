"""Figures: samples in, median / p90 / p99 out, beside a floor as a ratio."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


def percentile(samples: list[float], p: float) -> float:
    """The p-th percentile (0-100) by linear interpolation; samples need not be sorted."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    rank = (len(ordered) - 1) * p / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(samples: list[float]) -> float:
    """The median of `samples`."""
    return percentile(samples, 50.0)


@dataclass
class Target:
    """Where a figure should be: below (or above) `value`, in its unit or as a ratio."""

    value: float
    below: bool = True
    text: str = ""
    of_ratio: bool = False

    def met(self, figure: float) -> bool:
        return figure < self.value if self.below else figure >= self.value


@dataclass
class Figure:
    """One row of the table: a median over samples, with its floor and target.

    `unit` is "s" (lower is better), "/s" (higher is better) or "B" (bytes).
    The ratio is figure/floor for "s" and "B", floor/figure for "/s", so a
    ratio of 1.0 is always "as fast (or small) as the floor" and above is worse.
    """

    row: str
    name: str
    unit: str
    samples: list[float]
    floor: float | None = None
    floor_name: str = ""
    target: Target | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def median(self) -> float:
        return median(self.samples)

    @property
    def met(self) -> bool | None:
        """Whether the target is met (None without a target, or a ratio without a floor)."""
        if self.target is None:
            return None
        value = self.ratio if self.target.of_ratio else self.median
        return None if value is None else self.target.met(value)

    @property
    def ratio(self) -> float | None:
        if self.floor is None or self.floor <= 0 or self.median <= 0:
            return None
        if self.unit == "/s":
            return self.floor / self.median
        return self.median / self.floor

    def to_json(self) -> dict[str, Any]:
        """Everything about the figure, for logs/bench/*.json."""
        out: dict[str, Any] = {
            "row": self.row, "name": self.name, "unit": self.unit, "n": len(self.samples),
            "median": self.median, "p90": percentile(self.samples, 90),
            "p99": percentile(self.samples, 99), "min": min(self.samples),
            "max": max(self.samples), "floor": self.floor, "floor_name": self.floor_name,
            "ratio": self.ratio, "samples": self.samples, "notes": self.notes,
        }
        if self.target is not None:
            out["target"] = {"value": self.target.value, "below": self.target.below,
                             "of_ratio": self.target.of_ratio, "text": self.target.text,
                             "met": self.met}
        return out
