"""The harness's errors: one tree, mapped to exit statuses in one place (`exit_status`).

Exit statuses: 2 for what the user typed (usage, config, an
unknown priest) or a run's files that cannot be read as a run; 1 for a
circumstance that stops the command (the cluster is already up or not up, a
priest that cannot start, an action that makes no sense in the priests'
current state). Anything else is a bug: 70.
"""

from __future__ import annotations

from node.errors import ConfigError, LedgerError, StartupError, UserError

__all__ = [
    "AlreadyUpError", "BusyError", "ConfigError", "ControlError", "InternalError", "LedgerError",
    "LinkError", "NotUpError", "RefusedError", "RunFilesError", "StartupError", "UnknownPriestError",
    "UsageError", "UserError", "BUG_STATUS", "PROG",
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


class BusyError(AlreadyUpError):
    """Another command holds the cluster's run lock: an `up` is bringing it up right now."""


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


class InternalError(UserError):
    """A failure of the harness itself (a bug), reported by a process that caught it."""

    exit_status = BUG_STATUS


class RunFilesError(UserError):
    """What a run left cannot be read as a run: a priest's directory is a file, say."""

    exit_status = 2


class LinkError(UserError):
    """A run file's name holds a symbolic link, or anything else but a regular file."""

    exit_status = 1


class ControlError(UserError):
    """The supervisor could not be reached or answered nonsense on its control socket."""

    exit_status = 1


# --- errors across the control socket ------------------------------------------------
# The supervisor answers a request it cannot do with the error's code; the client
# raises the same class again. Nothing matches message text.

CODES: dict[str, type[UserError]] = {
    "already_up": AlreadyUpError,
    "busy": BusyError,
    "link": LinkError,
    "run_files": RunFilesError,
    "not_up": NotUpError,
    "refused": RefusedError,
    "unknown_priest": UnknownPriestError,
    "startup": StartupError,
    "ledger": LedgerError,
    "config": ConfigError,
    "usage": UsageError,
    "control": ControlError,
    "internal": InternalError,
    "error": UserError,
}
_CODE_OF = {cls: code for code, cls in CODES.items()}


def to_wire(error: UserError) -> dict[str, object]:
    """A failed answer carrying `error`: its code, its one line, and a refusal's pid."""
    code = next(_CODE_OF[c] for c in type(error).__mro__ if c in _CODE_OF)
    return {"ok": False, "code": code, "error": error.message,
            "pid": error.pid if isinstance(error, RefusedError) else None}


def from_wire(answer: dict[str, object]) -> UserError:
    """The error a failed answer carries, rebuilt as the class the supervisor raised."""
    cls = CODES.get(str(answer.get("code")), ControlError)
    error = cls.__new__(cls)
    UserError.__init__(error, str(answer.get("error", "refused")))
    if isinstance(error, RefusedError):
        pid = answer.get("pid")
        error.pid = pid if isinstance(pid, int) else None
    return error
