"""What ``ci-serve smoke TARGET`` deploys, decided and checked before any Ray process starts.

TARGET is an import path (``module:attribute``, an application or a builder function, with
``key=value`` arguments) served as one application named ``default`` at route prefix ``/`` — exactly
what ``serve run`` does — or a Serve config file (multi-application, or the 2.0 single-application
format, upgraded). Either way the result is one multi-application config: the head imports the code
from it the way a deploy would.

Import search path on the head (``PYTHONPATH`` of the temporary head): ``--app-dir`` first, then,
for a config file, the config file's folder, then every local ``runtime_env.working_dir`` (resolved
relative to the config file; it is taken out of the runtime_env, since a local folder is not a URI
Serve can fetch). Remote ``working_dir`` URIs are left for Ray to fetch.
"""

from __future__ import annotations

import difflib
import importlib.machinery
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from ci_serve.config.importpath import import_path_problem, looks_like_config_file, parse_import_path
from ci_serve.config.loader import DEFAULT_APP_NAME, LoadedConfig, load_config
from ci_serve.config.workdir import resolve_local_dir
from ci_serve.errors import ConfigError, InputError
from ci_serve.smoke.requests_file import SmokeRequest

#: runtime_env fields that bring code or packages from elsewhere: the module may not be local
_REMOTE_CODE_KEYS = ("pip", "conda", "uv", "py_modules", "container", "image_uri", "py_executable")


@dataclass
class AppTarget:
    name: str
    import_path: str
    route_prefix: str | None
    args: dict[str, Any] = field(default_factory=dict)
    #: False when the runtime_env brings code from elsewhere (pip, a remote working_dir, ...)
    local_code: bool = True


@dataclass
class SmokeTarget:
    """A multi-application config to deploy, the apps in it and where their code is."""

    source: str
    config: dict[str, Any]
    apps: list[AppTarget]
    python_path: list[str]
    notices: list[str] = field(default_factory=list)
    #: keys Ray accepts and ignores, rendered as validate prints them (file:line: path: message / fix)
    warnings: list[str] = field(default_factory=list)

    def app(self, name: str) -> AppTarget:
        return next(a for a in self.apps if a.name == name)


