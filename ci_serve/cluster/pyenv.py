"""Isolated Python environments with a pinned Ray, built once per requirements content and reused.

A team's cluster runs the Ray it pinned, not ours. ``ensure_env(requirements)`` returns a virtual
environment holding exactly what the requirements text asks for (the Ray pin included), built with
uv (pip when uv is missing) under a cache folder, in a subfolder named by the hash of the text and
of the interpreter. A second call with the same text reuses it; an environment whose build did not
finish (no marker file) is removed and built again, so nothing half-installed is ever used.
Concurrent callers wait for each other on a lock file rather than build twice.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ci_serve import secrets
from ci_serve.errors import InputError

CACHE_VAR = "CI_SERVE_ENV_CACHE"
MARKER = "ci-serve-env.json"
#: bump when the layout of an environment changes, so old ones are not reused (2: bytecode compiled at build)
_FORMAT = 2


class EnvBuildError(InputError):
    """The requirements could not be installed (exit 2): nothing was started, nothing is reused."""


@dataclass(frozen=True)
class PyEnv:
    """A finished environment."""

    path: Path
    #: installed by this call (False: an earlier build was reused)
    built: bool
    #: seconds this call spent building or finding it
    seconds: float
    #: "uv" or "pip" (the tool that built it)
    installer: str

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    @property
    def ray(self) -> Path:
        return self.path / "bin" / "ray"

    @property
    def ray_version(self) -> str | None:
        version: str | None = json.loads((self.path / MARKER).read_text()).get("ray_version")
        return version


def cache_root() -> Path:
    """``$CI_SERVE_ENV_CACHE``, else ``$XDG_CACHE_HOME/ci-serve/envs``, else ``~/.cache/ci-serve/envs``."""
    if os.environ.get(CACHE_VAR):
        return Path(os.environ[CACHE_VAR])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ci-serve" / "envs"


def env_key(requirements: str, python: str | None = None) -> str:
    """The cache key: the requirements' meaningful lines, the interpreter and its version."""
    python = python or _base_python()
    lines = [line.strip() for line in requirements.splitlines()]
    text = "\n".join(line for line in lines if line and not line.startswith("#"))
    seed = json.dumps([_FORMAT, text, python, sys.version_info[:2]])
    return hashlib.sha256(seed.encode()).hexdigest()[:20]


def is_ray_release(version: str) -> bool:
    """``2.40.0``, ``2.9``, ``2.41.0rc1``: the shape of a Ray release number."""
    return re.fullmatch(r"\d+\.\d+(\.\d+)?([a-z0-9.+-]*)", version) is not None


def ray_requirements(version: str) -> str:
    """The requirements text ``--ray-version X`` stands for."""
    if not is_ray_release(version):
        raise InputError(f"--ray-version {version!r} is not a Ray release number", "for example --ray-version 2.40.0")
    return f"ray[serve]=={version}\n"


def ensure_env(requirements: str, *, root: Path | None = None, log: Callable[[str], object] | None = None,
               installer: str | None = None) -> PyEnv:
    """Return the environment for ``requirements``, building it first when no finished one exists.

    ``installer`` forces "uv" or "pip" (the benchmark compares them); default: uv when found."""
    started = time.monotonic()
    root = root or cache_root()
    key = env_key(requirements)
    path = root / key
    try:
        root.mkdir(parents=True, exist_ok=True)
        lock = open(root / f"{key}.lock", "w")
    except OSError as exc:
        raise _cache_error(root, exc) from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        info = _finished(path)
        if info is not None:
            return PyEnv(path, False, time.monotonic() - started, info.get("installer", "?"))
        shutil.rmtree(path, ignore_errors=True)  # a build that did not finish
        try:
            installer = _build(path, requirements, log, installer)
            info = {"requirements": secrets.mask_urls(requirements), "installer": installer,
                    "ray_version": _ray_version(path), "built_at": time.time()}
            partial = path / f"{MARKER}.partial"  # the marker appears whole or not at all
            partial.write_text(json.dumps(info, indent=2))
            os.replace(partial, path / MARKER)  # written last: the env is complete
        except BaseException as exc:
            shutil.rmtree(path, ignore_errors=True)
            if isinstance(exc, OSError):
                raise _cache_error(root, exc) from None
            raise
        return PyEnv(path, True, time.monotonic() - started, installer)


