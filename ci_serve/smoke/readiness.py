"""Is the deployed config ready, still coming up, or failed? A pure judgment over one status snapshot.

The loop in :mod:`ci_serve.smoke.runner` polls ``serve.status()`` and asks :func:`judge_readiness`. A failure
Ray has already reported ends the run at once, without waiting out the timeout:

- an application DEPLOY_FAILED or UNHEALTHY (import error, builder raised, bad arguments);
- a deployment DEPLOY_FAILED or UNHEALTHY;
- a deployment whose message says a replica failed to start with an exception (Serve would retry
  the constructor a few times; in CI the code is the same each time, so the first report is enough);
- a deployment whose replicas cannot be scheduled (the head lacks the CPUs/GPUs/resources asked for:
  Serve says so after 30 s and would otherwise wait forever).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

FAILED_APP = ("DEPLOY_FAILED", "UNHEALTHY")
FAILED_DEPLOYMENT = ("DEPLOY_FAILED", "UNHEALTHY")
CONSTRUCTOR_FAILED = "failed to start with exception"
UNSCHEDULABLE = "to be scheduled"


@dataclass
class ReadinessVerdict:
    """Whether the applications a smoke test deployed on its temporary head are up, and why not."""

    state: Literal["ready", "waiting", "failed"]
    reason: str = ""
    app: str | None = None
    deployment: str | None = None
    #: the message Serve gave (traceback of the failure, resource requirements, ...)
    message: str = ""
    unschedulable: bool = False
    #: app name -> one-line state, for heartbeats and timeouts
    pending: dict[str, str] = field(default_factory=dict)


def judge_readiness(apps: dict[str, dict[str, Any]], expected: list[str]) -> ReadinessVerdict:
    """The state of the ``expected`` applications in ``apps`` (the driver's ``status`` answer:
    :func:`ci_serve.cluster.driver.snapshot`)."""
    pending: dict[str, str] = {}
    for name in expected:
        app = apps.get(name)
        if app is None:
            pending[name] = "not started yet"
            continue
        status, message = app.get("status", ""), app.get("message", "")
        if status in FAILED_APP:
            culprit = _failed_deployment(app)
            return ReadinessVerdict("failed", f"application {name!r} is {status}", name, culprit,
                           message or _deployment_message(app, culprit))
        for dname, dep in (app.get("deployments") or {}).items():
            dstatus, dmessage = dep.get("status", ""), dep.get("message", "")
            if dstatus in FAILED_DEPLOYMENT:
                return ReadinessVerdict("failed", f"deployment {dname!r} of application {name!r} is {dstatus}",
                               name, dname, dmessage or message)
            if CONSTRUCTOR_FAILED in dmessage:
                return ReadinessVerdict("failed", f"a replica of deployment {dname!r} (application {name!r}) failed "
                               "to start", name, dname, dmessage)
            if UNSCHEDULABLE in dmessage and lacks_resources(dmessage):
                return ReadinessVerdict("failed", f"the replicas of deployment {dname!r} (application {name!r}) cannot "
                               "be scheduled on the temporary head", name, dname, dmessage, unschedulable=True)
        if status != "RUNNING":
            not_ready = [f"{d} {v.get('status')}" for d, v in (app.get("deployments") or {}).items()
                         if v.get("status") != "HEALTHY"]
            pending[name] = f"{status}" + (f" ({', '.join(not_ready)})" if not_ready else "") + \
                (f": {message.splitlines()[0]}" if message else "")
    if pending:
        return ReadinessVerdict("waiting", pending=pending)
    return ReadinessVerdict("ready")


def _failed_deployment(app: dict[str, Any]) -> str | None:
    for dname, dep in (app.get("deployments") or {}).items():
        if dep.get("status") in FAILED_DEPLOYMENT:
            return str(dname)
    return None


def _deployment_message(app: dict[str, Any], deployment: str | None) -> str:
    if deployment is None:
        return ""
    message: str = (app.get("deployments") or {}).get(deployment, {}).get("message", "")
    return message


_RESOURCES = re.compile(r"Resources required for each replica: (.+?), total resources available: (\{.*?\})")


def lacks_resources(message: str) -> bool:
    """Does Serve's "taken more than Ns to be scheduled" message show a replica needing more than the
    cluster has? A private head has no autoscaler, so that is a wait forever. Pending for another
    reason (a runtime_env being installed) is not a failure. Unparseable: assume it lacks them."""
    match = _RESOURCES.search(message)
    if not match:
        return True
    try:
        required = json.loads(match.group(1))
        available = json.loads(match.group(2))
    except ValueError:
        return True
    if isinstance(required, list):  # placement group bundles
        total: dict[str, float] = {}
        for bundle in required:
            for key, value in bundle.items():
                total[key] = total.get(key, 0.0) + float(value)
        required = total
    if not isinstance(required, dict) or not isinstance(available, dict):
        return True
    return any(float(v) > float(available.get(k, 0.0)) for k, v in required.items())
