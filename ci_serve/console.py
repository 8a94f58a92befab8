"""Output for people reading CI logs: one line per step with elapsed time, a heartbeat while
waiting, and a closing line that says what happened and what to do next.

Everything goes through :func:`say`, which masks registered secrets. Steps are recorded in the
run's report as they are printed, so the log and the report never disagree.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

from ci_serve import secrets
from ci_serve.errors import CiServeError
from ci_serve.report import Run, Step

_lock = threading.Lock()
_stream: TextIO | None = None  # tests may redirect; default is sys.stderr at call time


def say(text: str = "", *, stream: TextIO | None = None) -> None:
    out = stream or _stream or sys.stderr
    with _lock:
        out.write(secrets.mask(text) + "\n")
        out.flush()


def _fmt(seconds: float) -> str:
    return f"{seconds:5.1f}s"


@contextmanager
def step(run: Run | None, name: str, *, heartbeat: Callable[[], str] | None = None,
         every: float = 5.0) -> Iterator[Step]:
    """Time one step, print ``[  1.2s] ok   name`` when it ends (or ``FAIL``), record it in ``run``.

    ``heartbeat``, when given, is called every ``every`` seconds while the step runs and its text
    printed, so a long wait is never silent.
    """
    st = Step(name=name)
    if run is not None:
        run.steps.append(st)
    t0 = time.monotonic()
    stop = threading.Event()
    beat_thread = None
    if heartbeat is not None:
        def beat() -> None:
            while not stop.wait(every):
                try:
                    msg = heartbeat()
                except Exception:  # a heartbeat must never break the step
                    continue
                if msg:
                    say(f"[{_fmt(time.monotonic() - t0)}] ...  {name}: {msg}")

        beat_thread = threading.Thread(target=beat, daemon=True)
        beat_thread.start()
    try:
        yield st
    except BaseException as exc:
        st.status = "failed"
        if st.detail is None and isinstance(exc, CiServeError):
            st.detail = exc.message
        raise
    else:
        if st.status == "running":
            st.status = "ok"
    finally:
        stop.set()
        st.elapsed_s = round(time.monotonic() - t0, 3)
        if run is not None:
            run.timings[name] = st.elapsed_s
        word = {"ok": "ok  ", "failed": "FAIL", "skipped": "skip"}.get(st.status, st.status)
        extra = f"  ({st.detail})" if st.detail else ""
        say(f"[{_fmt(st.elapsed_s)}] {word} {name}{extra}")


def render_error(err: CiServeError) -> None:
    say(f"ERROR {err.message}")
    if err.details:
        for line in err.details.rstrip().splitlines():
            say(f"    {line}")
    if err.hint:
        say(f"TIP   {err.hint}")
