"""What a stage did, step by step: each step timed, printed when it ends, and kept for the report.

A stage (validate, smoke, deploy) takes a :class:`StepLog` and records its steps in it; the edge
(:mod:`ci_serve.cli`, the action) turns the log into the report's ``steps`` and ``timings``. The log
knows nothing about reports, so the library never does either.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from ci_serve.console import say
from ci_serve.errors import CiServeError


@dataclass
class Step:
    name: str
    status: str = "running"  # running | ok | failed | skipped
    started_at: float = field(default_factory=time.time)
    elapsed_s: float | None = None
    detail: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "elapsed_s": self.elapsed_s,
                "detail": self.detail}


@dataclass
class StepLog:
    """The steps of one run, in order, and how long each took (by name: a repeated name keeps the last)."""

    steps: list[Step] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    _t0: float = field(default_factory=time.monotonic, repr=False)

    def elapsed(self) -> float:
        return time.monotonic() - self._t0

    @contextmanager
    def step(self, name: str, *, heartbeat: Callable[[], str] | None = None,
             every: float = 5.0) -> Iterator[Step]:
        """Time one step, print ``[  1.2s] ok   name`` when it ends (or ``FAIL``), and keep it.

        ``heartbeat``, when given, is called every ``every`` seconds while the step runs and its text
        printed, so a long wait is never silent.
        """
        st = Step(name=name)
        self.steps.append(st)
        t0 = time.monotonic()
        stop = threading.Event()
        if heartbeat is not None:
            threading.Thread(target=_beat, args=(name, heartbeat, every, t0, stop), daemon=True).start()
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
            self.timings[name] = st.elapsed_s
            word = {"ok": "ok  ", "failed": "FAIL", "skipped": "skip"}.get(st.status, st.status)
            extra = f"  ({st.detail})" if st.detail else ""
            say(f"[{_fmt(st.elapsed_s)}] {word} {name}{extra}")


def _beat(name: str, heartbeat: Callable[[], str], every: float, t0: float, stop: threading.Event) -> None:
    while not stop.wait(every):
        try:
            msg = heartbeat()
        except Exception:  # a heartbeat must never break the step
            continue
        if msg:
            say(f"[{_fmt(time.monotonic() - t0)}] ...  {name}: {msg}")


def _fmt(seconds: float) -> str:
    return f"{seconds:5.1f}s"


class StageResult(Protocol):
    """What a command hands the edge: the result word, the report's own sections, and the error that
    ended it (``None``: it did what was asked). A stage that fails keeps what it saw so far (requests
    checked, application states), so the report shows it next to the error."""

    @property
    def outcome(self) -> str: ...

    @property
    def error(self) -> CiServeError | None: ...

    def sections(self) -> dict[str, Any]: ...


class _Stoppable(Protocol):
    error: CiServeError | None


@contextmanager
def stops(result: _Stoppable) -> Iterator[None]:
    """Around a stage's body: the :class:`CiServeError` that ends it becomes ``result.error``, so the
    stage returns what it saw until then instead of raising (every stage does this the same way)."""
    try:
        yield
    except CiServeError as err:
        result.error = err


@dataclass
class Done:
    """The result of a command with no stage of its own (build, status, config): a word and its sections."""

    outcome: str
    data: dict[str, Any] = field(default_factory=dict)
    error: CiServeError | None = None

    def sections(self) -> dict[str, Any]:
        return self.data
