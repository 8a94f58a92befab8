"""The gate: is an application ready, failed, stuck or stale, given one status snapshot?

:func:`judge_gate` is pure (a snapshot and what was sent in, a verdict and a reason out) and table-tested.
:func:`wait_ready` is the small loop around it: poll, judge every goal, print a heartbeat, stop on
the first failure, on two consecutive all-ready polls, or at the timeout.

An application is ready when the cluster has observed the goal we sent (its ``last_deployed_time_s``
advanced past the one read before the write, or its ``deployed_app_config`` equals what was sent),
it is RUNNING and every deployment is HEALTHY, UPSCALING or DOWNSCALING (an autoscaled deployment
that serves while it scales). Status read right after a write can still describe the previous goal;
that is "stale", not "ready".

Whether replicas that wait for resources can ever be placed is judged from the cluster's own
account of its demands (:mod:`ci_serve.deploy.capacity`): "infeasible" (no node type can hold a
replica) fails at once; a demand the autoscaler is working on is waited for up to the timeout; a
full cluster without an autoscaler is "unschedulable" and fails after the grace period. Only when
the cluster reports no demands at all (no monitor runs) does Serve's message decide, as before.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from ci_serve import cancel
from ci_serve.deploy.capacity import Capacity, replica_bundle, show_bundle
from ci_serve.errors import CheckFailed
from ci_serve.steps import StepLog
from ci_serve.tracebacks import exception_line

GateState = Literal["ready", "waiting", "stale", "failed", "unschedulable", "infeasible", "missing", "gone",
                "superseded"]

UNSCHEDULABLE_MARKERS = ("to be scheduled", "Resources required for each replica")
#: deployment statuses of a deployment that serves: an autoscaled one scaling under traffic is ready
SERVING = ("HEALTHY", "UPSCALING", "DOWNSCALING")
#: how long the gate waits for every application to be ready (``deploy --timeout``'s default)
DEPLOY_TIMEOUT_S = 600.0
#: how long replicas may wait for room on a full cluster without an autoscaler before the gate fails
UNSCHEDULABLE_GRACE_S = 60.0


@dataclass(frozen=True)
class Goal:
    """What we asked of one application: ``config`` as sent (or None: the app must be gone)."""

    name: str
    config: dict[str, Any] | None
    #: ``last_deployed_time_s`` read before the write (None: the app did not exist)
    previous_time: float | None = None


@dataclass(frozen=True)
class GateVerdict:
    """Where one application of a deploy stands against its goal, and why."""

    state: GateState
    #: one line for a person: the heartbeat while waiting, the error's message on a failure
    reason: str
    #: for failures: the cause, e.g. the exception line of an import error
    cause: str | None = None
    #: for failures: Ray's whole message (a traceback), shown below the error
    details: str | None = None


def config_matches(sent: Any, seen: Any) -> bool:
    """``seen`` holds everything in ``sent`` (Ray may add fields, never drop ours)."""
    if isinstance(sent, dict):
        return isinstance(seen, dict) and all(k in seen and config_matches(v, seen[k]) for k, v in sent.items())
    if isinstance(sent, list):
        return isinstance(seen, list) and len(sent) == len(seen) and all(
            config_matches(a, b) for a, b in zip(sent, seen, strict=True))
    if isinstance(sent, bool) or isinstance(seen, bool):
        return sent is seen
    if isinstance(sent, (int, float)) and isinstance(seen, (int, float)):
        return float(sent) == float(seen)
    return bool(sent == seen)


def goal_observed(goal: Goal, app: dict[str, Any]) -> bool:
    seen_time = app.get("last_deployed_time_s")
    if goal.previous_time is None:
        return True  # a new application: its very presence is our goal
    if isinstance(seen_time, (int, float)) and seen_time > goal.previous_time:
        return True
    return goal.config is not None and config_matches(goal.config, app.get("deployed_app_config"))


def code_identity(config: Any) -> tuple[Any, Any]:
    """What names the code of an app config: its import path and working_dir (never normalized by Ray)."""
    config = config if isinstance(config, dict) else {}
    runtime_env = config.get("runtime_env") if isinstance(config.get("runtime_env"), dict) else {}
    return config.get("import_path"), runtime_env.get("working_dir")


def superseded(goal: Goal, app: dict[str, Any]) -> bool:
    """Someone else's write replaced ours: the goal is newer than what we read, but names other code."""
    if goal.config is None:
        return False
    seen_time = app.get("last_deployed_time_s")
    newer = goal.previous_time is None or (isinstance(seen_time, (int, float)) and seen_time > goal.previous_time)
    return newer and code_identity(goal.config) != code_identity(app.get("deployed_app_config"))


