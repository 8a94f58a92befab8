"""The action's handling of a held release (issue 22): the `hold` and `release` inputs, `command:
promote` and `abort`, the outputs `preview-url`, `url` and `release`, and the job summary that says
how to promote or abort a hold. Pure parts, table-tested; the whole flow runs under act in
tests/container/test_act.py against a real head."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml

from ci_serve.action import summary
from ci_serve.action.followup import command_line, workflow_step
from ci_serve.action.inputs import env_name, read_inputs
from ci_serve.action.steps import Invocation, Outcome, invocation, outputs, pipeline, public_url, result_word
from ci_serve.errors import InputError

SHA = "0123456789abcdef0123456789abcdef01234567"
ADDRESS = "https://ray.example.com:8265"


def env(sha: str | None = SHA, **inputs: str) -> dict[str, str]:
    got = {env_name(k.replace("_", "-")): v for k, v in inputs.items()}
    return {**got, "GITHUB_SHA": sha} if sha else got


def _held(**more) -> dict:
    return {"result": "held", "release": SHA, "live_app": "shop-blue", "live_url": "http://10.0.0.5:8000",
            "preview_urls": {"shop": "http://10.0.0.5:8000/shop--green", "cart": "http://10.0.0.5:8000/cart--green"},
            "plan": {"verdict": "heavyweight", "applications": [{"name": "shop", "route_prefix": "/shop",
                                                                 "change": "heavyweight"}]}, **more}


@pytest.mark.parametrize("inputs, sha, needle", [
    ({"command": "smoke", "hold": "true"}, SHA, "`hold` is for a deploy, not `command: smoke`"),
    ({"command": "promote", "hold": "true", "address": ADDRESS}, SHA, "`hold` is for a deploy"),
    ({"hold": "true"}, SHA, "`hold` needs the input `address`"),
    ({"command": "deploy", "hold": "later", "address": ADDRESS}, SHA, "`hold` must be `true` or `false`"),
    ({"command": "deploy", "hold": "true", "address": ADDRESS, "strategy": "in-place"}, SHA, "`strategy: in-place`"),
    ({"command": "promote"}, SHA, "command `promote` needs the input `address`"),
    ({"command": "abort"}, SHA, "command `abort` needs the input `address`"),
    ({"command": "promote", "address": ADDRESS}, None, "command `promote` needs the input `release`"),
    ({"command": "abort", "address": ADDRESS}, None, "command `abort` needs the input `release`"),
    ({"command": "deploy", "hold": "true", "address": ADDRESS}, None, "a hold needs the input `release`"),
    ({"command": "promote", "address": ADDRESS, "release": "v1 v2"}, SHA, "must be a tag or a commit SHA"),
    ({"command": "promote", "address": ADDRESS, "release": "a`b"}, SHA, "must be a tag or a commit SHA"),
    ({"command": "abort", "address": ADDRESS, "release": "x" * 201}, SHA, "must be a tag or a commit SHA"),
    ({"command": "abort", "address": ADDRESS, "release": "-rf"}, SHA, "must be a tag or a commit SHA"),
])
def test_bad_release_inputs_are_refused_with_a_message(tmp_path: Path, inputs: dict, sha: str | None, needle: str):
    with pytest.raises(InputError) as info:
        read_inputs(env(sha, **inputs), tmp_path)
    assert needle in info.value.message, info.value.message
    assert info.value.hint and info.value.exit_code == 2


def test_a_hold_is_a_deploy_with_hold_and_the_release_as_version(tmp_path: Path):
    got = read_inputs(env(command="deploy", hold="TRUE", address=ADDRESS, requests="r.yaml", timeout="90"), tmp_path)
    assert got.hold and got.release == SHA
    argv = invocation("deploy", got).argv
    assert argv[:7] == ["deploy", "serve_config.yaml", "--address", ADDRESS, "--strategy", "auto", "--hold"]
    assert argv[argv.index("--version") + 1] == SHA
    auto = read_inputs(env(hold="true", address=ADDRESS, release="v1.2.0"), tmp_path)
    assert [i.command for i in pipeline(auto)] == ["validate", "smoke", "deploy"]
    deploy = pipeline(auto)[-1].argv
    assert "--hold" in deploy and deploy[deploy.index("--version") + 1] == "v1.2.0"
    plain = read_inputs(env(command="deploy", address=ADDRESS), tmp_path)
    assert "--hold" not in invocation("deploy", plain).argv
    assert read_inputs(env(None, command="deploy", address=ADDRESS), tmp_path).release is None
    assert "--version" not in invocation("deploy", read_inputs(env(None, command="deploy", address=ADDRESS),
                                                                tmp_path)).argv


@pytest.mark.parametrize("command", ["promote", "abort"])
def test_promote_and_abort_command_lines(tmp_path: Path, command: str):
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    full = read_inputs(env(command=command, address=ADDRESS, release="v2.0.0", requests="r.yaml", timeout="90",
                           serve_url="https://serve.example.com", ca_cert="ca.pem", working_dir="app",
                           requirements="", strategy="blue-green", standby_address="http://s:8265",
                           standby_url="http://s:8000", switch_command="./switch.sh", verify_url="https://public",
                           extra_args=f"{command} --verify-timeout 30\ndeploy --unschedulable-grace 5"), tmp_path)
    argv = invocation(command, full).argv
    assert argv[:6] == [command, "serve_config.yaml", "--address", ADDRESS, "--version", "v2.0.0"]
    assert (argv[argv.index("--requests") + 1] == "r.yaml") if command == "promote" else "--requests" not in argv
    for flag, value in [("--timeout", "90"), ("--serve-url", "https://serve.example.com"),
                        ("--ca-cert", "ca.pem"), ("--standby-address", "http://s:8265"),
                        ("--standby-url", "http://s:8000"), ("--switch-command", "./switch.sh"),
                        ("--verify-url", "https://public"), ("--verify-timeout", "30")]:
        assert argv[argv.index(flag) + 1] == value, flag
    # what only a deploy takes: the candidate is on the cluster already
    for flag in ("--strategy", "--working-dir", "--hold", "--unschedulable-grace", "--requirements"):
        assert flag not in argv, flag
    assert argv[-2:] == ["--report", f".ci-serve/{command}.json"]
    assert [i.command for i in pipeline(full)] == [command]
    defaulted = read_inputs(env(command=command, address=ADDRESS), tmp_path)
    assert invocation(command, defaulted).argv[4:6] == ["--version", SHA]


@pytest.mark.parametrize("command, code, said, expected", [
    ("deploy", 0, "held", "held"),
    ("promote", 0, "deployed", "deployed"),
    ("promote", 0, None, "deployed"),
    ("promote", 1, "rolled-back", "rolled-back"),
    ("promote", 2, "error", "error"),
    ("promote", 3, "failed", "failed"),
    ("abort", 0, "aborted", "aborted"),
    ("abort", 0, "unchanged", "unchanged"),
    ("abort", 0, None, "aborted"),
    ("abort", 0, "held", "aborted"),
    ("smoke", 0, "held", "passed"),
])
def test_result_words_of_a_release(command: str, code: int, said: str | None, expected: str):
    assert result_word(command, code, {"result": said} if said else None) == expected


def _inv(command: str, release: str | None = SHA) -> Invocation:
    argv = [command, "serve_config.yaml", "--address", ADDRESS] + (["--version", release] if release else [])
    return Invocation(command, [*argv, "--report", f".ci-serve/{command}.json"], f".ci-serve/{command}.json")


def test_outputs_of_a_hold_promote_and_abort():
    held = outputs([Outcome(_inv("deploy"), 0, _held())])
    assert held["result"] == "held" and held["release"] == SHA
    assert held["preview-url"] == "http://10.0.0.5:8000/shop--green"  # the first application's, in report order
    assert held["url"] == "http://10.0.0.5:8000/shop"  # what still serves: the live version
    assert held["live-app"] == "shop-blue"
    promoted = outputs([Outcome(_inv("promote"), 0, {"result": "deployed", "release": SHA, "live_app": "shop-green",
                                                     "live_url": "http://10.0.0.5:8000", "plan": _held()["plan"]})])
    assert (promoted["result"], promoted["url"], promoted["live-app"], promoted["preview-url"]) == \
        ("deployed", "http://10.0.0.5:8000/shop", "shop-green", "")
    assert promoted["release"] == SHA
    aborted = outputs([Outcome(_inv("abort", "v9"), 0, {"result": "aborted", "live_app": "shop-blue",
                                                        "live_url": "http://10.0.0.5:8000"})])
    assert (aborted["result"], aborted["release"], aborted["url"]) == ("aborted", "v9", "http://10.0.0.5:8000")
    refused = outputs([Outcome(_inv("promote", "v9"), 2, {"result": "error", "errors": [{"message": "not held"}]})])
    assert (refused["result"], refused["release"], refused["url"], refused["preview-url"]) == ("error", "v9", "", "")
    assert outputs([Outcome(_inv("smoke", None), 0, {"result": "passed"})])["release"] == ""


@pytest.mark.parametrize("report, expected", [
    (_held(), "http://10.0.0.5:8000/shop"),
    (_held(live_app=None), ""),  # the first release held: nothing serves yet
    ({"result": "aborted", "live_app": None, "live_url": "http://h:8000"}, ""),
    ({"result": "aborted", "live_app": "shop", "live_url": "http://h:8000/"}, "http://h:8000"),
    ({"result": "error", "live_app": "shop", "live_url": "http://h:8000"}, ""),
])
def test_url_after_a_hold_or_abort_is_what_still_serves(report: dict, expected: str):
    assert public_url(report, None, ADDRESS) == expected


def test_preview_url_is_empty_unless_the_hold_succeeded():
    failed = outputs([Outcome(_inv("deploy"), 1, {**_held(), "result": "rolled-back"})])
    assert failed["preview-url"] == "" and failed["result"] == "rolled-back"
    assert outputs([Outcome(_inv("deploy"), 0, {**_held(), "preview_urls": "bogus"})])["preview-url"] == ""


def test_the_summary_of_a_hold_shows_the_previews_and_how_to_promote_or_abort_it(tmp_path: Path):
    inputs = read_inputs(env(command="deploy", hold="true", address=ADDRESS, requests="smoke_requests.yaml",
                             serve_url="https://serve.example.com", ray_auth_token="tok-12345",
                             extra_args="promote --verify-timeout 30"), tmp_path)
    outcome = Outcome(invocation("deploy", inputs), 0, _held())
    text = summary.render([outcome], outputs([outcome], inputs=inputs), inputs=inputs)
    assert "## ⏸️ Ray Serve: held" in text and f"Release: `{SHA}`" in text
    assert "| shop | http://10.0.0.5:8000/shop--green |" in text
    assert "| cart | http://10.0.0.5:8000/cart--green |" in text
    assert f"release `{SHA}` is **held** for review" in text and "what serves (`shop-blue`) is untouched" in text
    assert "tok-12345" not in text
    for command in ("promote", "abort"):
        line = next(ln for ln in text.splitlines() if ln.startswith(f"ci-serve {command} "))
        words = shlex.split(line)
        assert words[words.index("--version") + 1] == SHA and words[words.index("--address") + 1] == ADDRESS
        assert words[words.index("--serve-url") + 1] == "https://serve.example.com"
        assert "--report" not in words and "--hold" not in words
        step = yaml.safe_load(_block(text, f"command: {command}"))[0]
        assert step["uses"] == "serve-deploy-action/serve-deploy-action@v1"
        assert step["with"]["command"] == command and step["with"]["release"] == SHA
        assert step["with"]["address"] == ADDRESS
        assert step["with"].get("requests") == ("smoke_requests.yaml" if command == "promote" else None)
        assert step["with"]["ray-auth-token"] == "${{ secrets.RAY_AUTH_TOKEN }}"
    assert "--verify-timeout 30" in text.split("**To abort it**")[0]  # the promote's extra-args, not the abort's


def _block(text: str, needle: str) -> str:
    """The fenced YAML block of ``text`` that holds ``needle``."""
    for block in text.split("```yaml\n")[1:]:
        body = block.split("```", 1)[0]
        if needle in body:
            return body
    raise AssertionError(f"no yaml block with {needle!r}")


def test_the_next_steps_never_show_a_pem_and_keep_every_connection_input(tmp_path: Path):
    pem = "-----BEGIN CERTIFICATE-----\nMIIBsecret\n-----END CERTIFICATE-----"
    inputs = read_inputs(env(command="deploy", hold="true", address=ADDRESS, ca_cert=pem, release="1234567",
                             standby_address="http://s:8265", standby_url="http://s:8000",
                             switch_command="./lb.sh 'to green'", timeout="600"), tmp_path)
    line = command_line("promote", inputs, "1234567")
    assert "MIIB" not in line and "--ca-cert ca.pem" in line
    assert "'./lb.sh '\"'\"'to green'\"'\"''" in line  # quoted as a shell would need it
    step = yaml.safe_load(workflow_step("abort", inputs, "1234567"))[0]["with"]
    assert step["release"] == "1234567" and step["timeout"] == "600"  # strings, not YAML numbers
    assert step["switch-command"] == "./lb.sh 'to green'" and step["ca-cert"] == "${{ vars.RAY_CA_CERT }}"
    insecure = read_inputs(env(command="deploy", hold="true", address=ADDRESS, insecure="true"), tmp_path)
    assert yaml.safe_load(workflow_step("promote", insecure, SHA))[0]["with"]["insecure"] is True
    assert "--insecure" in command_line("promote", insecure, SHA)


@pytest.mark.parametrize("command, code, report, needle", [
    ("promote", 0, {"result": "deployed", "live_app": "shop-green"},
     f"release `{SHA}` promoted: it takes the traffic now (live: `shop-green`)."),
    ("promote", 1, {"result": "rolled-back"}, f"release `{SHA}` was not promoted; a version that passed its checks"),
    ("promote", 2, {"result": "error"}, "nothing (refused before any write)."),
    ("promote", 3, {"result": "failed"}, "**the previous state could not be restored**"),
    ("abort", 0, {"result": "aborted", "live_app": "shop-blue"},
     f"release `{SHA}` aborted: its held candidate was removed; what serves (`shop-blue`) is as it was."),
    ("abort", 0, {"result": "unchanged", "warnings": ["nothing held"]}, f"nothing: no release `{SHA}` was held here"),
    ("deploy", 0, {**_held(), "live_app": None}, "no version served before it, and it takes no traffic until"),
])
def test_the_summary_says_what_a_promote_or_abort_did(command: str, code: int, report: dict, needle: str):
    outcome = Outcome(_inv(command), code, report)
    text = summary.render([outcome], outputs([outcome]))
    changed = next(ln for ln in text.splitlines() if ln.startswith("**Changed on the cluster:** "))
    assert needle in changed, changed
    assert "To promote it" not in text  # only a hold has next steps


def test_a_hold_is_a_notice_on_the_run_page(tmp_path: Path):
    notes = summary.annotations([Outcome(_inv("deploy"), 0, _held())], tmp_path)
    assert [(n.level, n.title) for n in notes] == [("notice", "release held")]
    assert f"Release {SHA} is held for review" in notes[0].message
    assert "shop at http://10.0.0.5:8000/shop--green; cart at" in notes[0].message
    assert summary.annotations([Outcome(_inv("promote"), 0, {"result": "deployed"})], tmp_path) == []


def test_the_summary_of_status_lists_the_held_releases():
    report = {"result": "passed", "managed": {
        "shop": {"live": "shop-blue", "held": [{"release": "v2", "candidate": "shop-green", "status": "RUNNING",
                                                "preview_url": "http://h:8000/shop--green", "held_ago_s": 5400.0}]},
        "cart": {"live": "cart", "held": []}, "odd": "not a dict"}}
    text = summary.render([Outcome(_inv("status", None), 0, report)], {"result": "passed"})
    assert "**Held releases:** 1" in text
    assert "| shop | v2 | shop-green | RUNNING | http://h:8000/shop--green | 90 min ago |" in text
    assert "Held releases" not in summary.render([Outcome(_inv("status", None), 0, {"managed": {}})], {})


@pytest.mark.parametrize("connection", [
    {},
    {"serve_url": "https://serve.example.com", "insecure": "true", "timeout": "90", "requests": "r.yaml"},
    {"standby_address": "http://s:8265", "standby_url": "http://s:8000", "switch_command": "./lb.sh", "timeout": "9",
     "verify_url": "https://public", "requests": "r.yaml", "ray_auth_token_path": "tok"},
])
def test_every_command_line_the_action_runs_or_shows_is_one_ci_serve_accepts(tmp_path: Path, connection: dict):
    """The command lines of a hold, a promote and an abort, and those a hold's summary shows: the real
    parser of ci-serve takes each of them (a flag one command lacks would be exit 2 at run time)."""
    from ci_serve.cli import build_parser

    (tmp_path / "tok").write_text("t")
    parser = build_parser()
    for command in ("deploy", "promote", "abort"):
        inputs = read_inputs(env(command=command, address=ADDRESS, hold="true" if command == "deploy" else "false",
                                 **connection), tmp_path)
        argv = invocation(command, inputs).argv
        args = parser.parse_args(argv)
        assert (args.command, args.release_version) == (command, SHA)
        if command == "deploy":
            assert args.hold
            for shown in ("promote", "abort"):
                words = shlex.split(command_line(shown, inputs, "v7"))[1:]
                assert parser.parse_args(words).release_version == "v7", words


def test_an_abort_across_two_clusters_needs_only_the_standby_address(tmp_path: Path):
    """It removes the standby's held applications: no switch command, no checks (as `ci-serve abort`)."""
    got = read_inputs(env(command="abort", address=ADDRESS, release="v2", **{"standby-address": "http://s:8265"}),
                      tmp_path)
    argv = invocation("abort", got).argv
    assert argv[argv.index("--standby-address") + 1] == "http://s:8265" and "--switch-command" not in argv
    with pytest.raises(InputError, match="`standby-url`, `switch-command` too"):
        read_inputs(env(command="promote", address=ADDRESS, release="v2", **{"standby-address": "http://s:8265"}),
                    tmp_path)


def test_status_across_two_clusters_lists_what_the_standby_holds(tmp_path: Path):
    from ci_serve.action.summary import held_releases_section

    got = read_inputs(env(command="status", address=ADDRESS, **{"standby-address": "http://s:8265",
                                                                 "standby-url": "http://s:8000"}), tmp_path)
    argv = invocation("status", got).argv
    assert argv[argv.index("--standby-address") + 1] == "http://s:8265"
    assert argv[argv.index("--standby-url") + 1] == "http://s:8000"
    lines = held_releases_section({"managed": {}, "standby": {"address": "http://s:8265", "held": [
        {"app": "shop", "release": "v2", "standby_app": "shop", "status": "RUNNING",
         "preview_url": "http://s:8000/shop", "held_ago_s": 30}]}})
    assert any("| shop | v2 | shop (standby) | RUNNING | http://s:8000/shop |" in line for line in lines), lines
