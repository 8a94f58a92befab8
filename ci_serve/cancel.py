"""The cancel a signal asked for, remembered until someone acts on it.

The CLI's signal handler raises :class:`~ci_serve.errors.Cancelled` wherever the main thread is. When
that is inside a library with a broad ``except Exception`` (Ray Serve's client calls), the exception
can be swallowed and the run would go on as if nothing happened. So the handler also records it here,
and the wait loops that call into Ray (never the cleanup paths) call :func:`check` on every round.
"""

from __future__ import annotations

from ci_serve.errors import Cancelled

_requested: Cancelled | None = None


def request(err: Cancelled) -> None:
    global _requested
    _requested = err


def check() -> None:
    """Raise the recorded cancel, if a signal asked for one."""
    if _requested is not None:
        raise _requested


def clear() -> None:
    """For tests running the CLI in-process."""
    global _requested
    _requested = None
