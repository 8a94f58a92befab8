"""Read a Serve config file into the multi-application format, whatever format it was written in.

The Serve 2.0 guide's single-application format (top-level ``import_path``, ``runtime_env``,
``deployments``) is upgraded to ``applications: [...]`` with a notice, never rejected: current Ray's
``serve deploy`` fails on it with a raw pydantic traceback.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ci_serve.errors import ConfigError

#: name given to the application of an upgraded 2.0 file (what `serve run` calls a single app)
DEFAULT_APP_NAME = "default"
SINGLE_APP_KEYS = ("import_path", "runtime_env", "deployments", "args")
MAX_CONFIG_BYTES = 10 * 1024 * 1024


@dataclass
class ConfigFile:
    """A loaded config. ``data`` is always the multi-application format."""

    path: Path
    data: dict[str, Any]
    upgraded: bool = False
    notices: list[str] = field(default_factory=list)

    @property
    def applications(self) -> list[dict[str, Any]]:
        apps = self.data.get("applications")
        return apps if isinstance(apps, list) else []


def load_config(path: str | Path) -> ConfigFile:
    """Load ``path``; raise :class:`ConfigError` for anything that is not a readable YAML mapping."""
    path = Path(path)
    raw = read_text(path, what="Serve config")
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: YAML syntax error: {problem}",
                          "fix the YAML at that line (indentation, a missing ':' or quote)") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a Serve config must be a YAML mapping, found {type(data).__name__}",
                          "start from `ci-serve build module:app -o serve_config.yaml`")
    config = ConfigFile(path=path, data=data)
    if "applications" not in data and any(k in data for k in SINGLE_APP_KEYS):
        config.data = upgrade_single_app(data)
        config.upgraded = True
        config.notices.append(
            f"{path}: single-application (Serve 2.0) format upgraded to `applications: [...]` "
            f"(application name {DEFAULT_APP_NAME!r}, route prefix '/'); "
            "run `ci-serve build` to write the current format")
    return config


def upgrade_single_app(data: dict[str, Any]) -> dict[str, Any]:
    """The 2.0 format as one application of the multi-application format."""
    app: dict[str, Any] = {"name": DEFAULT_APP_NAME, "route_prefix": "/"}
    rest: dict[str, Any] = {}
    for key, value in data.items():
        if key in ("host", "port"):  # 2.0 put the HTTP options at the top level
            rest.setdefault("http_options", {})[key] = value
        elif key in ("http_options", "grpc_options", "logging_config", "proxy_location", "target_capacity"):
            rest[key] = value
        else:
            app[key] = value
    return {**rest, "applications": [app]}


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
