"""Ray's view of a cluster's Serve applications, plus ours: logical name, live colour, version.

Pure functions over one ``/api/serve/applications/`` snapshot, shared by ``status`` and ``config``.
"""

from __future__ import annotations

from typing import Any

from ci_serve import secrets
from ci_serve.deploy.naming import COLOURS, preview_prefix, split_name, version_of


def ray_view(snapshot: dict[str, Any]) -> dict[str, Any]:
    """Per physical application: status, message, route prefix, deployments (like `serve status`)."""
    apps = {}
    for name, raw in sorted((snapshot.get("applications") or {}).items()):
        raw = raw if isinstance(raw, dict) else {}
        deployments = raw.get("deployments") if isinstance(raw.get("deployments"), dict) else {}
        apps[name] = {
            "status": raw.get("status"), "message": raw.get("message") or "",
            "route_prefix": raw.get("route_prefix"), "last_deployed_time_s": raw.get("last_deployed_time_s"),
            "deployments": {d: {"status": (v or {}).get("status"), "message": (v or {}).get("message") or "",
                                "replicas": len((v or {}).get("replicas") or [])}
                            for d, v in sorted(deployments.items())},
        }
    return apps


def managed_view(snapshot: dict[str, Any]) -> dict[str, Any]:
    """Per logical application: which physical app is live (holds a non-preview prefix), its colour and
    version, and any candidate on a preview prefix."""
    groups: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for name, raw in sorted((snapshot.get("applications") or {}).items()):
        logical, colour = split_name(name)
        groups.setdefault(logical, []).append((name, colour, raw if isinstance(raw, dict) else {}))
    out = {}
    for logical, members in groups.items():
        if all(colour == "none" for _, colour, _ in members):
            continue  # not deployed by ci-serve (or adopted later)
        live = None
        candidates = []
        for name, colour, raw in members:
            prefix = str(raw.get("route_prefix") or "")
            is_preview = colour in COLOURS and (prefix.endswith(f"--{colour}")
                                                or prefix == preview_prefix("/", logical, colour))
            if is_preview:
                candidates.append(name)
            if not is_preview and live is None:
                live = (name, colour, raw)
        entry: dict[str, Any] = {"live": None, "colour": None, "version": None, "status": None,
                                 "route_prefix": None, "candidates": candidates}
        if live:
            name, colour, raw = live
            entry.update(live=name, colour=colour, version=version_of(raw.get("deployed_app_config")),
                         status=raw.get("status"), route_prefix=raw.get("route_prefix"))
        out[logical] = entry
    return out


def cluster_config(snapshot: dict[str, Any], app: str | None = None) -> list[dict[str, Any]]:
    """The declarative config of each application (``serve config``), env_vars redacted.

    ``app`` may be a physical name or a logical one (then its live incarnation)."""
    apps = snapshot.get("applications") or {}
    names = sorted(apps)
    if app is not None:
        live = (managed_view(snapshot).get(app) or {}).get("live")
        names = [n for n in names if n == app or n == live]
    return [secrets.redact_config(apps[n].get("deployed_app_config") or {"name": n, "note": "deployed imperatively"})
            for n in names]
