"""``ci-serve smoke`` end to end against real temporary Ray heads, run as users run it (a subprocess).

Each case checks the exit code, what the log says, the reports, and that nothing of the head is left.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES, ci_serve_cmd

pytestmark = pytest.mark.ray

FRUIT = EXAMPLES / "fruit"
TEMP_RE = re.compile(r"temp (/tmp/cis-\w+)")

GREEDY_APP = '''
from ray import serve

@serve.deployment(num_replicas=3, ray_actor_options={"num_cpus": 4})
class Hello:
    def __init__(self, greeting: str = "hello"):
        self.greeting = greeting

    def __call__(self, request):
        return f"{self.greeting} world"

def build(args):
    return Hello.bind(args.get("greeting", "hello"))
'''

BROKEN_IMPORT = '''
from ray import serve
raise RuntimeError("boom at import time")
'''

BROKEN_CONSTRUCTOR = '''
from ray import serve

@serve.deployment(ray_actor_options={"num_cpus": 0.1})
class Bad:
    def __init__(self):
        raise ValueError("constructor says no")

    def __call__(self, request):
        return "unreachable"

app = Bad.bind()
'''


def smoke(cli_env: dict, cwd: Path, *args: str, timeout: float = 400) -> subprocess.CompletedProcess:
    return subprocess.run(ci_serve_cmd("smoke", *args), env=cli_env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def head_processes(temp_dir: str) -> list[int]:
    """Live processes whose command line mentions the head's temp folder."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if temp_dir in cmdline and state != "Z":
            found.append(int(entry))
    return found


