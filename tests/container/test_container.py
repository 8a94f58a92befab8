"""The container test: the action's image (built from the Dockerfile once per content by conftest.py)
run exactly as the Actions runner starts a container action (see runner.py): the smoke test on a
pinned Ray, and the runner's cancel through tini. The plain smoke test of the example app runs under a
real runner in test_act.py.

Needs a Docker engine (scripts/docker-env provides one and the base image). Skipped without one,
except under CI, where a missing engine fails the run. The base image is $CI_SERVE_BASE_IMAGE
(default: the debootstrap image scripts/docker-env makes), passed to the Dockerfile's BASE_IMAGE.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.container.runner import REPO, RunnerDirs, docker_run_args

pytestmark = [pytest.mark.docker, pytest.mark.timeout(2400)]  # the image build is inside



def _workspace_with_example(dirs: RunnerDirs) -> None:
    shutil.copytree(REPO / "examples" / "fruit", dirs.workspace / "examples" / "fruit",
                    ignore=shutil.ignore_patterns("__pycache__"))


# The smoke test of the example app in the image, with its outputs, report, JUnit file and summary, is
# run by tests/container/test_act.py under a real runner (act), from the example workflow.


def test_smoke_on_a_pinned_ray_in_the_container(image: str, tmp_path: Path):
    """`requirements` pins Ray 2.40: uv in the image builds that environment under /github/home (where
    actions/cache keeps it, docs/action.md), and the head and the app run on 2.40, not the image's Ray."""
    dirs = RunnerDirs(tmp_path / "runner")
    _workspace_with_example(dirs)
    (dirs.workspace / "requirements.txt").write_text("ray[serve]==2.40.0\nfastapi==0.115.6\n")
    inputs = {"command": "smoke", "config": "examples/fruit/serve_config.yaml",
              "requests": "examples/fruit/requests.yaml", "app-dir": "examples/fruit",
              "requirements": "requirements.txt"}
    t0 = time.monotonic()
    proc = subprocess.run(docker_run_args(dirs, image, inputs), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=900, stdin=subprocess.DEVNULL)
    log = proc.stdout
    print(f"pinned-Ray container run: {time.monotonic() - t0:.0f} s, exit {proc.returncode}\n{log[-3000:]}")
    assert proc.returncode == 0, log[-6000:]
    assert "smoke test on Ray 2.40.0 (pinned by requirements.txt)" in log
    assert "pip install -r" not in log  # smoke alone: nothing is installed into the image's own Python
    report = json.loads((dirs.workspace / ".ci-serve" / "smoke.json").read_text())
    assert report["result"] == "passed" and report["ray_version"] == "2.40.0"
    assert report["environment"]["installer"] == "uv" and report["environment"]["built"] is True
    assert report["environment"]["path"].startswith("/github/home/.cache/ci-serve/envs/")
    envs = dirs.root / "home" / ".cache" / "ci-serve" / "envs"
    assert [p for p in envs.iterdir() if (p / "ci-serve-env.json").is_file()]
    assert "Ran on **Ray 2.40.0**" in dirs.summary_file.read_text()


def test_cancel_reaches_the_tool_through_tini(image: str, tmp_path: Path):
    """The runner's cancel: SIGINT to the container (then SIGTERM 7.5 s later). tini passes it on; the
    tool stops its head, writes its outputs and exits 1 (the time is printed: about 4 s when idle)."""
    dirs = RunnerDirs(tmp_path / "runner")
    _workspace_with_example(dirs)
    name = f"ci-serve-cancel-{os.getpid()}"
    args = docker_run_args(dirs, image, {"command": "smoke", "config": "examples/fruit/serve_config.yaml",
                                         "app-dir": "examples/fruit"})
    args.insert(2, f"--name={name}")
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            stdin=subprocess.DEVNULL)
    lines: list[str] = []
    try:
        for line in proc.stdout:  # until the head runs: the state that must be cleaned up
            lines.append(line)
            if "ok   start Ray head" in line:
                break
        subprocess.run(["docker", "kill", "--signal", "SIGINT", name], capture_output=True, timeout=60)
        t0 = time.monotonic()
        try:
            proc.wait(timeout=7.5)
        except subprocess.TimeoutExpired:
            subprocess.run(["docker", "kill", "--signal", "SIGTERM", name], capture_output=True, timeout=60)
            # The runner would SIGKILL 2.5 s later. On a loaded 2-core machine the stop can take longer, so
            # the time is measured and printed rather than asserted; what must hold is how it ends.
            proc.wait(timeout=120)
        stopped_after = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            subprocess.run(["docker", "kill", name], capture_output=True, timeout=60)
            proc.wait(timeout=60)
    lines += proc.stdout.readlines()
    log = "".join(lines)
    print(f"container stopped {stopped_after:.1f} s after SIGINT, exit {proc.returncode}\n{log[-2000:]}")
    assert proc.returncode == 1, log[-4000:]
    assert "cancelled by SIGINT" in log
    assert dirs.outputs()["result"] in ("failed", "error")
