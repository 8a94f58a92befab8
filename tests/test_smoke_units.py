"""Fast tests of smoke's pure parts: answer checks, readiness verdicts, target resolution, JUnit, logs.
No Ray process starts here (bad-input CLI runs must exit 2 before one would)."""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from ci_serve.config.inspect import AppImportError
from ci_serve.errors import ConfigError, InputError
from ci_serve.smoke import appcode, junit, logs
from ci_serve.smoke.checks import Answer, Outcome, compare, default_check, json_equal
from ci_serve.smoke.readiness import judge_readiness, lacks_resources
from ci_serve.smoke.requests_file import parse_requests
from ci_serve.smoke.target import join_route, resolve_target, route_for
from tests.conftest import EXAMPLES, ci_serve_cmd


def expect(yaml_expect: str):
    return parse_requests(f"requests:\n  - name: r\n    expect: {yaml_expect}\n")[0].expect


COMPARE = [
    ("all good", "{status: 200, json: 8}", Answer(200, b"8", 10), []),
    ("float equals int", "{json: 8}", Answer(200, b"8.0", 10), []),
    ("wrong status", "{status: 200}", Answer(500, b"oops", 10), ["status: expected 200, got 500"]),
    ("wrong json", "{json: 8}", Answer(200, b"9", 10), ["json: expected 8, got 9"]),
    ("not json", "{json: 8}", Answer(200, b"eight", 10), ["not JSON"]),
    ("bool is not int", "{json: 1}", Answer(200, b"true", 10), ["json: expected 1, got true"]),
    ("json null expected", "{json: null}", Answer(200, b"null", 10), []),
    ("contains missing", "{contains: pear}", Answer(200, b"mango", 10), ["contains: expected the body to contain"]),
    ("too slow", "{max_ms: 5}", Answer(200, b"", 12), ["max_ms: expected at most 5 ms, took 12 ms"]),
    ("transport error", "{}", Answer(None, error="request failed: ConnectionError"), ["request failed"]),
]


@pytest.mark.parametrize("exp,answer,problems", [c[1:] for c in COMPARE], ids=[c[0] for c in COMPARE])
def test_compare(exp: str, answer: Answer, problems: list[str]) -> None:
    got = compare(expect(exp), answer)
    assert len(got) == len(problems)
    for want, have in zip(problems, got, strict=True):
        assert want in have


def test_json_equal_table() -> None:
    assert json_equal({"a": [1, 2.0]}, {"a": [1.0, 2]})
    assert not json_equal({"a": 1}, {"a": 1, "b": 2})
    assert not json_equal("8", 8)
    assert not json_equal(False, 0)


def test_default_check() -> None:
    assert default_check(Answer(404, b"")) == []
    assert "5xx" in default_check(Answer(502, b"bad"))[0]


def _app(status: str, **deps: tuple[str, str]) -> dict:
    return {"status": status, "message": "", "deployments": {n: {"status": s, "message": m}
                                                            for n, (s, m) in deps.items()}}


JUDGE = [
    ("not there yet", {}, "waiting", None),
    ("deploying", {"a": _app("DEPLOYING", D=("UPDATING", ""))}, "waiting", None),
    ("running", {"a": _app("RUNNING", D=("HEALTHY", ""))}, "ready", None),
    ("app deploy failed (import error)", {"a": {**_app("DEPLOY_FAILED"), "message": "ImportError: x"}},
     "failed", "is DEPLOY_FAILED"),
    ("deployment unhealthy", {"a": _app("RUNNING", D=("UNHEALTHY", "health check failed"))}, "failed",
     "is UNHEALTHY"),
    ("constructor raised, retrying", {"a": _app("DEPLOYING", D=(
        "UPDATING", "A replica failed to start with exception. Retrying 2 more time(s). Error: ValueError"))},
     "failed", "failed to start"),
    ("unschedulable", {"a": _app("DEPLOYING", D=("UPDATING", (
        "Deployment 'D' has 3 replicas that have taken more than 10s to be scheduled. "
        'Resources required for each replica: {"CPU": 4}, total resources available: {"CPU": 2.0}. x')))},
     "failed", "cannot be scheduled"),
    ("pending for a runtime env, resources there", {"a": _app("DEPLOYING", D=("UPDATING", (
        "has 1 replicas that have taken more than 10s to be scheduled. "
        'Resources required for each replica: {"CPU": 1}, total resources available: {"CPU": 2.0}. x')))},
     "waiting", None),
]


