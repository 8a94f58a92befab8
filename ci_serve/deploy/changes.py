"""What kind of change a deploy makes to one application, compared with the live one.

- ``none``: same config, same code (the version marker aside): no write at all.
- ``lightweight``: only options Ray applies to running replicas (``user_config``, ``num_replicas``,
  autoscaling, request limits, health checks, route prefix): safe in place.
- ``heavyweight``: code or environment (``import_path``, ``runtime_env``, ``args``,
  ``ray_actor_options``, deployments added or removed...): replicas restart; blue-green.
- ``new``: nothing live yet.

Pure; table-tested. The config engineer's ``plan`` gives the same verdict words for the report.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from ci_serve.deploy.naming import without_version

Kind = Literal["none", "lightweight", "heavyweight", "new"]

LIGHT_APP_KEYS = frozenset({"route_prefix", "deployments"})
LIGHT_DEPLOYMENT_KEYS = frozenset({
    "num_replicas", "autoscaling_config", "user_config", "max_ongoing_requests", "max_queued_requests",
    "graceful_shutdown_wait_loop_s", "graceful_shutdown_timeout_s", "health_check_period_s",
    "health_check_timeout_s", "logging_config",
})


@dataclass(frozen=True)
class Change:
    kind: Kind
    reasons: tuple[str, ...] = ()


def classify(desired: dict[str, Any], live: dict[str, Any] | None) -> Change:
    """Compare the app config we would send with the live one (physical names and version ignored)."""
    if live is None:
        return Change("new", ("not deployed yet",))
    a, b = without_version(desired), without_version(live)
    if a == b:
        return Change("none")
    heavy: list[str] = []
    light: list[str] = []
    for key in sorted(set(a) | set(b)):
        if a.get(key) == b.get(key):
            continue
        if key == "deployments":
            _deployments(a.get(key) or [], b.get(key) or [], heavy, light)
        elif key in LIGHT_APP_KEYS:
            light.append(key)
        else:
            heavy.append(key)
    if heavy:
        return Change("heavyweight", tuple(heavy))
    return Change("lightweight", tuple(light)) if light else Change("none")


def _deployments(new: list[Any], old: list[Any], heavy: list[str], light: list[str]) -> None:
    by_name_new = {d.get("name"): d for d in new if isinstance(d, dict)}
    by_name_old = {d.get("name"): d for d in old if isinstance(d, dict)}
    for name in sorted(set(by_name_new) | set(by_name_old), key=str):
        d_new, d_old = by_name_new.get(name), by_name_old.get(name)
        if d_new is None or d_old is None:
            heavy.append(f"deployments.{name} {'added' if d_old is None else 'removed'}")
            continue
        for key in sorted(set(d_new) | set(d_old)):
            if d_new.get(key) != d_old.get(key):
                (light if key in LIGHT_DEPLOYMENT_KEYS else heavy).append(f"deployments.{name}.{key}")


def verdict(kinds: list[Kind]) -> str:
    """The plan's overall verdict over every application."""
    if any(k in ("heavyweight", "new") for k in kinds):
        return "heavyweight"
    return "lightweight" if "lightweight" in kinds else "none"
