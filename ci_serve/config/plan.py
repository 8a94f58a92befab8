"""What a deploy of a config would change on a cluster: pure diff and classification.

:func:`plan_changes` compares the desired multi-application config with the live
``GET /api/serve/applications/`` answer, per application and deployment, and classes every change:

- **lightweight**: Serve applies it to running replicas (``num_replicas``, autoscaling,
  ``user_config`` through ``reconfigure()``, request limits, health checks, logging, route prefix);
- **heavyweight**: replicas restart (``import_path``, ``runtime_env`` including the code's
  ``working_dir``, ``args``, ``ray_actor_options``, placement groups), and applications or
  deployments added or removed.

The verdict is the heaviest class present (``none`` when nothing changes). The classes follow the
``update_type`` Ray 2.60 gives each ``DeploymentConfig`` field.

Only what a config *sets* is compared: a live ``deployed_app_config`` holds exactly what was sent,
so a field set on one side only is compared with the other side's effective value (the live
``deployment_config`` Serve reports, or the options set in code when the caller imported the code).
Which live application a desired one is compared with is the caller's decision (``live_names``:
the deploy's :meth:`ClusterView.live_of`); without it, applications are matched by exact name. The
environment variables named in ``ignore_env`` (the deploy's ownership markers) are not compared.
Applications live on the cluster but absent from the comparison are listed as left alone.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ci_serve.secrets import MASK

#: how much of an application a change restarts; a plan's verdict is the heaviest class it holds
ChangeClass = Literal["none", "lightweight", "heavyweight"]
Action = Literal["added", "removed", "changed", "unchanged"]

LIGHT_APP_FIELDS = frozenset({"route_prefix", "logging_config", "autoscaling_policy", "external_scaler_enabled"})
LIGHT_DEPLOYMENT_FIELDS = frozenset({
    "num_replicas", "autoscaling_config", "user_config", "max_ongoing_requests", "max_queued_requests",
    "backpressure_config", "graceful_shutdown_wait_loop_s", "graceful_shutdown_timeout_s",
    "health_check_period_s", "health_check_timeout_s", "logging_config", "request_router_config",
    "rolling_update_percentage", "max_surge_percent",
})
#: what an application field is when a config leaves it out (Serve's defaults)
APP_DEFAULTS: dict[str, Any] = {"route_prefix": "/", "runtime_env": {}, "args": {}, "deployments": []}
NOT_COMPARED_APP_FIELDS = frozenset({"name", "deployments"})
UNSET = "(not set)"
FROM_CODE = "(as set in code)"


@dataclass
class FieldChange:
    field: str
    old: Any
    new: Any
    kind: ChangeClass

    def as_dict(self) -> dict[str, Any]:
        return {"field": self.field, "old": self.old, "new": self.new, "class": self.kind}


@dataclass
class DeploymentPlan:
    name: str
    action: Action
    changes: list[FieldChange] = field(default_factory=list)

    @property
    def verdict(self) -> ChangeClass:
        if self.action in ("added", "removed"):
            return "heavyweight"
        return heaviest(c.kind for c in self.changes)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "action": self.action, "verdict": self.verdict,
                "changes": [c.as_dict() for c in self.changes]}


@dataclass
class AppPlan:
    name: str
    action: Action
    #: the live application's name on the cluster (a colour suffix for blue/green), None when new
    live_name: str | None = None
    changes: list[FieldChange] = field(default_factory=list)
    deployments: list[DeploymentPlan] = field(default_factory=list)

    @property
    def verdict(self) -> ChangeClass:
        if self.action in ("added", "removed"):
            return "heavyweight"
        return heaviest([c.kind for c in self.changes] + [d.verdict for d in self.deployments])

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "live_name": self.live_name, "action": self.action, "verdict": self.verdict,
                "changes": [c.as_dict() for c in self.changes],
                "deployments": [d.as_dict() for d in self.deployments]}


@dataclass
class Plan:
    applications: list[AppPlan] = field(default_factory=list)
    #: live applications the config does not name (a deploy leaves them alone)
    left_alone: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> ChangeClass:
        return heaviest(a.verdict for a in self.applications)

    def as_dict(self) -> dict[str, Any]:
        return {"applications": [a.as_dict() for a in self.applications], "verdict": self.verdict,
                "left_alone": list(self.left_alone)}


def heaviest(kinds: Iterable[ChangeClass]) -> ChangeClass:
    """The heaviest class among ``kinds``: what a deploy of all those changes would do."""
    kinds = set(kinds)
    if "heavyweight" in kinds:
        return "heavyweight"
    return "lightweight" if "lightweight" in kinds else "none"


def plan_changes(desired: dict[str, Any], live: dict[str, Any],
                 code: dict[str, dict[str, dict[str, Any]]] | None = None, *,
                 live_names: Mapping[str, str | None] | None = None,
                 ignore_env: frozenset[str] = frozenset()) -> Plan:
    """Compare ``desired`` (multi-application config) with ``live`` (the applications answer).

    ``code``, when given, maps an application name to ``{deployment: options set in code}`` (from
    :func:`ci_serve.config.inspect.inspect_app`); it lets the plan see deployments added to or removed
    from the code and what a field dropped from the config falls back to.
    """
    found = live.get("applications")
    live_apps: dict[str, Any] = found if isinstance(found, dict) else {}
    plan = Plan()
    matched: set[str] = set()
    for app in desired.get("applications") or []:
        if not isinstance(app, dict):
            continue
        name = str(app.get("name", "default"))
        live_name = live_names.get(name) if live_names is not None else (name if name in live_apps else None)
        if live_name is not None and live_name not in live_apps:
            live_name = None
        graph = (code or {}).get(name)
        if live_name is None:
            plan.applications.append(AppPlan(name, "added", deployments=[
                DeploymentPlan(d, "added") for d in _desired_deployment_names(app, graph)]))
            continue
        matched.add(live_name)
        plan.applications.append(_app_plan(name, live_name, app, live_apps[live_name], graph, ignore_env))
    plan.left_alone = sorted(n for n in live_apps if n not in matched)
    return plan


def _desired_deployment_names(app: dict[str, Any], graph: dict[str, Any] | None) -> list[str]:
    names = list(graph or {})
    for dep in app.get("deployments") or []:
        if isinstance(dep, dict) and dep.get("name") not in names:
            names.append(str(dep.get("name")))
    return names


def without_env_vars(app_config: Any, ignore_env: frozenset[str]) -> dict[str, Any]:
    """The app config without its name and without the ``ignore_env`` variables."""
    app = copy.deepcopy(app_config) if isinstance(app_config, dict) else {}
    app.pop("name", None)
    runtime_env = app.get("runtime_env")
    if isinstance(runtime_env, dict) and isinstance(runtime_env.get("env_vars"), dict):
        for var in ignore_env:
            runtime_env["env_vars"].pop(var, None)
        if not runtime_env["env_vars"]:
            del runtime_env["env_vars"]
        if not runtime_env:
            del app["runtime_env"]
    return app


def _app_plan(name: str, live_name: str, app: dict[str, Any], live_app: dict[str, Any],
              graph: dict[str, Any] | None, ignore_env: frozenset[str] = frozenset()) -> AppPlan:
    live_config = without_env_vars(live_app.get("deployed_app_config"), ignore_env)
    new = without_env_vars(app, ignore_env)
    result = AppPlan(name, "unchanged", live_name=live_name)
    for key in sorted((set(new) | set(live_config)) - NOT_COMPARED_APP_FIELDS):
        old_value = live_config.get(key, APP_DEFAULTS.get(key, UNSET))
        new_value = new.get(key, APP_DEFAULTS.get(key, UNSET))
        if old_value != new_value:
            kind: ChangeClass = "lightweight" if key in LIGHT_APP_FIELDS else "heavyweight"
            result.changes.extend(_field_changes(key, old_value, new_value, kind))
    result.deployments = _deployment_plans(new, live_config, live_app.get("deployments") or {}, graph)
    if result.changes or any(d.action != "unchanged" for d in result.deployments):
        result.action = "changed"
    return result


def _by_name(entries: Any) -> dict[str, dict[str, Any]]:
    return {str(d["name"]): d for d in entries or [] if isinstance(d, dict) and "name" in d}


def _deployment_plans(app: dict[str, Any], live_config: dict[str, Any], live_deployments: dict[str, Any],
                      graph: dict[str, Any] | None) -> list[DeploymentPlan]:
    wanted, was = _by_name(app.get("deployments")), _by_name(live_config.get("deployments"))
    live_names = set(live_deployments) | set(was)
    plans: list[DeploymentPlan] = []
    for name in _desired_deployment_names(app, graph):
        if name not in live_names:
            plans.append(DeploymentPlan(name, "added"))
            continue
        effective = (live_deployments.get(name) or {}).get("deployment_config") or {}
        code_options = (graph or {}).get(name)
        plans.append(_deployment_plan(name, wanted.get(name, {}), was.get(name, {}), effective, code_options))
    if graph is not None:
        plans.extend(DeploymentPlan(n, "removed") for n in sorted(live_names) if n not in graph)
    else:  # without the code, only the config's overrides can be compared
        plans.extend(_deployment_plan(n, {}, was[n], (live_deployments.get(n) or {}).get("deployment_config") or {},
                                      None) for n in sorted(was) if n not in wanted)
    return [p for p in plans if p.action != "unchanged"] + [p for p in plans if p.action == "unchanged"]


def _deployment_plan(name: str, new: dict[str, Any], old: dict[str, Any], effective: dict[str, Any],
                     code_options: dict[str, Any] | None) -> DeploymentPlan:
    plan = DeploymentPlan(name, "unchanged")
    for key in sorted((set(new) | set(old)) - {"name"}):
        if key in new and key in old:
            old_value, new_value = old[key], new[key]
            same = old_value == new_value
        elif key in new:  # the live config left it to the code: compare with what runs
            old_value, new_value = effective.get(key, UNSET), new[key]
            same = _covers(effective.get(key), new_value) if key in effective else False
        else:  # dropped from the config: falls back to the code's value
            old_value = old[key]
            new_value = code_options.get(key, UNSET) if code_options is not None else FROM_CODE
            same = old_value == new_value
        if not same:
            kind: ChangeClass = "lightweight" if key in LIGHT_DEPLOYMENT_FIELDS else "heavyweight"
            plan.changes.extend(_field_changes(key, old_value, new_value, kind))
    if plan.changes:
        plan.action = "changed"
    return plan


def _covers(effective: Any, wanted: Any) -> bool:
    """``wanted`` (what the config sets) already holds in ``effective`` (what Serve reports running).

    A partial mapping (autoscaling_config: {max_replicas: 3}) is compared key by key; Serve fills
    the rest with defaults. ``user_config`` is compared whole by the caller's key check.
    """
    if isinstance(wanted, dict) and isinstance(effective, dict):
        return all(k in effective and _covers(effective[k], v) for k, v in wanted.items())
    same: bool = effective == wanted
    return same


def _field_changes(key: str, old: Any, new: Any, kind: ChangeClass) -> list[FieldChange]:
    """One change per field; ``runtime_env`` is split per entry so the plan says which part changed,
    and every ``env_vars`` value is shown as ``***``."""
    if key == "runtime_env" and isinstance(old, dict) and isinstance(new, dict):
        out: list[FieldChange] = []
        for sub in sorted(set(old) | set(new)):
            o, n = old.get(sub, UNSET), new.get(sub, UNSET)
            if o == n:
                continue
            if sub == "env_vars" and isinstance(o, dict) and isinstance(n, dict):
                out.extend(FieldChange(f"runtime_env.env_vars.{v}", MASK if v in o else UNSET,
                                       MASK if v in n else UNSET, kind)
                           for v in sorted(set(o) | set(n)) if o.get(v) != n.get(v))
            else:
                out.append(FieldChange(f"runtime_env.{sub}", _redact(sub, o), _redact(sub, n), kind))
        return out
    return [FieldChange(key, _redact(key, old), _redact(key, new), kind)]


def _redact(key: str, value: Any) -> Any:
    from ci_serve.secrets import redact_config

    if key == "env_vars" and isinstance(value, dict):
        return {k: MASK for k in value}
    if key == "runtime_env":
        return redact_config({"runtime_env": value})["runtime_env"]
    return redact_config(value) if isinstance(value, (dict, list)) else value
