"""Which faults came before a violation: harness.jsonl's actions, on the events' time line.

A pure function of the harness records (`harness.record`) and the violations:
for each violation, the actions the harness applied (`chaos` records whose
`result` is done: kills (a kill-after-promise's too, when it fired), stops,
restarts, pauses, resumes, ballots, armings; and
`network` changes done: partitions, drops, delays, heals) in the same run,
before the violation's earliest evidence. A run starts at an `up` record: a
data dir kept between runs holds several, and the faults of an earlier run
are not shown. A violation with no evidence time (the decree files at the
end: `disagreement`, `malformed_decree`...) comes after every fault of the
last run. Only the last AFTER_SHOWN are listed; the rest are counted
(`Violation.earlier_faults`).

Both files use CLOCK_MONOTONIC in ns, so the times compare; they are shown in
seconds after `t0`, the first event of the history, as the evidence is.
"""

from __future__ import annotations

import dataclasses
from bisect import bisect_left, bisect_right
from collections.abc import Sequence

from harness.check.verdict import FaultBefore, Violation
from harness.record import ChaosAction, NetworkChange, Record, Up

AFTER_SHOWN = 5  # faults listed before each violation; earlier ones are counted


def with_faults(violations: Sequence[Violation], records: Sequence[Record],
                t0: int) -> tuple[Violation, ...]:
    """`violations`, each with the faults that came before it (`records` sorted by t)."""
    applied = [r for r in records if isinstance(r, ChaosAction | NetworkChange) and r.applied]
    if not applied:
        return tuple(violations)
    times = [r.t for r in applied]
    starts = [r.t for r in records if isinstance(r, Up)]
    out = []
    for v in violations:
        evidence = min(v.times) if v.times else None
        end = len(applied) if evidence is None else bisect_left(times, evidence)
        # The run the evidence belongs to: since the last `up` at or before it.
        ups = len(starts) if evidence is None else bisect_right(starts, evidence)
        begin = bisect_left(times, starts[ups - 1]) if ups else 0
        shown = applied[max(begin, end - AFTER_SHOWN):end]
        out.append(dataclasses.replace(
            v, after=tuple(FaultBefore(r.action, _target(r), (r.t - t0) / 1e9) for r in shown),
            earlier_faults=max(0, end - begin - len(shown))))
    return tuple(out)


def _target(r: ChaosAction | NetworkChange) -> str:
    """What an action struck: a priest's name, or a network change's value as typed."""
    if isinstance(r, ChaosAction):
        return r.priest
    value = r.value
    if value is None:
        return ""
    if isinstance(value, list | tuple) and all(isinstance(g, list | tuple) for g in value):
        return "/".join(",".join(map(str, g)) for g in value)  # partition groups
    if isinstance(value, list | tuple):
        return "-".join(map(str, value))  # a delay range
    return str(value)
