"""The traffic steps of a progressive release: give the new cluster a share, hold, judge, go on or go back.

The executor (:class:`~ci_serve.deploy.release.Release`) drives a :class:`Walker` one step at a time, once
the candidate passed its gate and checks on the standby: each step is a traffic write of the plan (the
command at a weight, guarded like every write) followed by its analysis gate (:meth:`Walker.hold`);
:func:`walk` strings the same parts together on its own. For each weight of ``--traffic-steps`` (e.g. 10,
50, 100; the step at 100 is the switch):

1. run the user's ``--traffic-command`` with the new cluster's share in ``CI_SERVE_TRAFFIC_WEIGHT`` (and
   ``{weight}`` in the command replaced), through ``/bin/sh``; its last lines are echoed; a non-zero exit
   or the timeout is a failure;
2. hold ``--step-interval`` seconds, a heartbeat line showing the live numbers;
3. judge what each version's Serve proxies counted over the step (:func:`analysis.judge_step`, from a
   :class:`SampleSource`, e.g. :class:`~ci_serve.deploy.prometheus.VersionMetrics`). *Inconclusive* (too
   few requests) holds up to 3 more intervals, judged over the whole step so far, then fails.

On a failed step, a fault (a failed query, a failed command) or a cancel, the command runs at once with
weight 0; then the walk returns with its ``error`` set (a :class:`CiServeError`; any other exception is
re-raised after the rollback), and the caller verifies that the old version serves and exits 1 (3 when it
is not seen serving). When the rollback command itself fails, ``error`` is a :class:`TrafficRollbackFailed`
(exit 3): the traffic may still reach the new version.

Without a sample source (no ``--prometheus-url``) each step holds its interval and runs ``check`` (the
requests file through the public entry), as KubeRay judges on readiness and time alone; the run says that
no metric was analysed and the report's numbers are null.

The report's ``traffic_steps`` are :meth:`TrafficWalk.entries`: one entry per step reached, in order, with
its final verdict (the extra intervals of an inconclusive step and the rollback to 0 add none). A step cut
short by a fault counts as failed; one cut short by a cancel has no verdict and no entry.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from ci_serve import cancel, console
from ci_serve.deploy.analysis import Numbers, Samples, StepVerdict, Thresholds, Verdict, judge_step
from ci_serve.errors import Cancelled, CheckFailed, CiServeError, InputError, RestoreFailed
from ci_serve.steps import StepLog

#: an inconclusive step is held this many more intervals before it fails
EXTRA_INTERVALS = 3
COMMAND_TIMEOUT_S = 300.0
#: the new version's counters reach Prometheus a report and a scrape after the checks created them
SETTLE_TIMEOUT_S = 60.0
#: the shortest --step-interval: shorter than a scrape or two says nothing
MIN_INTERVAL_S = 1.0
WEIGHT_VARIABLE = "CI_SERVE_TRAFFIC_WEIGHT"
#: lines of the command's output echoed to the log
TAIL_LINES = 20


class StepFailed(CheckFailed):
    """A traffic step's verdict was ``fail``, or it stayed ``inconclusive``: the new version went back to 0 %."""


class TrafficCommandFailed(CheckFailed):
    """The traffic command exited non-zero or did not finish in time."""


class TrafficRollbackFailed(RestoreFailed):
    """The traffic command with weight 0 failed after a failed step: the new version may still take traffic."""


class SampleSource(Protocol):
    """What each version counted up to a time: ``(new, old)`` cumulative :class:`Samples` at ``at`` (unix
    time). A fault raises a :class:`CiServeError` (the step then fails)."""

    def totals(self, at: float) -> tuple[Samples, Samples]: ...

    def ready(self, at: float) -> bool:
        """Whether the new version's counters are in the source yet (see :meth:`_Walker.settle`)."""
        ...

    def describe(self) -> str: ...


