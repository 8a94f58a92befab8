"""Judge one traffic step by Serve's own HTTP metrics: a pure function from counts to a verdict.

A step of a progressive release gives the new cluster a share of the traffic for an interval; this
module turns what each version's Serve proxies counted over that interval into ``pass``, ``fail`` or
``inconclusive``, with the numbers that decided it. It reads no clock and no network: the counts come
from Prometheus (instant queries at both ends of the interval, :mod:`ci_serve.deploy.prometheus`) or
from two exposition texts (a delta), and both reach :func:`judge_step` as the same :class:`Samples`.

Ray renamed the series across releases; :data:`SERIES` holds every name a supported release exports
(recorded from real heads by ``scripts/record-serve-metrics`` into ``tests/metrics/``), and a reader
sums them all, so one query works on every release. Two clusters are told apart by ``SessionName``,
the label every Ray metric carries and ``/api/version`` reports as ``session_name``; an application
by its ``application`` label.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from prometheus_client.parser import text_string_to_metric_families

#: what each quantity is called, newest name first (the latency histogram's ``_bucket`` series are its name plus
#: ``_bucket``). Recorded: 2.9.3 exports the counters as gauges without ``_total``; 2.46 exports both names,
#: each counting every request, so a reader takes the first name present, never their sum.
SERIES: dict[str, tuple[str, ...]] = {
    "requests": ("ray_serve_num_http_requests_total", "ray_serve_num_http_requests"),
    "errors": ("ray_serve_num_http_error_requests_total", "ray_serve_num_http_error_requests"),
    "latency": ("ray_serve_http_request_latency_ms",),
}
#: labels that hold an HTTP status on the error counter and the histogram, by release
STATUS_LABELS = ("error_code", "status_code")

Verdict = Literal["pass", "fail", "inconclusive"]


@dataclass(frozen=True)
class Samples:
    """What one version's proxies counted over one interval."""

    requests: float = 0.0
    #: requests answered with a 5xx
    errors: float = 0.0
    #: the latency histogram: (upper bound in ms, cumulative count), ascending, ``math.inf`` last
    buckets: tuple[tuple[float, float], ...] = ()

    def plus(self, other: Samples) -> Samples:
        """The counts of two sources together (two applications of one release): buckets added by bound."""
        merged = dict(self.buckets)
        for le, n in other.buckets:
            merged[le] = merged.get(le, 0.0) + n
        return Samples(self.requests + other.requests, self.errors + other.errors, tuple(sorted(merged.items())))

    def minus(self, earlier: Samples) -> Samples:
        """The counts between ``earlier`` and this one (a counter that went down was reset: take it whole)."""
        def delta(now: float, then: float) -> float:
            return now - then if now >= then else now

        before = dict(earlier.buckets)
        return Samples(delta(self.requests, earlier.requests), delta(self.errors, earlier.errors),
                       tuple((le, delta(n, before.get(le, 0.0))) for le, n in self.buckets))


@dataclass(frozen=True)
class Thresholds:
    #: the highest share of 5xx answers, in percent
    max_error_rate: float = 1.0
    max_p99_ms: float | None = None
    #: fewer requests than this in an interval say nothing: the step is inconclusive
    min_requests: int = 20


@dataclass(frozen=True)
class Numbers:
    requests: int
    errors: int
    #: percent; None without requests
    error_rate: float | None
    p99_ms: float | None

    def as_dict(self) -> dict[str, float | int | None]:
        return {"requests": self.requests, "errors": self.errors, "error_rate": self.error_rate,
                "p99_ms": self.p99_ms}


@dataclass(frozen=True)
class StepVerdict:
    verdict: Verdict
    new: Numbers
    old: Numbers | None
    #: why, one phrase each (empty for a plain pass)
    reasons: tuple[str, ...] = ()


def numbers(s: Samples) -> Numbers:
    rate = round(100.0 * s.errors / s.requests, 3) if s.requests > 0 else None
    p99 = quantile(0.99, s.buckets)
    return Numbers(round(s.requests), round(s.errors), rate, None if p99 is None else round(p99, 3))


