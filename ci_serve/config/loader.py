"""The one loader: a Serve config, in whatever format it was written, as one typed object.

:func:`load_config` reads a file and returns a :class:`LoadedConfig`: the multi-application config
as data (``.data``), the format it came in, what was upgraded (``.notices``), and the line and column
of every node (``.positions``), so every later problem is reported at the place the user wrote.
Formats (:mod:`ci_serve.config.formats`, :mod:`ci_serve.config.rayservice`): the current
multi-application format, the Serve 2.0 single-application format (upgraded), a Serve 1.x file
(explained), and a KubeRay ``RayService`` manifest (``spec.serveConfigV2`` read, positions moved to
the manifest's lines).

Checking is :mod:`ci_serve.config.validate`: :func:`~ci_serve.config.validate.validate_config`
returns every problem; :func:`~ci_serve.config.validate.load_valid_config` is the one entry the
commands call, and gives them a config that passed (``.model`` is then the typed
:class:`~ci_serve.config.schema.ServeConfig`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ci_serve.config.formats import (
    DEFAULT_APP_NAME,
    SINGLE_APP_KEYS,
    detect_format,
    serve_1x_index,
    upgrade_single_app,
)
from ci_serve.config.importpath import ImportPath, ImportPathError, parse_import_path
from ci_serve.config.positions import Document, Positions, load_yaml_documents
from ci_serve.config.problems import PathT, Problem, format_path
from ci_serve.config.rayservice import ServeConfigBlock, find_serve_config, looks_like_manifest, map_positions
from ci_serve.config.workdir import WorkingDir, working_dir_of
from ci_serve.errors import ConfigError

if TYPE_CHECKING:
    from ci_serve.config.schema import ServeConfig

__all__ = ["DEFAULT_APP_NAME", "SINGLE_APP_KEYS", "AppEntry", "ConfigFile", "LoadedConfig", "load_config",
           "read_text", "upgrade_single_app"]
MAX_CONFIG_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True)
class AppEntry:
    """One application of a loaded config, typed (a view over ``LoadedConfig.data``)."""

    index: int
    name: str
    route_prefix: str | None
    #: None when the import path breaks the rule (validation reports why)
    import_path: ImportPath | None
    working_dir: WorkingDir
    args: dict[str, Any]
    raw: dict[str, Any]


@dataclass
class LoadedConfig:
    """A loaded config. ``data`` is always the multi-application format."""

    path: Path
    data: dict[str, Any]
    upgraded: bool = False
    notices: list[str] = field(default_factory=list)
    positions: Positions = field(default_factory=Positions)
    #: path in ``data`` -> path in the file, for what the upgrade moved or renamed (longest prefix wins)
    moved: dict[PathT, PathT] = field(default_factory=dict)
    #: "multi-app", "single-app" (upgraded) or "rayservice" (read from a manifest's serveConfigV2)
    format: str = "multi-app"
    #: the manifest's serveConfigV2 block, for a RayService manifest
    rayservice: ServeConfigBlock | None = None
    #: filled by validation: the typed config (None until it passed the schema) and the warnings
    model: ServeConfig | None = None
    warnings: list[Problem] = field(default_factory=list)

    @property
    def base_dir(self) -> Path:
        """The folder relative paths in the config (a local working_dir) are resolved from."""
        return self.path.resolve().parent

    @property
    def applications(self) -> list[dict[str, Any]]:
        apps = self.data.get("applications")
        return apps if isinstance(apps, list) else []

    def apps(self) -> list[AppEntry]:
        """The applications that are mappings, typed; names default as Serve defaults them."""
        out = []
        for i, app in enumerate(self.applications):
            if not isinstance(app, dict):
                continue
            try:
                import_path: ImportPath | None = parse_import_path(app.get("import_path"))
            except ImportPathError:
                import_path = None
            args = app.get("args")
            out.append(AppEntry(i, str(app.get("name", DEFAULT_APP_NAME)), app.get("route_prefix", "/"),
                                import_path, working_dir_of(app, self.base_dir),
                                dict(args) if isinstance(args, dict) else {}, app))
        return out

    def file_path(self, path: PathT) -> PathT:
        """Where ``path`` (in ``data``) was written in the file."""
        path = tuple(path)
        for cut in range(len(path), -1, -1):
            if path[:cut] in self.moved:
                return self.moved[path[:cut]] + path[cut:]
        return path

    def problem(self, path: PathT, message: str, hint: str | None = None, *, key: bool = False,
                severity: str = "error") -> Problem:
        """A :class:`Problem` at ``path`` (a path in ``data``), located in the file."""
        where = self.file_path(path)
        pos = self.positions.locate(where, key=key)
        line, column = pos if pos else (None, None)
        return Problem(file=str(self.path), line=line, column=column, path=format_path(where),
                       message=message, hint=hint, severity=severity)


#: the name other modules (deploy) import; one class
ConfigFile = LoadedConfig


def load_config(path: str | Path) -> LoadedConfig:
    """Load ``path`` (a Serve config or a RayService manifest); raise :class:`ConfigError` for anything
    that is not a readable config (with a located problem where there is a line to point at)."""
    path = Path(path)
    raw = read_text(path, what="Serve config")
    docs = _parse(raw, path, offset=None)
    docs = [d for d in docs if d.data is not None] or docs[:1]  # a stray `---` at the end adds an empty one
    block = None
    if looks_like_manifest(docs):
        block = find_serve_config(docs, raw, str(path))
        inner = [d for d in _parse(block.text, path, offset=block) if d.data is not None] or \
            _parse(block.text, path, offset=block)[:1]
        if not inner or inner[0].data is None:
            raise _block_problem(path, (block.line, block.column), "spec.serveConfigV2 is empty",
                                 "put the Serve config under `serveConfigV2: |`, indented deeper than the key "
                                 "(the output of `ci-serve build`)")
        if len(inner) > 1:
            second = inner[1].node.start_mark if inner[1].node is not None else None
            at = block.position(second.line + 1, second.column + 1) if second else (block.line, block.column)
            raise _block_problem(path, at, f"spec.serveConfigV2 holds {len(inner)} YAML documents; KubeRay "
                                 "reads one Serve config", "remove the `---` lines inside serveConfigV2")
        data, positions = inner[0].data, map_positions(block, inner[0].positions)
        where = f"{path} (RayService {block.name or '(unnamed)'}, {block.api_version}, spec.serveConfigV2 at " \
                f"line {block.line})"
    else:
        if len(docs) > 1:
            raise ConfigError(f"{path}: {len(docs)} YAML documents; a Serve config is one",
                              "remove the `---` separators, or give the RayService manifest")
        data, positions = (docs[0].data, docs[0].positions) if docs else (None, Positions())
        where = str(path)
    if not isinstance(data, dict):
        kind = "an empty file" if data is None else {"list": "a list", "str": "a string"}.get(
            type(data).__name__, type(data).__name__)
        hint = "start from `ci-serve build module:app -o serve_config.yaml`"
        located = positions.locate(())
        if data is None or located is None:
            raise ConfigError(f"{where}: a Serve config must be a YAML mapping, found {kind}", hint)
        found = Problem(str(path), *located, "spec.serveConfigV2" if block else "(top level)",
                        f"a Serve config must be a YAML mapping (applications: ...), found {kind}", hint)
        raise ConfigError(f"{found.where}: {found.message}", hint, problems=[found])
    config = LoadedConfig(path=path, data=data, positions=positions, rayservice=block,
                          format="rayservice" if block else "multi-app")
    if block is not None:
        config.notices.append(f"{where}: read the Serve config from the RayService manifest; problems are "
                              "reported at the manifest's lines")
    kind = detect_format(data)
    if kind == "serve-1.x":
        index = serve_1x_index(data)
        found = config.problem(
            ("deployments", index, "import_path"),
            "this is a Serve 1.x config: each deployment has its own import_path (Ray 1.x `serve deploy`); "
            "Serve 2.x deploys applications, each one import path to a graph built with `.bind()`",
            "write `applications: [{name: my_app, import_path: module:app}]` where `app = "
            "Ingress.bind(...)` in code, and keep each deployment's options under the application's "
            "`deployments` (without import_path)", key=True)
        raise ConfigError(f"{found.where}: {found.message}", found.hint, problems=[found])
    if kind == "single-app" and block is not None:
        # KubeRay PUTs serveConfigV2 as it is to /api/serve/applications/, whose schema requires
        # `applications`: the 2.0 format is refused there, so it is not upgraded here
        old_type = "; serveConfigType: SINGLE_APP was KubeRay 0.6's, and KubeRay 1.0 dropped it" \
            if block.single_app_type else ""
        found = config.problem(
            ("import_path",), "spec.serveConfigV2 holds a single-application (Serve 2.0) config; KubeRay sends "
            "serveConfigV2 as it is to Ray's multi-application API, which refuses it (applications: field "
            f"required){old_type}",
            "write it as `applications: [{name: my_app, route_prefix: /, import_path: ...}]`, e.g. with "
            "`ci-serve build module:app --rayservice MANIFEST`", key=True)
        raise ConfigError(f"{found.where}: {found.message}", found.hint, problems=[found])
    if kind == "single-app":
        config.data, config.moved, changes = upgrade_single_app(data)
        config.upgraded = True
        if block is None:
            config.format = "single-app"
        app = config.data["applications"][0]
        named = "named in the file" if "name" in data else "Serve's name for a single application"
        config.notices.append(
            f"{where}: single-application (Serve 2.0) format upgraded to `applications: [...]` "
            f"(application name {app.get('name')!r}, {named}; route prefix {app.get('route_prefix')!r}"
            + "".join(f"; {c}" for c in changes) + "); run `ci-serve build` to write the current format")
    register_env_secrets(config.data)
    return config


def _block_problem(path: Path, at: tuple[int, int], message: str, hint: str) -> ConfigError:
    found = Problem(str(path), at[0], at[1], "spec.serveConfigV2", message, hint)
    return ConfigError(f"{found.where}: {message}", hint, problems=[found])


def _parse(text: str, path: Path, *, offset: ServeConfigBlock | None) -> list[Document]:
    """Every YAML document of ``text``; syntax errors as one located problem (in the manifest's lines
    when ``text`` is a RayService's serveConfigV2)."""
    try:
        return load_yaml_documents(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
        if isinstance(exc, yaml.reader.ReaderError):  # a character YAML refuses: located by its offset
            at = exc.position
            line, column = text.count("\n", 0, at) + 1, at - text.rfind("\n", 0, at)
            exc.problem = (  # type: ignore[attr-defined]  # read back below as the message
                f"character U+{exc.character:04X} is not allowed in YAML ({exc.reason})")
        if offset is not None and line is not None and column is not None:
            line, column = offset.position(line, column)
        problem = getattr(exc, "problem", None) or str(exc)
        where = "(YAML)" if offset is None else "spec.serveConfigV2 (YAML)"
        found = Problem(str(path), line, column, where, f"YAML syntax error: {problem}",
                        "fix the YAML at that line (indentation, a missing ':' or quote; tabs are not "
                        "allowed for indentation)")
        raise ConfigError(f"{found.where}: YAML syntax error: {problem}", found.hint, problems=[found]) from None
    except RecursionError:
        raise ConfigError(f"{path}: the YAML is nested too deeply to be a Serve config",
                          "a Serve config is a few levels deep; check the file is the one you meant") from None


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
