"""Table tests of reading Ray's tracebacks: the exception line (the cause the smoke test and the deploy
gate show) and the trimmed traceback."""

from __future__ import annotations

import pytest

from ci_serve.tracebacks import exception_line, trim_traceback

RAY_WRAPPED = ("Error:\n\x1b[36mray::X\x1b[39m\n"
               '  File "/v/site-packages/ray/serve/_private/replica.py", line 1, in f\n    raise X\n    ^^^\n'
               "RuntimeError: Traceback (most recent call last):\n"
               '  File "/tmp/app.py", line 5, in __init__\n    raise ValueError("no")\nValueError: no\n')
IMPORT_FAILED = ("Deploying app 'a' failed with exception:\nTraceback (most recent call last):\n"
                 '  File "/x/importlib/__init__.py", line 126, in import_module\n'
                 "ModuleNotFoundError: No module named 'nope'\n")

EXCEPTION_LINES = [
    ("import error in an application's message", IMPORT_FAILED, "ModuleNotFoundError: No module named 'nope'"),
    ("Ray's wrapper passed over for the inner exception", RAY_WRAPPED, "ValueError: no"),
    ("coloured by Ray's log", "\x1b[31mKeyError: 'x'\x1b[39m", "KeyError: 'x'"),
    ("indented, as in a chained traceback", "boom\n    ValueError: bad\n", "ValueError: bad"),
    ("the last of several", "TypeError: first\nmore\nValueError: last", "ValueError: last"),
    ("a dotted name", "ray.exceptions.RayActorError: The actor died", "ray.exceptions.RayActorError: The actor died"),
    ("Ray's task error naming the user's", "ray.exceptions.RayTaskError(ZeroDivisionError): ray::f()",
     "ray.exceptions.RayTaskError(ZeroDivisionError): ray::f()"),
    ("a bare name", "Traceback (most recent call last):\n  File \"a.py\", line 1\nKeyboardInterrupt",
     "KeyboardInterrupt"),
    ("exit and failure suffixes", "SystemExit: 3", "SystemExit: 3"),
    ("a Failure", "WorkerCrashedFailure: the worker died", "WorkerCrashedFailure: the worker died"),
    ("plain text", "nothing to see", None),
    ("an empty message", "", None),
    ("no message at all", None, None),
    ("a sentence that mentions an error", "ValueError occurred somewhere", None),
    ("a warning is not the cause", "ValueError: bad\nUserWarning: later", "ValueError: bad"),
    ("Ray's own 'Error:' heading", "Error: No available node types can fulfill resource request", None),
]


@pytest.mark.parametrize("text, line", [(t, w) for _, t, w in EXCEPTION_LINES], ids=[c[0] for c in EXCEPTION_LINES])
def test_exception_line(text: str | None, line: str | None) -> None:
    assert exception_line(text) == line


def test_trim_traceback_drops_ray_frames_and_colours() -> None:
    trimmed = trim_traceback(RAY_WRAPPED)
    assert "site-packages/ray" not in trimmed and "/tmp/app.py" in trimmed and "\x1b" not in trimmed
    assert exception_line(trimmed) == "ValueError: no"


def test_trim_traceback_keeps_an_exception_line_inside_a_skipped_frame() -> None:
    text = ('  File "/v/site-packages/ray/_private/worker.py", line 9, in get\n    raise value\n'
            "    ValueError: inner\n")
    assert trim_traceback(text).splitlines() == ["    ValueError: inner"]
