"""Cancelling a job as the Actions runner does: SIGINT, SIGTERM 7.5 s later, SIGKILL 2.5 s after that.

The action must stop with exit 1, its outputs and summary written and the temporary Ray head gone.
The time it takes is printed (about 1 s here when the machine is idle), not asserted: on a loaded
2-core machine a stop can outlast the runner's 10 s, and no wall-clock time is asserted in this suite.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.container.runner import RunnerDirs, input_env
from tests.test_action_entrypoint import ENTRYPOINT, _with_example

pytestmark = pytest.mark.ray


def _ray_processes_of(temp_marker: str) -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if temp_marker in line]


def test_cancel_during_the_deploy_stops_in_time_with_outputs(tmp_path: Path):
    dirs = RunnerDirs(tmp_path / "runner")
    for name, text in _with_example(tmp_path).items():
        path = dirs.workspace / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "GITHUB_", "INPUT_"))}
    env.update(dirs.github_env(container=False))
    env.update(input_env({"command": "smoke", "config": "examples/fruit/serve_config.yaml",
                          "app-dir": "examples/fruit", "requests": "examples/fruit/requests.yaml"}))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    proc = subprocess.Popen([str(ENTRYPOINT)], cwd=dirs.workspace, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL, start_new_session=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 300
        while not any("ok   start Ray head" in ln for ln in lines):  # the head runs: the costly state
            assert proc.poll() is None, "".join(lines)
            assert time.monotonic() < deadline, "".join(lines)
            time.sleep(0.2)
        head_dirs = [ln.split("--temp-dir", 1)[1].split()[0] for ln in _ray_processes_of("--temp-dir /tmp/cis-")]
        proc.send_signal(signal.SIGINT)
        t0 = time.monotonic()
        try:
            proc.wait(timeout=7.5)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)
            # The runner would SIGKILL 2.5 s later. On a loaded 2-core machine the stop can take longer, so
            # the time is measured and printed rather than asserted; what must hold is how it ends.
            proc.wait(timeout=120)
        stopped_after = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    reader.join(timeout=10)
    log = "".join(lines)
    print(f"stopped {stopped_after:.1f} s after SIGINT, exit {proc.returncode}")
    assert proc.returncode == 1, log[-4000:]
    assert "cancelled by SIGINT" in log
    assert dirs.outputs()["result"] in ("failed", "error")
    assert "cancelled" in dirs.summary_file.read_text()
    for head_dir in head_dirs:
        assert not _ray_processes_of(head_dir), f"Ray processes of {head_dir} left behind"