def parse_args(pairs: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InputError(f"argument {pair!r} is not key=value",
                             "arguments after the import path are passed to a builder function as key=value")
        out[key] = value
    return out


def resolve_target(target: str, args: list[str], app_dir: str | Path, ray_version: str | None = None) -> SmokeTarget:
    """What to smoke-test: a config file (checked by the rules of ``ray_version``, the Ray the test runs
    on; None: ci-serve's own) or an import path."""
    app_dir = Path(app_dir).resolve()
    if not app_dir.is_dir():
        raise InputError(f"--app-dir {app_dir} is not a folder", "pass the folder that holds the application's module")
    path = Path(target)
    if looks_like_config_file(target, exists=path.exists()):
        if args:
            raise InputError("key=value arguments are only for an import path target",
                             "put `args:` under the application in the config file")
        return _from_config(path, app_dir, ray_version)
    problem = import_path_problem(target)
    if problem:
        raise InputError(f"{target!r} is neither a Serve config file nor an import path `module:attribute` "
                         f"({problem[0]})",
                         "e.g. `ci-serve smoke fruit:deployment_graph --app-dir examples/fruit` or "
                         "`ci-serve smoke examples/fruit/serve_config.yaml`")
    app = AppTarget(DEFAULT_APP_NAME, target, "/", parse_args(args))
    config = {"applications": [{"name": app.name, "route_prefix": "/", "import_path": target,
                                **({"args": app.args} if app.args else {})}]}
    smoke = SmokeTarget(target, config, [app], [str(app_dir)])
    check_modules(smoke)
    return smoke


def _from_config(path: Path, app_dir: Path, ray_version: str | None = None) -> SmokeTarget:
    loaded = load_config(path)
    warnings = _validate(loaded, ray_version)  # first, on what the user wrote: every problem at its file:line
    data = loaded.data
    apps_raw = loaded.applications
    if not apps_raw:
        raise ConfigError(f"{path}: no applications in the config", "add `applications: [{name, import_path}]`")
    python_path = [str(app_dir), str(path.resolve().parent)]
    apps: list[AppTarget] = []
    for i, raw in enumerate(apps_raw):
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: applications[{i}] is not a mapping")
        name = raw.get("name", DEFAULT_APP_NAME if len(apps_raw) == 1 else None)
        import_path = raw.get("import_path")
        wrong = import_path_problem(import_path)
        if wrong:
            raise ConfigError(f"{path}: applications[{i}]: {wrong[0]}", wrong[1])
        runtime_env = raw.get("runtime_env") or {}
        local_code = not any(runtime_env.get(k) for k in _REMOTE_CODE_KEYS)
        working_dir = runtime_env.get("working_dir")
        if isinstance(working_dir, str) and "://" not in working_dir:
            local_dir = resolve_local_dir(working_dir, path.resolve().parent)
            if not local_dir.is_dir():
                raise ConfigError(f"{path}: applications[{i}].runtime_env.working_dir {working_dir!r} is not a folder "
                                  f"(resolved relative to the config file: {local_dir})")
            python_path.insert(0, str(local_dir))
            raw["runtime_env"] = {k: v for k, v in runtime_env.items() if k != "working_dir"}
            loaded.notices.append(f"{name}: local working_dir {working_dir} put on the head's import path")
        elif working_dir:
            local_code = False
        route_prefix = raw.get("route_prefix", "/")
        apps.append(AppTarget(str(name), cast(str, import_path), route_prefix, dict(raw.get("args") or {}), local_code))
    seen = [a.name for a in apps]
    dupes = sorted({n for n in seen if seen.count(n) > 1})
    if dupes:
        raise ConfigError(f"{path}: application name(s) used twice: {', '.join(dupes)}")
    prefixes = [a.route_prefix for a in apps if a.route_prefix is not None]
    if len(set(prefixes)) != len(prefixes):
        raise ConfigError(f"{path}: two applications share a route prefix", "give each application its own")
    smoke = SmokeTarget(str(path), data, apps, list(dict.fromkeys(python_path)), loaded.notices, warnings)
    check_modules(smoke)
    return smoke


def _validate(loaded: LoadedConfig, ray_version: str | None = None) -> list[str]:
    """``ci-serve validate --no-import``'s checks (structure, types, what the controller would
    reject), by the rules of the Ray the smoke test runs on (a release newer than ci-serve's rules: its
    newest), so a bad config is exit 2 with file:line before a head starts. Ray is not imported here:
    that would put ~1.5 s in front of the head's launch instead of beside its boot."""
    from ci_serve.config.rules import rules_for
    from ci_serve.config.validate import validate_config

    path = loaded.path
    try:
        rules_for(ray_version)
    except InputError:  # older than 2.9 is refused before this; a release newer than the rules: the newest
        ray_version = None
    # the object already loaded, not the path again
    result = validate_config(loaded, check_imports=False, ray_version=ray_version)
    if not result.ok:
        noun = "problem" if len(result.problems) == 1 else "problems"
        raise ConfigError(f"{path}: {len(result.problems)} {noun} in the Serve config",
                          "`ci-serve validate` checks a config on its own",
                          problems=result.problems, details="\n".join(p.render() for p in result.problems))
    return [w.render() for w in result.warnings]


def check_modules(target: SmokeTarget) -> None:
    """Exit 2 when an application's top-level module is nowhere on the import path (not executed)."""
    search = target.python_path + sys.path
    for app in target.apps:
        if not app.local_code:
            continue
        module = parse_import_path(app.import_path).top_module
        if module in sys.builtin_module_names:
            continue
        if importlib.machinery.PathFinder.find_spec(module, search) is None:
            raise InputError(f"module {module!r} of {app.import_path} not found in {target.python_path[0]}",
                             "run from the folder that holds it or pass --app-dir FOLDER")


def route_for(target: SmokeTarget, request: SmokeRequest) -> tuple[AppTarget, str]:
    """The application a request goes to and its path from the Serve root."""
    served = [a for a in target.apps if a.route_prefix is not None]
    if request.app is None:
        if len(served) != 1:
            names = ", ".join(a.name for a in served) or "none"
            raise InputError(f"request {request.name!r} needs `app:` (the target serves {names})")
        app = served[0]
    else:
        app_names = [a.name for a in target.apps]
        if request.app not in app_names:
            close = difflib.get_close_matches(request.app, app_names, n=1)
            raise InputError(f"request {request.name!r}: no application named {request.app!r} in {target.source}"
                             + (f" (did you mean {close[0]!r}?)" if close else ""),
                             f"applications: {', '.join(app_names)}")
        app = target.app(request.app)
        if app.route_prefix is None:
            raise InputError(f"request {request.name!r}: application {app.name!r} has no route prefix (no HTTP)")
    return app, join_route(app.route_prefix or "/", request.path)


def join_route(prefix: str, path: str) -> str:
    if prefix in ("", "/"):
        return path
    return prefix.rstrip("/") + (path if path != "/" else "")