def parse_weights(text: str) -> tuple[int, ...]:
    """``"10,50,100"`` -> ``(10, 50, 100)``: whole percents in 1..100, strictly increasing, the last 100."""
    hint = "pass the new cluster's share at each step in percent, increasing, ending at 100: --traffic-steps 10,50,100"
    parts = [p.strip() for p in text.split(",")]
    try:
        weights = tuple(int(p) for p in parts)
    except ValueError:
        raise InputError(f"--traffic-steps {text!r}: every step must be a whole percent", hint) from None
    if not weights:
        raise InputError("--traffic-steps is empty", hint)
    bad = [w for w in weights if not 1 <= w <= 100]
    if bad:
        raise InputError(f"--traffic-steps {text!r}: {bad[0]} is not a percent between 1 and 100", hint)
    if any(b <= a for a, b in zip(weights, weights[1:], strict=False)):
        raise InputError(f"--traffic-steps {text!r}: the steps must increase", hint)
    if weights[-1] != 100:
        raise InputError(f"--traffic-steps {text!r}: the last step must be 100 (the switch)", hint)
    return weights


def parse_interval(seconds: float) -> float:
    if not MIN_INTERVAL_S <= seconds < math.inf:  # also NaN
        raise InputError(f"--step-interval {seconds:g}: must be a number of seconds, at least {MIN_INTERVAL_S:g}",
                         "hold each step long enough for a few scrapes of Prometheus, e.g. --step-interval 60")
    return float(seconds)


def parse_thresholds(max_error_rate: float = 1.0, max_p99_ms: float | None = None,
                     min_requests: int = 20) -> Thresholds:
    """``--max-error-rate PERCENT``, ``--max-p99-ms``, ``--min-requests N``, checked."""
    if not 0 <= max_error_rate <= 100:  # also NaN
        raise InputError(f"--max-error-rate {max_error_rate:g}: must be a percent between 0 and 100",
                         "e.g. --max-error-rate 1 (a step fails above 1 % of 5xx answers)")
    if max_p99_ms is not None and not max_p99_ms > 0:
        raise InputError(f"--max-p99-ms {max_p99_ms:g}: must be above 0", "e.g. --max-p99-ms 500")
    if min_requests < 1:
        raise InputError(f"--min-requests {min_requests}: must be at least 1",
                         "e.g. --min-requests 20 (fewer in an interval say nothing: the step is inconclusive)")
    return Thresholds(float(max_error_rate), None if max_p99_ms is None else float(max_p99_ms), int(min_requests))


def command_for(command: str, weight: int) -> str:
    """The command as run for ``weight``: ``{weight}`` replaced (not ``str.format``: shell has braces too)."""
    return command.replace("{weight}", str(weight))


NO_NUMBERS = Numbers(0, 0, None, None)
#: what a run without --prometheus-url says (the log at the start; the caller puts it in the report too)
NO_METRICS = ("no --prometheus-url: no metric is analysed; each step holds its interval and checks the "
              "requests file through the public entry")


@dataclass(frozen=True)
class StepEntry:
    """One entry of the report's ``traffic_steps``. Numbers are None when no metric was analysed."""

    weight: int
    verdict: Verdict
    new: Numbers | None
    old: Numbers | None
    reasons: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        def nums(n: Numbers | None) -> dict[str, Any]:
            return n.as_dict() if n is not None else {"requests": None, "errors": None, "error_rate": None,
                                                      "p99_ms": None}

        return {"weight": self.weight, "verdict": self.verdict, "new": nums(self.new), "old": nums(self.old)}


@dataclass
class TrafficWalk:
    """What the walk did: the steps reached, whether metrics judged them, and what stopped it."""

    analysed: bool
    steps: list[StepEntry] = field(default_factory=list)
    #: every weight the command was run with, in order (the rollback's 0 too)
    weights_set: list[int] = field(default_factory=list)
    #: the command ran with weight 0 after a failure and succeeded
    rolled_back: bool = False
    error: CiServeError | None = None

    def entries(self) -> list[dict[str, Any]]:
        return [s.as_dict() for s in self.steps]


