"""Subprocess side of :func:`ci_serve.config.inspect.inspect_app`.

``python -m ci_serve.cluster.inspect_worker REQUEST_JSON RESULT_FILE``: imports the application
graph the way ``serve run`` / ``serve build`` do (``app_dir`` first on ``sys.path``, builder functions
called with their ``key=value`` arguments), builds it without a Ray cluster (``.bind()`` and
``build_app`` need no ``ray.init``) and writes the deployments with the options set in code, in the
config's field names, as JSON to RESULT_FILE. User code may print anything to stdout; only RESULT_FILE
is read back. Any exception becomes ``{"ok": false, "error": {...}}``: the caller never crashes.
"""

from __future__ import annotations

import json
import sys
import traceback
from typing import Any


def build_graph(import_path: str, app_dir: str, args: dict[str, Any] | None) -> dict[str, Any]:
    sys.path.insert(0, app_dir)
    from ray._common.utils import import_attr
    from ray.serve._private.api import call_user_app_builder_with_args_if_necessary
    from ray.serve._private.build_app import build_app
    from ray.serve.deployment import deployment_to_schema

    target = import_attr(import_path)
    app = call_user_app_builder_with_args_if_necessary(target, dict(args or {}))
    built = build_app(app, name="inspected")
    deployments = []
    for deployment in built.deployments:
        schema = deployment_to_schema(deployment)
        deployments.append(schema.model_dump(exclude_unset=True, mode="json"))
    return {"ingress": built.ingress_deployment_name, "deployments": deployments}


def main(argv: list[str]) -> int:
    request = json.loads(argv[0])
    result_path = argv[1]
    try:
        result: dict[str, Any] = {"ok": True, **build_graph(request["import_path"], request["app_dir"],
                                                             request.get("args"))}
    except BaseException as exc:  # noqa: BLE001 - report every failure of user code to the parent
        lines = traceback.format_exception_only(type(exc), exc)
        result = {"ok": False, "error": {
            "type": type(exc).__name__,
            "module": type(exc).__module__,
            "last_line": (lines[-1] if lines else repr(exc)).strip(),
            "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
        }}
    with open(result_path, "w", encoding="utf-8") as fh:
        json.dump(result, fh, default=repr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
