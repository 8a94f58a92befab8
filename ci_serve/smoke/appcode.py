"""The options each deployment sets in code, learned by importing the app in the smoke test's driver.

The driver (:mod:`ci_serve.cluster.driver`) imports the application with the Python and Ray of the
environment under test, while the temporary head boots, and builds the graph without a cluster
(``.bind()`` and ``build_app`` need no ``ray.init``). ``serve run`` imports the app into its own
process too. This module turns the driver's answer into deployment options, or into an
:class:`AppCodeError` with the exception line and the user's frames of the traceback.
"""

from __future__ import annotations

from typing import Any

from ci_serve.errors import CheckFailed
from ci_serve.tracebacks import trim_traceback


class AppCodeError(CheckFailed):
    """The application could not be imported or built from code."""


def code_options(answer: dict[str, Any], import_path: str) -> dict[str, dict[str, Any]]:
    """deployment name -> options set in code (config field names), from one app's ``inspect`` answer."""
    if not answer.get("ok"):
        kind = str(answer.get("type") or "")
        hint = ("check the module part of the import path and --app-dir"
                if kind in ("ImportError", "ModuleNotFoundError")
                else "the application's code raised while being imported or built")
        raise AppCodeError(str(answer.get("error") or f"importing {import_path} failed"), hint,
                           details=trim_traceback(str(answer.get("details") or "")).strip() or None)
    return {d["name"]: {k: v for k, v in d.items() if k != "name"} for d in answer["deployments"]}


def import_timeout(import_path: str, timeout: float) -> AppCodeError:
    return AppCodeError(f"importing {import_path} did not finish within {timeout:.0f}s",
                        "the module must not block at import time (no serve.run(), ray.init() or network "
                        "waits at module level)")
