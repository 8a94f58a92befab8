"""Typed errors, raised deep and rendered once at the edge (the CLI or the action).

Every error carries what happened (``message``), what to do about it (``hint``) and the exit
code its class of failure has, the same for every command:

- 0 done
- 1 a check or a deploy failed and the previous version is serving
- 2 bad input or credentials, nothing was changed
- 3 failed and the previous state could not be restored (a person must look)
"""

from __future__ import annotations

from typing import Any

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_NOT_RESTORED = 3


class CiServeError(Exception):
    """Base of every error a user can act on. Never carries a secret in its text."""

    exit_code = EXIT_FAILED
    #: the ``result`` word written to reports and the action's ``result`` output
    result = "failed"

    def __init__(self, message: str, hint: str | None = None, *, details: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        #: extra lines (a log tail, a traceback from the cluster) shown after the message
        self.details = details

    def as_dict(self) -> dict[str, Any]:
        return {"type": type(self).__name__, "message": self.message, "hint": self.hint,
                "details": self.details, "exit_code": self.exit_code}


class InputError(CiServeError):
    """A file, flag or argument is invalid. Reported before anything is changed."""

    exit_code = EXIT_BAD_INPUT
    result = "error"


class ConfigError(InputError):
    """A Serve config is invalid. ``problems`` holds every finding, each with its location."""

    def __init__(self, message: str, hint: str | None = None, *, problems: list[Any] | None = None,
                 details: str | None = None):
        super().__init__(message, hint, details=details)
        self.problems = problems or []

    def as_dict(self) -> dict[str, Any]:
        data = super().as_dict()
        data["problems"] = [p.as_dict() if hasattr(p, "as_dict") else p for p in self.problems]
        return data


class CredentialsError(InputError):
    """The dashboard refused our token, or none was found."""


class DashboardError(InputError):
    """The address does not answer as a Ray dashboard (unreachable, not Ray, too old)."""


class CheckFailed(CiServeError):
    """A smoke request got a wrong answer, or an application failed to become RUNNING."""


class DeployFailed(CiServeError):
    """A deploy failed and the previous version is still serving (it was restored or never touched)."""

    result = "rolled-back"


class RestoreFailed(CiServeError):
    """A deploy failed and the previous state could not be restored: a person must look."""

    exit_code = EXIT_NOT_RESTORED


class Cancelled(CiServeError):
    """SIGINT or SIGTERM arrived; cleanup ran."""

    exit_code = EXIT_FAILED  # the candidate was removed; the previous version still serves


class Unexpected(CiServeError):
    """An exception no code path names (a bug): turned into a verdict at the edge, never a traceback.

    Its exit code is the verdict's (:func:`ci_serve.deploy.verdict.exit_code`): 2 when this process
    sent no write, 3 when it did (what serves is then unknown). The traceback goes into the report only.
    """

    result = "failed"

    def __init__(self, exc: BaseException, *, exit_code: int, trace: str):
        super().__init__(f"ci-serve stopped on an unexpected error (a bug; please report it): "
                         f"{type(exc).__name__}: {exc}",
                         "nothing was written to a cluster" if exit_code == EXIT_BAD_INPUT else
                         "a write of this run may have reached the cluster: `ci-serve status` shows what runs")
        self.exit_code = exit_code
        self.result = "error" if exit_code == EXIT_BAD_INPUT else "failed"
        self.traceback = trace

    def as_dict(self) -> dict[str, Any]:
        return {**super().as_dict(), "traceback": self.traceback}
