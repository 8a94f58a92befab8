"""Running ``ci-serve`` in the background and stopping it as the Actions runner does, for the tests.

The runner cancels a job with SIGINT, then SIGTERM 7.5 s later, then SIGKILL 2.5 s after that.
:func:`interrupt` does exactly that, and fails when the runner had to end the process (the SIGTERM
killed it, or the SIGKILL was needed): its cleanup was then cut short, whatever it still had to do.
How long the exit took is returned (and printed by the tests).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable


def stop_group(proc: subprocess.Popen | None) -> None:
    """SIGKILL the process group of a daemon a test started in a session of its own (HAProxy, Prometheus)."""
    if proc is not None and proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        proc.wait(timeout=10)


def wait_until(condition: Callable[[], object], timeout: float, what: str, poll: float = 0.2) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f} s"
        time.sleep(poll)


class Background:
    """``ci-serve`` in the background, its stderr collected line by line by a thread."""

    def __init__(self, cmd: list[str], env: dict[str, str]):
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self.out = ""
        self._err = threading.Thread(target=lambda: self.lines.extend(iter(self.proc.stderr.readline, "")),
                                     daemon=True)
        self._out = threading.Thread(target=self._read_out, daemon=True)
        self._err.start()
        self._out.start()

    def _read_out(self) -> None:
        self.out = self.proc.stdout.read()

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            assert self.proc.poll() is None or any(text in line for line in self.lines), \
                f"exited {self.proc.returncode} before {text!r}:\n{self.log}"
            assert time.monotonic() < deadline, f"no {text!r} within {timeout}s:\n{self.log}"
            time.sleep(0.1)

    def finish(self, timeout: float = 400) -> int:
        try:
            code = self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        self._err.join(timeout=10)
        self._out.join(timeout=10)
        return code


#: the runner's cancel: SIGINT, then SIGTERM this long after, then SIGKILL 2.5 s after that (actions/runner)
SIGTERM_AFTER_S = 7.5
SIGKILL_AFTER_S = 2.5


def interrupt(proc: subprocess.Popen, sigterm_after: float = SIGTERM_AFTER_S) -> float:
    """The runner's cancel: SIGINT, then SIGTERM ``sigterm_after`` seconds later, then SIGKILL 2.5 s after
    that. Returns the seconds from the SIGINT to the exit.

    Fails when the runner had to end the process: the SIGKILL was needed, or the SIGTERM ended it. A SIGTERM
    that came during the cleanup is no failure by itself: ci-serve ignores every signal after the first while
    it cleans up, and bounds that cleanup (:data:`ci_serve.cancel.CLEANUP_S`) to end before the SIGKILL."""
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=sigterm_after)
        return time.monotonic() - t0
    except subprocess.TimeoutExpired:
        pass
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=SIGKILL_AFTER_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(f"still running {sigterm_after + SIGKILL_AFTER_S:.1f} s after SIGINT: the runner's "
                             "SIGKILL was needed, the cleanup was cut short") from None
    took = time.monotonic() - t0
    if proc.returncode == -signal.SIGTERM:
        raise AssertionError(f"still running {sigterm_after:.1f} s after SIGINT, and the runner's SIGTERM ended it: "
                             "the cleanup was cut short")
    print(f"the SIGTERM came during the cleanup (ignored); exited {took:.1f} s after SIGINT")
    return took
