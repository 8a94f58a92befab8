"""Logical names (the config's) and physical names (what runs on the cluster, with a colour).

A CI job has no memory between runs: which colour is live is read from the cluster every time.
An application ``shop`` runs as ``shop-blue`` or ``shop-green``; while a blue-green deploy is in
flight both exist, the live one holding the config's route prefix. An application that was deployed
by hand under its plain name ``shop`` is adopted as the live version (colour ``none``) and replaced
by a coloured one on the next blue-green deploy.

The release version (``GITHUB_SHA`` or ``--version``) travels with the application as the
environment variable ``CI_SERVE_VERSION`` in its ``runtime_env``; it is ignored when deciding
whether anything changed, so re-running a release with a new commit but the same code and config
restarts nothing.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

COLOURS = ("blue", "green")
VERSION_VAR = "CI_SERVE_VERSION"


def physical_name(logical: str, colour: str) -> str:
    return f"{logical}-{colour}" if colour in COLOURS else logical


def split_name(physical: str) -> tuple[str, str]:
    """``shop-green`` -> ``("shop", "green")``; ``shop`` -> ``("shop", "none")``."""
    for colour in COLOURS:
        suffix = f"-{colour}"
        if physical.endswith(suffix) and len(physical) > len(suffix):
            return physical[: -len(suffix)], colour
    return physical, "none"


def other_colour(colour: str) -> str:
    return "green" if colour == "blue" else "blue"


def preview_prefix(route_prefix: str | None, logical: str, colour: str) -> str:
    """The candidate's own route prefix, beside the live one: ``/shop`` -> ``/shop--green``.

    Kept under no live prefix of another app by construction (a double dash is unusual in routes).
    """
    base = (route_prefix or f"/{logical}").rstrip("/")
    return f"{base}--{colour}" if base else f"/--{logical}-{colour}"


@dataclass(frozen=True)
class Incarnation:
    """One physical application of a logical one, as seen on the cluster."""

    physical: str
    colour: str
    route_prefix: str | None
    status: str
    version: str | None
    config: dict[str, Any]


def incarnations(applications: dict[str, Any], logical: str) -> list[Incarnation]:
    """Every physical application on the cluster that belongs to ``logical``."""
    found = []
    for physical, raw in sorted(applications.items()):
        if not isinstance(raw, dict):
            continue
        name, colour = split_name(physical)
        if name != logical:
            continue
        config = raw.get("deployed_app_config") or {}
        found.append(Incarnation(physical=physical, colour=colour, route_prefix=raw.get("route_prefix"),
                                 status=str(raw.get("status") or "UNKNOWN"), version=version_of(config),
                                 config=config if isinstance(config, dict) else {}))
    return found


def find_live(applications: dict[str, Any], logical: str, route_prefix: str | None) -> Incarnation | None:
    """The incarnation that holds the logical app's route prefix (or the only one, when just one exists)."""
    found = incarnations(applications, logical)
    if not found:
        return None
    wanted = route_prefix or "/"
    for inc in found:
        if inc.route_prefix == wanted:
            return inc
    previews = {preview_prefix(route_prefix, logical, c) for c in COLOURS}
    serving = [inc for inc in found if inc.route_prefix not in previews]
    return serving[0] if len(serving) == 1 else None


def version_of(app_config: dict[str, Any] | None) -> str | None:
    env = ((app_config or {}).get("runtime_env") or {}).get("env_vars") or {}
    value = env.get(VERSION_VAR) if isinstance(env, dict) else None
    return str(value) if value is not None else None


def with_version(app_config: dict[str, Any], version: str | None) -> dict[str, Any]:
    app = copy.deepcopy(app_config)
    if version:
        runtime_env = dict(app.get("runtime_env") or {})
        env_vars = dict(runtime_env.get("env_vars") or {})
        env_vars[VERSION_VAR] = version
        runtime_env["env_vars"] = env_vars
        app["runtime_env"] = runtime_env
    return app


def without_version(app_config: dict[str, Any] | None) -> dict[str, Any]:
    """The app config as the user wrote it: our version marker and the physical name removed."""
    app = copy.deepcopy(app_config or {})
    app.pop("name", None)
    runtime_env = app.get("runtime_env")
    if isinstance(runtime_env, dict) and isinstance(runtime_env.get("env_vars"), dict):
        runtime_env["env_vars"].pop(VERSION_VAR, None)
        if not runtime_env["env_vars"]:
            del runtime_env["env_vars"]
        if not runtime_env:
            del app["runtime_env"]
    return app
