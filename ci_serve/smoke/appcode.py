"""The options each deployment sets in code, learned by importing the app in the smoke test's driver.

The driver (:mod:`ci_serve.cluster.driver`) imports the application with the Python and Ray of the
environment under test, while the temporary head boots, and builds the graph without a cluster
(``.bind()`` and ``build_app`` need no ``ray.init``). ``serve run`` imports the app into its own
process too. This module turns the driver's answer into deployment options, or into the
:class:`~ci_serve.config.inspect.AppImportError` that ``validate`` raises for the same failure, with
the exception line and the user's frames of the traceback.
"""

from __future__ import annotations

from typing import Any

from ci_serve.config.inspect import AppImportError, import_hint
from ci_serve.tracebacks import trim_traceback


def code_options(answer: dict[str, Any], import_path: str) -> dict[str, dict[str, Any]]:
    """deployment name -> options set in code (config field names), from one app's ``inspect`` answer."""
    if not answer.get("ok"):
        last_line = str(answer.get("error") or f"importing {import_path} failed")
        raise AppImportError(last_line, import_hint(str(answer.get("type") or ""), answer.get("module"), last_line),
                             import_path=import_path, last_line=last_line,
                             details=trim_traceback(str(answer.get("details") or "")).strip() or None)
    return {d["name"]: {k: v for k, v in d.items() if k != "name"} for d in answer["deployments"]}
