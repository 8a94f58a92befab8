"""ci-serve's side of the smoke test's Ray driver (:mod:`ci_serve.cluster.driver`, run as a script).

The driver runs under the Python of the environment under test, so the app is imported and deployed
with that environment's Ray. Each call writes one JSON line and waits for one answer, in short
rounds so that a cancel (the CLI's signal handler raises in this thread) and the deadline are seen.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import time
from pathlib import Path
from typing import Any

from ci_serve import cancel
from ci_serve.cluster.head import masked_tail
from ci_serve.errors import CiServeError

SCRIPT = Path(__file__).resolve().parent.parent / "cluster" / "driver.py"


class DriverError(CiServeError):
    """The driver process died or did not answer in time (not the app's fault)."""

    result = "error"


class DriverProcess:
    def __init__(self, python: str, env: dict[str, str], cwd: Path, log_path: Path) -> None:
        self.python = python
        self.env = env
        self.cwd = cwd
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.hello: dict[str, Any] | None = None
        self._buffer = b""

    def start(self) -> None:
        with open(self.log_path, "wb") as log:
            # a session of its own: a Ctrl-C or the runner's SIGTERM to our process group is ours to
            # handle; the driver is SIGKILLed in stop(), and leaves by itself if we die
            self.proc = subprocess.Popen([self.python, "-u", str(SCRIPT)], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=log, cwd=self.cwd, env=self.env,
                                         start_new_session=True)

    @property
    def ray_version(self) -> str | None:
        return (self.hello or {}).get("ray_version")

    def wait_hello(self, timeout: float) -> dict[str, Any]:
        if self.hello is None:
            self.hello = self._read(timeout, "start")
        return self.hello

    def call(self, op: str, timeout: float, **fields: Any) -> dict[str, Any]:
        self.send(op, **fields)
        return self.answer(op, timeout)

    def send(self, op: str, **fields: Any) -> None:
        """Queue a request; the driver works through them in order (:meth:`answer` reads the reply)."""
        assert self.proc is not None and self.proc.stdin is not None
        try:
            self.proc.stdin.write((json.dumps({"op": op, **fields}) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise self._died(op) from None

    def answer(self, op: str, timeout: float) -> dict[str, Any]:
        self.wait_hello(timeout)
        return self._read(timeout, op)

    def _read(self, timeout: float, op: str) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + max(timeout, 0.1)
        while b"\n" not in self._buffer:
            cancel.check()
            left = deadline - time.monotonic()
            if left <= 0:
                raise DriverTimeout(op, timeout)
            ready, _, _ = select.select([fd], [], [], min(0.2, left))
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise self._died(op)
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def _died(self, op: str) -> DriverError:
        code = None
        if self.proc is not None:
            try:
                code = self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:  # closed its end but lives on: stop() kills it
                pass
        return DriverError(f"the Ray driver process exited (code {code}) during {op!r}",
                           f"its log is below; it ran {self.python}", details=self.log_tail())

    def log_tail(self, lines: int = 30) -> str:
        return masked_tail(self.log_path, lines)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.kill()  # no goodbye: the head is thrown away next, and Ray's shutdown can hang
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


class DriverTimeout(DriverError):
    def __init__(self, op: str, timeout: float) -> None:
        super().__init__(f"the Ray driver did not answer {op!r} within {timeout:.0f}s", "see the log below")
        self.op = op
