"""Warnings for the GitHub UI: every ``WARN  `` line ci-serve prints during the run (keys Ray ignores,
``--insecure``, a token over plain http, Ray version skew, ...) becomes a ``::warning`` annotation,
at the file and line when the warning starts with ``file:line[:column]:``, and a line of the job
summary. Collected from :func:`ci_serve.console.say`, the one door all printing goes through, so no
warning is missed that the log shows.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

from ci_serve import console
from ci_serve.action.summary import Annotation, relative

PREFIX = "WARN  "
_WHERE = re.compile(r"^(?P<file>[^\s:][^:\n]*?):(?P<line>\d+)(?::(?P<col>\d+))?: (?P<message>.*)$", re.S)


class Warnings:
    """The warnings printed since :meth:`listen`, in order, each once."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self._lock = threading.Lock()

    def listen(self) -> Warnings:
        console.listen(self._heard)
        return self

    def _heard(self, text: str) -> None:
        if text.startswith(PREFIX):
            body = text[len(PREFIX):].strip()
            with self._lock:
                if body and body not in self.texts:
                    self.texts.append(body)


def annotation(text: str, workspace: Path) -> Annotation:
    """``file:line:col: message`` (validate's form) at its place; anything else as a plain warning.
    A second line (``fix: ...``) stays in the message."""
    first, _, rest = text.partition("\n")
    found = _WHERE.match(first)
    message = " ".join((first if not found else found["message"]).split())
    if rest.strip():
        message += f" ({' '.join(rest.split())})"
    if found:
        where = relative(found["file"], workspace)
        if where and (workspace / where).is_file():
            return Annotation(message, "ci-serve warning", where, int(found["line"]),
                              int(found["col"]) if found["col"] else None, level="warning")
    return Annotation(" ".join(first.split()) + (f" ({' '.join(rest.split())})" if rest.strip() else ""),
                      "ci-serve warning", level="warning")


def warning_annotations(texts: list[str], workspace: Path) -> list[Annotation]:
    return [annotation(text, workspace) for text in texts]
