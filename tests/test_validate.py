"""`ci-serve validate`: a corpus of broken configs (one mistake per file, the field path and line
asserted), the Serve 2.0 guide's files upgraded, and the command's exit codes and report."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from ci_serve.config.loader import load_config
from ci_serve.config.validate import validate_config

from .conftest import REPO, ci_serve_cmd

CONFIGS = REPO / "tests" / "configs"
APPS = REPO / "tests" / "apps"
BROKEN = sorted((CONFIGS / "broken").glob("*.yaml"))
IGNORED = sorted((CONFIGS / "ignored").glob("*.yaml"))
GUIDE = sorted((CONFIGS / "guide").glob("*.yaml"))
VALID = sorted((CONFIGS / "valid").glob("*.yaml"))
EXPECT = re.compile(r"^# expect: (?P<path>\S+) @ (?P<line>\d+) : (?P<message>.+?) : (?P<hint>.+)$", re.M)


def expectation(path: Path) -> tuple[dict, bool]:
    text = path.read_text()
    match = EXPECT.search(text)
    assert match, f"{path.name} has no '# expect:' line"
    return match.groupdict(), "# imports: yes" in text


@pytest.mark.parametrize("path", BROKEN, ids=[p.stem for p in BROKEN])
def test_each_broken_config_is_reported_at_its_line(path: Path) -> None:
    expected, imports = expectation(path)
    result = validate_config(path, APPS, check_imports=imports)
    assert len(result.problems) == 1, "\n".join(p.render() for p in result.problems)
    problem = result.problems[0]
    assert problem.path == expected["path"]
    assert problem.line == int(expected["line"]), problem.render()
    assert problem.column and problem.column >= 1
    assert problem.file == str(path)
    assert expected["message"] in problem.message
    assert expected["hint"] in (problem.hint or "")


@pytest.mark.parametrize("path", IGNORED, ids=[p.stem for p in IGNORED])
def test_keys_ray_ignores_are_warnings_saying_what_ray_does(path: Path) -> None:
    from ray.serve.schema import ServeDeploySchema

    expected, _ = expectation(path)
    result = validate_config(path, APPS, check_imports=False)
    assert result.problems == [], "\n".join(p.render() for p in result.problems)
    assert len(result.warnings) == 1
    warning = result.warnings[0]
    assert (warning.path, warning.line, warning.severity) == (expected["path"], int(expected["line"]), "warning")
    assert expected["message"] in warning.message and expected["hint"] in (warning.hint or "")
    ServeDeploySchema.model_validate(result.config.data)  # Ray takes it (and ignores the key)
    assert result.config.model is not None  # the typed config, without the ignored key


def test_every_problem_in_one_run() -> None:
    config = CONFIGS / "many_mistakes.yaml"
    result = validate_config(config, APPS, check_imports=True)
    paths = {p.path for p in result.problems}
    assert paths == {
        "applications[0].route_prefix",
        "applications[0].deployments[0].num_replica",
        "applications[0].deployments[0].max_ongoing_requests",
        "applications[0].deployments[1].name",
        "applications[0].deployments[1].autoscaling_config.min_replicas",
        "applications[1].name",
        "applications[1].route_prefix",
    }
    assert [p.line for p in result.problems] == sorted(p.line for p in result.problems)


@pytest.mark.parametrize("path", GUIDE, ids=[p.stem for p in GUIDE])
def test_guide_2_0_files_upgrade_cleanly(path: Path) -> None:
    from ray.serve.schema import ServeDeploySchema

    result = validate_config(path, APPS, check_imports=False)
    assert result.problems == []
    config = result.config
    assert config.upgraded and "upgraded" in config.notices[0]
    app = config.data["applications"][0]
    assert app["name"] == "default" and app["route_prefix"] == "/"
    assert "application name 'default', Serve's name for a single application" in config.notices[0]
    assert app["import_path"] == "fruit.deployment_graph"
    ServeDeploySchema.model_validate(config.data)  # Ray itself takes the upgraded file


def test_2_0_build_output_fields_are_carried_over() -> None:
    config = load_config(CONFIGS / "guide" / "fruit_config_built.yaml")
    deployments = config.data["applications"][0]["deployments"]
    assert all(d["max_ongoing_requests"] == 100 for d in deployments)
    assert not any("max_concurrent_queries" in d or "route_prefix" in d or "ray_actor_options" in d
                   for d in deployments)
    assert "max_concurrent_queries renamed max_ongoing_requests in 5 deployment(s)" in config.notices[0]
    # a problem in the upgraded data points at what the user wrote
    problem = config.problem(("applications", 0, "deployments", 1, "max_ongoing_requests"), "x")
    assert (problem.path, problem.line) == ("deployments[1].max_concurrent_queries", 23)


def test_2_0_file_problems_point_into_the_file(tmp_path: Path) -> None:
    path = tmp_path / "old.yaml"
    path.write_text("import_path: graph_app:app\nruntime_env: {}\ndeployments:\n  - name: Greeter\n"
                    "    num_replica: 2\n  - name: Missing\n")
    result = validate_config(path, APPS)
    assert [(p.path, p.line) for p in result.problems] == [
        ("deployments[0].num_replica", 5), ("deployments[1].name", 6)]


def test_cli_exit_codes_and_report(tmp_path: Path, cli_env: dict) -> None:
    report = tmp_path / "report.json"
    bad = CONFIGS / "broken" / "unknown_deployment_key.yaml"
    proc = subprocess.run(ci_serve_cmd("validate", str(bad), "--no-import", "--report", str(report)),
                          env=cli_env, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 2, proc.stderr
    assert f"{bad}:8:9: applications[0].deployments[0].num_replica: unknown key" in proc.stderr
    assert "Traceback" not in proc.stderr
    data = json.loads(report.read_text())
    assert data["result"] == "error" and data["exit_code"] == 2
    assert data["problems"][0]["line"] == 8 and data["problems"][0]["path"].endswith("num_replica")

    good = tmp_path / "good.yaml"
    good.write_text("applications:\n  - name: greet\n    import_path: graph_app:app\n"
                    "    runtime_env: {env_vars: {API_KEY: hunter2-secret}}\n"
                    "    deployments:\n      - name: Greeter\n        num_replicas: 1\n")
    proc = subprocess.run(ci_serve_cmd("validate", str(good), "--app-dir", str(APPS), "--report", str(report)),
                          env=cli_env, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(report.read_text())["problems"] == []
    assert "hunter2-secret" not in proc.stderr + report.read_text()


def test_code_imported_from_the_local_working_dir(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "shop.py").write_text((APPS / "plain_app.py").read_text())
    path = tmp_path / "serve_config.yaml"
    path.write_text("applications:\n  - name: shop\n    import_path: shop:app\n    runtime_env: {working_dir: src}\n"
                    "    deployments:\n      - name: Plainn\n")
    problems = validate_config(path).problems  # no app_dir: the working_dir next to the config
    assert [(p.path, p.line) for p in problems] == [("applications[0].deployments[0].name", 6)]
    assert "(it has: Plain)" in problems[0].message


@pytest.mark.parametrize("content, message, where", [
    (None, "does not exist", ("(file)", None)), ("- a\n", "must be a YAML mapping", ("(top level)", 1)),
    ("", "found an empty file", ("(file)", None))])
def test_unreadable_files_are_one_problem(tmp_path: Path, content: str | None, message: str, where: tuple) -> None:
    path = tmp_path / "serve_config.yaml"
    if content is not None:
        path.write_text(content)
    result = validate_config(path, check_imports=False)
    assert result.config is None
    assert [(p.path, p.line, message in p.message) for p in result.problems] == [(*where, True)]


def test_a_config_using_most_fields_passes_here_and_in_ray() -> None:
    from ray.serve.schema import ServeDeploySchema

    path = CONFIGS / "valid" / "every_field.yaml"
    result = validate_config(path, check_imports=False)
    assert result.problems == [], "\n".join(p.render() for p in result.problems)
    ServeDeploySchema.model_validate(result.config.data)


def test_2_0_file_with_a_name_keeps_it_and_the_note_says_so(tmp_path: Path) -> None:
    path = tmp_path / "named.yaml"
    path.write_text("name: my_app\nimport_path: graph_app:app\nruntime_env: {}\n")
    config = validate_config(path, check_imports=False).config
    assert config.data["applications"][0]["name"] == "my_app"
    assert "application name 'my_app', named in the file" in config.notices[0]
    assert "'default'" not in config.notices[0]


def test_serve_1x_file_is_told_apart_and_explained(tmp_path: Path) -> None:
    path = tmp_path / "old.yaml"
    path.write_text("deployments:\n  - name: shallow\n    import_path: conditional_dag.Multiplier\n"
                    "    num_replicas: 2\n")
    result = validate_config(path, check_imports=False)
    assert len(result.problems) == 1
    problem = result.problems[0]
    assert "Serve 1.x" in problem.message and "upgraded" not in problem.message
    assert (problem.path, problem.line) == ("deployments[0].import_path", 3)
    assert "applications:" in problem.hint


IMPORT_PATHS = {
    # accepted: what Ray's import_attr imports (the module part is looked up as file names)
    "whisperx-deployment:entrypoint": None, "apple-predict:app": None, "fruit.deployment_graph": None,
    "ray-operator.config.samples.vllm.serve_tpu:model": None, "pkg.sub.mod:app": None, "1st_try:app": None,
    # refused: Ray's schema refuses, or the import can never succeed
    "app": "names no attribute", "a:b:c": "more than one ':'", ":app": "starts or ends with ':'",
    "mod:": "starts or ends with ':'", ".mod.app": "empty module name", "mod..sub:app": "empty module name",
    "src/app:app": "a file path", "app.py:app": "names a file", "fruit.py": "names a file", " fruit:app": "whitespace",
    "fruit:graph.app": "one attribute name",
}


@pytest.mark.parametrize("text, refused", IMPORT_PATHS.items(), ids=IMPORT_PATHS.keys())
def test_the_one_import_path_rule(text: str, refused: str | None, tmp_path: Path) -> None:
    from ci_serve.action.inputs import read_inputs
    from ci_serve.config.importpath import import_path_problem
    from ci_serve.errors import InputError
    from ci_serve.smoke.target import resolve_target

    problem = import_path_problem(text)
    assert (problem is None) == (refused is None), problem
    if refused:
        assert refused in problem[0] and problem[1]
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"applications": [{"name": "a", "import_path": text}]}))
    by_validate = [p for p in validate_config(path, check_imports=False).problems if p.path.endswith("import_path")]
    assert bool(by_validate) == bool(refused)
    try:  # smoke: a refused path is refused before looking for the module
        resolve_target(text, [], tmp_path)
        by_smoke = None
    except InputError as err:
        by_smoke = err.message
    assert (by_smoke is not None and "not found" not in by_smoke) == bool(refused), by_smoke
    if text != text.strip():
        return  # the action's inputs are trimmed (the runner's YAML does that too)
    try:
        read_inputs({"INPUT_TARGET": text, "INPUT_COMMAND": "smoke"}, tmp_path)
        by_action = None
    except InputError as err:
        by_action = err.message
    assert (by_action is not None) == bool(refused), by_action


SERVE_BUILD = sorted((CONFIGS / "serve_build").glob("*.yaml"))


@pytest.mark.parametrize("path", SERVE_BUILD, ids=[p.stem for p in SERVE_BUILD])
def test_serve_build_outputs_of_several_ray_releases_are_accepted(path: Path, tmp_path: Path) -> None:
    """`serve build` of tests/configs/serve_build/old_app.py by Ray 2.9.3, 2.40.0, 2.46.0 and 2.52.1 (the
    releases' own files, blank lines and all; 2.9.3 and 2.52.1 crash building two apps, Ray's bugs):
    valid for Ray 2.60's schema and for ci-serve, with the code, with no warning; and the same inside a
    RayService manifest."""
    from ray.serve.schema import ServeDeploySchema

    ServeDeploySchema.model_validate(yaml.safe_load(path.read_text()))
    result = validate_config(path, path.parent)
    assert result.ok and not result.warnings, result.problems + result.warnings
    manifest = tmp_path / "ray-service.yaml"
    manifest.write_text("apiVersion: ray.io/v1\nkind: RayService\nmetadata:\n  name: x\nspec:\n  serveConfigV2: |\n"
                        + "".join(f"    {line}\n" if line.strip() else "\n" for line in path.read_text().splitlines()))
    assert validate_config(manifest, check_imports=False).ok
    assert load_config(manifest).data == load_config(path).data


def test_the_validate_stage_returns_its_result_and_the_command_its_error() -> None:
    """The library returns what it found (the step recorded, nothing raised); the command adds the exit-2
    error; the edge alone turns both into the report."""
    from ci_serve.commands import validate as command
    from ci_serve.config.validate import ValidationResult, validate_step
    from ci_serve.errors import ConfigError
    from ci_serve.steps import StepLog

    log = StepLog()
    checked = validate_step(str(CONFIGS / "many_mistakes.yaml"), None, check_imports=False, log=log)
    assert isinstance(checked, ValidationResult) and len(checked.problems) > 1
    assert [(s.status, s.detail) for s in log.steps] == [("failed", f"{len(checked.problems)} problem(s)")]
    assert set(log.timings) == {log.steps[0].name}

    args = argparse.Namespace(config=str(CONFIGS / "many_mistakes.yaml"), app_dir=None, no_import=True)
    result = command.execute(args, StepLog())
    assert isinstance(result.error, ConfigError) and result.error.exit_code == 2
    assert result.sections()["problems"] == [p.as_dict() for p in checked.problems]
    good = command.execute(argparse.Namespace(config=str(VALID[0]), app_dir=None, no_import=True), StepLog())
    assert good.error is None and good.outcome == "valid" and good.sections()["problems"] == []
