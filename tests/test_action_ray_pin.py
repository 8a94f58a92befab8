"""The action's `requirements` and `ray-version` inputs: which commands get the Ray pin, and what the
action's own Python is given (its Ray pin left out)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ci_serve.action.inputs import Inputs, env_name, read_inputs
from ci_serve.action.steps import invocation, needs_requirements, pipeline
from ci_serve.errors import InputError


@pytest.mark.parametrize("command,flag", [("smoke", True), ("plan", True), ("deploy", True),
                                          ("validate", True), ("build", False), ("status", False)])
def test_the_ray_pin_goes_to_smoke_validate_plan_and_deploy(command: str, flag: bool) -> None:
    """validate checks by the pinned release's rules (issue 25)."""
    inputs = Inputs(command=command, address="http://127.0.0.1:8265", requirements="requirements.txt",
                    target=["app:app"])
    argv = invocation(command, inputs).argv
    assert ("--requirements" in argv) is flag
    if flag:
        assert argv[argv.index("--requirements") + 1] == "requirements.txt"
    by_version = invocation(command, Inputs(command=command, address="http://x:8265", ray_version="2.40.0",
                                            target=["app:app"])).argv
    assert ("--ray-version" in by_version) is flag


def test_smoke_alone_installs_nothing_into_the_action_python() -> None:
    assert not needs_requirements(pipeline(Inputs(command="smoke", requirements="r.txt")))
    assert needs_requirements(pipeline(Inputs(command="auto", requirements="r.txt")))  # validate imports


def test_ray_version_input_is_checked(tmp_path: Path) -> None:
    (tmp_path / "r.txt").write_text("ray[serve]==2.40.0\n")
    got = read_inputs({env_name("command"): "smoke", env_name("ray-version"): "2.40.0"}, tmp_path)
    assert got.ray_version == "2.40.0"
    with pytest.raises(InputError, match="not a Ray release number"):
        read_inputs({env_name("command"): "smoke", env_name("ray-version"): "latest; rm -rf /"}, tmp_path)
    with pytest.raises(InputError, match="either `requirements` or `ray-version`"):
        read_inputs({env_name("command"): "smoke", env_name("ray-version"): "2.40.0",
                     env_name("requirements"): "r.txt"}, tmp_path)


def test_the_ray_pin_is_left_out_of_the_action_python(tmp_path: Path) -> None:
    from tests.test_action_entrypoint import _with_example, run_action

    files = {**_with_example(tmp_path), "requirements.txt": "ray[serve]==2.40.0\nPyYAML>=5\n"}  # PyYAML: here
    got = run_action(tmp_path, {"command": "validate", "config": "examples/fruit/serve_config.yaml",
                                "app-dir": "examples/fruit", "requirements": "requirements.txt"}, files=files)
    assert got.code == 0, got.log[-3000:]
    assert "the Ray pin is left out here" in got.log
    assert "rules of Ray 2.40 (generated from Ray 2.40.0) for Ray 2.40.0 (pinned by requirements.txt)" in got.log
    assert "ray-2.40.0" not in got.log.lower() and "Successfully installed ray" not in got.log
    import importlib.metadata

    assert importlib.metadata.version("ray") != "2.40.0"
