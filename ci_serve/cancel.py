"""Cancel on SIGINT/SIGTERM, and the cancel a signal asked for, remembered until someone acts on it.

:func:`install_signal_handlers` is called by both edges (the CLI and the action). The handler raises
:class:`~ci_serve.errors.Cancelled` wherever the main thread is. When that is inside a library with a
broad ``except Exception`` (Ray Serve's client calls), the exception can be swallowed and the run
would go on as if nothing happened. So the handler also records it here, and the wait loops that
call into Ray (never the cleanup paths) call :func:`check` on every round.

The runner sends SIGTERM 7.5 s after SIGINT and SIGKILL 2.5 s after that. A cleanup that waits on
Ray as long as it would otherwise is cut off by the SIGKILL halfway, its report unwritten. So once a
cancel was asked for, every wait on the network (each dashboard request, each retry, each poll) asks
:func:`time_left` how long it may take: together they end :data:`CLEANUP_S` after the signal.
"""

from __future__ import annotations

import signal
import time
from types import FrameType

from ci_serve.console import say
from ci_serve.errors import Cancelled

#: from the signal to the end of the last wait on the network: room for the report and the exit before the
#: runner's SIGTERM (7.5 s, ignored while cleaning up) and well before its SIGKILL (10 s)
CLEANUP_S = 6.0
#: why a request or a command was not started after a cancel
SPENT = "the time a cancelled run has to clean up is spent"

_requested: Cancelled | None = None
_deadline: float | None = None


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
    global _requested, _deadline
    _requested = err
    if _deadline is None:
        _deadline = time.monotonic() + CLEANUP_S


def spent() -> bool:
    """A cancel was asked for and its cleanup's time is gone: start no more waits."""
    return _deadline is not None and time.monotonic() >= _deadline


def pause(seconds: float) -> None:
    """``time.sleep`` between the rounds of a poll, never past the cleanup's end after a cancel."""
    time.sleep(time_left(seconds))


def time_left(wanted: float) -> float:
    """``wanted`` seconds, or once a cancel was asked for, no more than what is left of the cleanup's
    :data:`CLEANUP_S` (0.0 when it is spent: send nothing more)."""
    if _deadline is None:
        return wanted
    return max(0.0, min(wanted, _deadline - time.monotonic()))


def check() -> None:
    """Raise the recorded cancel, if a signal asked for one."""
    if _requested is not None:
        raise _requested


def clear() -> None:
    """For tests running the CLI in-process."""
    global _requested, _deadline
    _requested = None
    _deadline = None
