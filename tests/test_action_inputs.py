"""The action's pure parts: inputs, the command pipeline, outputs, summary and annotations (table tests)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ci_serve import secrets
from ci_serve.action import summary
from ci_serve.action.inputs import COMMANDS, Inputs, env_name, inside_workspace, read_inputs
from ci_serve.action.steps import Invocation, Outcome, invocation, outputs, pipeline, result_word
from ci_serve.errors import InputError

from .conftest import REPO


def env(**inputs: str) -> dict[str, str]:
    return {env_name(k.replace("_", "-")): v for k, v in inputs.items()}


def test_env_name_keeps_hyphens():
    assert env_name("ray-auth-token") == "INPUT_RAY-AUTH-TOKEN"
    assert env_name("app-dir") == "INPUT_APP-DIR"


def test_defaults(tmp_path: Path):
    got = read_inputs({}, tmp_path)
    assert got == Inputs(command="auto", target=[], config="serve_config.yaml", app_dir=None)


@pytest.mark.parametrize("inputs, needle", [
    ({"command": "deploi"}, "unknown command 'deploi'"),
    ({"command": "rm -rf /"}, "unknown command"),
    ({"strategy": "canary"}, "unknown strategy"),
    ({"command": "deploy"}, "needs the input `address`"),
    ({"command": "status"}, "needs the input `address`"),
    ({"command": "plan"}, "needs the input `address`"),
    ({"timeout": "soon"}, "`timeout` must be a number"),
    ({"timeout": "-5"}, "`timeout` must be a number"),
    ({"timeout": "nan"}, "`timeout` must be a number"),
    ({"config": "../elsewhere.yaml"}, "outside the workspace"),
    ({"config": "/etc/passwd"}, "outside the workspace"),
    ({"requests": "a/../../b.yaml"}, "outside the workspace"),
    ({"app_dir": ".."}, "outside the workspace"),
    ({"requirements": "/tmp/r.txt"}, "outside the workspace"),
    ({"working_dir": "../.."}, "outside the workspace"),
    ({"target": "../x.yaml"}, "outside the workspace"),
    ({"target": "fruit.py"}, "neither an import path"),
    ({"target": "app:x 'unclosed"}, "cannot be split"),
    ({"target": "cfg.yaml extra=1"}, "config file takes no further arguments"),
    ({"standby_address": "http://b:8265"}, "`standby-url`, `switch-command` too"),
    ({"command": "build"}, "needs the input `target`"),
    ({"command": "build", "target": "serve_config.yaml"}, "needs the input `target`"),
    ({"insecure": "maybe"}, "`insecure` must be `true` or `false`"),
    ({"insecure": "true", "ca_cert": "-----BEGIN CERTIFICATE-----\nx\n"}, "either `ca-cert` or `insecure`"),
    ({"ca_cert": "/etc/ssl/certs/ca-certificates.crt"}, "outside the workspace"),
    ({"ca_cert": "missing.pem"}, "no such file"),
    ({"ray_auth_token_path": "../token"}, "outside the workspace"),
    ({"ray_auth_token_path": "tok", "ray_auth_token": "abc123"}, "either `ray-auth-token` or `ray-auth-token-path`"),
    ({"extra_args": "--unschedulable-grace 5"}, "not a command"),
    ({"extra_args": "deploy --report x.json"}, "--report is set by the action"),
    ({"extra_args": "smoke --junit=x.xml"}, "--junit is set by the action"),
    ({"extra_args": "deploy 'open"}, "cannot be split"),
])
def test_bad_inputs_are_refused_with_a_message(tmp_path: Path, inputs: dict[str, str], needle: str):
    with pytest.raises(InputError) as info:
        read_inputs(env(**inputs), tmp_path)
    assert needle in info.value.message
    assert info.value.hint
    assert info.value.exit_code == 2


def test_symlink_out_of_the_workspace_is_refused(tmp_path: Path):
    (tmp_path / "ws").mkdir()
    (tmp_path / "ws" / "link").symlink_to(tmp_path)
    with pytest.raises(InputError, match="outside the workspace"):
        inside_workspace("link/secret.yaml", tmp_path / "ws", "config")


@pytest.mark.parametrize("value, expected", [
    ("serve_config.yaml", "serve_config.yaml"),
    ("./deploy/../serve_config.yaml", "serve_config.yaml"),
    (".", "."),
    ("examples/fruit", "examples/fruit"),
])
def test_paths_are_normalised_inside_the_workspace(tmp_path: Path, value: str, expected: str):
    assert inside_workspace(value, tmp_path, "config") == expected
    assert inside_workspace(str(tmp_path / value), tmp_path, "config") == expected


def test_case_and_whitespace_are_forgiven(tmp_path: Path):
    got = read_inputs(env(command=" Smoke \n", strategy="Blue-Green", target=" fruit:app  greeting=hi "), tmp_path)
    assert (got.command, got.strategy, got.target) == ("smoke", "blue-green", ["fruit:app", "greeting=hi"])


@pytest.mark.parametrize("inputs, commands", [
    ({}, ["validate", "smoke"]),
    ({"address": "http://head:8265"}, ["validate", "smoke", "deploy"]),
    ({"command": "smoke", "address": "http://head:8265"}, ["smoke"]),
    ({"command": "status", "address": "http://head:8265"}, ["status"]),
])
def test_pipeline(tmp_path: Path, inputs: dict[str, str], commands: list[str]):
    assert [i.command for i in pipeline(read_inputs(env(**inputs), tmp_path))] == commands


def test_command_lines(tmp_path: Path):
    full = read_inputs(env(config="c.yaml", requests="r.yaml", app_dir="app", address="http://h:8265",
                           ray_auth_token="tok-123456", strategy="in-place", working_dir="app", timeout="90",
                           standby_address="http://s:8265", standby_url="http://s:8000",
                           switch_command="./switch.sh", verify_url="https://public"), tmp_path)
    assert invocation("validate", full).argv == ["validate", "c.yaml", "--app-dir", "app",
                                                 "--report", ".ci-serve/validate.json"]
    assert invocation("smoke", full).argv == [
        "smoke", "c.yaml", "--app-dir", "app", "--junit", ".ci-serve/smoke-junit.xml", "--requests", "r.yaml",
        "--timeout", "90", "--report", ".ci-serve/smoke.json"]
    deploy = invocation("deploy", full).argv
    assert deploy[:5] == ["deploy", "c.yaml", "--address", "http://h:8265", "--strategy"]
    for flag, value in [("--requests", "r.yaml"), ("--working-dir", "app"), ("--timeout", "90"),
                        ("--standby-address", "http://s:8265"), ("--standby-url", "http://s:8000"),
                        ("--switch-command", "./switch.sh"), ("--verify-url", "https://public")]:
        assert deploy[deploy.index(flag) + 1] == value
    assert "tok-123456" not in " ".join(deploy)  # the token goes through the environment
    assert invocation("status", full).argv == ["status", "--address", "http://h:8265", "--standby-address",
                                               "http://s:8265", "--standby-url", "http://s:8000",
                                               "--report", ".ci-serve/status.json"]
    assert invocation("plan", full).argv[:4] == ["plan", "c.yaml", "--address", "http://h:8265"]
    built = read_inputs(env(target="fruit:app other:app", config="out.yaml"), tmp_path)
    assert invocation("build", built).argv[:5] == ["build", "fruit:app", "other:app", "-o", "out.yaml"]
    smoke_target = read_inputs(env(target="fruit:app"), tmp_path)
    assert invocation("smoke", smoke_target).argv[1] == "fruit:app"


@pytest.mark.parametrize("command, code, said, expected", [
    ("smoke", 0, "passed", "passed"),
    ("validate", 0, "valid", "passed"),
    ("deploy", 0, "deployed", "deployed"),
    ("deploy", 0, "unchanged", "unchanged"),
    ("deploy", 0, None, "deployed"),
    ("deploy", 1, "rolled-back", "rolled-back"),
    ("deploy", 3, "failed", "failed"),
    ("smoke", 1, "failed", "failed"),
    ("smoke", 1, None, "failed"),
    ("smoke", 2, None, "error"),
    ("validate", 2, "error", "error"),
    ("smoke", 1, "weird", "failed"),
])
def test_result_word(command: str, code: int, said: str | None, expected: str):
    report = {"result": said} if said is not None else None
    assert result_word(command, code, report) == expected


def _inv(command: str) -> Invocation:
    return Invocation(command, [command], f".ci-serve/{command}.json",
                      ".ci-serve/smoke-junit.xml" if command == "smoke" else None)


def test_outputs_from_a_deploy():
    plan = {"applications": [{"name": "fruit", "verdict": "heavyweight"}], "verdict": "heavyweight"}
    got = outputs([Outcome(_inv("validate"), 0, {"result": "passed"}),
                   Outcome(_inv("smoke"), 0, {"result": "passed", "requests": []}),
                   Outcome(_inv("deploy"), 0, {"result": "deployed", "live_app": "fruit-blue", "plan": plan})])
    assert got == {"result": "deployed", "report": ".ci-serve/deploy.json", "junit": ".ci-serve/smoke-junit.xml",
                   "live-app": "fruit-blue", "plan": json.dumps(plan, sort_keys=True),
                   "live-address": "", "standby-address": "", "url": "", "preview-url": "", "release": "",
                   "traffic-steps": ""}


def test_outputs_say_which_cluster_is_live_after_a_two_cluster_deploy():
    report = {"result": "deployed", "live_app": "fruit", "live_address": "http://green:8265",
              "standby_address": "http://blue:8265"}
    got = outputs([Outcome(_inv("deploy"), 0, report)])
    assert got["live-address"] == "http://green:8265" and got["standby-address"] == "http://blue:8265"


def test_outputs_when_nothing_ran_or_no_report():
    assert outputs([])["result"] == "error"
    got = outputs([Outcome(_inv("smoke"), 1, None)], exists=lambda p: False)
    assert got == {"result": "failed", "report": "", "junit": "", "live-app": "", "plan": "", "live-address": "",
                   "standby-address": "", "url": "", "preview-url": "", "release": "",
                   "traffic-steps": ""}


def test_summary_tables_and_failure():
    secrets.register("hunter2-token")
    smoke = {"result": "failed", "requests": [
        {"name": "pear | price", "app": "fruit", "passed": True, "status": 200, "elapsed_ms": 12, "error": None},
        {"name": "mango", "app": "fruit", "passed": False, "status": 500, "elapsed_ms": 30,
         "error": "expected 8\ngot hunter2-token"}],
        "steps": [{"name": "start head", "status": "ok", "elapsed_s": 5.25}],
        "errors": [{"message": "1 of 2 requests failed", "hint": "fix the mango stand", "details": "tail\n```x"}]}
    text = summary.render([Outcome(_inv("smoke"), 1, smoke)], {"result": "failed", "report": ".ci-serve/smoke.json"})
    assert "## ❌ Ray Serve: failed" in text
    assert "| pear \\| price | fruit | ✅ pass | 200 | 12 |  |" in text
    assert "| mango | fruit | ❌ fail | 500 | 30 | expected 8<br>got *** |" in text
    assert "hunter2-token" not in text
    assert "**What happened:** 1 of 2 requests failed" in text and "**What to do:** fix the mango stand" in text
    assert "1 of 2 passed" in text and "5.2 s" in text


def test_summary_plan_and_deploy_steps():
    plan = {"verdict": "lightweight", "applications": [
        {"name": "fruit", "change": "user_config", "verdict": "lightweight", "extra": {"nested": 1}}]}
    deploy = {"result": "deployed", "plan": plan, "live_app": "fruit",
              "steps": [{"name": "gate: RUNNING", "status": "ok", "elapsed_s": 0.4}]}
    text = summary.render([Outcome(_inv("deploy"), 0, deploy)], {"result": "deployed", "live-app": "fruit"})
    assert "verdict `lightweight`" in text
    assert "| name | change | verdict |" in text and "| fruit | user_config | lightweight |" in text
    assert "**Steps:**" in text and "| gate: RUNNING | ok | 0.4 s |  |" in text
    assert "Live application: `fruit`" in text


def test_annotations_point_at_the_line(tmp_path: Path):
    report = {"result": "error", "problems": [
        {"file": str(tmp_path / "serve_config.yaml"), "line": 7, "column": 5,
         "path": "applications[0].deployments[0].num_replicas", "message": "must be >= 0", "hint": "use 1"},
        {"file": "/elsewhere/x.yaml", "line": 2, "column": None, "path": None, "message": "bad", "hint": None}]}
    notes = summary.annotations([Outcome(_inv("validate"), 2, report)], tmp_path)
    assert notes[0] == summary.Annotation(
        "applications[0].deployments[0].num_replicas: must be >= 0 (fix: use 1)", "Serve config problem",
        "serve_config.yaml", 7, 5)
    assert notes[1].file is None and notes[1].line == 2
    text = summary.render([Outcome(_inv("validate"), 2, report)], {"result": "error"})
    assert "serve_config.yaml:7:5" in text


def test_annotations_for_errors_and_missing_reports(tmp_path: Path):
    err = {"result": "rolled-back", "errors": [{"message": "candidate never RUNNING", "hint": "raise timeout"}]}
    notes = summary.annotations([Outcome(_inv("deploy"), 1, err), Outcome(_inv("smoke"), 2, None)], tmp_path)
    assert notes[0].message == "candidate never RUNNING (fix: raise timeout)"
    assert "wrote no report" in notes[1].message


_any_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["command", "target", "config", "requests", "app-dir", "address",
                                        "strategy", "working-dir", "timeout", "requirements", "standby-address",
                                        "standby-url", "switch-command", "verify-url", "traffic-command",
                                        "traffic-steps", "step-interval", "prometheus-url", "prometheus-header",
                                        "max-error-rate", "max-p99-ms", "min-requests", "metrics-lag"]),
                       st.one_of(_any_text, st.sampled_from(COMMANDS), st.sampled_from(["..", "/", "a:b", "x.yaml"]))))
def test_any_inputs_are_accepted_or_refused_with_a_message(values: dict[str, str]):
    workspace = Path("/tmp/ci-serve-hypothesis-ws")
    try:
        got = read_inputs({env_name(k): v for k, v in values.items()}, workspace)
    except InputError as err:
        assert err.message and err.exit_code == 2
    else:
        assert got.command in COMMANDS
        for inv in pipeline(got):
            assert inv.argv[0] == inv.command


def test_plan_table_of_an_unknown_shape_shows_its_scalar_fields():
    lines = summary.plan_section({"verdict": "none", "applications": [{"foo": 1, "bar": "x", "deep": {"a": 1}}]})
    assert "| foo | bar |" in lines and "| 1 | x |" in lines
    assert summary.plan_section({"verdict": "none", "applications": []})[-2] == "No application changes."


def test_build_into_a_rayservice_manifest_edits_it_instead_of_replacing_it(tmp_path, monkeypatch):
    """`config` naming a KubeRay RayService manifest: the action's build writes its serveConfigV2
    (`--rayservice`), so the manifest is not overwritten by a bare Serve config."""
    sample = REPO / "tests" / "corpus" / "kuberay__ray-service.sample.yaml"
    (tmp_path / "k8s").mkdir()
    (tmp_path / "k8s" / "ray-service.yaml").write_bytes(sample.read_bytes().replace(b"\n", b"\r\n"))
    (tmp_path / "serve_config.yaml").write_text("# kind: RayService in a comment is not a manifest\napplications: []\n")
    monkeypatch.chdir(tmp_path)  # the action runs the commands from the workspace
    manifest = read_inputs(env(target="fruit:app", config="k8s/ray-service.yaml"), tmp_path)
    assert invocation("build", manifest).argv[2:4] == ["--rayservice", "k8s/ray-service.yaml"]
    for config in ("serve_config.yaml", "new.yaml"):
        plain = read_inputs(env(target="fruit:app", config=config), tmp_path)
        assert invocation("build", plain).argv[2:4] == ["-o", config]


def test_app_dir_only_when_given_so_the_cli_default_holds(tmp_path: Path):
    """One rule for the action and the CLI: without the input, no --app-dir reaches any command."""
    plain = read_inputs(env(address="http://h:8265"), tmp_path)
    for command in ("validate", "smoke", "plan"):
        assert "--app-dir" not in invocation(command, plain).argv, command
    given = read_inputs(env(app_dir="src", address="http://h:8265"), tmp_path)
    for command in ("validate", "smoke", "plan"):
        argv = invocation(command, given).argv
        assert argv[argv.index("--app-dir") + 1] == "src", command


def test_connection_inputs_reach_the_cluster_commands_only(tmp_path: Path):
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    got = read_inputs(env(address="https://h:8265", serve_url="https://serve.example.com", ca_cert="ca.pem",
                          extra_args="deploy --unschedulable-grace 120\n# a comment\n\nsmoke --no-ci-profile"),
                      tmp_path)
    deploy = invocation("deploy", got).argv
    assert deploy[deploy.index("--serve-url") + 1] == "https://serve.example.com"
    assert deploy[deploy.index("--ca-cert") + 1] == "ca.pem"
    assert deploy[-4:] == ["--unschedulable-grace", "120", "--report", ".ci-serve/deploy.json"]
    status = invocation("status", got).argv
    assert "--serve-url" in status and "--ca-cert" in status and "--unschedulable-grace" not in status
    assert "--serve-url" not in invocation("plan", got).argv and "--ca-cert" in invocation("plan", got).argv
    smoke = invocation("smoke", got).argv
    assert "--ca-cert" not in smoke and "--no-ci-profile" in smoke
    insecure = read_inputs(env(address="https://h:8265", insecure="TRUE"), tmp_path)
    assert "--insecure" in invocation("deploy", insecure).argv
    assert "--insecure" not in invocation("smoke", insecure).argv
    pem = read_inputs(env(ca_cert="-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"), tmp_path)
    assert pem.ca_cert and pem.ca_cert.startswith("-----BEGIN")  # main writes it to a file before use


def test_token_path_may_be_in_the_workspace_or_under_home(tmp_path: Path):
    ws, home = tmp_path / "ws", tmp_path / "home"
    ws.mkdir()
    home.mkdir()
    (ws / "tok").write_text("t")
    (home / "tok").write_text("t")
    assert read_inputs({**env(ray_auth_token_path="tok"), "HOME": str(home)}, ws).token_path == "tok"
    got = read_inputs({**env(ray_auth_token_path=str(home / "tok")), "HOME": str(home)}, ws)
    assert got.token_path == str((home / "tok").resolve())
    with pytest.raises(InputError, match="outside the workspace"):
        read_inputs({**env(ray_auth_token_path=str(tmp_path / "elsewhere")), "HOME": str(home)}, ws)


@pytest.mark.parametrize("report, serve_url, address, expected", [
    ({"result": "deployed", "plan": {"applications": [{"route_prefix": "/fruit"}]}}, None,
     "http://10.0.0.5:8265", "http://10.0.0.5:8000/fruit"),
    ({"result": "unchanged", "plan": {"applications": [{"route_prefix": "/"}]}}, "https://serve.example.com/",
     "https://ray:8265", "https://serve.example.com"),
    ({"result": "deployed", "plan": {"applications": [{"route_prefix": "/a"}, {"route_prefix": "/b"}]}},
     "https://s.example.com", None, "https://s.example.com"),
    ({"result": "deployed", "live_url": "http://green:8000"}, "http://ignored", None, "http://green:8000"),
    ({"result": "rolled-back", "plan": {"applications": [{"route_prefix": "/fruit"}]}}, "https://s", None, ""),
    ({"result": "failed"}, None, "http://h:8265", ""),
])
def test_url_output_is_where_what_serves_now_answers(report, serve_url, address, expected):
    from ci_serve.action.steps import public_url

    assert public_url(report, serve_url, address) == expected


@pytest.mark.parametrize("code, report, needle", [
    (0, {"result": "unchanged"}, "nothing: the cluster already serves this version"),
    (0, {"result": "deployed", "live_app": "fruit-green", "packages": [{"uploaded": True}],
         "plan": {"applications": [{"name": "fruit", "change": "heavyweight"}]}},
     "deployed (`fruit`: heavyweight); 1 package(s) uploaded; live: `fruit-green`."),
    (1, {"result": "rolled-back"}, "the candidate was removed and the version that passed its checks keeps serving"),
    (2, {"result": "error"}, "nothing (refused before any write)"),
    (3, {"result": "failed"}, "**the previous state could not be restored**"),
])
def test_the_summary_says_what_the_run_changed_on_the_cluster(code, report, needle):
    text = summary.render([Outcome(_inv("deploy"), code, report)], {"result": "x"},
                          warnings=["serve_config.yaml:3:1: key ignored\n    fix: drop it", "Ray version skew"])
    assert f"**Changed on the cluster:** {needle}" in text or needle in text
    assert "**Warnings:** 2" in text and "- ⚠️ Ray version skew" in text
    assert "- ⚠️ serve_config.yaml:3:1: key ignored<br>fix: drop it" in text


def test_warning_annotations_point_at_the_file_when_it_is_in_the_workspace(tmp_path: Path):
    from ci_serve.action.notes import warning_annotations

    (tmp_path / "serve_config.yaml").write_text("a: 1\n")
    at, plain, elsewhere = warning_annotations(["serve_config.yaml:3:5: x: unknown key\n    fix: remove it",
                                                "TLS certificate of https://h is NOT verified (--insecure)",
                                                "/etc/hosts:1: not ours"], tmp_path)
    assert (at.file, at.line, at.col, at.level) == ("serve_config.yaml", 3, 5, "warning")
    assert at.message == "x: unknown key (fix: remove it)"
    assert plain.file is None and plain.message.startswith("TLS certificate")
    assert elsewhere.file is None and elsewhere.message == "/etc/hosts:1: not ours"
