"""Cancel on SIGINT/SIGTERM, and the cancel a signal asked for, remembered until someone acts on it.

:func:`install_signal_handlers` is called by both edges (the CLI and the action). The handler raises
:class:`~ci_serve.errors.Cancelled` wherever the main thread is. When that is inside a library with a
broad ``except Exception`` (Ray Serve's client calls), the exception can be swallowed and the run
would go on as if nothing happened. So the handler also records it here, and the wait loops that
call into Ray (never the cleanup paths) call :func:`check` on every round.
"""

from __future__ import annotations

import signal
from types import FrameType

from ci_serve.console import say
from ci_serve.errors import Cancelled

_requested: Cancelled | None = None


class CancelOnSignal:
    """The first SIGINT/SIGTERM raises :class:`Cancelled` where the program is, so every ``finally``
    (remove the candidate, stop the head, write the report) runs; later signals are ignored so the
    runner's SIGTERM after SIGINT cannot interrupt that cleanup."""

    def __init__(self) -> None:
        self.fired = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.fired:
            say(f"... {signal.Signals(signum).name} again: still cleaning up")
            return
        self.fired = True
        err = Cancelled(f"cancelled by {signal.Signals(signum).name}",
                        "the run was stopped before it finished; cleanup ran, see the steps above")
        request(err)  # in case library code swallows the exception raised here
        raise err


def install_signal_handlers() -> CancelOnSignal:
    """SIGINT and SIGTERM raise :class:`Cancelled` from now on (the first one; later ones are ignored)."""
    handler = CancelOnSignal()
    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return handler


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
