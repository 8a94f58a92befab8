"""The options each deployment sets in code, learned by importing the app in this process.

Smoke imports the application here, while the temporary head boots, rather than in a child Python
(:func:`ci_serve.config.inspect.inspect_app`): Ray is already imported for the config check, so
this costs the app's own import time only, not another interpreter plus Ray (2-4 s of CPU that the
booting head needs on a 2-CPU runner). ``serve run`` imports the app into its own process too.
The graph is built without a cluster (``.bind()`` and ``build_app`` need no ``ray.init``) by the same
function the config engineer's inspector runs in its child. The import runs in a daemon thread so a
module that blocks at import time is bounded by ``--timeout`` and a signal still cancels the run.
"""

from __future__ import annotations

import sys
import threading
import traceback
from typing import Any

from ci_serve.errors import CheckFailed
from ci_serve.smoke.logs import trim_traceback


class AppCodeError(CheckFailed):
    """The application could not be imported or built from code."""


def code_options(import_path: str, args: dict[str, Any], python_path: list[str],
                 timeout: float) -> dict[str, dict[str, Any]]:
    """deployment name -> options set in code (config field names)."""
    from ci_serve.config.inspect_worker import build_graph

    for entry in reversed(python_path):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["graph"] = build_graph(import_path, python_path[0], args)
        except BaseException as exc:  # noqa: BLE001 - user code may raise anything, SystemExit included
            box["error"] = exc

    thread = threading.Thread(target=target, name=f"import {import_path}", daemon=True)
    thread.start()
    thread.join(max(timeout, 0.1))
    if thread.is_alive():
        raise AppCodeError(f"importing {import_path} did not finish within {timeout:.0f}s",
                           "the module must not block at import time (no serve.run(), ray.init() or network "
                           "waits at module level)")
    if "error" in box:
        exc = box["error"]
        last = traceback.format_exception_only(type(exc), exc)[-1].strip()
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        hint = ("check the module part of the import path and --app-dir"
                if isinstance(exc, ImportError) else "the application's code raised while being imported or built")
        raise AppCodeError(last, hint, details=trim_traceback(tb).strip() or None)
    graph = box["graph"]
    return {d["name"]: {k: v for k, v in d.items() if k != "name"} for d in graph["deployments"]}
