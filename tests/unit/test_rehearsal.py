"""A priest's rehearsal: one whole ballot among scratch priests, in memory, before `ready`."""

from __future__ import annotations

import pytest

from node.codec import Codec
from node.config import load_config
from node.messages import EventKind
from node.record import PriestEvent
from node.runtime import rehearse

TYPES = {"NextBallot", "LastVote", "BeginBallot", "Voted", "Success"}


@pytest.mark.parametrize("n", [1, 3, 4, 9])
def test_a_rehearsal_runs_a_whole_ballot_through_every_path(make_config, n: int) -> None:
    config = load_config(make_config(n))
    codec = Codec(config.cluster, {p: (q.host, q.port) for p, q in config.priests.items()},
                  key=b"k" * 32)
    events = [PriestEvent.from_line(line) for line in rehearse(config, codec)]
    if n > 1:
        for kind in (EventKind.SENT, EventKind.RECEIVED):
            assert {e.msg for e in events if e.kind == kind} == TYPES
    assert {e.priest for e in events if e.kind == EventKind.LEARNED} == set(config.names[:3])
    decrees = {e.decree for e in events if e.kind == EventKind.LEARNED}
    assert len(decrees) == 1