@dataclass(frozen=True)
class TrafficOptions:
    command: str
    weights: tuple[int, ...]
    interval: float
    limits: Thresholds = field(default_factory=Thresholds)
    extra_intervals: int = EXTRA_INTERVALS
    #: seconds from a count in a Serve proxy to the source's answer (Ray's metrics report interval plus
    #: Prometheus's scrape interval): each step's window opens this long after its weight was set, so that
    #: it counts no request sent before (the standby checks' cold first answers, the previous weight's)
    metrics_lag: float = 0.0
    #: how long the first step waits for the new version's counters to reach the source
    settle_timeout: float = SETTLE_TIMEOUT_S
    command_timeout: float = COMMAND_TIMEOUT_S
    #: more variables for the command (the executor's CI_SERVE_NEW_URL and the like)
    env: Mapping[str, str] = field(default_factory=dict)


#: how often a Ray node's metrics agent exports what its Serve proxies counted (Ray's
#: ``metrics_report_interval_ms``, 10 s by default in every release we support)
RAY_REPORT_INTERVAL_S = 10.0
#: Prometheus's own default scrape interval, assumed when its config cannot be read
DEFAULT_SCRAPE_INTERVAL_S = 60.0


@dataclass(frozen=True)
class TrafficSettings:
    """The traffic flags as given (``--traffic-command`` ... ``--metrics-lag``), checked; turned into the walk's
    :class:`TrafficOptions` and sample source once both clusters are known (:meth:`prepare`)."""

    command: str
    weights: tuple[int, ...] = (10, 50, 100)
    interval: float = 60.0
    limits: Thresholds = field(default_factory=Thresholds)
    prometheus_url: str | None = None
    prometheus_headers: Mapping[str, str] = field(default_factory=dict)
    #: None: derived, Ray's report interval plus Prometheus's longest scrape interval
    metrics_lag: float | None = None

    def prepare(self, new: Any, old: Any, applications: tuple[str, ...], env: Mapping[str, str],
                log: StepLog, old_applications: tuple[str, ...] | None = None
                ) -> tuple[TrafficOptions, SampleSource | None]:
        """Before anything is written: Prometheus answers (else exit 2), each cluster's session is known, the
        lag is settled. ``new`` and ``old`` are the standby's and the live cluster's dashboard clients;
        ``applications`` the new version's names, ``old_applications`` the live version's own."""
        if self.prometheus_url is None:
            return TrafficOptions(self.command, self.weights, self.interval, self.limits, env=env), None
        from ci_serve.deploy.prometheus import Prometheus, VersionMetrics, session_of

        with log.step("connect prometheus") as st:
            prom = Prometheus(self.prometheus_url, dict(self.prometheus_headers))
            version = prom.check()
            new_session, old_session = session_of(new), session_of(old)
            if new_session == old_session:
                raise InputError(f"both clusters report the Ray session {new_session}: their metrics cannot be "
                                 "told apart", "--address and --standby-address must name two different clusters")
            lag = self.metrics_lag
            if lag is None:
                scrape = prom.scrape_interval()
                lag = RAY_REPORT_INTERVAL_S + (scrape if scrape is not None else DEFAULT_SCRAPE_INTERVAL_S)
                how = (f"Ray's report interval {RAY_REPORT_INTERVAL_S:g}s + scrape interval "
                       + (f"{scrape:g}s" if scrape is not None else f"{DEFAULT_SCRAPE_INTERVAL_S:g}s (assumed: "
                          "Prometheus did not show its config)"))
            else:
                how = "--metrics-lag"
            st.detail = f"{version} at {prom.url}; each step's window opens {lag:g}s after its weight ({how})"
        source = VersionMetrics(prom, applications, new_session, old_session, old_applications)
        return TrafficOptions(self.command, self.weights, self.interval, self.limits, metrics_lag=lag, env=env), source