def _finished(path: Path) -> dict[str, Any] | None:
    """The marker of a finished environment, or None (none, unreadable, or its Python gone)."""
    try:
        info = json.loads((path / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and (path / "bin" / "python").exists() else None


def _cache_error(root: Path, exc: OSError) -> EnvBuildError:
    return EnvBuildError(f"cannot build the Python environment in the cache folder {root}: "
                         f"{exc.strerror or exc} ({type(exc).__name__})",
                         f"make the folder writable and free some space, or point ${CACHE_VAR} at another folder")


def uv_executable() -> str | None:
    """uv from this environment (the ``uv`` package), else from PATH."""
    beside = Path(sys.executable).parent / "uv"
    if beside.exists():
        return str(beside)
    try:
        from uv import find_uv_bin

        return str(find_uv_bin())
    except Exception:  # noqa: BLE001 - the package is optional; PATH is the fallback
        return shutil.which("uv")


def _base_python() -> str:
    return os.path.realpath(getattr(sys, "_base_executable", sys.executable))


def _build(path: Path, requirements: str, log: Callable[[str], object] | None, installer: str | None = None) -> str:
    req_file = path.parent / f"{path.name}.requirements.txt"
    req_file.write_text(requirements)
    uv = uv_executable() if installer in (None, "uv") else None
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env.pop("VIRTUAL_ENV", None)
    if log:
        log(f"building a Python environment with {'uv' if uv else 'pip'} (first run for these requirements)")
    if uv:
        _run([uv, "venv", "--quiet", "--python", _base_python(), str(path)], env, requirements)
        # Compiled now, once: Ray starts its dashboard with `python -B`, which never writes bytecode, so
        # without it every head start compiles the dashboard's modules from source, and on a busy 2-core
        # runner Ray 2.46's dashboard then misses the 20 s Ray gives it to come up.
        _run([uv, "pip", "install", "--quiet", "--compile-bytecode", "--python", str(path / "bin" / "python"),
              "-r", str(req_file)], env, requirements)
        return "uv"
    _run([_base_python(), "-m", "venv", str(path)], env, requirements)
    _run([str(path / "bin" / "python"), "-m", "pip", "install", "--quiet", "-r", str(req_file)], env, requirements)
    return "pip"


def _run(cmd: list[str], env: dict[str, str], requirements: str) -> None:
    proc = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if proc.returncode == 0:
        return
    output = secrets.mask_urls((proc.stderr or proc.stdout or "").strip())
    requirements = secrets.mask_urls(requirements)
    raise EnvBuildError(f"the requirements could not be installed: {_summary(output, requirements)}",
                        "check the pins in the requirements file: each package must exist on the package index "
                        "and all pins must be satisfiable together",
                        details="\n".join(output.splitlines()[-25:]))


def _summary(output: str, requirements: str) -> str:
    """The resolver's key sentence: which package, and why (uv's ``cause:`` paragraph, pip's error)."""
    lines = [line.strip().lstrip("×╰─▶ ").strip() for line in output.splitlines()]
    for i, text in enumerate(lines):
        if re.match(r"(cause:\s*)?because ", text, re.I):
            cause = [re.sub(r"^cause:\s*", "", text)]
            for more in lines[i + 1:]:  # the paragraph goes on while the lines are not a new message
                if not more or re.match(r"(error|warning|hint|help)\b", more, re.I):
                    break
                cause.append(more)
            return " ".join(cause)
    for text in lines:
        if re.search(r"(not found|no version|no solution|could not find|conflict|no matching|no space left|"
                     r"read-only file|permission denied|failed to fetch)", text, re.I):
            return text
    names = [re.split(r"[=<>!~; ]", line.strip())[0] for line in requirements.splitlines()
             if line.strip() and not line.strip().startswith(("#", "-"))]
    return f"installing {', '.join(names) or 'nothing'} failed"


def _ray_version(path: Path) -> str | None:
    proc = subprocess.run([str(path / "bin" / "python"), "-c",
                           "import importlib.metadata as m; print(m.version('ray'))"],
                          capture_output=True, text=True)
    return proc.stdout.strip() or None if proc.returncode == 0 else None
