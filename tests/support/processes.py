"""Running ``ci-serve`` in the background and stopping it as the Actions runner does, for the tests.

The runner cancels a job with SIGINT, then SIGTERM 7.5 s later, then SIGKILL 2.5 s after that. The
tests send the SIGINT only and wait: a process that exits on its own after it has stopped before
any SIGTERM was needed. How long that took is printed, not asserted (a loaded 2-core machine is
slower than a runner), so what is checked is how the process ended.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Callable


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


def interrupt(proc: subprocess.Popen, bound: float = 120.0) -> float:
    """The runner's SIGINT, and nothing after it: the process must exit on its own within ``bound`` (far
    more than the runner's 7.5 s, for a loaded machine). Returns the seconds from the SIGINT to the exit;
    fails, after killing the process group's leader, if no exit came."""
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=bound)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(f"still running {bound:.0f} s after SIGINT: it would have needed the runner's "
                             "SIGTERM") from None
    return time.monotonic() - t0
