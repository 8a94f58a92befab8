"""The one working-dir resolution: where an application's ``runtime_env.working_dir`` is.

A value with ``://`` is a URI Ray fetches itself (``https://.../x.zip``, ``s3://``, ``gcs://``,
``local://``); anything else is a local folder, relative to the folder of the file it was written
in (the config file, or the RayService manifest), ``~`` expanded. ci-serve ships a local folder to
the cluster (deploy), puts it on the temporary head's import path (smoke), and imports the code from
it (validate, plan).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


def is_remote_uri(value: str) -> bool:
    return "://" in value


@dataclass(frozen=True)
class WorkingDir:
    """An application's ``runtime_env.working_dir``, resolved."""

    #: what the file says, or None when it sets none
    source: str | None
    #: the local folder (absolute, resolved), or None for a URI or no working_dir
    folder: Path | None = None

    @property
    def remote(self) -> bool:
        return self.source is not None and is_remote_uri(self.source)

    @property
    def local(self) -> bool:
        return self.folder is not None

    @property
    def exists(self) -> bool:
        return self.folder is not None and self.folder.is_dir()


def resolve_local_dir(source: str, base_dir: Path) -> Path:
    """A local ``working_dir`` as an absolute folder: relative to ``base_dir``, ``~`` expanded."""
    folder = Path(source).expanduser()
    if not folder.is_absolute():
        folder = Path(base_dir) / folder
    return folder.resolve()


def working_dir_of(app: Any, base_dir: Path) -> WorkingDir:
    """The working_dir of one application (a mapping from the config's ``applications``)."""
    env = app.get("runtime_env") if isinstance(app, dict) else None
    source = env.get("working_dir") if isinstance(env, dict) else None
    if not isinstance(source, str) or not source:
        return WorkingDir(None)
    if is_remote_uri(source):
        return WorkingDir(source)
    return WorkingDir(source, resolve_local_dir(source, base_dir))


def code_dir(app: Any, base_dir: Path, app_dir: str | Path | None) -> str | Path:
    """The folder an application's code is imported from: ``app_dir`` (``--app-dir``) when given,
    else its local working_dir when that folder exists, else the current folder."""
    if app_dir is not None:
        return app_dir
    wd = working_dir_of(app, base_dir)
    return wd.folder if wd.exists and wd.folder is not None else "."
