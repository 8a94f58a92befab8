"""The traffic-step flags of `deploy` and `promote`: every bad combination is exit 2 before anything is read
or written (no cluster is needed to refuse them), and the header's value is never printed."""

from __future__ import annotations

from pathlib import Path

import pytest

from ci_serve.cli import main
from ci_serve.deploy.prometheus import duration_s

BARE = ["--standby-address", "http://127.0.0.1:1", "--standby-url", "http://127.0.0.1:2"]
TWO = [*BARE, "--verify-url", "http://127.0.0.1:4"]
PROM = ["--prometheus-url", "http://127.0.0.1:9", *TWO]


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out + out.err


@pytest.fixture
def config(tmp_path: Path) -> str:
    path = tmp_path / "serve.yaml"
    path.write_text("applications:\n- name: shop\n  import_path: app:app\n  route_prefix: /shop\n")
    return str(path)


@pytest.mark.parametrize(("flags", "says"), [
    (["--traffic-command", "true", "--switch-command", "true", *TWO], "pass one"),
    (["--traffic-command", "true"], "needs --standby-address"),
    (["--prometheus-url", "http://127.0.0.1:9"], "--prometheus-url applies to traffic steps only"),
    (["--metrics-lag", "5", *TWO, "--switch-command", "true"], "--metrics-lag applies to traffic steps only"),
    # given with their default values, still seen: a one-step or one-cluster release would ignore them
    (["--traffic-steps", "10,50,100"], "--traffic-steps applies to traffic steps only"),
    (["--step-interval", "60", *TWO, "--switch-command", "true"], "--step-interval applies to traffic steps only"),
    (["--max-error-rate", "1"], "--max-error-rate applies to traffic steps only"),
    (["--min-requests", "20", *TWO, "--switch-command", "true"], "--min-requests applies to traffic steps only"),
    (["--traffic-command", "true", "--traffic-steps", "10,50", *TWO], "the last step must be 100"),
    (["--traffic-command", "true", "--traffic-steps", "50,10,100", *TWO], "the steps must increase"),
    (["--traffic-command", "true", "--step-interval", "0", *TWO], "--step-interval 0"),
    (["--traffic-command", "true", "--max-error-rate", "101", *PROM], "--max-error-rate 101"),
    (["--traffic-command", "true", "--min-requests", "0", *PROM], "--min-requests 0"),
    (["--traffic-command", "true", "--max-p99-ms", "-1", *PROM], "--max-p99-ms -1"),
    (["--traffic-command", "true", "--metrics-lag", "-1", *PROM], "--metrics-lag -1"),
    (["--traffic-command", "true", "--standby-address", "http://127.0.0.1:1", "--verify-url", "http://e"],
     "--standby-url too"),
    (["--traffic-command", "true", *BARE], "no --verify-url names it"),
    (["--traffic-command", "true", "--step-interval", "inf", *TWO], "--step-interval inf"),
    (["--traffic-command", "true", "--metrics-lag", "inf", *PROM], "--metrics-lag inf"),
    (["--traffic-command", "true", "--step-interval", "nan", *TWO], "--step-interval nan"),
    # thresholds judge metrics: without Prometheus they would judge nothing
    (["--traffic-command", "true", "--max-error-rate", "5", *TWO], "--max-error-rate applies to steps judged on"),
    (["--traffic-command", "true", "--metrics-lag", "3", *TWO], "no --prometheus-url is given"),
    (["--traffic-command", "true", "--prometheus-header", "A: b", *TWO], "--prometheus-header applies to steps"),
])
@pytest.mark.parametrize("command", ["deploy", "promote"])
def test_bad_traffic_flags_are_exit_2(capsys, config, command, flags, says):
    extra = ["--version", "v2"] if command == "promote" else []
    code, out = run(capsys, command, config, "-a", "http://127.0.0.1:3", *extra, *flags)
    assert code == 2, out
    assert says in out


def test_a_malformed_prometheus_header_is_exit_2_and_its_value_never_printed(capsys, config):
    code, out = run(capsys, "deploy", config, *TWO, "--traffic-command", "true", "--prometheus-url",
                    "http://127.0.0.1:9", "--prometheus-header", "Bad Name: s3cr3t-value")
    assert code == 2
    assert "not of the form 'Name: value'" in out
    assert "s3cr3t-value" not in out


@pytest.mark.parametrize(("text", "seconds"), [
    ("15s", 15.0), ("1m", 60.0), ("1m30s", 90.0), ("500ms", 0.5), ("2h", 7200.0),
    ("", None), ("15", None), ("1.5s", None), ("s", None), (None, None), (15, None),
])
def test_prometheus_durations(text, seconds):
    assert duration_s(text) == seconds


def test_a_hold_checks_the_traffic_values_as_its_promote_will_take_them(capsys, config):
    code, out = run(capsys, "deploy", config, "-a", "http://127.0.0.1:3", "--hold", "--version", "v2",
                    "--traffic-command", "true", "--traffic-steps", "50,10,100", *TWO)
    assert code == 2 and "the steps must increase" in out
