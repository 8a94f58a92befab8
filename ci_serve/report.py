"""The JSON account of a run (``--report FILE``): result, steps with timings, errors.

A :class:`Run` is built by the edge (:mod:`ci_serve.cli`) from what the command returned: its result
word, its sections, the steps of its :class:`~ci_serve.steps.StepLog` and the error that ended it.
:meth:`Run.write` writes the file atomically (temp file + rename), so a reader never sees half a
report, even when the run is cancelled while writing.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ci_serve import __version__, secrets
from ci_serve.steps import Step


@dataclass
class Run:
    """What one command did. ``data`` holds the command's own sections (requests, plan, ...)."""

    command: str
    result: str = "error"
    exit_code: int | None = None
    steps: list[Step] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    started_at: float = field(default_factory=time.time)
    _t0: float = field(default_factory=time.monotonic, repr=False)

    def elapsed(self) -> float:
        return time.monotonic() - self._t0

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "tool": "ci-serve",
            "version": __version__,
            "command": self.command,
            "result": self.result,
            "exit_code": self.exit_code,
            "started_at": self.started_at,
            "elapsed_s": round(self.elapsed(), 3),
            "steps": [s.as_dict() for s in self.steps],
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
            "errors": self.errors,
        }
        body.update(self.data)
        masked: dict[str, Any] = secrets.mask_data(body)
        return masked

    def write(self, path: str | os.PathLike[str] | None) -> None:
        if path:
            write_json_atomic(Path(path), self.as_dict())


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def current_umask() -> int:
    """This process's umask, read without changing it (Linux's /proc), else the usual 0o022."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` so that ``path`` holds either the old content or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        # mkstemp makes the file 0600; give it the mode open() would (0666 less the umask), so a
        # later step running as another user (the Actions runner user, uid 1001) can read it.
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
