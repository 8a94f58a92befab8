from __future__ import annotations

import json
import subprocess

import pytest

from ci_serve.cli import COMMANDS, main
from tests.conftest import ci_serve_cmd


def test_every_command_has_help(capsys):
    for name in COMMANDS:
        with pytest.raises(SystemExit) as exc:
            main([name, "--help"])
        assert exc.value.code == 0


def test_unknown_command_is_exit_2():
    with pytest.raises(SystemExit) as exc:
        main(["frobnicate"])
    assert exc.value.code == 2


def test_python_dash_m_works(cli_env):
    out = subprocess.run(ci_serve_cmd("--version"), capture_output=True, text=True, env=cli_env, timeout=60)
    assert out.returncode == 0 and "ci-serve" in out.stdout


def test_a_cancel_swallowed_by_library_code_is_not_lost():
    """Ray's client catches Exception broadly; the cancel a signal raised must surface anyway."""
    import signal

    from ci_serve import cancel
    from ci_serve.cancel import CancelOnSignal
    from ci_serve.errors import Cancelled

    handler = CancelOnSignal()
    try:
        handler(signal.SIGINT, None)
    except Exception:  # what a library with `except Exception: retry` does
        pass
    with pytest.raises(Cancelled, match="cancelled by SIGINT"):
        cancel.check()


def test_smoke_writes_junit_even_when_the_run_is_stopped_by_something_unexpected(tmp_path, monkeypatch):
    """The JUnit file is the CI's record of the smoke test: it is written, failing, whatever stopped the run."""
    import ci_serve.smoke.runner as runner

    def stopped(*_args: object) -> None:
        raise RuntimeError("something unexpected")

    monkeypatch.setattr(runner, "smoke", stopped)
    junit = tmp_path / "junit.xml"
    report = tmp_path / "report.json"
    code = main(["smoke", "fruit:app", "--junit", str(junit), "--report", str(report)])
    text = junit.read_text()
    assert "<failure" in text and "stopped before it finished" in text
    # a bug is a verdict, not a traceback with exit 1: nothing was written to a cluster (exit 2)
    assert code == 2
    error = json.loads(report.read_text())["errors"][0]
    assert error["type"] == "Unexpected" and "RuntimeError: something unexpected" in error["message"]
    assert "Traceback (most recent call last)" in error["traceback"]


def test_an_unexpected_error_after_a_write_is_exit_3_with_one_error_line(tmp_path, monkeypatch, capsys):
    """Once this process sent a Serve config write, a bug ends the run with exit 3 (what serves is not known),
    the report written with the traceback in it, and one ERROR line naming the report on the console."""
    import ci_serve.deploy.stage as stage
    from ci_serve import ledger

    def stopped(*_args: object, **_kwargs: object) -> None:
        ledger.record("http://127.0.0.1:8265")
        raise KeyError("boom")

    monkeypatch.setattr(stage, "deploy", stopped)
    config = tmp_path / "serve.yaml"
    config.write_text("applications:\n- name: shop\n  import_path: shop:app\n")
    report = tmp_path / "report.json"
    code = main(["deploy", str(config), "--report", str(report)])
    assert code == 3
    out = capsys.readouterr()
    errors = [line for line in (out.out + out.err).splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1 and str(report) in errors[0] and "KeyError" in errors[0]
    assert "Traceback" not in out.out + out.err
    data = json.loads(report.read_text())
    assert data["exit_code"] == 3 and "Traceback (most recent call last)" in data["errors"][0]["traceback"]


def test_the_action_turns_a_bug_into_the_verdict_never_exit_1(tmp_path, monkeypatch, capsys):
    """The action's top edge: an exception nobody named is exit 2 before any write (3 after one), with one
    ERROR line and the traceback for the log; never the interpreter's exit 1."""
    import ci_serve.action.main as action
    from ci_serve import ledger

    def broken(*_args: object) -> None:
        raise RuntimeError("a bug in the inputs")

    monkeypatch.setattr(action, "read_inputs", broken)
    monkeypatch.delenv("GITHUB_OUTPUT", raising=False)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    ledger.clear()
    assert action.main({"GITHUB_WORKSPACE": str(tmp_path)}) == 2
    ledger.record("http://127.0.0.1:8265")
    try:
        assert action.main({"GITHUB_WORKSPACE": str(tmp_path)}) == 3
    finally:
        ledger.clear()
    captured = capsys.readouterr()
    out = captured.out + captured.err
    assert "ERROR ci-serve stopped on an unexpected error" in out and "RuntimeError: a bug in the inputs" in out
