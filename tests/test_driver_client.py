"""ci-serve's side of the driver protocol, against stand-in driver processes (no Ray): answers in
order, a driver that dies is an error with its log, one that does not answer times out, and a cancel
recorded by a signal is raised while waiting."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ci_serve import cancel
from ci_serve.cluster.driver_client import DriverError, DriverProcess, DriverTimeout
from ci_serve.errors import Cancelled

ECHO = '''
import json, sys
print("user code printing to stderr", file=sys.stderr)
sys.stdout.write(json.dumps({"ok": True, "op": "hello", "ray_version": "9.9.9", "python": "3"}) + "\\n")
sys.stdout.flush()
for line in sys.stdin:
    req = json.loads(line)
    if req["op"] == "die":
        print("driver log: dying now", file=sys.stderr)
        sys.exit(7)
    if req["op"] == "hang":
        continue
    sys.stdout.write(json.dumps({"ok": True, "echo": req}) + "\\n")
    sys.stdout.flush()
'''


def stand_in(tmp_path: Path) -> DriverProcess:
    """A "python" that runs the stand-in whatever script it is given."""
    script = tmp_path / "standin.py"
    script.write_text(ECHO)
    python = tmp_path / "python"
    python.write_text(f"#!/bin/sh\nexec {sys.executable} {script}\n")
    python.chmod(0o755)
    driver = DriverProcess(str(python), {"PATH": "/usr/bin:/bin"}, tmp_path, tmp_path / "driver.log")
    driver.start()
    return driver


def test_answers_come_back_in_order_and_hello_says_the_ray(tmp_path: Path) -> None:
    driver = stand_in(tmp_path)
    try:
        driver.send("first", n=1)
        driver.send("second", n=2)
        assert driver.answer("first", 10)["echo"] == {"op": "first", "n": 1}
        assert driver.answer("second", 10)["echo"] == {"op": "second", "n": 2}
        assert driver.ray_version == "9.9.9"
    finally:
        driver.stop()


def test_a_driver_that_dies_is_an_error_with_its_log(tmp_path: Path) -> None:
    driver = stand_in(tmp_path)
    try:
        with pytest.raises(DriverError) as info:
            driver.call("die", 10)
        assert "exited (code 7) during 'die'" in info.value.message
        assert "driver log: dying now" in info.value.details
    finally:
        driver.stop()


def test_no_answer_times_out_and_a_cancel_is_raised_while_waiting(tmp_path: Path) -> None:
    driver = stand_in(tmp_path)
    try:
        with pytest.raises(DriverTimeout):
            driver.call("hang", 0.5)
        cancel.request(Cancelled("cancelled by SIGTERM"))
        with pytest.raises(Cancelled):
            driver.call("hang", 30)
    finally:
        cancel.clear()
        driver.stop()
    assert driver.proc is not None and driver.proc.poll() is not None


def test_a_log_tail_is_the_last_lines_with_secrets_masked(tmp_path: Path) -> None:
    """The driver's and the temporary head's logs are shown the same way (one ``masked_tail``)."""
    from ci_serve import secrets
    from ci_serve.cluster.head import masked_tail

    secrets.register("s3cr3t-driver-token")
    log = tmp_path / "driver.log"
    log.write_text("".join(f"line {i}\n" for i in range(40)) + "token=s3cr3t-driver-token\n")
    driver = DriverProcess(sys.executable, {}, tmp_path, log)
    shown = driver.log_tail(lines=3)
    assert shown.splitlines()[:2] == ["line 38", "line 39"] and "s3cr3t-driver-token" not in shown
    assert shown == masked_tail(log, 3)
    assert masked_tail(tmp_path / "not-written-yet.log") == ""
