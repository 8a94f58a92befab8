"""Ship a local ``working_dir`` to the cluster the way ``ray job submit --working-dir`` does.

The folder is hashed with Ray's own ``get_uri_for_directory`` (content-addressed: same files, same
``gcs://_ray_pkg_<hash>.zip``), zipped with Ray's ``create_package`` and PUT to the dashboard's
package store unless it is already there. Remote URIs (``s3://``, ``https://``, ``gcs://``...) pass
through untouched.
"""

from __future__ import annotations

import copy
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from ci_serve.cluster.dashboard import DashboardClient
from ci_serve.errors import InputError

_QUIET = logging.getLogger("ci_serve.packages")  # Ray's packaging logs at INFO; our step line says it
_QUIET.setLevel(logging.WARNING)


def is_remote_uri(value: str) -> bool:
    return "://" in value


def directory_uri(directory: Path, excludes: list[str] | None = None) -> str:
    """The content-addressed URI Ray would give ``directory``."""
    from ray._private.runtime_env.packaging import get_uri_for_directory

    return get_uri_for_directory(str(directory), include_gitignore=_include_gitignore(), excludes=excludes or [])


def _include_gitignore() -> bool:
    return os.environ.get("RAY_RUNTIME_ENV_IGNORE_GITIGNORE", "0") != "1"


def upload_directory(client: DashboardClient, directory: Path, excludes: list[str] | None = None) -> tuple[str, bool]:
    """Upload ``directory`` unless the cluster has it; return ``(uri, uploaded)``."""
    from ray._private.runtime_env.packaging import create_package

    directory = Path(directory).expanduser().resolve()
    if not directory.is_dir():
        raise InputError(f"working_dir {directory} is not a folder",
                         "pass an existing folder with --working-dir, or a remote URI in runtime_env.working_dir")
    uri = directory_uri(directory, excludes)
    if client.package_exists(uri):
        return uri, False
    with tempfile.TemporaryDirectory(prefix="cis-pkg-") as tmp:
        target = Path(tmp) / uri.split("://", 1)[1]
        create_package(str(directory), target, include_gitignore=_include_gitignore(), excludes=excludes or [],
                       logger=_QUIET)
        client.upload_package(uri, target.read_bytes())
    return uri, True


def ship_working_dirs(client: DashboardClient, config: dict[str, Any], *, base_dir: Path,
                      override: Path | None = None, only: set[str] | None = None) -> tuple[dict[str, Any], list[dict]]:
    """A copy of ``config`` whose local ``working_dir`` folders are replaced by uploaded package URIs.

    ``override`` (``--working-dir``) applies to every application (in ``only``, when given). A
    relative local folder is taken relative to ``base_dir`` (the config file's folder). Returns the
    new config and one record per application: ``{app, source, uri, uploaded}``.
    """
    config = copy.deepcopy(config)
    if override is not None:  # a flag: relative to where the command runs, not to the config file
        override = Path(override).expanduser().resolve()
    shipped: list[dict] = []
    cache: dict[Path, tuple[str, bool]] = {}
    for app in config.get("applications") or []:
        name = app.get("name")
        if only is not None and name not in only:
            continue
        runtime_env = app.get("runtime_env")
        runtime_env = dict(runtime_env) if isinstance(runtime_env, dict) else {}
        source = str(override) if override is not None else runtime_env.get("working_dir")
        if not source or not isinstance(source, str):
            continue
        if is_remote_uri(source):
            shipped.append({"app": name, "source": source, "uri": source, "uploaded": False})
            continue
        folder = Path(source).expanduser()
        if not folder.is_absolute():
            folder = base_dir / folder
        folder = folder.resolve()
        if folder not in cache:
            cache[folder] = upload_directory(client, folder, runtime_env.get("excludes"))
        uri, uploaded = cache[folder]
        runtime_env["working_dir"] = uri
        app["runtime_env"] = runtime_env
        shipped.append({"app": name, "source": str(folder), "uri": uri, "uploaded": uploaded})
    return config, shipped
