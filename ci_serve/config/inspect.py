"""What an application graph sets in code, learned in a separate process.

:func:`inspect_app` imports ``IMPORT_PATH`` from ``app_dir`` in a child Python
(``python -m ci_serve.cluster.inspect_worker``), the way ``serve run`` and ``serve build`` do, and
returns its deployments with the options set in code, in the Serve config's field names. No Ray
cluster is needed: ``.bind()`` and Serve's ``build_app`` run without ``ray.init``. A module that
raises, hangs or kills its interpreter becomes an :class:`AppImportError` (exit 2) carrying the
exception's last line and a hint; it never crashes the caller.

:func:`merge_deployment_options` is the override rule the Serve controller applies: the config file
over the code over Serve's defaults, field by field, each field's value replacing the code's whole
value (so ``ray_actor_options`` and ``user_config`` replace the code's dictionary, they are not merged).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ci_serve.errors import ConfigError

WORKER_MODULE = "ci_serve.cluster.inspect_worker"
_DETAIL_LINES = 15


class AppImportError(ConfigError):
    """An import path could not be imported or built into an application graph.

    Bad input (exit 2) to the commands that read the code before anything runs (``validate``,
    ``build``, ``plan``); the smoke test, for which the app failing to start is the check failing,
    reports it as a :class:`~ci_serve.errors.CheckFailed` (exit 1) instead.
    """

    def __init__(self, message: str, hint: str | None = None, *, import_path: str = "",
                 last_line: str = "", details: str | None = None):
        super().__init__(message, hint, details=details)
        self.import_path = import_path
        self.last_line = last_line


@dataclass
class AppGraph:
    """An application graph as built from code."""

    import_path: str
    app_dir: str
    #: name of the ingress deployment (the one that receives HTTP requests)
    ingress: str
    #: deployment name -> options set in code (config field names; only what the code set)
    deployments: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def deployment_names(self) -> list[str]:
        return list(self.deployments)


def inspect_app(import_path: str, app_dir: str | Path = ".", args: dict[str, Any] | None = None,
                timeout: float = 60) -> AppGraph:
    """Import ``import_path`` from ``app_dir`` in a child process and describe its graph."""
    app_dir_abs = str(Path(app_dir).resolve())
    if not Path(app_dir_abs).is_dir():
        raise AppImportError(f"app dir {app_dir} is not a folder", "pass --app-dir the folder that holds the "
                             "application's module", import_path=import_path)
    request = json.dumps({"import_path": import_path, "app_dir": app_dir_abs, "args": args or {}})
    with tempfile.TemporaryDirectory(prefix="ci-serve-inspect-") as tmp:
        result_path = Path(tmp) / "graph.json"
        stderr = _run_worker(request, result_path, import_path, timeout)
        if not result_path.exists():
            tail = "\n".join(stderr.strip().splitlines()[-_DETAIL_LINES:])
            raise AppImportError(
                f"importing {import_path} killed the Python process that imported it",
                "run `python -c 'import <module>'` in --app-dir to see why it exits at import time",
                import_path=import_path, details=tail or None)
        result = json.loads(result_path.read_text(encoding="utf-8"))
    if not result.get("ok"):
        raise _import_error(import_path, app_dir, result["error"])
    return AppGraph(import_path=import_path, app_dir=app_dir_abs, ingress=result["ingress"],
                    deployments={d["name"]: {k: v for k, v in d.items() if k != "name"}
                                 for d in result["deployments"]})


def _run_worker(request: str, result_path: Path, import_path: str, timeout: float) -> str:
    env = dict(os.environ)
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    proc = subprocess.Popen([sys.executable, "-m", WORKER_MODULE, request, str(result_path)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=env, start_new_session=True, text=True, errors="replace")
    try:
        _, stderr = proc.communicate(timeout=timeout)
        return stderr or ""
    except subprocess.TimeoutExpired:
        raise import_timeout(import_path, timeout) from None
    finally:
        if proc.poll() is None:  # timeout or cancel: take the whole process group down
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass
            proc.wait()


def import_timeout(import_path: str, timeout: float) -> AppImportError:
    """The error for an import that did not finish within ``timeout`` seconds."""
    return AppImportError(f"importing {import_path} did not finish within {timeout:.0f}s",
                          "the module must not block at import time (no serve.run(), ray.init() or network "
                          "waits at module level)", import_path=import_path)


def import_hint(kind: str, module: Any, last_line: str, app_dir: str | Path | None = None) -> str:
    """What to do about an exception of type ``kind`` (defined in ``module``) raised by importing an app."""
    if kind in ("ModuleNotFoundError", "ImportError"):
        folder = "--app-dir" if app_dir is None else f"--app-dir ({app_dir})"
        return (f"check the module part of the import path, that {folder} is the folder "
                "that holds it, and that the application's dependencies are installed")
    if kind == "AttributeError" and "has no attribute" in last_line:
        return ("the name after ':' must be an application (`MyDeployment.bind()`) or a builder "
                "function defined in that module")
    if kind in ("TypeError", "ValueError") and module == "builtins" and \
            ("Application" in last_line or "builder" in last_line):
        return ("an import path names an application (`app = MyDeployment.bind()`) or a builder "
                "function taking one dict of arguments; arguments are only for builder functions")
    if kind == "SyntaxError":
        return "fix the syntax error in the application's code"
    return "the application's code raised while being imported or built; see the traceback"


def _import_error(import_path: str, app_dir: str | Path, error: dict[str, Any]) -> AppImportError:
    kind, last_line = error.get("type", "Exception"), error.get("last_line", "")
    hint = import_hint(kind, error.get("module"), last_line, app_dir)
    tb_lines = error.get("traceback", "").rstrip().splitlines()
    return AppImportError(f"cannot import {import_path}: {last_line}", hint, import_path=import_path,
                          last_line=last_line, details="\n".join(tb_lines[-_DETAIL_LINES:]) or None)


def merge_deployment_options(code: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """The options a deployment runs with: ``config`` over ``code``, field by field.

    Each field the config sets replaces the code's value whole: a config's ``ray_actor_options`` or
    ``user_config`` is not merged with the code's dictionary, it replaces it (as the Serve controller
    does). ``name`` is kept. Fields neither sets stay unset (Serve's defaults apply). As in Serve, a
    config's ``num_replicas`` does not remove an ``autoscaling_config`` set in code.
    """
    merged = {k: _copy(v) for k, v in code.items()}
    for key, value in config.items():
        merged[key] = _copy(value)
    return merged


def _copy(value: Any) -> Any:
    return json.loads(json.dumps(value)) if isinstance(value, (dict, list)) else value
