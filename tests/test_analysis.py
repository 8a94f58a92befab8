"""The traffic-step analysis (ci_serve/deploy/analysis.py), table-tested on exposition texts recorded from
real heads of each release (tests/metrics/ray-*.prom, written by scripts/record-serve-metrics)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from ci_serve.deploy.analysis import (
    SERIES,
    Samples,
    Thresholds,
    judge_step,
    promql,
    quantile,
    samples_from_exposition,
)

METRICS = Path(__file__).resolve().parent / "metrics"
RECORDED = sorted(METRICS.glob("ray-*.prom"))


def _header(text: str) -> tuple[str, dict[str, int]]:
    session = re.search(r"^# session_name: (\S+)", text, re.M)
    sent = re.search(r"^# sent to application shop: (.*)$", text, re.M)
    assert session and sent, "a recorded file names its session and what was sent"
    counts = {m.group(1): int(m.group(2)) for m in re.finditer(r"/(\w+) x(\d+)", sent.group(1))}
    if session.group(1) == "None":  # /api/version had no session_name (2.9.3): the one SessionName of the file
        labels = set(re.findall(r'SessionName="([^"]+)"', text))
        assert len(labels) == 1, labels
        return labels.pop(), counts
    return session.group(1), counts


def test_every_supported_release_boundary_is_recorded() -> None:
    versions = {p.stem.removeprefix("ray-") for p in RECORDED}
    assert {"2.9.3", "2.60.0"} <= versions, versions


@pytest.mark.parametrize("path", RECORDED, ids=lambda p: p.stem)
def test_recorded_counts_are_read_back_exactly(path: Path) -> None:
    text = path.read_text()
    session, sent = _header(text)
    s = samples_from_exposition(text, application="shop", session=session)
    assert s.requests == sum(sent.values())
    assert s.errors == sent["fail"]
    assert s.buckets and math.isinf(s.buckets[-1][0]) and s.buckets[-1][1] == sum(sent.values())
    # /slow sleeps 50 ms: with 5 of 42 requests that slow, the p99 is above 50 ms on every release
    p99 = quantile(0.99, s.buckets)
    assert p99 is not None and p99 >= 50


@pytest.mark.parametrize("path", RECORDED, ids=lambda p: p.stem)
def test_recorded_release_that_answers_500_fails_its_step(path: Path) -> None:
    text = path.read_text()
    session, sent = _header(text)
    verdict = judge_step(samples_from_exposition(text, application="shop", session=session), None, Thresholds())
    assert verdict.verdict == "fail"
    assert verdict.new.errors == sent["fail"] and verdict.new.requests == sum(sent.values())
    assert verdict.reasons and "error rate" in verdict.reasons[0]


@pytest.mark.parametrize("path", RECORDED, ids=lambda p: p.stem)
def test_another_session_or_application_counts_nothing(path: Path) -> None:
    text = path.read_text()
    session, _ = _header(text)
    assert samples_from_exposition(text, application="shop", session="session_other").requests == 0
    assert samples_from_exposition(text, application="other", session=session).requests == 0


@pytest.mark.parametrize("path", RECORDED, ids=lambda p: p.stem)
def test_every_series_name_a_release_exports_is_known(path: Path) -> None:
    names = set(re.findall(r"^# TYPE (\S+) ", path.read_text(), re.M))
    known = {n.removesuffix("_total") for key in ("requests", "errors") for n in SERIES[key]} | set(SERIES["latency"])
    assert {n.removesuffix("_total") for n in names} <= known, names


EMPTY: tuple[tuple[float, float], ...] = ()


@pytest.mark.parametrize(("q", "buckets", "expected"), [
    pytest.param(0.99, EMPTY, None, id="no-histogram"),
    pytest.param(0.99, ((10.0, 0.0), (math.inf, 0.0)), None, id="no-requests"),
    pytest.param(0.5, ((10.0, 50.0), (20.0, 100.0), (math.inf, 100.0)), 10.0, id="on-a-bound"),
    pytest.param(0.99, ((10.0, 50.0), (20.0, 100.0), (math.inf, 100.0)), 19.8, id="interpolated"),
    pytest.param(0.99, ((10.0, 1.0), (math.inf, 100.0)), 10.0, id="in-inf-bucket-highest-finite-bound"),
    pytest.param(0.5, ((5.0, 0.0), (10.0, 10.0), (math.inf, 10.0)), 7.5, id="first-bucket-empty"),
])
def test_quantile_as_prometheus_computes_it(q: float, buckets: tuple[tuple[float, float], ...],
                                            expected: float | None) -> None:
    got = quantile(q, buckets)
    assert got == (pytest.approx(expected) if expected is not None else None)


LAT = ((10.0, 100.0), (100.0, 100.0), (math.inf, 100.0))
SLOW = ((10.0, 50.0), (1000.0, 100.0), (math.inf, 100.0))


@pytest.mark.parametrize(("new", "limits", "verdict"), [
    pytest.param(Samples(100, 0, LAT), Thresholds(), "pass", id="clean"),
    pytest.param(Samples(100, 1, LAT), Thresholds(), "pass", id="at-the-limit"),
    pytest.param(Samples(100, 2, LAT), Thresholds(), "fail", id="above-the-limit"),
    pytest.param(Samples(19, 19, LAT), Thresholds(), "inconclusive", id="too-few-even-if-all-fail"),
    pytest.param(Samples(0, 0, ()), Thresholds(), "inconclusive", id="no-traffic"),
    pytest.param(Samples(100, 0, SLOW), Thresholds(max_p99_ms=500), "fail", id="slow-p99"),
    pytest.param(Samples(100, 0, SLOW), Thresholds(), "pass", id="slow-without-a-p99-limit"),
    pytest.param(Samples(20, 0, LAT), Thresholds(min_requests=20), "pass", id="exactly-min-requests"),
])
def test_judge_step_table(new: Samples, limits: Thresholds, verdict: str) -> None:
    assert judge_step(new, Samples(500, 0, LAT), limits).verdict == verdict


def test_old_version_is_reported_not_judged() -> None:
    v = judge_step(Samples(100, 0, LAT), Samples(100, 50, LAT), Thresholds())
    assert v.verdict == "pass" and v.old is not None and v.old.error_rate == 50.0
    assert v.new.as_dict() == {"requests": 100, "errors": 0, "error_rate": 0.0, "p99_ms": 9.9}


def test_delta_of_two_scrapes_and_a_reset() -> None:
    before = Samples(40, 2, ((10.0, 30.0), (math.inf, 40.0)))
    after = Samples(100, 5, ((10.0, 80.0), (math.inf, 100.0)))
    assert after.minus(before) == Samples(60, 3, ((10.0, 50.0), (math.inf, 60.0)))
    restarted = Samples(7, 0, ((10.0, 7.0), (math.inf, 7.0)))
    assert restarted.minus(before).requests == 7


def test_promql_names_every_release_and_quotes_labels() -> None:
    q = promql('sh"op', "session_x")
    for name in SERIES["requests"]:
        assert name in q["requests"]
    for name in SERIES["errors"]:
        assert name in q["errors"] and 'error_code=~"5.."' in q["errors"]
    assert 'application="sh\\"op",SessionName="session_x"' in q["requests"]
    assert "by (le)" in q["buckets"] and "increase" not in q["requests"]
