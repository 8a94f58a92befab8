"""Cancelling a job as the Actions runner does: SIGINT, SIGTERM 7.5 s later, SIGKILL 2.5 s after that.

The action must finish its cleanup before the runner ends it (exit 1, not killed), its outputs and
summary written and the temporary Ray head it started gone. The time it takes is printed (about 1 s
here when the machine is idle), not asserted: on a loaded 2-core machine a stop can outlast the
runner's 7.5 s, and no wall-clock time is asserted in this suite.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.container.runner import RunnerDirs, input_env
from tests.support.processes import interrupt, wait_until
from tests.test_action_entrypoint import ENTRYPOINT, _with_example
from tests.test_smoke_ray import TEMP_RE, head_processes

pytestmark = pytest.mark.ray


def test_cancel_during_the_smoke_stops_on_sigint_with_outputs_and_no_head_left(tmp_path: Path):
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
        # the head runs: the costly state, and the one whose clean-up is checked below
        wait_until(lambda: any("ok   start Ray head" in ln for ln in lines) or proc.poll() is not None, 300,
                   "the Ray head started")
        log = "".join(lines)
        assert proc.poll() is None, log
        match = TEMP_RE.search(log)
        assert match, f"no head temp folder in the log:\n{log}"
        temp_dir = match.group(1)
        assert head_processes(temp_dir), f"no process of the head in {temp_dir} while the action runs"
        stopped_after = interrupt(proc)
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
    wait_until(lambda: not head_processes(temp_dir), 60, f"Ray processes of {temp_dir} gone (zombies aside)")
    assert not Path(temp_dir).exists(), f"{temp_dir} was left behind"
