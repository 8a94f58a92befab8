"""A cancel's cleanup ends before the runner's SIGKILL, whatever the public entry does (found by a review).

The way back of a two-cluster release polls the public entry until it answers from the old version. A
balancer that answers 503, or answers slowly, kept that poll going past the runner's SIGKILL (10 s after
SIGINT): the run was killed with no report, its candidate left on the standby. Every wait after a cancel
now takes only what is left of :data:`ci_serve.cancel.CLEANUP_S`, including the requests sent, their
retries and the pauses between rounds. Fake dashboards (Ray has no say in this: the entry is the
balancer's) and the real CLI, cancelled as the runner does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from tests.support.fake_serve import FakeServe, QuietServer
from tests.support.processes import Background, interrupt
from tests.test_fault_matrix import stored_packages


def broken_entry(delay: float) -> QuietServer:
    class Entry(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            time.sleep(delay)
            body = b"no healthy upstream"
            self.send_response(503)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = QuietServer(("127.0.0.1", 0), Entry)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def config(path: Path, version: str) -> Path:
    path.write_text(json.dumps({"applications": [{
        "name": "shop", "route_prefix": "/shop", "import_path": "deploy_app:app",
        "runtime_env": {"working_dir": f"gcs://_ray_pkg_deploy_{version}.zip"},
        "deployments": [{"name": "Echo", "user_config": {"greeting": "hi"}}]}]}))
    return path


@pytest.mark.parametrize("delay, requests", [(0.15, 0), (3.0, 0), (3.0, 60)],
                         ids=["503-at-once-no-requests", "503-after-3s-no-requests", "503-after-3s-60-requests"])
def test_a_cancel_while_the_entry_is_checked_ends_by_itself_with_its_report(tmp_path, delay, requests):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "GITHUB_", "INPUT_"))}
    env.update(HOME=str(tmp_path / "home"), PYTHONUNBUFFERED="1")
    entry = broken_entry(delay)
    extra: list[str] = []
    if requests:
        file = tmp_path / "requests.yaml"
        file.write_text("requests:\n" + "".join(f"  - name: r{i}\n    path: /\n    expect:\n      json: "
                                                "{version: v2, greeting: hi}\n" for i in range(requests)))
        extra = ["--requests", str(file)]
    report = tmp_path / "report.json"
    try:
        with FakeServe() as live, FakeServe() as standby:
            for fake in (live, standby):
                fake.state.packages.update(stored_packages())
            first = subprocess.run([sys.executable, "-m", "ci_serve", "deploy", str(config(tmp_path / "v1.json", "v1")),
                                    "--address", live.dashboard_url], env=env, capture_output=True, text=True)
            assert first.returncode == 0, first.stderr
            run = Background([sys.executable, "-m", "ci_serve", "deploy", str(config(tmp_path / "v2.json", "v2")),
                              "--address", live.dashboard_url, "--standby-address", standby.dashboard_url,
                              "--standby-url", standby.serve_url, "--switch-command", "true", "--verify-url",
                              f"http://127.0.0.1:{entry.server_address[1]}", "--report", str(report), *extra], env)
            run.wait_for("verify public entry", timeout=120)
            took = interrupt(run.proc)  # fails if the runner's SIGTERM killed it or its SIGKILL was needed
            run.finish()
    finally:
        entry.shutdown()
        entry.server_close()
    print(f"exited {took:.1f} s after SIGINT\n{run.log}")
    # the way back ran, and the entry never answered from the old version: nothing shows what serves
    assert run.proc.returncode == 3, run.log
    assert "Traceback" not in run.log and "ERROR" in run.log, run.log
    assert "did not answer from the old version" in run.log, run.log
    assert json.loads(report.read_text())["exit_code"] == 3


def test_a_command_that_overruns_goes_with_its_whole_process_group(tmp_path, monkeypatch):
    """A script's children go too, not only the shell; after a cancel with no time left, nothing is started."""
    from ci_serve import cancel
    from ci_serve.deploy.traffic import overran, run_shell
    from ci_serve.errors import Cancelled

    marker = tmp_path / "child.pid"
    with pytest.raises(subprocess.TimeoutExpired) as info:
        run_shell(f"sleep 60 & echo $! > {marker}; wait", dict(os.environ), timeout=1.0)
    assert "did not finish within 1s" == overran(info.value)
    child = int(marker.read_text())
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{child}") and "Z" not in Path(f"/proc/{child}/stat").read_text().split()[2]:
        assert time.monotonic() < deadline, "the script's child outlived the timeout"
        time.sleep(0.1)
    assert run_shell("echo hi", dict(os.environ), timeout=5.0) == (0, "hi\n")
    monkeypatch.setattr(cancel, "CLEANUP_S", 0.0)
    cancel.request(Cancelled("cancelled by SIGINT"))
    try:
        with pytest.raises(subprocess.TimeoutExpired) as info:
            run_shell(f"touch {tmp_path / 'ran'}", dict(os.environ), timeout=5.0)
    finally:
        cancel.clear()
    assert not (tmp_path / "ran").exists()
    assert overran(info.value) == f"was not run: {cancel.SPENT}"
