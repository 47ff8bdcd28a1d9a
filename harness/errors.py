"""The harness's errors: one tree, mapped to exit statuses in one place (`exit_status`).

Exit statuses (DESIGN.md): 2 for what the user typed (usage, config, an
unknown priest) or a run's files that cannot be read as a run; 1 for a
circumstance that stops the command (the cluster is already up or not up, a
priest that cannot start, an action that makes no sense in the priests'
current state). Anything else is a bug: 70.
"""

from __future__ import annotations

from node.errors import ConfigError, LedgerError, StartupError, UserError

__all__ = [
    "AlreadyUpError", "ConfigError", "ControlError", "LedgerError", "NotUpError",
    "RefusedError", "RunFilesError", "StartupError", "UnknownPriestError", "UsageError",
    "UserError", "BUG_STATUS", "PROG",
]

PROG = "paxos-harness"  # the command, as messages name it
BUG_STATUS = 70  # EX_SOFTWARE from sysexits.h: an internal error


class UsageError(UserError):
    """A command line that cannot be acted on (a bad option value)."""

    exit_status = 2


class UnknownPriestError(UserError):
    """A priest name that is not in the cluster's config."""

    exit_status = 2


class AlreadyUpError(UserError):
    """`up` on a cluster whose supervisor is running."""

    exit_status = 1


class NotUpError(UserError):
    """A command that needs a running cluster found none."""

    exit_status = 1


class RefusedError(UserError):
    """An action that makes no sense now (kill a priest that is down, pause a paused one).

    `pid` is the process of the priest it names, when there is one.
    """

    exit_status = 1

    def __init__(self, message: str, *, pid: int | None = None) -> None:
        super().__init__(message)
        self.pid = pid


class RunFilesError(UserError):
    """What a run left cannot be read as a run: a priest's directory is a file, say."""

    exit_status = 2


class ControlError(UserError):
    """The supervisor could not be reached or answered nonsense on its control socket."""

    exit_status = 1
