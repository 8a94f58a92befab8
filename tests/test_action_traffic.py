"""The action's side of a progressive release (issue 23): the traffic inputs, checked and passed to the CLI,
the Prometheus header masked, the job summary's table of the steps, the `traffic-steps` output, and the
promote of a held release walking the same steps (table tests; the real walk: tests/container/test_act.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from ci_serve import secrets
from ci_serve.action import followup, summary
from ci_serve.action.inputs import Traffic, env_name, read_inputs
from ci_serve.action.steps import Invocation, Outcome, invocation, outputs
from ci_serve.errors import InputError
from tests.container.runner import REPO
from tests.test_action_entrypoint import run_action
from tests.test_action_inputs import env

HEADER = "Authorization: Bearer prom-tok-61c0ffee"
TWO = {"command": "deploy", "address": "http://blue:8265", "standby_address": "http://green:8265",
       "standby_url": "http://green:8000", "verify_url": "https://shop.example.com",
       "traffic_command": "./weights.sh green blue"}


def test_every_traffic_input_reaches_the_cli_as_its_flag(tmp_path: Path):
    got = read_inputs(env(**TWO, traffic_steps=" 5, 25,100", step_interval="30", prometheus_url="http://prom:9090/",
                          prometheus_header=f"{HEADER}\n\n  X-Scope-OrgID: shop  \n", max_error_rate="0.5",
                          max_p99_ms="250", min_requests="40", metrics_lag="12.5"), tmp_path)
    assert got.traffic == Traffic("./weights.sh green blue", "5,25,100", "30", "http://prom:9090",
                                  (HEADER, "X-Scope-OrgID: shop"), "0.5", "250", "40", "12.5")
    argv = invocation("deploy", got).argv
    pairs = list(zip(argv, argv[1:], strict=False))
    for flag, value in [("--traffic-command", "./weights.sh green blue"), ("--traffic-steps", "5,25,100"),
                        ("--step-interval", "30"), ("--prometheus-url", "http://prom:9090"),
                        ("--prometheus-header", HEADER), ("--prometheus-header", "X-Scope-OrgID: shop"),
                        ("--max-error-rate", "0.5"), ("--max-p99-ms", "250"), ("--min-requests", "40"),
                        ("--metrics-lag", "12.5"), ("--standby-address", "http://green:8265"),
                        ("--verify-url", "https://shop.example.com")]:
        assert (flag, value) in pairs, flag
    assert "--switch-command" not in argv
    held = read_inputs(env(**{**TWO, "command": "promote"}, release="v2.0.0"), tmp_path)
    promote = invocation("promote", held).argv  # a held release walks the same steps
    assert promote[promote.index("--traffic-command") + 1] == "./weights.sh green blue"


def test_only_the_command_given_goes_to_the_cli_the_rest_are_its_defaults(tmp_path: Path):
    got = read_inputs(env(**TWO), tmp_path)
    assert got.traffic == Traffic("./weights.sh green blue")
    argv = invocation("deploy", got).argv
    assert argv[argv.index("--traffic-command"):argv.index("--traffic-command") + 2] == \
        ["--traffic-command", "./weights.sh green blue"]
    for flag in ("--traffic-steps", "--step-interval", "--prometheus-url", "--prometheus-header", "--max-error-rate",
                 "--max-p99-ms", "--min-requests", "--metrics-lag"):
        assert flag not in argv, flag
    assert read_inputs(env(**{k: v for k, v in TWO.items() if k != "traffic_command"}, switch_command="./sw.sh"),
                       tmp_path).traffic is None  # the one-step form stays


@pytest.mark.parametrize("given, needle", [
    ({"traffic_steps": "10,50"}, "input `traffic-steps` '10,50': the last step must be 100"),
    ({"traffic_steps": "50,10,100"}, "the steps must increase"),
    ({"traffic_steps": "ten,100"}, "every step must be a whole percent"),
    ({"traffic_steps": "0,100"}, "0 is not a percent between 1 and 100"),
    ({"step_interval": "0.5"}, "`step-interval` must be a number at least 1"),
    ({"step_interval": "soon"}, "`step-interval` must be a number"),
    ({"step_interval": "inf"}, "`step-interval` must be a number"),
    ({"prometheus_url": "prom:9090"}, "input `prometheus-url` 'prom:9090' is not an http(s) URL"),
    ({"prometheus_url": "http://p:9090", "prometheus_header": "Authorization Bearer x"},
     "input `prometheus-header` line 1: (unnamed): not of the form 'Name: value'"),
    ({"prometheus_url": "http://p:9090", "prometheus_header": f"{HEADER}\nX-Org:"},
     "input `prometheus-header` line 2: X-Org: not of the form"),
    ({"prometheus_url": "http://p:9090", "max_error_rate": "101"}, "`max-error-rate` must be a number at least 0 "
                                                                   "and at most 100"),
    ({"prometheus_url": "http://p:9090", "max_error_rate": "-1"}, "`max-error-rate` must be a number"),
    ({"prometheus_url": "http://p:9090", "max_p99_ms": "0"}, "`max-p99-ms` must be a number above 0"),
    ({"prometheus_url": "http://p:9090", "min_requests": "2.5"}, "`min-requests` must be a whole number at least 1"),
    ({"prometheus_url": "http://p:9090", "min_requests": "0"}, "`min-requests` must be a whole number at least 1"),
    ({"prometheus_url": "http://p:9090", "metrics_lag": "-3"}, "`metrics-lag` must be a number at least 0"),
    ({"max_error_rate": "2"}, "input `max-error-rate` judges the steps by Prometheus's numbers: it needs the "
                              "input `prometheus-url`"),
    ({"prometheus_header": HEADER}, "it needs the input `prometheus-url`"),
    ({"switch_command": "./switch.sh"}, "either `switch-command` (one switch) or `traffic-command`"),
    ({"standby_url": ""}, "needs `standby-url` too"),
    ({"standby_address": "", "standby_url": ""}, "needs `standby-address` and `standby-url` too"),
    ({"traffic_command": "", "traffic_steps": "10,100"}, "input `traffic-steps` needs the input `traffic-command`"),
    ({"verify_url": ""}, "without `prometheus-url`: each step is judged through the public entry, and no "
                         "`verify-url` names it"),
])
def test_bad_traffic_inputs_are_refused_with_exit_2(tmp_path: Path, given: dict[str, str], needle: str):
    inputs = {**TWO, **given}
    with pytest.raises(InputError) as info:
        read_inputs(env(**inputs), tmp_path)
    assert needle in info.value.message
    assert info.value.hint and info.value.exit_code == 2
    assert "prom-tok-61c0ffee" not in info.value.message + info.value.hint


@pytest.mark.parametrize("command", ["smoke", "validate", "plan", "status", "abort", "build"])
def test_traffic_inputs_are_refused_for_commands_that_move_no_traffic(tmp_path: Path, command: str):
    with pytest.raises(InputError, match=f"for a release across two clusters .*not `command: {command}`"):
        read_inputs(env(**{**TWO, "command": command}, release="v1", target="app:app"), tmp_path)


def _entries(analysed: bool = True) -> list[dict]:
    def nums(requests: int, errors: int, p99: float) -> dict:
        if not analysed:
            return {"requests": None, "errors": None, "error_rate": None, "p99_ms": None}
        return {"requests": requests, "errors": errors, "error_rate": round(100 * errors / requests, 2),
                "p99_ms": p99}

    return [{"weight": 10, "verdict": "pass", "new": nums(64, 0, 21.5), "old": nums(583, 0, 20.85)},
            {"weight": 50, "verdict": "fail", "new": nums(300, 30, 46.16), "old": nums(310, 0, 19.0)}]


def _deploy(code: int, report: dict) -> Outcome:
    return Outcome(Invocation("deploy", ["deploy"], ".ci-serve/deploy.json"), code, report)


def test_with_prometheus_or_in_a_hold_no_verify_url_is_needed(tmp_path: Path):
    given = {**TWO, "verify_url": ""}
    assert read_inputs(env(**given, prometheus_url="http://p:9090"), tmp_path).traffic is not None
    assert read_inputs(env(**given, hold="true", release="v2"), tmp_path).traffic is not None  # stops before


def test_the_summary_shows_each_step_and_that_the_share_went_back_to_zero():
    report = {"result": "rolled-back", "traffic_steps": _entries(), "traffic_analysed": True,
              "steps": [{"name": "traffic 10%", "status": "ok"}, {"name": "traffic 50%", "status": "ok"},
                        {"name": "hold 50%", "status": "failed"}, {"name": "traffic back to 0%", "status": "ok"}],
              "errors": [{"message": "traffic step 50 % fail after 1 interval(s) of 60s: error rate 10 % > 1 %",
                          "hint": "fix the release"}]}
    values = outputs([_deploy(1, report)])
    text = summary.render([_deploy(1, report)], values)
    assert "**Traffic steps:** 2 reached, up to 50 %" in text
    assert "| 10 % | pass | 64 | 0 | 0 % | 21.5 ms | 583 | 0 | 0 % | 20.85 ms |" in text
    assert "| 50 % | fail | 300 | 30 | 10 % | 46.16 ms | 310 | 0 | 0 % | 19 ms |" in text
    assert "set the new version's share **back to 0 %**" in text
    assert "No metric was analysed" not in text
    assert json.loads(values["traffic-steps"]) == _entries()
    assert values["result"] == "rolled-back"


def test_the_summary_says_clearly_when_no_metric_was_analysed():
    report = {"result": "deployed", "traffic_steps": [{**e, "verdict": "pass"} for e in _entries(False)],
              "traffic_analysed": False}
    text = summary.render([_deploy(0, report)], outputs([_deploy(0, report)]))
    assert "> ⚠️ **No metric was analysed**: no `prometheus-url` was given" in text
    assert "| 10 % | pass | - | - | - | - | - | - | - | - |" in text
    assert json.loads(outputs([_deploy(0, report)])["traffic-steps"])[0]["new"]["requests"] is None


def test_the_summary_of_a_walk_that_reached_no_step_or_could_not_go_back():
    report = {"result": "failed", "traffic_steps": [], "traffic_analysed": True,
              "steps": [{"name": "traffic back to 0%", "status": "failed"}]}
    text = summary.render([_deploy(3, report)], outputs([_deploy(3, report)]))
    assert "No traffic step was reached" in text
    assert "back to 0 % **failed**: traffic may still reach the new version" in text
    assert outputs([_deploy(0, {"result": "deployed"})])["traffic-steps"] == ""  # one switch: no steps
    assert "Traffic steps" not in summary.render([_deploy(0, {"result": "deployed"})], {})


def test_a_malformed_entry_is_left_out_of_the_table_not_a_crash():
    report = {"traffic_steps": [{"weight": "ten"}, "x", None, _entries()[0]]}
    text = "\n".join(summary.traffic_section(report))
    assert "**Traffic steps:** 1 reached, up to 10 %" in text and "| 10 % | pass |" in text


def test_a_held_progressive_release_is_promoted_through_the_same_steps_header_never_written(tmp_path: Path):
    secrets.clear()
    inputs = read_inputs(env(**TWO, hold="true", release="v2", traffic_steps="10,100", step_interval="30",
                             prometheus_url="http://prom:9090", prometheus_header=HEADER, min_requests="50"),
                         tmp_path)
    secrets.register(HEADER.partition(": ")[2])  # main masks it before anything runs
    line = followup.command_line("promote", inputs, "v2")
    assert "--traffic-command './weights.sh green blue' --traffic-steps 10,100 --step-interval 30" in line
    assert line.endswith(' --prometheus-header "$PROMETHEUS_HEADER"') and "prom-tok" not in line
    assert "--traffic" not in followup.command_line("abort", inputs, "v2")
    step = yaml.safe_load(followup.workflow_step("promote", inputs, "v2"))[0]["with"]
    assert step["traffic-command"] == "./weights.sh green blue" and step["traffic-steps"] == "10,100"
    assert step["prometheus-header"] == "${{ secrets.PROMETHEUS_HEADER }}" and step["min-requests"] == "50"
    declared = yaml.safe_load((REPO / "action.yml").read_text())["inputs"]
    assert set(step) <= set(declared)
    abort = yaml.safe_load(followup.workflow_step("abort", inputs, "v2"))[0]["with"]
    assert not {k for k in abort if k.startswith(("traffic", "prometheus"))}
    text = "\n".join(followup.next_steps(inputs, "v2"))
    assert "the Prometheus header(s) in `PROMETHEUS_HEADER`" in text and "prom-tok" not in text


def test_the_header_value_is_masked_before_anything_is_printed(tmp_path: Path):
    """Through the entrypoint as the runner starts it: a refused input after the header was read."""
    value = HEADER.partition(": ")[2]
    got = run_action(tmp_path, {"command": "deploy", "address": "http://127.0.0.1:9",
                                "standby-address": "http://127.0.0.1:9", "standby-url": "http://127.0.0.1:9",
                                "traffic-command": f"echo {value}", "prometheus-url": "http://u:pw-9f3@127.0.0.1:9",
                                "prometheus-header": f"{HEADER}\nX-Org:", "max-error-rate": "2"})
    assert got.code == 2 and got.outputs["result"] == "error"
    masks = [ln for ln in got.log.splitlines() if ln.split("::")[1:2] == ["add-mask "]]
    assert {value, "pw-9f3"} <= {ln.split("::", 2)[2] for ln in masks}
    rest = "\n".join(ln for ln in got.log.splitlines() if ln not in masks)
    assert "`prometheus-header` line 2: X-Org: not of the form" in rest
    assert value not in rest + got.summary + str(got.outputs)


_TRAFFIC = ["traffic-steps", "step-interval", "prometheus-url", "prometheus-header", "max-error-rate", "max-p99-ms",
            "min-requests", "metrics-lag"]


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(_TRAFFIC), st.one_of(
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30),
    st.sampled_from(["10,50,100", "100", "0", "-1", "1e999", "nan", "2.5", "http://p:9090", "A: b\nC: d", "1_0"]))))
def test_any_traffic_inputs_are_accepted_or_refused_with_a_message(values: dict[str, str]):
    environ = {**env(**TWO, prometheus_url="http://p:9090"), **{env_name(k): v for k, v in values.items()}}
    try:
        got = read_inputs(environ, Path("/tmp/ci-serve-hypothesis-ws"))
    except InputError as err:
        assert err.message and err.hint and err.exit_code == 2
    else:
        assert got.traffic is not None and got.traffic.argv()[:2] == ["--traffic-command", TWO["traffic_command"]]


def test_a_traffic_command_of_several_lines_is_one_line_in_the_step_title(tmp_path: Path):
    got = read_inputs(env(**{**TWO, "traffic_command": "set -eu\necho $CI_SERVE_TRAFFIC_WEIGHT\n"}), tmp_path)
    inv = invocation("deploy", got)
    assert inv.argv[inv.argv.index("--traffic-command") + 1] == "set -eu\necho $CI_SERVE_TRAFFIC_WEIGHT"
    assert "\n" not in inv.title
    assert "--traffic-command set -eu …" in inv.title


@pytest.mark.parametrize("command", ["deploy", "promote"])
def test_the_cli_parses_every_flag_the_action_passes_with_the_values_given(tmp_path: Path, command: str):
    from ci_serve.cli import build_parser

    inputs = read_inputs(env(**{**TWO, "command": command}, release="v2", traffic_steps="5,25,100",
                             step_interval="30", prometheus_url="http://prom:9090",
                             prometheus_header=f"{HEADER}\nX-Scope-OrgID: shop", max_error_rate="0.5",
                             max_p99_ms="250", min_requests="40", metrics_lag="12.5"), tmp_path)
    args = build_parser().parse_args(invocation(command, inputs).argv)
    assert (args.traffic_command, args.traffic_steps, args.step_interval, args.prometheus_url) == \
        ("./weights.sh green blue", "5,25,100", 30.0, "http://prom:9090")
    assert args.prometheus_header == [HEADER, "X-Scope-OrgID: shop"]
    assert (args.max_error_rate, args.max_p99_ms, args.min_requests, args.metrics_lag) == (0.5, 250.0, 40, 12.5)