def judge_step(new: Samples, old: Samples | None, limits: Thresholds) -> StepVerdict:
    """The verdict of one step: ``fail`` when the new version breaks a threshold (with enough requests to
    say so), ``inconclusive`` when it had fewer than ``min_requests``, else ``pass``. The old version's
    numbers are reported beside, never judged: the release is what is on trial."""
    n, o = numbers(new), (numbers(old) if old is not None else None)
    if new.requests < limits.min_requests:
        return StepVerdict("inconclusive", n, o, (f"{n.requests} request(s) reached the new version, fewer than "
                                                  f"--min-requests {limits.min_requests}",))
    reasons = []
    if n.error_rate is not None and n.error_rate > limits.max_error_rate:
        reasons.append(f"error rate {n.error_rate:g} % > {limits.max_error_rate:g} % "
                       f"({n.errors} of {n.requests} answered 5xx)")
    if limits.max_p99_ms is not None and n.p99_ms is not None and n.p99_ms > limits.max_p99_ms:
        reasons.append(f"p99 {n.p99_ms:g} ms > {limits.max_p99_ms:g} ms")
    return StepVerdict("fail" if reasons else "pass", n, o, tuple(reasons))


def quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float | None:
    """Prometheus's ``histogram_quantile``: linear within the bucket the rank falls in; in the ``+Inf``
    bucket, the highest finite bound. None for an empty histogram."""
    ordered = sorted(buckets)
    if not ordered or ordered[-1][1] <= 0:
        return None
    rank = q * ordered[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in ordered:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return lower_bound


def is_server_error(labels: dict[str, str]) -> bool:
    return any(labels.get(k, "").startswith("5") for k in STATUS_LABELS)


def samples_from_exposition(text: str, *, application: str, session: str | None = None) -> Samples:
    """One version's totals in a Prometheus exposition text (a metrics agent's ``/metrics``), summed over
    every proxy and every route of ``application``, under the first name of :data:`SERIES` the text has;
    only the series of ``session`` when given (one file may hold two clusters)."""
    totals: dict[str, float] = {}
    buckets: dict[str, dict[float, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if labels.get("application") != application:
                continue
            if session is not None and labels.get("SessionName") != session:
                continue
            if sample.name.endswith("_bucket"):
                per_le = buckets.setdefault(sample.name.removesuffix("_bucket"), {})
                per_le[float(labels["le"])] = per_le.get(float(labels["le"]), 0.0) + sample.value
            elif sample.name in SERIES["requests"] or (sample.name in SERIES["errors"] and is_server_error(labels)):
                totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
            elif sample.name in SERIES["errors"]:
                totals.setdefault(sample.name, 0.0)

    def first(names: tuple[str, ...]) -> float:
        return next((totals[n] for n in names if n in totals), 0.0)

    histogram = next((buckets[n] for n in SERIES["latency"] if n in buckets), {})
    return Samples(first(SERIES["requests"]), first(SERIES["errors"]), tuple(sorted(histogram.items())))


def promql(application: str, session: str) -> dict[str, str]:
    """Instant queries for one version's counters as they stand, from a Prometheus that scrapes the cluster
    of ``session``: every name of every release, the first one present answering (``or``).

    Evaluate them at the start and at the end of an interval and take :meth:`Samples.minus` of the two.
    Not ``increase()``: a Serve counter is created by its first request, so on the new cluster it first
    appears already counting, and ``increase()`` would miss what it counted before its first scrape (seen
    on a real Prometheus: 0 of 33 requests). A series absent at the start is zero there."""
    sel = f'application="{_quote(application)}",SessionName="{_quote(session)}"'

    def current(names: tuple[str, ...], extra: str = "", by: str = "") -> str:
        return " or ".join(f"sum{by}({n}{{{sel}{extra}}})" for n in names)

    return {
        "requests": current(SERIES["requests"]),
        "errors": current(SERIES["errors"], ',error_code=~"5.."'),
        "buckets": current(tuple(n + "_bucket" for n in SERIES["latency"]), by=" by (le)"),
    }


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')
