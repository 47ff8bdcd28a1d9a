"""The actions on a priest or on the network, and the states they are allowed in: one table.

The supervisor refuses an action on a priest in a state not listed here, and
the chaos planner plans only actions this table allows, so a plan it makes is
one the supervisor accepts. Adding a fault kind is one entry here (and its
`_do_<name>` in `harness.supervisor.core` for a priest's, `-` read as `_`, or
its case in `harness.network.faults.change` for the network's). Pure data: no I/O.

A timed kill (`kill-after-promise`) leaves its priest running and armed; its
`after` is the state the *next* action on that priest finds: an action that
needs the priest down (a restart) kills it first if its promise has not come
yet, so a plan may treat it as killed from the moment it is armed.

A network action's target is the network, not a priest: its argument is a
value (a partition, a probability, a delay range) and it needs the relay
(`network: relay`, the default); with `network: direct` it is refused.
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
DEFAULT_GARBAGE, MAX_GARBAGE = 20, 1000  # malformed inputs one `--garbage` sends
KILL_AFTER_PROMISE = "kill-after-promise"  # the timed kill: armed now, fired at the next promise
DOWN = frozenset({State.NOT_STARTED, State.KILLED, State.EXITED})


class Target(StrEnum):
    """What an action acts on."""

    PRIEST = "priest"
    NETWORK = "network"


@dataclass(frozen=True)
class Action:
    """One action: the states it applies to, the state it leaves, what it does.

    A network action applies to no priest (`allowed` is empty, `after` None);
    `metavar` names its argument (None: it takes none).
    """

    name: str
    allowed: frozenset[State]
    after: State | None
    help: str
    target: Target = Target.PRIEST
    metavar: str | None = "N"
    # A priest action's optional argument, given by its own option (garbage's --count).
    value_metavar: str | None = None


ACTIONS: dict[str, Action] = {a.name: a for a in (
    Action("ballot", frozenset({State.RUNNING}), State.RUNNING,
           "ask priest N to start a ballot (SIGTSTP)"),
    Action("kill", ALIVE, State.KILLED, "crash priest N (SIGKILL)"),
    Action(KILL_AFTER_PROMISE, frozenset({State.RUNNING}), State.KILLED,
           "crash priest N (SIGKILL) right after its next promise is durable; until then it "
           "runs, armed (a restart of N before that kills it first)"),
    Action("stop", ALIVE, State.EXITED, "stop priest N cleanly (SIGTERM, grace, SIGKILL)"),
    Action("pause", frozenset({State.RUNNING}), State.PAUSED, "freeze priest N (SIGSTOP)"),
    Action("resume", frozenset({State.PAUSED}), State.RUNNING, "unfreeze priest N (SIGCONT)"),
    Action("restart", DOWN, State.RUNNING,
           "start priest N again on its ledger (also one never started)"),
    Action("garbage", frozenset({State.RUNNING}), State.RUNNING,
           "send priest N malformed input (--count of them, default 20) where it listens: "
           "random bytes, cut headers, non-numbers, missing fields", value_metavar="COUNT"),
    Action("partition", frozenset(), None, "cut the network into groups: A,B/C,D (priests not "
           "named form one more group)", Target.NETWORK, "A,B/C,D"),
    Action("isolate", frozenset(), None, "cut priest N off from every other priest",
           Target.NETWORK, "N"),
    Action("drop", frozenset(), None, "lose each datagram with probability P (0 to 1)",
           Target.NETWORK, "P"),
    Action("duplicate", frozenset(), None, "deliver each datagram twice with probability P",
           Target.NETWORK, "P"),
    Action("delay", frozenset(), None, "hold each datagram LO to HI ms, uniformly (so "
           "reordered); 0: none", Target.NETWORK, "LO-HI"),
    Action("drop-success", frozenset(), None, "lose each Success datagram with probability P "
           "(1: all); the relay reads each datagram's type while this is on", Target.NETWORK, "P"),
    Action("heal", frozenset(), None, "remove every network fault", Target.NETWORK, None),
)}
PRIEST_ACTIONS = {n: a for n, a in ACTIONS.items() if a.target == Target.PRIEST}
NETWORK_ACTIONS = {n: a for n, a in ACTIONS.items() if a.target == Target.NETWORK}


def allows(action: str, state: str) -> bool:
    """True if `action` may be done to a priest in `state` (never for a network action)."""
    return state in ACTIONS[action].allowed