def markdown_table(entries: list[dict[str, Any]]) -> str:
    """The job summary's table of ``traffic_steps`` (the report's entries), one row per step reached."""
    def cells(n: dict[str, Any]) -> list[str]:
        def show(v: object, unit: str = "") -> str:
            return "-" if v is None else f"{v:g}{unit}" if isinstance(v, float) else f"{v}{unit}"

        return [show(n.get("requests")), show(n.get("errors")), show(n.get("error_rate"), " %"),
                show(n.get("p99_ms"), " ms")]

    rows = ["| weight | verdict | new requests | new 5xx | new error rate | new p99 | old requests | old 5xx | "
            "old error rate | old p99 |", "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    rows += ["| " + " | ".join([f"{e['weight']} %", str(e["verdict"]), *cells(e["new"]), *cells(e["old"])]) + " |"
             for e in entries]
    return "\n".join(rows)


def describe(n: Numbers | None) -> str:
    if n is None:
        return "-"
    rate = "-" if n.error_rate is None else f"{n.error_rate:g} %"
    p99 = "-" if n.p99_ms is None else f"{n.p99_ms:g} ms"
    return f"{n.requests} req, {n.errors} 5xx ({rate}), p99 {p99}"


def run_shell(command: str, env: Mapping[str, str], timeout: float) -> tuple[int, str]:
    """Run the user's command (the one input meant for a shell, run as they wrote it) in ``/bin/sh``; return its
    exit code and output. On a timeout, a cancel or any other stop, its whole process group is killed (a
    script's children too, not only the shell) and the exception raised. After a cancel it runs only for what
    is left of the cleanup's time, and not at all when that is spent (:class:`subprocess.TimeoutExpired`)."""
    limit = cancel.time_left(timeout)
    if limit <= 0:
        raise subprocess.TimeoutExpired(command, 0)
    proc = subprocess.Popen(command, shell=True, env=dict(env), text=True, stdin=subprocess.DEVNULL,  # noqa: S602
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, executable="/bin/sh",
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=limit)
    except BaseException:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        proc.wait()  # not communicate(): a child that left the group may still hold the pipe open
        if proc.stdout is not None:
            proc.stdout.close()
        raise
    return proc.returncode, out or ""


def overran(exc: subprocess.TimeoutExpired) -> str:
    """What became of a command :func:`run_shell` stopped."""
    if not exc.timeout:
        return f"was not run: {cancel.SPENT}"
    return f"did not finish within {exc.timeout:.0f}s"


def run_command(options: TrafficOptions, weight: int) -> str:
    """Run the traffic command for ``weight``; echo its output's tail; raise on failure. The last line out."""
    env = dict(os.environ, **options.env, **{WEIGHT_VARIABLE: str(weight)})
    try:
        code, out = run_shell(command_for(options.command, weight), env, options.command_timeout)
    except subprocess.TimeoutExpired as exc:
        raise TrafficCommandFailed(f"the traffic command {overran(exc)} (weight {weight} %)",
                                   "make --traffic-command return once the balancer took the weight") from None
    lines = [line for line in out.splitlines() if line.strip()]
    for line in lines[-TAIL_LINES:]:
        console.say(f"    | {line}")
    if code != 0:
        raise TrafficCommandFailed(f"the traffic command exited with code {code} (weight {weight} %)",
                                   f"run it by hand with {WEIGHT_VARIABLE}={weight} to see why")
    return lines[-1] if lines else ""