@pytest.mark.parametrize("apps,state,reason", [c[1:] for c in JUDGE], ids=[c[0] for c in JUDGE])
def test_judge_readiness(apps: dict, state: str, reason: str | None) -> None:
    verdict = judge_readiness(apps, ["a"])
    assert verdict.state == state
    if reason:
        assert reason in verdict.reason


def test_lacks_resources_with_bundles() -> None:
    msg = ('Resources required for each replica: [{"CPU": 1}, {"CPU": 2}], '
           'total resources available: {"CPU": 2.0}. Use')
    assert lacks_resources(msg)
    assert lacks_resources("no numbers in this message")


@pytest.mark.parametrize("prefix,path,want", [("/", "/", "/"), ("/", "/x", "/x"), ("/fruit", "/", "/fruit"),
                                              ("/fruit/", "/price", "/fruit/price")])
def test_join_route(prefix: str, path: str, want: str) -> None:
    assert join_route(prefix, path) == want


def test_target_import_path_and_args(tmp_path: Path) -> None:
    (tmp_path / "mod.py").write_text("x = 1\n")
    target = resolve_target("mod:build", ["size=3"], tmp_path)
    app = target.config["applications"][0]
    assert app == {"name": "default", "route_prefix": "/", "import_path": "mod:build", "args": {"size": "3"}}
    assert target.python_path[0] == str(tmp_path.resolve())


def test_target_2_0_config_is_upgraded(tmp_path: Path) -> None:
    target = resolve_target(str(EXAMPLES / "fruit" / "fruit_config_2.0.yaml"), [], tmp_path)
    assert [a.name for a in target.apps] == ["default"]
    assert str((EXAMPLES / "fruit").resolve()) in target.python_path
    assert any("single-application" in n for n in target.notices)


def test_target_local_working_dir_goes_on_the_path(tmp_path: Path) -> None:
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "svc.py").write_text("app = None\n")
    (tmp_path / "c.yaml").write_text("applications:\n  - name: s\n    import_path: svc:app\n"
                                     "    runtime_env: {working_dir: code, env_vars: {A: b}}\n")
    target = resolve_target(str(tmp_path / "c.yaml"), [], tmp_path)
    assert target.python_path[0] == str((tmp_path / "code").resolve())
    assert target.config["applications"][0]["runtime_env"] == {"env_vars": {"A": "b"}}


TARGET_ERRORS = [
    ("not an import path", "no_colon", [], None, "neither a Serve config file nor an import path"),
    ("module nowhere", "nosuchmodule_xyz:app", [], None, "not found"),
    ("args for a config", "c.yaml", ["a=1"], "applications: [{name: a, import_path: m:app}]\n", "only for an import"),
    ("bad key=value", "m:app", ["oops"], None, "not key=value"),
    ("config without apps", "c.yaml", [], "applications: []\n", "no applications"),
    ("config schema error", "c.yaml", [], "applications: [{name: a, import_path: m:app, "
     "deployments: [{name: D, num_replicas: many}]}]\n", "num_replicas"),
    ("missing working_dir", "c.yaml", [], "applications: [{name: a, import_path: m:app, "
     "runtime_env: {working_dir: ./gone}}]\n", "is not a folder"),
    ("duplicate route prefix", "c.yaml", [], "applications: [{name: a, import_path: m:app}, "
     "{name: b, import_path: m:app}]\n", "route_prefix"),
]


@pytest.mark.parametrize("target,args,config,message", [c[1:] for c in TARGET_ERRORS],
                         ids=[c[0] for c in TARGET_ERRORS])
def test_target_errors(tmp_path: Path, target: str, args: list[str], config: str | None, message: str) -> None:
    (tmp_path / "m.py").write_text("app = None\n")
    if config is not None:
        (tmp_path / target).write_text(config)
        target = str(tmp_path / target)
    with pytest.raises((InputError, ConfigError)) as info:
        resolve_target(target, args, tmp_path)
    assert info.value.exit_code == 2
    assert message in f"{info.value.message}\n{info.value.details or ''}"


