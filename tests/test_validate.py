"""`ci-serve validate`: a corpus of broken configs (one mistake per file, the field path and line
asserted), the Serve 2.0 guide's files upgraded, and the command's exit codes and report."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from ci_serve.config.loader import load_config
from ci_serve.config.validate import validate_config

from .conftest import REPO, ci_serve_cmd

CONFIGS = REPO / "tests" / "configs"
APPS = REPO / "tests" / "apps"
BROKEN = sorted((CONFIGS / "broken").glob("*.yaml"))
GUIDE = sorted((CONFIGS / "guide").glob("*.yaml"))
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


@pytest.mark.parametrize("content, message", [(None, "does not exist"), ("- a\n", "must be a YAML mapping"),
                                              ("", "found an empty file")])
def test_unreadable_files_are_one_problem(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "serve_config.yaml"
    if content is not None:
        path.write_text(content)
    result = validate_config(path, check_imports=False)
    assert result.config is None
    assert [(p.path, message in p.message) for p in result.problems] == [("(file)", True)]


def test_a_config_using_most_fields_passes_here_and_in_ray() -> None:
    from ray.serve.schema import ServeDeploySchema

    path = CONFIGS / "valid" / "every_field.yaml"
    result = validate_config(path, check_imports=False)
    assert result.problems == [], "\n".join(p.render() for p in result.problems)
    ServeDeploySchema.model_validate(result.config.data)