def judge_gate(goal: Goal, applications: dict[str, Any], capacity: Capacity | None = None) -> GateVerdict:
    """The verdict for one goal over one snapshot's ``applications`` map (and the cluster's resource
    demands, when it reports them)."""
    app = applications.get(goal.name)
    if goal.config is None:
        if app is None:
            return GateVerdict("gone", "removed")
        return GateVerdict("waiting", f"being removed ({app.get('status')})")
    if not isinstance(app, dict):
        return GateVerdict("missing", "not on the cluster yet")
    if superseded(goal, app):
        return GateVerdict("superseded", "another write replaced the config we sent (another deploy?)")
    if not goal_observed(goal, app):
        return GateVerdict("stale", "cluster has not picked up the new config yet")
    status = str(app.get("status") or "UNKNOWN")
    message = str(app.get("message") or "")
    found = app.get("deployments")
    deployments: dict[str, Any] = found if isinstance(found, dict) else {}
    if status == "DEPLOY_FAILED":
        # The app message may only say "Failed to update the deployments ['X']"; the exception is then
        # in the failed deployment's own message.
        dep_text = "\n".join(f"{n}: {(d or {}).get('message')}" for n, d in sorted(deployments.items())
                             if (d or {}).get("message") and str((d or {}).get("status")) != "HEALTHY")
        cause = (exception_line(message) or exception_line(dep_text) or _first_line(message)
                 or _first_line(dep_text) or "no message from Ray")
        return GateVerdict("failed", f"DEPLOY_FAILED: {cause}", cause=cause,
                       details="\n".join(t for t in (message, dep_text) if t))
    for dname, dep in sorted(deployments.items()):
        dstatus = str((dep or {}).get("status") or "")
        dmessage = str((dep or {}).get("message") or "")
        if dstatus in ("UNHEALTHY", "DEPLOY_FAILED"):
            cause = exception_line(dmessage) or _first_line(dmessage) or dstatus
            return GateVerdict("failed", f"deployment {dname} is {dstatus}: {cause}", cause=cause, details=dmessage)
    if status == "UNHEALTHY":
        cause = exception_line(message) or _first_line(message) or "no message from Ray"
        return GateVerdict("failed", f"UNHEALTHY: {cause}", cause=cause, details=message)
    starting = {n: d or {} for n, d in sorted(deployments.items()) if str((d or {}).get("status")) not in SERVING}
    placement = _placement(starting, capacity)
    if placement is not None:
        return placement
    if status == "RUNNING" and deployments and not starting:
        return GateVerdict("ready", "RUNNING, every deployment serving")
    waiting = [f"{n} {d.get('status')}" for n, d in starting.items()]
    return GateVerdict("waiting", f"{status}" + (f" ({', '.join(waiting)})" if waiting else ""))


