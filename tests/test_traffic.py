"""The traffic-step walk (ci_serve/deploy/traffic.py) and the Prometheus reader's pure parts.

The walk runs a real traffic command (/bin/sh, writing each weight to a file) against a fake sample source
whose counts follow that file and a fake clock, so a step of 60 s takes no time. The real thing (two Ray
heads, HAProxy, Prometheus) is tests/test_progressive.py.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest

from ci_serve import cancel, secrets
from ci_serve.deploy.analysis import Samples, Thresholds
from ci_serve.deploy.prometheus import Prometheus, parse_headers, session_from_node_summary, session_of
from ci_serve.deploy.traffic import (
    StepFailed,
    TrafficCommandFailed,
    TrafficOptions,
    TrafficRollbackFailed,
    command_for,
    markdown_table,
    parse_interval,
    parse_thresholds,
    parse_weights,
    walk,
)
from ci_serve.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_NOT_RESTORED, Cancelled, CiServeError, InputError
from ci_serve.steps import StepLog


@pytest.mark.parametrize(("text", "weights"), [
    pytest.param("10,50,100", (10, 50, 100), id="three"),
    pytest.param("100", (100,), id="one-step-switch"),
    pytest.param(" 1, 2 ,100", (1, 2, 100), id="spaces"),
])
def test_parse_weights(text: str, weights: tuple[int, ...]) -> None:
    assert parse_weights(text) == weights


@pytest.mark.parametrize(("text", "says"), [
    pytest.param("", "whole percent", id="empty"),
    pytest.param("10,abc,100", "whole percent", id="not-a-number"),
    pytest.param("10.5,100", "whole percent", id="fraction"),
    pytest.param("0,50,100", "0 is not a percent", id="zero"),
    pytest.param("10,150", "150 is not a percent", id="above-100"),
    pytest.param("50,10,100", "must increase", id="decreasing"),
    pytest.param("10,10,100", "must increase", id="repeated"),
    pytest.param("10,50", "last step must be 100", id="no-switch"),
])
def test_parse_weights_refuses(text: str, says: str) -> None:
    with pytest.raises(InputError, match=says) as info:
        parse_weights(text)
    assert info.value.exit_code == EXIT_BAD_INPUT


@pytest.mark.parametrize("seconds", [0.0, -5.0, 0.5, math.nan])
def test_parse_interval_refuses(seconds: float) -> None:
    with pytest.raises(InputError):
        parse_interval(seconds)


@pytest.mark.parametrize(("kwargs", "says"), [
    pytest.param({"max_error_rate": -1.0}, "--max-error-rate", id="negative-rate"),
    pytest.param({"max_error_rate": 101.0}, "--max-error-rate", id="rate-above-100"),
    pytest.param({"max_error_rate": math.nan}, "--max-error-rate", id="nan-rate"),
    pytest.param({"max_p99_ms": 0.0}, "--max-p99-ms", id="zero-p99"),
    pytest.param({"min_requests": 0}, "--min-requests", id="zero-requests"),
])
def test_parse_thresholds_refuses(kwargs: dict[str, float], says: str) -> None:
    with pytest.raises(InputError, match=says):
        parse_thresholds(**kwargs)  # type: ignore[arg-type]


def test_parse_thresholds_defaults_are_the_issues() -> None:
    assert parse_thresholds() == Thresholds(max_error_rate=1.0, max_p99_ms=None, min_requests=20)
    assert parse_thresholds(0, 250, 5) == Thresholds(0.0, 250.0, 5)


def test_command_for_replaces_weight_and_leaves_shell_braces() -> None:
    assert command_for("lb set ${POOL} {weight} {weight}", 10) == "lb set ${POOL} 10 10"


@pytest.mark.parametrize(("values", "expected"), [
    pytest.param(["Authorization: Bearer abc123"], {"Authorization": "Bearer abc123"}, id="bearer"),
    pytest.param(["X-Scope-OrgID:team-a", "A: b: c"], {"X-Scope-OrgID": "team-a", "A": "b: c"}, id="two"),
])
def test_parse_headers(values: list[str], expected: dict[str, str]) -> None:
    assert parse_headers(values) == expected
    for value in expected.values():
        if len(value) >= 3:
            assert secrets.mask(f"x {value} y") == "x *** y"


@pytest.mark.parametrize("value", ["no colon secretvalue", ": secretvalue", "Bad Name: secretvalue", "Name:   "])
def test_parse_headers_refuses_without_showing_the_value(value: str) -> None:
    with pytest.raises(InputError) as info:
        parse_headers([value])
    assert "secretvalue" not in info.value.message and "secretvalue" not in (info.value.hint or "")


@pytest.mark.parametrize("url", ["prometheus:9090", "ftp://host", "http://", "http://host:99999", "http://h:x"])
def test_bad_prometheus_url_is_an_input_error(url: str) -> None:
    with pytest.raises(InputError, match="--prometheus-url"):
        Prometheus(url)


def test_unreachable_prometheus_is_refused_before_anything() -> None:
    from ci_serve.cluster.head import free_port

    with pytest.raises(InputError, match="cannot be used") as info:
        Prometheus(f"http://user:pw-secret@127.0.0.1:{free_port()}", timeout=2).check()
    assert info.value.exit_code == EXIT_BAD_INPUT and "pw-secret" not in secrets.mask(info.value.message)


SOCKET = "/tmp/ray/session_2026-12-06_04-33-36_622648_29556/sockets/raylet"


@pytest.mark.parametrize(("nodes", "session"), [
    pytest.param([{"raylet": {"rayletSocketName": SOCKET}}], "session_2026-12-06_04-33-36_622648_29556",
                 id="head-as-2.9.3-answers"),
    pytest.param([{"raylet": {"rayletSocketName": SOCKET}}] * 2, "session_2026-12-06_04-33-36_622648_29556",
                 id="two-nodes-one-session"),
    pytest.param([{"raylet": {"rayletSocketName": "/run/raylet.sock"}}], None, id="custom-socket-path"),
    pytest.param([{"raylet": {"rayletSocketName": SOCKET}},
                  {"raylet": {"rayletSocketName": SOCKET.replace("29556", "1")}}], None, id="two-sessions"),
    pytest.param([], None, id="no-nodes"),
])
def test_session_from_node_summary(nodes: list[dict[str, object]], session: str | None) -> None:
    assert session_from_node_summary({"data": {"summary": nodes}}) == session


RECORDED_SESSIONS = sorted((Path(__file__).resolve().parent / "metrics").glob("session-*.json"))


class RecordedDashboard:
    """A dashboard that answers what a real head answered (scripts/record-session-answers)."""

    address = "http://head:8265"

    def __init__(self, data: dict[str, object]):
        self.data = data

    def request(self, method: str, path: str, *, ok: tuple[int, ...] = (200,)) -> object:
        import requests

        resp = requests.Response()
        resp.status_code, resp._content = 200, json.dumps(self.data["api_version"]).encode()
        return resp

    def get_node_summary(self) -> object:
        return self.data["node_summary"]


@pytest.mark.parametrize("path", RECORDED_SESSIONS, ids=lambda p: p.stem)
def test_session_of_every_recorded_release_is_the_one_its_metrics_carry(path: Path) -> None:
    data = json.loads(path.read_text())
    assert session_of(RecordedDashboard(data)) == data["session_dir"]  # type: ignore[arg-type]
    # the head's own metrics carry it; the other name in a recording is a head that held the fixed autoscaler and
    # dashboard metrics ports (44217, 44227) first: every head's service-discovery file lists those ports
    assert data["session_dir"] in data["metrics_session_names"]


def test_every_supported_release_boundary_has_a_recorded_session() -> None:
    versions = {p.stem.removeprefix("session-") for p in RECORDED_SESSIONS}
    assert {"2.9.3", "2.30.0", "2.40.0", "2.60.0"} <= versions, versions


def test_a_cluster_that_says_no_session_is_refused_with_exit_2() -> None:
    data = {"api_version": {"ray_version": "2.30.0"},
            "node_summary": {"data": {"summary": [{"raylet": {"rayletSocketName": "/run/raylet.sock"}}]}}}
    with pytest.raises(InputError, match="does not say its session name") as info:
        session_of(RecordedDashboard(data))  # type: ignore[arg-type]
    assert info.value.exit_code == EXIT_BAD_INPUT and "Ray 2.40 or newer" in (info.value.hint or "")


# -- the walk ------------------------------------------------------------------------------------------

class FakeClock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


Rates = Callable[[int], tuple[Samples, Samples]]


class FakeSource:
    """Counts that follow the weight the real command last wrote: ``rates(weight)`` per second, (new, old)."""

    def __init__(self, weights_file: Path, rates: Rates, fail_after: int | None = None):
        self.weights_file, self.rates, self.fail_after = weights_file, rates, fail_after
        self.new, self.old = Samples(), Samples()
        self.weight, self.last, self.calls = 0, None, 0
        self.ready_at = 0.0

    def totals(self, at: float) -> tuple[Samples, Samples]:
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise CiServeError("http://prometheus:9090 did not answer (ConnectionError)")
        if self.last is not None:
            new, old = self.rates(self.weight)
            dt = at - self.last
            self.new = self.new.plus(scaled(new, dt))
            self.old = self.old.plus(scaled(old, dt))
        self.last = at
        lines = self.weights_file.read_text().split() if self.weights_file.exists() else []
        self.weight = int(lines[-1]) if lines else 0
        return self.new, self.old

    def ready(self, at: float) -> bool:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise CiServeError("http://prometheus:9090 did not answer (ConnectionError)")
        return at >= self.ready_at

    def describe(self) -> str:
        return "a fake source"


def scaled(s: Samples, k: float) -> Samples:
    return Samples(s.requests * k, s.errors * k, tuple((le, n * k) for le, n in s.buckets))


FAST = ((10.0, 1.0), (math.inf, 1.0))


def traffic(total_rps: float, new_error_share: float = 0.0) -> Rates:
    def rates(weight: int) -> tuple[Samples, Samples]:
        new = total_rps * weight / 100
        old = total_rps - new
        return (Samples(new, new * new_error_share, tuple((le, n * new) for le, n in FAST)),
                Samples(old, 0.0, tuple((le, n * old) for le, n in FAST)))
    return rates


def run_walk(tmp_path: Path, rates: Rates, steps: str = "10,50,100", *, command: str | None = None,
             fail_after: int | None = None, limits: Thresholds | None = None, ready_at: float = 0.0,
             **kwargs: object):
    log_file = tmp_path / "weights"
    cmd = command or f'echo "$CI_SERVE_TRAFFIC_WEIGHT" >> {log_file} && echo "weight {{weight}} set"'
    clock = FakeClock()
    source = FakeSource(log_file, rates, fail_after)
    source.ready_at = clock.now + ready_at
    options = TrafficOptions(cmd, parse_weights(steps), 60.0, limits or Thresholds(), **kwargs)  # type: ignore[arg-type]
    result = walk(options, source, log=StepLog(), clock=clock, sleep=clock.sleep)
    written = [int(w) for w in log_file.read_text().split()] if log_file.exists() else []
    return result, written


def test_a_good_release_walks_every_step(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result, weights = run_walk(tmp_path, traffic(10.0))
    assert result.error is None and not result.rolled_back
    assert weights == [10, 50, 100] == result.weights_set
    entries = result.entries()
    assert [e["weight"] for e in entries] == [10, 50, 100]
    assert [e["verdict"] for e in entries] == ["pass"] * 3
    # 10 requests/s for 60 s, split by weight
    assert [e["new"]["requests"] for e in entries] == [60, 300, 600]
    assert [e["old"]["requests"] for e in entries] == [540, 300, 0]
    assert entries[0]["new"] == {"requests": 60, "errors": 0, "error_rate": 0.0, "p99_ms": 9.9}
    err = capsys.readouterr().err
    assert "weight 10 set" in err and "analysing each step with a fake source" in err


def test_a_failing_release_goes_back_to_zero_at_the_first_step(tmp_path: Path) -> None:
    result, weights = run_walk(tmp_path, traffic(10.0, new_error_share=0.5))
    assert weights == [10, 0] and result.rolled_back
    assert isinstance(result.error, StepFailed) and result.error.exit_code == EXIT_FAILED
    assert "traffic step 10 % fail" in result.error.message and "error rate 50 %" in result.error.message
    assert result.entries() == [{"weight": 10, "verdict": "fail",
                                 "new": {"requests": 60, "errors": 30, "error_rate": 50.0, "p99_ms": 9.9},
                                 "old": {"requests": 540, "errors": 0, "error_rate": 0.0, "p99_ms": 9.9}}]


def test_too_little_traffic_holds_three_more_intervals_then_fails(tmp_path: Path) -> None:
    # 0.5 request/s: 3 per interval at 10 %; min 20 -> inconclusive at 3, 6, 9, still at 12 -> fail
    result, weights = run_walk(tmp_path, traffic(0.5))
    assert weights == [10, 0]
    assert result.entries()[0]["verdict"] == "inconclusive" and len(result.entries()) == 1
    assert result.entries()[0]["new"]["requests"] == 12
    assert isinstance(result.error, StepFailed) and "after 4 interval(s)" in result.error.message


def test_an_inconclusive_interval_that_fills_up_passes(tmp_path: Path) -> None:
    # 3 requests/s: 18 at 10 % in one interval (inconclusive), 36 after two: one entry, pass
    result, weights = run_walk(tmp_path, traffic(3.0), "10,100")
    assert weights == [10, 100] and result.error is None
    assert [(e["weight"], e["verdict"], e["new"]["requests"]) for e in result.entries()] == [
        (10, "pass", 36), (100, "pass", 180)]


def test_a_p99_threshold_fails_a_slow_release(tmp_path: Path) -> None:
    slow = ((10.0, 0.0), (1000.0, 1.0), (math.inf, 1.0))

    def rates(weight: int) -> tuple[Samples, Samples]:
        new, old = traffic(10.0)(weight)
        return Samples(new.requests, 0, tuple((le, n * new.requests) for le, n in slow)), old

    result, weights = run_walk(tmp_path, rates, limits=Thresholds(max_p99_ms=500))
    assert weights == [10, 0] and "p99" in str(result.error and result.error.message)


def test_a_failed_query_mid_step_fails_the_step(tmp_path: Path) -> None:
    # calls: start of 10 (1), end of 10 (2), start of 50 (3), end of 50 fails
    result, weights = run_walk(tmp_path, traffic(10.0), fail_after=3)
    assert weights == [10, 50, 0] and result.rolled_back
    assert [e["verdict"] for e in result.entries()] == ["pass", "fail"]
    assert result.error is not None and "did not answer" in result.error.message


def test_a_failing_command_rolls_back_with_weight_zero(tmp_path: Path) -> None:
    log_file = tmp_path / "weights"
    cmd = f'echo "$CI_SERVE_TRAFFIC_WEIGHT" >> {log_file}; echo "balancer says no"; [ {{weight}} -lt 50 ] || exit 7'
    result, weights = run_walk(tmp_path, traffic(10.0), command=cmd)
    assert weights == [10, 50, 0]
    assert isinstance(result.error, TrafficCommandFailed) and "exited with code 7 (weight 50 %)" in result.error.message
    # the step whose command failed may have moved some traffic: it counts, as failed (the way back adds none)
    assert [(e["weight"], e["verdict"]) for e in result.entries()] == [(10, "pass"), (50, "fail")]


def test_a_failing_rollback_is_exit_3(tmp_path: Path) -> None:
    log_file = tmp_path / "weights"
    cmd = f'echo "$CI_SERVE_TRAFFIC_WEIGHT" >> {log_file}; [ {{weight}} -ne 0 ]'
    result, weights = run_walk(tmp_path, traffic(10.0, new_error_share=0.5), command=cmd)
    assert weights == [10, 0]
    assert isinstance(result.error, TrafficRollbackFailed) and result.error.exit_code == EXIT_NOT_RESTORED
    assert "error rate" in result.error.message and "back to 0 % then failed" in result.error.message


def test_a_command_that_hangs_times_out(tmp_path: Path) -> None:
    result, weights = run_walk(tmp_path, traffic(10.0), command="sleep 30", command_timeout=0.5)
    assert isinstance(result.error, TrafficRollbackFailed), "the rollback's sleep times out too"
    assert "did not finish within" in result.error.message


def test_a_cancel_during_a_hold_rolls_back_at_once(tmp_path: Path) -> None:
    log_file = tmp_path / "weights"
    clock = FakeClock()

    def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        if clock.now > 1_800_000_000.0 + 70:  # in the second step's hold
            cancel.request(Cancelled("cancelled by SIGINT"))

    options = TrafficOptions(f'echo "$CI_SERVE_TRAFFIC_WEIGHT" >> {log_file}', (10, 50, 100), 60.0)
    result = walk(options, FakeSource(log_file, traffic(10.0)), clock=clock, sleep=sleep)
    assert [int(w) for w in log_file.read_text().split()] == [10, 50, 0]
    assert isinstance(result.error, Cancelled) and result.rolled_back
    assert [e["weight"] for e in result.entries()] == [10], "a step cut short by a cancel has no verdict"


def test_without_metrics_each_step_checks_the_public_entry(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    log_file = tmp_path / "weights"
    clock = FakeClock()
    answers = iter(["2 check(s) passed", "2 check(s) passed"])

    weights: list[int] = []

    def check(weight: int) -> str:
        weights.append(weight)
        try:
            return next(answers)
        except StopIteration:
            from ci_serve.errors import CheckFailed
            raise CheckFailed("1 of 2 check(s) failed: version: expected v2") from None

    options = TrafficOptions(f'echo "$CI_SERVE_TRAFFIC_WEIGHT" >> {log_file}', (10, 50, 100), 60.0)
    result = walk(options, None, check=check, clock=clock, sleep=clock.sleep)
    assert [int(w) for w in log_file.read_text().split()] == [10, 50, 100, 0]
    assert weights == [10, 50, 100]  # each step's check knows its weight
    assert not result.analysed
    none = {"requests": None, "errors": None, "error_rate": None, "p99_ms": None}
    assert result.entries() == [{"weight": w, "verdict": v, "new": none, "old": none}
                                for w, v in ((10, "pass"), (50, "pass"), (100, "fail"))]
    assert "no metric is analysed" in capsys.readouterr().err


def test_the_first_step_waits_for_the_new_versions_counters(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    result, weights = run_walk(tmp_path, traffic(10.0), ready_at=5.0)
    assert result.error is None and weights == [10, 50, 100]
    assert "the new version's counters are in" in capsys.readouterr().err


def test_counters_that_never_come_are_said_and_the_walk_goes_on(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    result, weights = run_walk(tmp_path, traffic(10.0), ready_at=math.inf, settle_timeout=10.0)
    assert result.error is None and weights == [10, 50, 100]
    assert "is not in Prometheus" in capsys.readouterr().err


def test_a_fault_before_the_first_step_sets_no_weight(tmp_path: Path) -> None:
    result, weights = run_walk(tmp_path, traffic(10.0), fail_after=0)
    assert weights == [] and not result.rolled_back and result.steps == []
    assert result.error is not None and "did not answer" in result.error.message


class LaggedSource:
    """Counts as Prometheus shows them: what the proxies counted ``lag`` seconds before. The command logs each
    weight with the fake time it was set (the clock writes its time to a file), so the schedule is exact."""

    def __init__(self, log_file: Path, rates: Rates, lag: float):
        self.log_file, self.rates, self.lag = log_file, rates, lag

    def totals(self, at: float) -> tuple[Samples, Samples]:
        lines = self.log_file.read_text().splitlines() if self.log_file.exists() else []
        schedule = [(float(t), int(w)) for w, t in (line.split() for line in lines)]
        new, old, until = Samples(), Samples(), at - self.lag
        for i, (since, weight) in enumerate(schedule):
            end = min(until, schedule[i + 1][0] if i + 1 < len(schedule) else until)
            if end > since:
                n, o = self.rates(weight)
                new, old = new.plus(scaled(n, end - since)), old.plus(scaled(o, end - since))
        return new, old

    def ready(self, at: float) -> bool:
        return True

    def describe(self) -> str:
        return "a lagging source"


@pytest.mark.parametrize(("metrics_lag", "exact"), [pytest.param(5.0, True, id="window-opens-after-the-lag"),
                                                     pytest.param(0.0, False, id="no-lag-counts-the-previous-weight")])
def test_metrics_lag_keeps_the_previous_weight_out_of_a_step(tmp_path: Path, metrics_lag: float,
                                                              exact: bool) -> None:
    log_file, now_file = tmp_path / "weights", tmp_path / "now"
    clock = FakeClock()

    def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        now_file.write_text(str(clock.now))

    sleep(0.0)
    options = TrafficOptions(f'echo "$CI_SERVE_TRAFFIC_WEIGHT $(cat {now_file})" >> {log_file}', (10, 50, 100),
                             60.0, metrics_lag=metrics_lag)
    result = walk(options, LaggedSource(log_file, traffic(10.0), lag=5.0), clock=clock, sleep=sleep)
    assert result.error is None
    counts = [(e["new"]["requests"], e["old"]["requests"]) for e in result.entries()]
    assert (counts == [(60, 540), (300, 300), (600, 0)]) is exact, counts


def test_the_job_summary_table_has_a_row_per_step() -> None:
    entries = [{"weight": 10, "verdict": "fail",
                "new": {"requests": 64, "errors": 64, "error_rate": 100.0, "p99_ms": 46.16},
                "old": {"requests": 583, "errors": 0, "error_rate": 0.0, "p99_ms": None}}]
    lines = markdown_table(entries).splitlines()
    assert len(lines) == 3 and lines[0].startswith("| weight | verdict |")
    assert lines[2] == "| 10 % | fail | 64 | 64 | 100 % | 46.16 ms | 583 | 0 | 0 % | - |"
