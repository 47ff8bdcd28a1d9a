"""Drop logging: every dropped datagram counted, few of them logged, whatever they hold."""

from __future__ import annotations

import itertools

from node.codec import DropReason
from node.runtime import DROP_LOG_BURST, DROP_LOG_RATE, DropLimiter


def test_one_line_a_second_per_reason_and_the_rest_counted() -> None:
    limiter = DropLimiter()
    assert limiter.drop(DropReason.NOT_JSON, 0.0) == 0
    assert [limiter.drop(DropReason.NOT_JSON, 0.1 * i) for i in range(1, 10)] == [None] * 9
    assert limiter.drop(DropReason.NOT_JSON, 1.0) == 9  # logged, with how many it held back
    assert limiter.counts[DropReason.NOT_JSON] == 11


def test_a_flood_of_100000_over_every_reason_logs_a_bounded_number_of_lines() -> None:
    limiter = DropLimiter()
    reasons = itertools.cycle(DropReason)
    seconds = 20.0  # 5,000 datagrams a second: a slow flood
    logged = sum(limiter.drop(next(reasons), i * seconds / 100_000) is not None
                 for i in range(100_000))
    assert logged <= DROP_LOG_BURST + DROP_LOG_RATE * seconds + 1
    assert sum(limiter.counts.values()) == 100_000
    assert len(limiter.counts) <= len(DropReason) and len(limiter.last_logged) <= len(DropReason)


def test_a_quiet_reason_is_still_logged_after_a_flood_of_another() -> None:
    limiter = DropLimiter()
    for i in range(10_000):
        limiter.drop(DropReason.BAD_TAG, i / 10_000)
    assert limiter.drop(DropReason.OTHER_CLUSTER, 5.0) == 0