def _placement(starting: dict[str, dict[str, Any]], capacity: Capacity | None) -> GateVerdict | None:
    """A verdict about deployments whose replicas wait for resources, or None (nothing waits for any)."""
    if capacity is None:  # the cluster reports no demands: Serve's message is all there is
        for dname, dep in starting.items():
            dmessage = str(dep.get("message") or "")
            if any(marker in dmessage for marker in UNSCHEDULABLE_MARKERS):
                return GateVerdict("unschedulable", f"deployment {dname}: replicas cannot be scheduled",
                               cause=_resources(dmessage), details=dmessage)
        return None
    pending: list[str] = []
    for dname, dep in starting.items():
        bundle = replica_bundle(dep)
        if bundle is None:
            continue
        asked = show_bundle(bundle)
        if capacity.never_fits(bundle):
            where = ("the autoscaler reports that no node type can fulfil it" if capacity.autoscaler
                     else "no node of this cluster (which has no autoscaler) can hold it")
            return GateVerdict("infeasible", f"deployment {dname}: each replica asks for {asked}; {where}",
                           cause=capacity.describe_nodes(), details=str(dep.get("message") or "") or None)
        count = capacity.unmet(bundle)
        if not count:
            continue
        if not capacity.autoscaler:
            return GateVerdict("unschedulable", f"deployment {dname}: {count} replica(s) asking {asked} wait for "
                           "room on a full cluster (no autoscaler)",
                           cause=capacity.describe_nodes(),
                           details=str(dep.get("message") or "") or None)
        coming = ", ".join(capacity.launching) or "no node launching yet"
        pending.append(f"{dname}: {count} replica(s) asking {asked} wait for the autoscaler ({coming})")
    if pending:
        return GateVerdict("waiting", "; ".join(pending))
    return None


def _first_line(text: str) -> str:
    return next((ln.strip() for ln in text.splitlines() if ln.strip()), "")[:300]


def _resources(message: str) -> str:
    """The "required ... available ..." part of Ray's unschedulable message, else the message."""
    found = re.search(r"Resources required.*", message, flags=re.S)
    return " ".join((found.group(0) if found else message).split())[:500]


@dataclass
class GateResult:
    verdicts: dict[str, GateVerdict] = field(default_factory=dict)
    snapshot: dict[str, Any] = field(default_factory=dict)
    polls: int = 0


class GateFailed(CheckFailed):
    """An application did not pass the gate; ``verdicts`` says why, per application."""

    def __init__(self, message: str, hint: str | None = None, *, details: str | None = None,
                 verdicts: dict[str, GateVerdict] | None = None, snapshot: dict[str, Any] | None = None):
        super().__init__(message, hint, details=details)
        self.verdicts = verdicts or {}
        self.snapshot = snapshot or {}


class Superseded(GateFailed):
    """Another write replaced our goal for an application: not ours to clean up any more."""