def session_of(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except OSError:
        return None


def live_in_sessions(sids: set[int]) -> list[int]:
    """Live processes of the given sessions (Ray's agents rename themselves: cmdline is not enough)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and session_of(int(entry)) in sids:
            try:
                state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if state != "Z":
                found.append(int(entry))
    return found


def assert_head_gone(stderr: str) -> None:
    match = TEMP_RE.search(stderr)
    assert match, f"no head temp folder in the log:\n{stderr}"
    temp_dir = match.group(1)
    assert not Path(temp_dir).exists(), f"{temp_dir} was left behind"
    assert head_processes(temp_dir) == []


def test_two_runs_at_once_pass_without_colliding(cli_env: dict, tmp_path: Path) -> None:
    """The bundled example (config file, requests, --report, --junit) and, at the same time, an app
    asking for 3 replicas x 4 CPUs (import path with builder args, no requests file): each on its own
    private head, the CI profile fitting the greedy one to this machine."""
    greedy_dir = tmp_path / "greedy"
    greedy_dir.mkdir()
    (greedy_dir / "greedy.py").write_text(GREEDY_APP)
    greedy_report = tmp_path / "greedy.json"
    other = subprocess.Popen(ci_serve_cmd("smoke", "greedy:build", "greeting=hi", "--report", str(greedy_report)),
                             env=cli_env, cwd=greedy_dir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True)
    try:
        report, junit_file = tmp_path / "report.json", tmp_path / "junit.xml"
        proc = smoke(cli_env, tmp_path, str(FRUIT / "serve_config.yaml"), "--requests",
                     str(FRUIT / "requests.yaml"), "--report", str(report), "--junit", str(junit_file))
        _, greedy_log = other.communicate(timeout=400)
    finally:
        if other.poll() is None:
            other.kill()
    # the bundled example
    assert proc.returncode == 0, proc.stderr
    assert "fruit/FruitMarket: num_replicas 2 -> 1" in proc.stderr  # the CI profile says what it changed
    assert re.search(r"ok   pear price  \[POST / -> 200, \d+ ms\]", proc.stderr)
    data = json.loads(report.read_text())
    assert data["result"] == "passed" and data["exit_code"] == 0
    assert [r["name"] for r in data["requests"]] == ["pear price", "mango price", "orange price", "unknown fruit"]
    first = data["requests"][0]
    assert first["passed"] is True and first["status"] == 200 and first["error"] is None
    assert first["elapsed_ms"] > 0 and first["app"] == "fruit"
    assert {"start Ray head", "deploy", "requests", "stop Ray head"} <= set(data["timings"])
    assert data["ci_profile"]["enabled"] is True and data["ci_profile"]["changes"]
    suite = ET.parse(junit_file).getroot().find("testsuite")
    assert suite.get("tests") == "4" and suite.get("failures") == "0"
    assert_head_gone(proc.stderr)
    # the greedy app, at the same time
    assert other.returncode == 0, greedy_log
    assert "default/Hello: num_replicas 3 -> 1" in greedy_log
    assert "default/Hello: ray_actor_options.num_cpus 4 ->" in greedy_log
    greedy = json.loads(greedy_report.read_text())
    assert greedy["requests"][0]["name"] == "default answers at /" and greedy["requests"][0]["status"] == 200
    assert TEMP_RE.search(greedy_log).group(1) != TEMP_RE.search(proc.stderr).group(1)
    assert_head_gone(greedy_log)


def test_wrong_expectation_shows_expected_and_actual(cli_env: dict, tmp_path: Path) -> None:
    (tmp_path / "wrong.yaml").write_text(
        "requests:\n"
        "  - {name: pear price, method: POST, json: [PEAR, 2], expect: {json: 9}}\n"
        "  - {name: mango price, method: POST, json: [MANGO, 1], expect: {json: 3, contains: '3'}}\n")
    report, junit_file = tmp_path / "report.json", tmp_path / "junit.xml"
    # the Serve 2.0 single-application format, upgraded on the way
    proc = smoke(cli_env, tmp_path, str(FRUIT / "fruit_config_2.0.yaml"), "--requests", "wrong.yaml",
                 "--report", str(report), "--junit", str(junit_file))
    assert proc.returncode == 1, proc.stderr
    assert "single-application (Serve 2.0) format upgraded" in proc.stderr
    assert "FAIL pear price" in proc.stderr
    assert "json: expected 9, got 8" in proc.stderr
    assert "ok   mango price" in proc.stderr
    data = json.loads(report.read_text())
    assert data["result"] == "failed" and data["exit_code"] == 1
    assert data["requests"][0]["passed"] is False and data["requests"][0]["status"] == 200
    assert "expected 9, got 8" in data["requests"][0]["error"]
    assert data["requests"][1]["passed"] is True
    suite = ET.parse(junit_file).getroot().find("testsuite")
    assert suite.get("failures") == "1"
    assert_head_gone(proc.stderr)


def test_greedy_app_fails_clearly_without_the_ci_profile(cli_env: dict, tmp_path: Path) -> None:
    (tmp_path / "greedy.py").write_text(GREEDY_APP)
    proc = smoke(cli_env, tmp_path, "greedy:build", "--no-ci-profile", "--timeout", "240")
    assert proc.returncode == 1, proc.stderr
    assert "cannot be scheduled on the temporary head" in proc.stderr
    assert '"CPU": 4' in proc.stderr  # Serve's own account of what is missing
    assert "without --no-ci-profile" in proc.stderr
    assert "timeout" not in proc.stderr.split("ERROR", 1)[1]
    assert_head_gone(proc.stderr)


def test_module_that_cannot_import_fails_fast(cli_env: dict, tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text(BROKEN_IMPORT)
    report = tmp_path / "report.json"
    proc = smoke(cli_env, tmp_path, "broken:app", "--report", str(report))
    assert proc.returncode == 1, proc.stderr
    assert "RuntimeError: boom at import time" in proc.stderr
    assert 'broken.py", line 3' in proc.stderr
    assert "deploy" not in json.loads(report.read_text())["timings"]  # stopped before deploying
    assert json.loads(report.read_text())["result"] == "failed"


def test_constructor_exception_fails_with_its_message(cli_env: dict, tmp_path: Path, capsys,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the library, in this process: the stage returns its typed result, the error that failed
    it next to what it saw (the application's state, the requests not run); nothing raised."""
    from ci_serve.errors import CheckFailed
    from ci_serve.smoke.runner import SmokeOptions, SmokeResult
    from ci_serve.smoke.runner import smoke as smoke_stage
    from ci_serve.steps import StepLog

    for name in [k for k in os.environ if k not in cli_env]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", cli_env["HOME"])
    (tmp_path / "ctor.py").write_text(BROKEN_CONSTRUCTOR)
    log = StepLog()
    result = smoke_stage(SmokeOptions(target="ctor:app", args=[], app_dir=str(tmp_path), timeout=240), log)
    assert isinstance(result, SmokeResult) and isinstance(result.error, CheckFailed)
    assert result.error.exit_code == 1 and result.outcome != "passed"
    error = f"{result.error.message}\n{result.error.details}"
    assert "deployment 'Bad'" in error and "ValueError: constructor says no" in error
    assert 'ctor.py", line 7, in __init__' in error
    assert result.applications is not None and result.applications["default"]["status"] in ("DEPLOY_FAILED",
                                                                                             "DEPLOYING")
    assert result.requests and all(o.skipped for o in result.requests)
    assert [s.name for s in log.steps if s.status == "failed"] == ["deploy"]
    assert log.steps[-1].name == "stop Ray head" and log.steps[-1].status == "ok"
    sections = result.sections()
    assert sections["target"] == "ctor:app" and sections["requests"][0]["error"] == "not run"
    assert_head_gone(capsys.readouterr().err)


@pytest.mark.parametrize("signum,after", [(signal.SIGINT, "ok   start Ray head"), (signal.SIGTERM, "ok   start Serve")],
                         ids=["sigint-after-head-start", "sigterm-during-deploy"])
def test_cancel_mid_run_leaves_no_ray_process(cli_env: dict, tmp_path: Path, signum: int, after: str) -> None:
    report = tmp_path / "report.json"
    proc = subprocess.Popen(ci_serve_cmd("smoke", str(FRUIT / "serve_config.yaml"), "--report", str(report)),
                            env=cli_env, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    temp_dir = None
    sids: set[int] = set()
    try:
        for line in proc.stderr:
            lines.append(line)
            match = TEMP_RE.search(line)
            if match:
                temp_dir = match.group(1)
            if after in line:
                break
        assert temp_dir, "".join(lines)
        pids = head_processes(temp_dir)
        assert pids, "the head should be running now"
        sids |= {sid for sid in map(session_of, pids) if sid is not None}
        proc.send_signal(signum)
        _, rest = proc.communicate(timeout=90)
        code = proc.returncode
    finally:
        if proc.poll() is None:
            proc.kill()
            for pid in live_in_sessions(sids):
                os.kill(pid, signal.SIGKILL)
    log = "".join(lines) + rest
    assert code == 1, log
    assert f"cancelled by {signal.Signals(signum).name}" in log
    assert "ok   stop Ray head" in log
    deadline = time.monotonic() + 10  # SIGKILLed processes may take a moment to be reaped by init
    while live_in_sessions(sids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert live_in_sessions(sids) == []
    assert head_processes(temp_dir) == []
    assert not Path(temp_dir).exists()
    data = json.loads(report.read_text())
    assert data["exit_code"] == 1 and data["errors"][0]["type"] == "Cancelled"
