"""Output for people reading CI logs: one line per step with elapsed time, a heartbeat while
waiting, and a closing line that says what happened and what to do next.

Everything goes through :func:`say`, which masks registered secrets. Steps are timed and printed by
:class:`ci_serve.steps.StepLog`, which keeps them for the report, so the log and the report never disagree.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import TextIO

from ci_serve import secrets
from ci_serve.errors import CiServeError

_lock = threading.Lock()
_stream: TextIO | None = None  # tests may redirect; default is sys.stderr at call time
_listeners: list[Callable[[str], None]] = []  # e.g. the Action collecting WARN lines for annotations


def listen(listener: Callable[[str], None]) -> None:
    """Call ``listener`` with every masked text :func:`say` prints (from then on, in this process)."""
    _listeners.append(listener)


def say(text: str = "", *, stream: TextIO | None = None) -> None:
    out = stream or _stream or sys.stderr
    masked = secrets.mask(text)
    with _lock:
        out.write(masked + "\n")
        out.flush()
        listeners = list(_listeners)
    for listener in listeners:
        listener(masked)


def render_error(err: CiServeError) -> None:
    say(f"ERROR {err.message}")
    if err.details:
        for line in err.details.rstrip().splitlines():
            say(f"    {line}")
    if err.hint:
        say(f"TIP   {err.hint}")
