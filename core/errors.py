"""The platform's domain exceptions.

Every component raises one of these; the CLI maps them to exit codes and the APIs to
status codes in one place each. A message says what is wrong; ``hint`` says how to fix it.
"""

from __future__ import annotations


class GeomlopsError(Exception):
    """Base of every error the platform reports to a person."""

    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message


class ConfigError(GeomlopsError):
    """A setting is missing, contradictory or unusable."""


class StackError(GeomlopsError):
    """The local stack could not be started, stopped or reached."""


class StackNotRunning(StackError):
    """A command needs the local stack and it is not up."""


class ServiceUnavailable(StackError):
    """A service the command needs stopped answering (or answers only with errors).

    Raised within the bounded time the settings give each client (the database's
    ``connect_timeout``/``statement_timeout``, MLflow's request timeout and retries), with
    the service named, so a dead dependency is an error in seconds, never a silent hang.
    """


class NotFoundError(GeomlopsError):
    """A named model, dataset, item, run or file does not exist."""


class ValidationFailed(GeomlopsError):
    """Input was checked and rejected; ``problems`` lists every finding."""

    def __init__(self, message: str, problems: list[str] | None = None, **kw: str) -> None:
        super().__init__(message, **kw)
        self.problems = problems or []

    def __str__(self) -> str:
        lines = [super().__str__(), *(f"  - {p}" for p in self.problems)]
        return "\n".join(lines)


class ConflictError(GeomlopsError):
    """The request contradicts what is already recorded."""


class AuthError(GeomlopsError):
    """Missing, wrong or insufficient credentials."""
