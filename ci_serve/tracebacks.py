"""Reading the Python tracebacks Ray reports: the line that names the exception, and the user's frames.

Serve puts a traceback into an application's or a deployment's status message, and into the
replica and controller logs, when the user's code raised. Both the smoke test (on its temporary
head) and the deploy gate (on a real cluster) show the exception line as the cause of a failure and
the trimmed traceback as its details, so both read them here.
"""

from __future__ import annotations

import re

_ANSI = re.compile(r"\x1b\[[0-9;]*m|\[3[0-9]m|\[39m")
#: ``ValueError: bad``, ``ModuleNotFoundError: No module named 'x'``, ``KeyboardInterrupt``,
#: ``ray.exceptions.RayTaskError(ValueError): ...``: a dotted name ending in one of Python's
#: exception suffixes, on a line of its own or followed by a colon and the message
_EXCEPTION_LINE = re.compile(
    r"^\s*[A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|Failure)(?:\([A-Za-z_][\w.]*\))?(?::.*)?$")
#: frames of Ray, importlib and asyncio machinery: noise around the user's own frame
_NOISE = ("/site-packages/ray/", "<frozen importlib", "/importlib/__init__.py", "/concurrent/futures/",
          "/asyncio/", "python/ray/_raylet.pyx")
_TRACEBACK_HEADER = "Traceback (most recent call last):"


def exception_line(text: str | None) -> str | None:
    """The last ``SomeError: message`` line of a traceback, or None when ``text`` holds none.

    Ray wraps a user's exception in its own (``RuntimeError: Traceback (most recent call last):``
    and the inner traceback below it); such a wrapper line is passed over for the inner one.
    """
    for line in reversed(_ANSI.sub("", text or "").splitlines()):
        if _EXCEPTION_LINE.match(line) and not line.rstrip().endswith(_TRACEBACK_HEADER):
            return line.strip()
    return None


def trim_traceback(text: str) -> str:
    """``text`` without ANSI colours and without the frames of Ray's and Python's machinery."""
    text = _ANSI.sub("", text)
    out: list[str] = []
    skipping = False
    for line in text.splitlines():
        stripped = line.lstrip()
        if stripped.startswith('File "'):
            skipping = any(n in stripped for n in _NOISE)
            if skipping:
                continue
        elif skipping and line.startswith("    ") and not _EXCEPTION_LINE.match(line):
            continue  # the source and caret lines of a skipped frame
        else:
            skipping = False
        out.append(line)
    return "\n".join(out)
