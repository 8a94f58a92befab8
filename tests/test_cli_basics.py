from __future__ import annotations

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
    with pytest.raises(RuntimeError):
        main(["smoke", "fruit:app", "--junit", str(junit)])
    text = junit.read_text()
    assert "<failure" in text and "stopped before it finished" in text
