"""The error tree shared by the priest and the harness.

Every error a user can cause is a `UserError`: its message is one line that
says what and where, and `exit_status` is the process exit code for it.
"""

from __future__ import annotations


class UserError(Exception):
    """An error caused by input or circumstances; printed as one line, no traceback."""

    exit_status = 2

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(UserError):
    """A config file that cannot be used: names the file and the key."""

    def __init__(self, path: str, key: str, problem: str) -> None:
        where = f"{path}: {key}: " if key else f"{path}: "
        super().__init__(where + problem)
        self.path = path
        self.key = key
        self.problem = problem


class LedgerError(UserError):
    """A ledger or decree file that cannot be trusted; the priest refuses to start."""

    exit_status = 1


class StartupError(UserError):
    """A priest that cannot start (port taken, another instance running...)."""

    exit_status = 1
