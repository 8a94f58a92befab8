"""Ship a local ``working_dir`` to the cluster the way ``ray job submit --working-dir`` does, but as
users keep their code: in git.

The files shipped are those Ray would ship, minus ``.git`` (Ray's packaging includes it, so every
commit would look like new code and the history would be uploaded), minus what ci-serve itself writes
(:data:`TOOL_WRITTEN`: its report folder, the Action's temporary requirements file, and the bytecode
that importing the app leaves), minus what git ignores
(``.gitignore`` files above the folder too, ``.git/info/exclude``, the user's global excludes: asked
of ``git ls-files`` itself), minus the application's ``excludes``. They are hashed the way Ray's
``get_uri_for_directory`` does (content-addressed: same files, same ``gcs://_ray_pkg_<hash>.zip``;
the very URI Ray would give when no file is executable) plus each file's executable bit, which the
zip carries and Ray restores, so a ``chmod +x`` is a change. The zip is made by Ray's
``create_package`` with the same excludes and PUT to the dashboard's package store unless it is
already there. Remote URIs (``s3://``, ``https://``, ``gcs://``...) pass through untouched.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import os
import re
import stat
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Protocol

from ci_serve.errors import InputError

_QUIET = logging.getLogger("ci_serve.packages")  # Ray's packaging logs at INFO; our step line says it
_QUIET.setLevel(logging.WARNING)


def is_remote_uri(value: str) -> bool:
    return "://" in value


def directory_uri(directory: Path, excludes: list[str] | None = None) -> str:
    """The content-addressed URI of what would be shipped from ``directory`` (see the module doc)."""
    return _hashed_uri(Path(directory).expanduser().resolve(), shipped_excludes(directory, excludes))


#: what the tool writes into a checkout, never shipped wherever ``working_dir`` is (unanchored
#: gitwildmatch: at any depth). The report folder holds timings, so shipping it would change the
#: package's hash on every run and turn a re-release of the same commit into a full deploy.
TOOL_WRITTEN = (".ci-serve", ".ci-serve-req-*", "__pycache__", "*.pyc")


def shipped_excludes(directory: Path, excludes: list[str] | None = None) -> list[str]:
    """Ray ``excludes`` patterns (gitwildmatch, relative to ``directory``) for what is not shipped."""
    return [".git", *TOOL_WRITTEN, *git_ignored(Path(directory)), *(excludes or [])]


def git_ignored(directory: Path) -> list[str]:
    """What git ignores under ``directory``, as anchored patterns; [] outside a git work tree (or
    without git). Tracked files are never in it, as in git."""
    cmd = ["git", "-c", "safe.directory=*", "-C", str(directory), "ls-files", "-z", "--others", "--ignored",
           "--exclude-standard", "--directory", "--", "."]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=120, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return []
    if proc.returncode != 0:
        return []
    # "./": the folder itself is ignored; it was named explicitly, so its own content still ships
    paths = [p for p in proc.stdout.decode("utf-8", errors="surrogateescape").split("\0") if p not in ("", "./")]
    # no trailing "/": Ray matches a folder's own path without one, and would hash the folder's name
    return ["/" + re.sub(r"([\\*?\[\]])", r"\\\1", p.rstrip("/")) for p in paths]


def _hashed_uri(directory: Path, excludes: list[str]) -> str:
    """Ray's directory hash (``_hash_directory``: XOR of sha1(path + content) over files and folders)
    with an XOR of sha1(``+x`` path) for each executable file."""
    from ray._private.runtime_env.packaging import (
        RAY_PKG_PREFIX,
        _dir_travel,
        _get_excludes,
        _hash_file_content_or_directory_name,
        _xor_bytes,
    )

    hash_val = b"0" * 8

    def handler(path: Path) -> None:
        nonlocal hash_val
        hash_val = _xor_bytes(hash_val, _hash_file_content_or_directory_name(path, directory, logger=_QUIET))
        mode = path.lstat().st_mode
        if stat.S_ISREG(mode) and mode & 0o111:
            rel = str(path.relative_to(directory))
            hash_val = _xor_bytes(hash_val, hashlib.sha1(b"+x " + rel.encode("utf-8", "surrogateescape")).digest())

    _dir_travel(directory, [_get_excludes(directory, excludes)], handler, include_gitignore=_include_gitignore(),
                logger=_QUIET)
    return f"gcs://{RAY_PKG_PREFIX}{hash_val.hex()}.zip"


def _include_gitignore() -> bool:
    return os.environ.get("RAY_RUNTIME_ENV_IGNORE_GITIGNORE", "0") != "1"


class PackageStore(Protocol):
    """Where packages go: the dashboard (:class:`DashboardClient`), or a stand-in that uploads nothing."""

    def package_exists(self, uri: str) -> bool: ...

    def upload_package(self, uri: str, data: bytes) -> None: ...


def upload_directory(client: PackageStore, directory: Path, excludes: list[str] | None = None) -> tuple[str, bool]:
    """Upload ``directory`` unless the cluster has it; return ``(uri, uploaded)``."""
    from ray._private.runtime_env.packaging import create_package

    directory = Path(directory).expanduser().resolve()
    if not directory.is_dir():
        raise InputError(f"working_dir {directory} is not a folder",
                         "pass an existing folder with --working-dir, or a remote URI in runtime_env.working_dir")
    all_excludes = shipped_excludes(directory, excludes)
    uri = _hashed_uri(directory, all_excludes)
    if client.package_exists(uri):
        return uri, False
    with tempfile.TemporaryDirectory(prefix="cis-pkg-") as tmp:
        target = Path(tmp) / uri.split("://", 1)[1]
        create_package(str(directory), target, include_gitignore=_include_gitignore(), excludes=all_excludes,
                       logger=_QUIET)
        client.upload_package(uri, target.read_bytes())
    return uri, True


def ship_working_dirs(client: PackageStore, config: dict[str, Any], *, base_dir: Path,
                      override: Path | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A copy of ``config`` whose local ``working_dir`` folders are replaced by uploaded package URIs.

    ``override`` (``--working-dir``) applies to every application. A
    relative local folder is taken relative to ``base_dir`` (the config file's folder). Returns the
    new config and one record per application: ``{app, source, uri, uploaded}``.
    """
    config = copy.deepcopy(config)
    if override is not None:  # a flag: relative to where the command runs, not to the config file
        override = Path(override).expanduser().resolve()
    shipped: list[dict[str, Any]] = []
    cache: dict[tuple[Path, tuple[str, ...]], tuple[str, bool]] = {}  # one package per (folder, excludes)
    for app in config.get("applications") or []:
        name = app.get("name")
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
        excludes = runtime_env.get("excludes")
        excludes = [str(e) for e in excludes] if isinstance(excludes, list) else []
        key = (folder, tuple(excludes))
        if key not in cache:
            cache[key] = upload_directory(client, folder, excludes)
        uri, uploaded = cache[key]
        runtime_env["working_dir"] = uri
        app["runtime_env"] = runtime_env
        shipped.append({"app": name, "source": str(folder), "uri": uri, "uploaded": uploaded})
    return config, shipped


class NoUpload:
    """A package store that says every package is there: the URIs a deploy would use, nothing uploaded
    (``plan``; ``promote`` telling whether the config already runs)."""

    def __init__(self, address: str):
        self.address = address

    def package_exists(self, uri: str) -> bool:
        return True

    def upload_package(self, uri: str, data: bytes) -> None:  # pragma: no cover - never called
        raise AssertionError("never uploads")
