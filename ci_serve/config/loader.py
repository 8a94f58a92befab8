"""Read a Serve config file into the multi-application format, whatever format it was written in.

The Serve 2.0 guide's single-application format (top-level ``import_path``, ``runtime_env``,
``deployments``) is upgraded to ``applications: [...]`` with a notice, never rejected: current Ray's
``serve deploy`` fails on it with a raw pydantic traceback. The upgrade also carries the 2.0
deployment fields over: ``max_concurrent_queries`` becomes ``max_ongoing_requests``, a deployment's
``route_prefix`` becomes the application's, and the ``null`` placeholders ``serve build`` used to write
are dropped (Ray 2.60 rejects ``ray_actor_options: null``).

Every node's line and column are kept (:mod:`ci_serve.config.positions`), so a problem found in the
upgraded data is reported at the place in the file the user wrote.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ci_serve.config.positions import Positions, load_yaml_with_positions
from ci_serve.config.problems import PathT, Problem, format_path
from ci_serve.errors import ConfigError

#: name given to the application of an upgraded 2.0 file (what `serve run` calls a single app)
DEFAULT_APP_NAME = "default"
SINGLE_APP_KEYS = ("import_path", "runtime_env", "deployments", "args")
MAX_CONFIG_BYTES = 10 * 1024 * 1024
#: 2.0 deployment fields written as ``null`` by the old `serve build`, meaning "not set"
_NULL_MEANS_UNSET = ("route_prefix", "ray_actor_options")


@dataclass
class ConfigFile:
    """A loaded config. ``data`` is always the multi-application format."""

    path: Path
    data: dict[str, Any]
    upgraded: bool = False
    notices: list[str] = field(default_factory=list)
    positions: Positions = field(default_factory=Positions)
    #: path in ``data`` -> path in the file, for what the upgrade moved or renamed (longest prefix wins)
    moved: dict[PathT, PathT] = field(default_factory=dict)

    @property
    def applications(self) -> list[dict[str, Any]]:
        apps = self.data.get("applications")
        return apps if isinstance(apps, list) else []

    def file_path(self, path: PathT) -> PathT:
        """Where ``path`` (in ``data``) was written in the file."""
        path = tuple(path)
        for cut in range(len(path), -1, -1):
            if path[:cut] in self.moved:
                return self.moved[path[:cut]] + path[cut:]
        return path

    def problem(self, path: PathT, message: str, hint: str | None = None, *, key: bool = False) -> Problem:
        """A :class:`Problem` at ``path`` (a path in ``data``), located in the file."""
        where = self.file_path(path)
        pos = self.positions.locate(where, key=key)
        line, column = pos if pos else (None, None)
        return Problem(file=str(self.path), line=line, column=column, path=format_path(where),
                       message=message, hint=hint)


def load_config(path: str | Path) -> ConfigFile:
    """Load ``path``; raise :class:`ConfigError` for anything that is not a readable YAML mapping."""
    path = Path(path)
    raw = read_text(path, what="Serve config")
    try:
        data, positions = load_yaml_with_positions(raw)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
        problem = getattr(exc, "problem", None) or str(exc)
        found = Problem(str(path), line, column, "(YAML)", f"YAML syntax error: {problem}",
                        "fix the YAML at that line (indentation, a missing ':' or quote; tabs are not "
                        "allowed for indentation)")
        raise ConfigError(f"{found.where}: YAML syntax error: {problem}", found.hint, problems=[found]) from None
    except RecursionError:
        raise ConfigError(f"{path}: the YAML is nested too deeply to be a Serve config",
                          "a Serve config is a few levels deep; check the file is the one you meant") from None
    if not isinstance(data, dict):
        kind = "an empty file" if data is None else type(data).__name__
        raise ConfigError(f"{path}: a Serve config must be a YAML mapping, found {kind}",
                          "start from `ci-serve build module:app -o serve_config.yaml`")
    config = ConfigFile(path=path, data=data, positions=positions)
    if "applications" not in data and any(k in data for k in SINGLE_APP_KEYS):
        config.data, config.moved, changes = upgrade_single_app(data)
        config.upgraded = True
        config.notices.append(
            f"{path}: single-application (Serve 2.0) format upgraded to `applications: [...]` "
            f"(application name {DEFAULT_APP_NAME!r}, route prefix "
            f"{config.data['applications'][0].get('route_prefix')!r}"
            + "".join(f"; {c}" for c in changes) + "); run `ci-serve build` to write the current format")
    register_env_secrets(config.data)
    return config


_SECRET_NAME = ("KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "AUTH", "PRIVATE")


def register_env_secrets(data: dict[str, Any]) -> None:
    """``runtime_env.env_vars`` values are redacted wherever a config is shown; values that look like
    credentials (a secret-sounding name, or 16+ characters) are also masked in free text (an error
    message, an app's echoed answer) from now on."""
    from ci_serve import secrets

    stack: list[Any] = [data]  # applications' and deployments' (ray_actor_options) runtime_envs alike
    seen: set[int] = set()  # YAML aliases share nodes: visit each once (an alias bomb stays cheap)
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            runtime_env = node.get("runtime_env")
            env_vars = runtime_env.get("env_vars") if isinstance(runtime_env, dict) else None
            for key, value in env_vars.items() if isinstance(env_vars, dict) else ():
                if isinstance(value, str) and (len(value) >= 16 or any(w in str(key).upper() for w in _SECRET_NAME)):
                    secrets.register(value)
            stack.extend(v for k, v in node.items() if k != "runtime_env")


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
        elif key in ("http_options", "grpc_options", "logging_config", "proxy_location", "target_capacity"):
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


def read_text(path: Path, *, what: str) -> str:
    """Read a user's file as UTF-8 text with a clear error for every way that can fail."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist", "check the path (it is relative to the current folder)") \
            from None
    except OSError as exc:
        raise ConfigError(f"{what} {path} cannot be read: {exc.strerror}") from None
    if path.is_dir():
        raise ConfigError(f"{what} {path} is a folder, not a file")
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{what} {path} is {size} bytes; refusing files over {MAX_CONFIG_BYTES} bytes")
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what} {path} is not UTF-8 text (byte {exc.start})",
                          "save the file as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"{what} {path} cannot be read: {exc.strerror}") from None
