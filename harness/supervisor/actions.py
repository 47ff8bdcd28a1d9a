"""The actions on a priest, and the states they are allowed in: one table.

The supervisor refuses an action on a priest in a state not listed here, and
the chaos planner plans only actions this table allows, so a plan it makes is
one the supervisor accepts. Adding a fault kind is one entry here (and its
`_do_<name>` in `harness.supervisor.core`). Pure data: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class State(StrEnum):
    """A priest's state, as the supervisor knows it (`status` shows the value)."""

    NOT_STARTED = "not started"
    RUNNING = "running"
    PAUSED = "paused"
    KILLED = "killed"  # ended by a signal
    EXITED = "exited"  # ended with an exit status


ALIVE = frozenset({State.RUNNING, State.PAUSED})
DOWN = frozenset({State.NOT_STARTED, State.KILLED, State.EXITED})


@dataclass(frozen=True)
class Action:
    """One action: the states it applies to, the state it leaves, what it does."""

    name: str
    allowed: frozenset[State]
    after: State
    help: str


ACTIONS: dict[str, Action] = {a.name: a for a in (
    Action("ballot", frozenset({State.RUNNING}), State.RUNNING,
           "ask priest N to start a ballot (SIGTSTP)"),
    Action("kill", ALIVE, State.KILLED, "crash priest N (SIGKILL)"),
    Action("stop", ALIVE, State.EXITED, "stop priest N cleanly (SIGTERM, grace, SIGKILL)"),
    Action("pause", frozenset({State.RUNNING}), State.PAUSED, "freeze priest N (SIGSTOP)"),
    Action("resume", frozenset({State.PAUSED}), State.RUNNING, "unfreeze priest N (SIGCONT)"),
    Action("restart", DOWN, State.RUNNING,
           "start priest N again on its ledger (also one never started)"),
)}


def allows(action: str, state: str) -> bool:
    """True if `action` may be done to a priest in `state`."""
    return state in ACTIONS[action].allowed