class Walker:
    """The parts of a walk, one step at a time: :meth:`begin`, then per weight :meth:`set_weight` (or
    :meth:`run_weight` inside the caller's own step) and :meth:`hold`; on failure :meth:`roll_back`."""

    def __init__(self, options: TrafficOptions, source: SampleSource | None, check: Callable[[int], str] | None,
                 log: StepLog, clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep):
        self.opts, self.source, self.check, self.log = options, source, check, log
        self.clock, self.sleep = clock, sleep
        self.result = TrafficWalk(analysed=source is not None)

    def run_weight(self, weight: int) -> str:
        """Run the command at ``weight`` (recorded in ``weights_set`` first: it may have moved traffic even if
        it fails); what the step's line says."""
        self.result.weights_set.append(weight)
        try:
            out = run_command(self.opts, weight)
        except TrafficCommandFailed as err:  # a step cut short by a fault counts as failed (not the way back)
            if weight > 0:
                self.result.steps.append(StepEntry(weight, "fail", None, None, (err.message,)))
            raise
        if weight == 0:
            self.result.rolled_back = True
        return f"new version's share {weight} %" + (f": {out}" if out else "")

    def set_weight(self, weight: int, step: str) -> None:
        with self.log.step(step) as st:
            st.detail = self.run_weight(weight)

    def begin(self) -> None:
        """Before the first step: say how the steps are judged; wait for the new version's counters."""
        if self.source is None:
            console.say(f"NOTE  {NO_METRICS}")
        else:
            console.say(f"analysing each step with {self.source.describe()}")
        self.settle()

    def run(self) -> TrafficWalk:
        try:
            self.begin()
            for weight in self.opts.weights:
                self.set_weight(weight, f"traffic {weight}%")
                self.hold(weight)
        except CiServeError as err:
            self.result.error = err
            self.roll_back(err)
        except BaseException as exc:
            self.roll_back(exc)
            raise
        return self.result

    def roll_back(self, cause: BaseException) -> None:
        if not self.result.weights_set:
            return
        try:
            self.set_weight(0, "traffic back to 0%")
        except CiServeError as err:
            self.result.error = rollback_failed(cause, err)

    def settle(self) -> None:
        """Before the first step, until the source holds the new version's counters (the checks on the
        standby created them): a counter that reaches Prometheus only after a step's start reading would
        count everything before it (those checks, their slow first answers) into the step."""
        if self.source is None:
            return
        deadline = self.clock() + self.opts.settle_timeout
        with self.log.step("wait for metrics", heartbeat=lambda: "waiting for the new version's counters to "
                           "reach Prometheus") as st:
            while not self.source.ready(self.clock()):
                if self.clock() >= deadline:
                    st.detail = f"not within {self.opts.settle_timeout:.0f}s; the first step may count requests " \
                                "sent before it"
                    console.say("WARN  the new version's Serve request counter is not in Prometheus: does it scrape "
                                "the standby cluster? A step without its numbers is inconclusive")
                    return
                cancel.check()
                self.sleep(min(1.0, max(0.0, deadline - self.clock())))
            st.detail = "the new version's counters are in"

    def wait_until(self, deadline: float) -> None:
        while (left := deadline - self.clock()) > 0:
            cancel.check()
            self.sleep(min(0.5, left))
        cancel.check()

    def hold(self, weight: int) -> None:
        lag = self.opts.metrics_lag if self.source is not None else 0.0
        t0 = self.clock() + lag
        start: tuple[Samples, Samples] | None = None
        last: list[StepVerdict] = []

        def beat() -> str:
            left = max(0.0, t0 + self.opts.interval * (1 + len(last)) - self.clock())
            if self.source is None:
                return f"{weight} % to the new version, {left:.0f}s to go (no metric analysed)"
            if start is None:
                return f"{weight} %, waiting {lag:g}s for the step's first answers to reach the metrics"
            new, old = self.source.totals(self.clock())
            v = judge_step(new.minus(start[0]), old.minus(start[1]), self.opts.limits)
            return f"{weight} %, {left:.0f}s to go: new {describe(v.new)}; old {describe(v.old)}"

        every = max(2.0, min(10.0, self.opts.interval / 3))
        with self.log.step(f"hold {weight}%", heartbeat=beat, every=every) as st:
            if self.source is not None:
                # the window opens once the metrics can show the new weight: what Prometheus holds at a time
                # is what the proxies counted a report and a scrape before it (``metrics_lag``)
                self.wait_until(t0)
                start = self.totals(weight, t0, st)
            for extra in range(self.opts.extra_intervals + 1):
                self.wait_until(t0 + self.opts.interval * (extra + 1))
                verdict = self.judge(weight, start, st)
                last.append(verdict)
                if verdict.verdict != "inconclusive" or extra == self.opts.extra_intervals:
                    break
                console.say(f"    inconclusive after {extra + 1} interval(s): {verdict.reasons[0]}; holding "
                            f"{self.opts.interval:g}s more ({self.opts.extra_intervals - extra} left)")
            self.result.steps.append(StepEntry(weight, verdict.verdict, verdict.new if self.source else None,
                                               verdict.old if self.source else None, verdict.reasons))
            st.detail = self.summary(verdict)
            if verdict.verdict != "pass":
                intervals = len(last)
                raise StepFailed(f"traffic step {weight} % {verdict.verdict} after {intervals} interval(s) of "
                                 f"{self.opts.interval:g}s: " + "; ".join(verdict.reasons),
                                 "the new version's share went back to 0 %; see what it answered in its "
                                 "cluster's logs, fix the release and deploy again")

    def judge(self, weight: int, start: tuple[Samples, Samples] | None, st: Any) -> StepVerdict:
        if self.source is None or start is None:
            try:
                detail = self.check(weight) if self.check is not None else "held on time alone"
            except CheckFailed as err:
                return StepVerdict("fail", NO_NUMBERS, None, (err.message,))
            return StepVerdict("pass", NO_NUMBERS, None, (detail,) if detail else ())
        new, old = self.totals(weight, self.clock(), st)
        return judge_step(new.minus(start[0]), old.minus(start[1]), self.opts.limits)

    def totals(self, weight: int, at: float, st: Any) -> tuple[Samples, Samples]:
        """The source's counts at ``at``; a query that fails mid-step fails the step (never a pass); a cancel
        there cuts the step short: no entry."""
        assert self.source is not None
        try:
            return self.source.totals(at)
        except Cancelled:
            raise
        except CiServeError as err:
            self.result.steps.append(StepEntry(weight, "fail", None, None, (err.message,)))
            st.detail = f"fail: {err.message}"
            raise

    def summary(self, v: StepVerdict) -> str:
        if self.source is None:
            return f"{v.verdict} (no metric analysed" + (f"; {v.reasons[0]})" if v.reasons else ")")
        why = f"; {'; '.join(v.reasons)}" if v.reasons and v.verdict != "pass" else ""
        return f"{v.verdict}: new {describe(v.new)}; old {describe(v.old)}{why}"


def walk(options: TrafficOptions, source: SampleSource | None, *, log: StepLog | None = None,
         check: Callable[[int], str] | None = None, clock: Callable[[], float] = time.time,
         sleep: Callable[[float], None] = time.sleep) -> TrafficWalk:
    """Walk ``options.weights`` (see the module docstring). Returns what happened; a :class:`CiServeError`
    that stopped it is the result's ``error``, raised by nobody: the caller verifies the old version, then
    exits 1 (or 3, a :class:`TrafficRollbackFailed`). A :class:`Cancelled` is such an error too."""
    return Walker(options, source, check, log or StepLog(), clock, sleep).run()


def rollback_failed(cause: BaseException, err: CiServeError) -> TrafficRollbackFailed:
    """The error of a way back to 0 % that failed (``err``) after ``cause``: exit 3."""
    what = cause.message if isinstance(cause, CiServeError) else f"{type(cause).__name__}: {cause}"
    return TrafficRollbackFailed(
        f"{what}; setting the new version's share back to 0 % then failed: {err.message}",
        f"a person must look: traffic may still reach the new version; run the traffic command by hand "
        f"with {WEIGHT_VARIABLE}=0", details=cause.details if isinstance(cause, CiServeError) else None)