def test_route_for_needs_app_with_several(tmp_path: Path) -> None:
    (tmp_path / "m.py").write_text("app = None\n")
    (tmp_path / "c.yaml").write_text("applications:\n  - {name: fruit, route_prefix: /fruit, import_path: m:app}\n"
                                     "  - {name: veg, route_prefix: /veg, import_path: m:app}\n")
    target = resolve_target(str(tmp_path / "c.yaml"), [], tmp_path)
    reqs = parse_requests("requests:\n  - {name: a}\n  - {name: b, app: fruit, path: /p}\n  - {name: c, app: frut}\n")
    with pytest.raises(InputError, match="needs `app:`"):
        route_for(target, reqs[0])
    assert route_for(target, reqs[1])[1] == "/fruit/p"
    with pytest.raises(InputError, match="did you mean 'fruit'"):
        route_for(target, reqs[2])


def test_junit_content(tmp_path: Path) -> None:
    outcomes = [Outcome("ok one", "fruit", "GET", "/", True, 200, 12.0),
                Outcome("bad one", "fruit", "POST", "/", False, 200, 5.0, error="json: expected 8, got 9",
                        mismatches=["json: expected 8, got 9"]),
                Outcome("later", "fruit", "GET", "/", False, None, 0.0, error="not run", skipped=True)]
    junit.write(tmp_path / "j.xml", outcomes, elapsed_s=3.5)
    root = ET.parse(tmp_path / "j.xml").getroot()
    suite = root.find("testsuite")
    assert suite.get("tests") == "3" and suite.get("failures") == "1" and suite.get("skipped") == "1"
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert cases["bad one"].find("failure").get("message") == "json: expected 8, got 9"
    assert cases["ok one"].get("time") == "0.012"


def test_junit_deploy_failure_case() -> None:
    text = junit.render([], deploy_error="application 'a' is DEPLOY_FAILED", deploy_details="Traceback")
    case = ET.fromstring(text.split("\n", 1)[1]).find("testsuite/testcase")
    assert case.get("name") == "deploy" and case.find("failure").text == "Traceback"


def test_an_app_that_cannot_import_is_the_error_validate_raises() -> None:
    """One name for one failure: the driver's failed import is validate's AppImportError, with its hint;
    the smoke runner reports it as a failed check (exit 1)."""
    answer = {"ok": False, "type": "ModuleNotFoundError", "module": "builtins",
              "error": "ModuleNotFoundError: No module named 'nope'",
              "details": ('Traceback (most recent call last):\n  File "/x/site-packages/ray/_common/utils.py", '
                          "line 1, in import_attr\n    module = importlib.import_module(name)\n"
                          "ModuleNotFoundError: No module named 'nope'\n")}
    with pytest.raises(AppImportError) as info:
        appcode.code_options(answer, "nope:app")
    err = info.value
    assert err.message == err.last_line == "ModuleNotFoundError: No module named 'nope'"
    assert err.import_path == "nope:app" and "--app-dir" in (err.hint or "")
    assert "site-packages/ray" not in (err.details or "") and "No module named 'nope'" in (err.details or "")


def test_log_tail_prefers_replica_with_traceback(tmp_path: Path) -> None:
    serve = tmp_path / "serve"
    serve.mkdir()
    (serve / "replica_a_D_x1.log").write_text("INFO started\nTraceback (most recent call last):\nValueError: z\n")
    (serve / "controller_1.log").write_text("INFO controller\n")
    assert "ValueError: z" in logs.failure_log(tmp_path, "a", "D")
    assert "controller" in logs.failure_log(tmp_path, "a", None)


BAD_CLI = [
    ("invalid import path", ["smoke", "not-a-target"]),
    ("missing requests file", ["smoke", "fruit:deployment_graph", "--app-dir", str(EXAMPLES / "fruit"),
                               "--requests", "/nonexistent/r.yaml"]),
    ("bad timeout", ["smoke", "fruit:deployment_graph", "--timeout", "0"]),
]


@pytest.mark.parametrize("argv", [c[1] for c in BAD_CLI], ids=[c[0] for c in BAD_CLI])
def test_bad_input_exits_2_without_ray(argv: list[str], cli_env: dict, tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    proc = subprocess.run(ci_serve_cmd(*argv, "--report", str(report)), env=cli_env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "ERROR" in proc.stderr
    assert "start Ray head" not in proc.stderr
    import json

    data = json.loads(report.read_text())
    assert data["result"] == "error" and data["exit_code"] == 2


def test_bench_smoke_plan_only(cli_env: dict) -> None:
    """The benchmark is not run in the suite; `--pairs 0` checks that it loads and prints its plan."""
    from tests.conftest import REPO

    proc = subprocess.run([*ci_serve_cmd()[:1], "-m", "benchmarks.bench_smoke", "--pairs", "0"], env=cli_env,
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "plan: 0 pair(s)" in proc.stdout