def wait_ready(read: Callable[[], dict[str, Any]], goals: list[Goal], *, timeout: float = DEPLOY_TIMEOUT_S,
               unschedulable_grace: float = UNSCHEDULABLE_GRACE_S, log: StepLog | None = None, step_name: str = "gate",
               clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
               heartbeat_every: float = 5.0, capacity: Callable[[], Capacity | None] | None = None,
               capacity_every: float = 2.0) -> GateResult:
    """Poll ``read()`` (a ``/api/serve/applications/`` snapshot) until every goal is ready twice in a row.

    ``capacity``, when given, reads the cluster's resource demands (:func:`ci_serve.deploy.capacity.
    observe`); it is called only while some application is not ready, at most every ``capacity_every``
    seconds (Ray's monitor updates them every few seconds anyway).

    Raises :class:`GateFailed` at once on a failure or an infeasible demand, after
    ``unschedulable_grace`` seconds of replicas waiting on a full cluster without an autoscaler, or at
    ``timeout``. The wait is one step of ``log`` (named ``step_name``), printed with a heartbeat.
    """
    result = GateResult()
    timeout = cancel.time_left(timeout)  # a gate after a cancel (the undo's) ends with the cleanup's time
    t0 = clock()
    streak = 0
    # Under 4 polls a second (0.3 s start to start leaves room for jitter), kept up the whole wait: a
    # slower poll notices RUNNING late (benchmarks/bench_gate.py: a growing interval was up to 1.9 s late).
    interval = 0.3
    seen_capacity: Capacity | None = None
    capacity_at: float | None = None

    def beat() -> str:
        pending = {n: v for n, v in result.verdicts.items() if v.state not in ("ready", "gone")}
        return "waiting for " + "; ".join(f"{n}: {v.reason}" for n, v in pending.items()) if pending else ""

    with (log or StepLog()).step(step_name, heartbeat=beat, every=heartbeat_every) as st:
        while True:
            polled_at = clock()
            snapshot = read()
            result.snapshot = snapshot
            result.polls += 1
            apps = snapshot.get("applications") or {}
            result.verdicts = {g.name: judge_gate(g, apps, seen_capacity) for g in goals}
            if capacity is not None and any(v.state in ("waiting", "unschedulable")
                                            for v in result.verdicts.values()):
                if capacity_at is None or polled_at - capacity_at >= capacity_every:
                    seen_capacity, capacity_at = capacity(), polled_at
                    result.verdicts = {g.name: judge_gate(g, apps, seen_capacity) for g in goals}
            elapsed = clock() - t0
            replaced = {n: v for n, v in result.verdicts.items() if v.state == "superseded"}
            if replaced:
                name = next(iter(replaced))
                st.detail = f"{name}: replaced by another write"
                raise Superseded(f"application {name} now runs a config someone else wrote; this deploy stops "
                                 "and leaves it to them", "another deploy of the same application ran at the same "
                                 "moment; check `ci-serve status` and re-run if needed",
                                 verdicts=result.verdicts, snapshot=snapshot)
            failed = {n: v for n, v in result.verdicts.items() if v.state == "failed"}
            if failed:
                name, verdict = next(iter(failed.items()))
                st.detail = f"{name}: {verdict.reason}"
                raise GateFailed(f"application {name} failed: {verdict.reason}",
                                 "fix the application; the cluster's message is below",
                                 details=_tail(verdict.details), verdicts=result.verdicts, snapshot=snapshot)
            never = {n: v for n, v in result.verdicts.items() if v.state == "infeasible"}
            if never:
                name, verdict = next(iter(never.items()))
                st.detail = f"{name}: replicas can never be placed"
                raise GateFailed(
                    f"application {name}: {verdict.reason} ({verdict.cause})",
                    "lower the deployment's ray_actor_options (num_cpus, num_gpus, memory, resources) to what a "
                    "node type offers, or add a node type that has them to the cluster (its autoscaler config)",
                    details=_tail(verdict.details), verdicts=result.verdicts, snapshot=snapshot)
            stuck = {n: v for n, v in result.verdicts.items() if v.state == "unschedulable"}
            if stuck and elapsed >= unschedulable_grace:
                name, verdict = next(iter(stuck.items()))
                st.detail = f"{name}: replicas cannot be scheduled"
                raise GateFailed(
                    f"application {name}: replicas could not be scheduled within {elapsed:.0f}s "
                    f"({verdict.cause})",
                    "the cluster lacks the resources asked for: lower num_replicas or ray_actor_options "
                    "(num_cpus, num_gpus, memory), or add nodes. Blue-green needs room for both versions "
                    "for a moment", details=_tail(verdict.details), verdicts=result.verdicts, snapshot=snapshot)
            if all(v.state in ("ready", "gone") for v in result.verdicts.values()):
                streak += 1
                if streak >= 2:
                    st.detail = f"{len(goals)} application(s) ready after {result.polls} polls"
                    return result
            else:
                streak = 0
            if elapsed >= timeout:
                lines = [f"{n}: {v.reason}" for n, v in result.verdicts.items() if v.state not in ("ready", "gone")]
                lines += _deployment_lines(apps, [g.name for g in goals])
                st.detail = "timed out"
                raise GateFailed(f"applications not ready within the {timeout:.0f}s timeout "
                                 f"(waited {elapsed:.0f}s)",
                                 "raise --timeout if the app needs longer to start; otherwise see why below",
                                 details="\n".join(lines), verdicts=result.verdicts, snapshot=snapshot)
            sleep(max(0.0, interval - (clock() - polled_at)))  # poll start to poll start, not end to start


def _deployment_lines(apps: dict[str, Any], names: list[str]) -> list[str]:
    lines = []
    for name in names:
        for dname, dep in sorted(((apps.get(name) or {}).get("deployments") or {}).items()):
            if str((dep or {}).get("status")) not in SERVING:
                msg = " ".join(str((dep or {}).get("message") or "").split())[:300]
                lines.append(f"  {name}/{dname}: {(dep or {}).get('status')} {msg}".rstrip())
    return lines


def _tail(text: str | None, lines: int = 25) -> str | None:
    if not text:
        return None
    return "\n".join(text.rstrip().splitlines()[-lines:])
