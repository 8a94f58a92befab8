"""The Serve config formats people have, told apart, and the older ones brought to the current one.

- **multi-application** (Ray >= 2.4, what `serve build` writes): ``applications: [...]``.
- **Serve 2.0 single application** (the 2.0 production guide; top-level ``import_path``,
  ``runtime_env``, ``deployments``): upgraded to one application, never rejected. Current Ray's
  ``serve deploy`` fails on it with a raw pydantic traceback. The application keeps the file's
  ``name`` (``default`` when it has none, as Serve named it); ``max_concurrent_queries`` becomes
  ``max_ongoing_requests``, a deployment's ``route_prefix`` becomes the application's, the
  ``null`` placeholders the old `serve build` wrote are dropped (Ray 2.60 rejects
  ``ray_actor_options: null``) and top-level ``host``/``port`` move to ``http_options``.
- **Serve 1.x** (Ray 1.x ``serve deploy``): no application import path, an ``import_path`` on each
  deployment instead. There is no graph to upgrade to: it is explained, not guessed.
"""

from __future__ import annotations

from typing import Any, Literal

from ci_serve.config.problems import PathT

Format = Literal["multi-app", "single-app", "serve-1.x"]
#: name Serve gave the application of a single-application config (what `serve run` calls it)
DEFAULT_APP_NAME = "default"
SINGLE_APP_KEYS = ("import_path", "runtime_env", "deployments", "args")
_TOP_LEVEL_KEYS = ("http_options", "grpc_options", "logging_config", "proxy_location", "target_capacity",
                   "controller_options", "tracing_config")
#: 2.0 deployment fields written as ``null`` by the old `serve build`, meaning "not set"
_NULL_MEANS_UNSET = ("route_prefix", "ray_actor_options")


def detect_format(data: dict[str, Any]) -> Format:
    if "applications" in data:
        return "multi-app"
    deployments = data.get("deployments")
    per_deployment = isinstance(deployments, list) and any(
        isinstance(d, dict) and "import_path" in d for d in deployments)
    if per_deployment and "import_path" not in data:
        return "serve-1.x"
    if any(k in data for k in SINGLE_APP_KEYS):
        return "single-app"
    return "multi-app"


def serve_1x_index(data: dict[str, Any]) -> int:
    """The first deployment with its own import_path (where a 1.x file is reported)."""
    return next(i for i, d in enumerate(data["deployments"]) if isinstance(d, dict) and "import_path" in d)


def upgrade_single_app(data: dict[str, Any]) -> tuple[dict[str, Any], dict[PathT, PathT], list[str]]:
    """The 2.0 format as one application of the multi-application format.

    Returns the new data, where each moved part came from in the file, and what was changed.
    """
    app: dict[str, Any] = {"name": DEFAULT_APP_NAME, "route_prefix": "/"}
    rest: dict[str, Any] = {}
    moved: dict[PathT, PathT] = {("applications", 0): ()}
    for key, value in data.items():
        if key in ("host", "port"):  # 2.0 put the HTTP options at the top level
            rest.setdefault("http_options", {})[key] = value
            moved[("http_options", key)] = (key,)
        elif key in _TOP_LEVEL_KEYS:
            rest[key] = value
        else:
            app[key] = value
            moved[("applications", 0, key)] = (key,)
    changes: list[str] = []
    deployments = app.get("deployments")
    if isinstance(deployments, list):
        app["deployments"] = [dict(d) if isinstance(d, dict) else d for d in deployments]
        changes = _upgrade_deployments(app, moved)
    return {**rest, "applications": [app]}, moved, changes


def _upgrade_deployments(app: dict[str, Any], moved: dict[PathT, PathT]) -> list[str]:
    changes: list[str] = []
    renamed: list[int] = []
    prefixes: dict[int, Any] = {}
    for index, dep in enumerate(app["deployments"]):
        if not isinstance(dep, dict):
            continue
        if "max_concurrent_queries" in dep and "max_ongoing_requests" not in dep:
            dep["max_ongoing_requests"] = dep.pop("max_concurrent_queries")
            moved[("applications", 0, "deployments", index, "max_ongoing_requests")] = \
                ("deployments", index, "max_concurrent_queries")
            renamed.append(index)
        for key in _NULL_MEANS_UNSET:
            if key in dep and dep[key] is None:
                del dep[key]
        if isinstance(dep.get("route_prefix"), str):
            prefixes[index] = dep["route_prefix"]
    if renamed:
        changes.append(f"max_concurrent_queries renamed max_ongoing_requests in {len(renamed)} deployment(s)")
    if len(set(prefixes.values())) == 1:
        # 2.0 gave the ingress deployment the route prefix; it belongs to the application now
        value = next(iter(prefixes.values()))
        for index in prefixes:
            del app["deployments"][index]["route_prefix"]
        app["route_prefix"] = value
        moved[("applications", 0, "route_prefix")] = ("deployments", next(iter(prefixes)), "route_prefix")
        changes.append(f"deployment route_prefix {value!r} moved to the application")
    return changes
