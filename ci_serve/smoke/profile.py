"""The CI resource profile: fit a production config onto a small CI head.

A CI runner has 2 to 4 CPUs and no GPU; a production config asks for more (each replica takes 1 CPU
by default, ``num_replicas: 8``, ``num_gpus: 1``, custom resources). Smoke checks code and config, not
capacity, so before deploying, :func:`fit_to_head` decides (a pure function over the options each
deployment runs with, config merged over code):

- replica counts: a fixed ``num_replicas`` above 1 becomes 1; autoscaling bounds become
  ``min_replicas <= 1``, ``max_replicas: 1`` (and ``initial_replicas <= 1``);
- CPUs: when the replicas ask for more than :data:`CPU_SHARE` of the head's CPUs, every replica's
  ``num_cpus`` (and its placement-group bundles' ``CPU``) is scaled by one factor so the sum fits;
- GPUs and custom resources the head lacks are scaled the same way, down to removal when the head
  has none;
- everything else (``user_config``, ``runtime_env``, ``memory``, ...) is deployed as written.

It returns the config fields to set per deployment and one printable line per change.
:func:`apply_profile` writes them into the config's ``deployments:`` lists; since a config's
``ray_actor_options`` replaces the code's whole, the full dictionary is written.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

#: share of the head's CPUs the replicas may take; the rest stays for tasks they start and for Ray
CPU_SHARE = 0.75
#: Serve gives a replica 1 CPU unless ray_actor_options says otherwise
DEFAULT_REPLICA_CPUS = 1.0
_MIN_SHARE = 0.01


@dataclass(frozen=True)
class HeadCapacity:
    cpus: float
    gpus: float = 0.0
    resources: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Change:
    app: str
    deployment: str
    field: str
    before: Any
    after: Any

    def __str__(self) -> str:
        return f"{self.app}/{self.deployment}: {self.field} {_show(self.before)} -> {_show(self.after)}"

    def as_dict(self) -> dict[str, Any]:
        return {"app": self.app, "deployment": self.deployment, "field": self.field,
                "before": self.before, "after": self.after}


@dataclass
class Profile:
    #: app name -> deployment name -> config fields to set (whole values)
    overrides: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    changes: list[Change] = field(default_factory=list)
    cpus_before: float = 0.0
    cpus_after: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"changes": [c.as_dict() for c in self.changes], "cpus_before": round(self.cpus_before, 3),
                "cpus_after": round(self.cpus_after, 3)}


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return "unset" if value is None else str(value)


def replica_count(options: dict[str, Any]) -> int:
    """Replicas a deployment starts with at most: a fixed count, or the autoscaling maximum."""
    auto = options.get("autoscaling_config")
    if isinstance(auto, dict) or options.get("num_replicas") == "auto":
        auto = auto if isinstance(auto, dict) else {}
        return int(auto.get("max_replicas", auto.get("min_replicas", 1)) or 1)
    num = options.get("num_replicas")
    return 1 if num is None else int(num)


def _replica_demand(options: dict[str, Any]) -> dict[str, float]:
    """Resources one replica reserves: its placement group if it has one, else its actor options."""
    bundles = options.get("placement_group_bundles")
    if bundles:
        total: dict[str, float] = {}
        for bundle in bundles:
            for key, value in bundle.items():
                total[key] = total.get(key, 0.0) + float(value)
        return total
    actor = options.get("ray_actor_options") or {}
    demand = {"CPU": float(actor.get("num_cpus", DEFAULT_REPLICA_CPUS)),
              "GPU": float(actor.get("num_gpus", 0) or 0)}
    for key, value in (actor.get("resources") or {}).items():
        demand[key] = float(value)
    return demand


def _scale(value: float, factor: float) -> float:
    """``value * factor`` rounded down to a hundredth, never below 0.01 for a non-zero request."""
    if value <= 0 or factor >= 1:
        return value
    if factor <= 0:
        return 0.0
    return max(_MIN_SHARE, math.floor(value * factor * 100) / 100)


def fit_to_head(apps: dict[str, dict[str, dict[str, Any]]], head: HeadCapacity) -> Profile:
    """Decide what to change so every deployment of every app fits ``head``.

    ``apps`` maps app name -> deployment name -> the options the deployment runs with (config
    merged over code, config field names).
    """
    profile = Profile()
    counts: dict[tuple[str, str], int] = {}
    # 1. replica counts
    for app, deployments in apps.items():
        for name, opts in deployments.items():
            over: dict[str, Any] = {}
            auto = opts.get("autoscaling_config")
            if isinstance(auto, dict) or opts.get("num_replicas") == "auto":
                auto = dict(auto or {})
                new = dict(auto)
                new["max_replicas"] = 1
                new["min_replicas"] = min(int(auto.get("min_replicas", 1)), 1)
                if auto.get("initial_replicas") is not None:
                    new["initial_replicas"] = min(int(auto["initial_replicas"]), 1)
                if new != auto:
                    over["autoscaling_config"] = new
                    for key in ("min_replicas", "max_replicas", "initial_replicas"):
                        if auto.get(key) != new.get(key) and key in new:
                            profile.changes.append(Change(app, name, f"autoscaling_config.{key}",
                                                          auto.get(key), new[key]))
            elif isinstance(opts.get("num_replicas"), int) and opts["num_replicas"] > 1:
                over["num_replicas"] = 1
                profile.changes.append(Change(app, name, "num_replicas", opts["num_replicas"], 1))
            if over:
                profile.overrides.setdefault(app, {})[name] = over
            counts[(app, name)] = replica_count({**opts, **over})
    # 2. resources: one factor per resource for the whole config
    total: dict[str, float] = {}
    for app, deployments in apps.items():
        for name, opts in deployments.items():
            for key, value in _replica_demand(opts).items():
                total[key] = total.get(key, 0.0) + value * counts[(app, name)]
    have = {"CPU": head.cpus * CPU_SHARE, "GPU": head.gpus, **head.resources}
    factors = {key: (1.0 if need <= have.get(key, 0.0) else have.get(key, 0.0) / need)
               for key, need in total.items() if need > 0}
    profile.cpus_before = sum(_replica_demand(o).get("CPU", 0.0) * replica_count(o)
                              for d in apps.values() for o in d.values())
    if any(f < 1 for f in factors.values()):
        for app, deployments in apps.items():
            for name, opts in deployments.items():
                _scale_deployment(profile, app, name, opts, factors)
    profile.cpus_after = 0.0
    for app, deployments in apps.items():
        for name, opts in deployments.items():
            effective = {**opts, **profile.overrides.get(app, {}).get(name, {})}
            profile.cpus_after += _replica_demand(effective).get("CPU", 0.0) * counts[(app, name)]
    return profile


_ACTOR_KEYS = {"CPU": "num_cpus", "GPU": "num_gpus"}


def _scale_deployment(profile: Profile, app: str, name: str, opts: dict[str, Any],
                      factors: dict[str, float]) -> None:
    over = profile.overrides.setdefault(app, {}).setdefault(name, {})
    actor = copy.deepcopy(opts.get("ray_actor_options") or {})
    before_actor = copy.deepcopy(actor)
    actor.setdefault("num_cpus", DEFAULT_REPLICA_CPUS)
    for key, attr in _ACTOR_KEYS.items():
        if key in factors and attr in actor:
            actor[attr] = _scale(float(actor[attr]), factors[key])
            if attr == "num_gpus" and actor[attr] == 0:
                del actor[attr]
    resources = dict(actor.get("resources") or {})
    for key in list(resources):
        if key in factors and factors[key] < 1:
            resources[key] = _scale(float(resources[key]), factors[key])
            if resources[key] == 0:
                del resources[key]
    if "resources" in actor:
        actor["resources"] = resources
    for attr in ("num_cpus", "num_gpus"):
        old = before_actor.get(attr, DEFAULT_REPLICA_CPUS if attr == "num_cpus" else None)
        if actor.get(attr) != old:
            profile.changes.append(Change(app, name, f"ray_actor_options.{attr}", old, actor.get(attr)))
    for key, old in (before_actor.get("resources") or {}).items():
        if resources.get(key) != old:
            profile.changes.append(Change(app, name, f"ray_actor_options.resources.{key}", old, resources.get(key)))
    if actor != before_actor:
        over["ray_actor_options"] = actor
    bundles = opts.get("placement_group_bundles")
    if bundles:
        new_bundles = []
        for bundle in bundles:
            new = {}
            for key, value in bundle.items():
                scaled = _scale(float(value), factors.get(key, 1.0))
                if scaled > 0:
                    new[key] = scaled
            new_bundles.append(new)
        if new_bundles != bundles:
            over["placement_group_bundles"] = new_bundles
            profile.changes.append(Change(app, name, "placement_group_bundles", bundles, new_bundles))
    if not over:
        del profile.overrides[app][name]


def apply_profile(config: dict[str, Any], profile: Profile) -> dict[str, Any]:
    """A copy of a multi-application ``config`` with the profile's fields set in ``deployments:``."""
    data = copy.deepcopy(config)
    for app in data.get("applications") or []:
        overrides = profile.overrides.get(app.get("name"), {})
        if not overrides:
            continue
        entries = app.setdefault("deployments", [])
        by_name = {d.get("name"): d for d in entries if isinstance(d, dict)}
        for name, fields in overrides.items():
            entry = by_name.get(name)
            if entry is None:
                entry = {"name": name}
                entries.append(entry)
            entry.update(copy.deepcopy(fields))
    return data
