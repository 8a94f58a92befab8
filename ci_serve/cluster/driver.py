"""The Ray driver of a smoke test: a small script run by the Python of the environment under test.

``smoke`` runs the application with the Ray the team pins (``--requirements``, ``--ray-version``),
which need not be the Ray ci-serve itself runs on. So everything that imports Ray or the app lives
here, run as ``ENV_PYTHON driver.py`` with only the standard library and that environment's Ray;
ci-serve itself never imports Ray for a smoke test. The same script runs for the default (this
environment's Ray): one path, measured no slower than the in-process driver it replaced, because the
Python start-up and Ray's import overlap the head's boot as before (docs/benchmarks.md).

Protocol: one JSON object per line on stdin (``{"op": ...}``), one JSON answer per line on the
original stdout. File descriptor 1 is pointed at stderr before the app is imported, so whatever user
code prints cannot garble the answers. Every answer has ``ok``; a failure carries ``error`` (one
line), ``type`` and ``details`` (a traceback or Ray's message).

- ``hello`` (sent unasked once Ray is imported): ``ray_version``, ``python``.
- ``inspect`` ``{"apps": [{"name", "import_path", "args"}], "app_dir"}``: import each application
  and build its graph without a cluster; per app the deployments with the options set in code.
- ``connect`` ``{"gcs_address", "serve_port"}``: ``ray.init`` and start Serve's controller.
- ``deploy`` ``{"config"}``: hand a multi-application config to the controller.
- ``status``: ``serve.status()`` as plain data (app -> status, message, deployments).

SIGINT/SIGTERM are ignored: the parent owns the cancel and SIGKILLs this process (and the head). A
watchdog thread exits when the parent is gone, so a SIGKILLed ci-serve leaves no driver behind.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
import traceback
from typing import Any


def _watch_parent(parent: int) -> None:
    while True:
        if os.getppid() != parent:
            os._exit(3)
        time.sleep(0.5)


def _failure(exc: BaseException) -> dict[str, Any]:
    lines = traceback.format_exception_only(type(exc), exc)
    return {"ok": False, "type": type(exc).__name__, "module": type(exc).__module__,
            "error": (lines[-1] if lines else repr(exc)).strip(),
            "details": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-6000:]}


def _import_attr(path: str) -> Any:
    try:
        from ray._common.utils import import_attr
    except ImportError:  # Ray < 2.46
        from ray._private.utils import import_attr  # type: ignore[attr-defined, no-redef, unused-ignore]
    return import_attr(path)


def _dump(model: Any) -> dict[str, Any]:
    if hasattr(model, "model_dump"):
        data: dict[str, Any] = model.model_dump(exclude_unset=True, mode="json")
    else:  # pydantic v1 models (older Ray)
        data = json.loads(model.json(exclude_unset=True))
    return data


def inspect(apps: list[dict[str, Any]], app_dir: str) -> dict[str, Any]:
    """name -> {"ok", "deployments": [{name, options...}]} or a failure; graphs built without a cluster."""
    from ray.serve._private.api import call_user_app_builder_with_args_if_necessary
    from ray.serve._private.build_app import build_app
    from ray.serve.deployment import deployment_to_schema

    if app_dir not in sys.path:
        sys.path.insert(0, app_dir)
    out: dict[str, Any] = {}
    for app in apps:
        try:
            target = _import_attr(app["import_path"])
            built = build_app(call_user_app_builder_with_args_if_necessary(target, dict(app.get("args") or {})),
                              name="inspected")
            out[app["name"]] = {"ok": True, "deployments": [_dump(deployment_to_schema(d)) for d in built.deployments]}
        except BaseException as exc:  # noqa: BLE001 - user code may raise anything, SystemExit included
            out[app["name"]] = _failure(exc)
    return {"ok": True, "apps": out}


class Driver:
    def __init__(self) -> None:
        self.client: Any = None

    def connect(self, gcs_address: str, serve_port: int) -> dict[str, Any]:
        import ray

        try:
            ray.init(address=gcs_address, logging_level=logging.WARNING, log_to_driver=False,
                     _node_ip_address="127.0.0.1")
        except BaseException as exc:  # noqa: BLE001
            return {**_failure(exc), "stage": "init"}
        logging.getLogger("ray.serve").setLevel(logging.WARNING)
        try:
            self.client = _start_serve({"host": "127.0.0.1", "port": serve_port})
        except BaseException as exc:  # noqa: BLE001
            return {**_failure(exc), "stage": "serve"}
        return {"ok": True}

    def deploy(self, config: dict[str, Any]) -> dict[str, Any]:
        from ray.serve.schema import ServeDeploySchema

        body = {k: v for k, v in config.items() if k not in ("http_options", "grpc_options", "proxy_location")}
        validate = getattr(ServeDeploySchema, "model_validate", None) or ServeDeploySchema.parse_obj
        self.client.deploy_apps(validate(body))
        return {"ok": True}

    def status(self) -> dict[str, Any]:
        from ray import serve

        return {"ok": True, "apps": snapshot(serve.status())}


def _start_serve(http_options: dict[str, Any]) -> Any:
    """Start the Serve controller and return its client without waiting for the HTTP proxy: the proxy
    comes up while the replicas start, and smoke waits for its route table before the first request
    (``serve_start`` would wait for it first, 1-2 s on a busy 2-CPU runner). Falls back to
    ``serve_start`` when this Ray lacks the internals or their signature differs."""
    from ray.serve._private import api

    create = getattr(api, "_create_controller_and_proxy_refs", None)
    coerce = getattr(api, "_coerce_controller_options", None)
    if create is not None and coerce is not None:
        from ray.serve._private.client import ServeControllerClient
        from ray.serve.context import _set_global_client

        try:
            controller, _proxy_ready = create(http_options, None, None, None, coerce(None), None)
        except TypeError:  # another release's signature
            pass
        else:
            client = ServeControllerClient(controller)
            _set_global_client(client)  # type: ignore[no-untyped-call, unused-ignore]
            return client
    return api.serve_start(http_options=http_options)


def snapshot(status: Any) -> dict[str, dict[str, Any]]:
    """``serve.status()`` as plain data: app -> {status, message, deployments: {name: {...}}}."""
    apps: dict[str, dict[str, Any]] = {}
    for name, app in (getattr(status, "applications", None) or {}).items():
        deployments = {}
        for dname, dep in (getattr(app, "deployments", None) or {}).items():
            deployments[dname] = {"status": str(_value(dep.status)), "message": dep.message or "",
                                  "status_trigger": str(_value(getattr(dep, "status_trigger", "")))}
        apps[name] = {"status": str(_value(app.status)), "message": app.message or "", "deployments": deployments}
    return apps


def _value(x: Any) -> Any:
    return getattr(x, "value", x)


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    answers = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)  # user code's prints go to the log, not into the answers
    sys.stdout = sys.stderr

    def send(answer: dict[str, Any]) -> None:
        answers.write(json.dumps(answer, default=repr) + "\n")
        answers.flush()

    import ray  # while the head boots: Ray's import is ~1.5 s of CPU
    import ray.serve._private.api  # noqa: F401
    import ray.serve.schema  # noqa: F401

    send({"ok": True, "op": "hello", "ray_version": ray.__version__, "python": sys.version.split()[0]})
    driver = Driver()
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        op = request.pop("op")
        try:
            if op == "inspect":
                answer = inspect(request["apps"], request["app_dir"])
            elif op == "connect":
                answer = driver.connect(request["gcs_address"], int(request["serve_port"]))
            elif op == "deploy":
                answer = driver.deploy(request["config"])
            elif op == "status":
                answer = driver.status()
            elif op == "exit":
                send({"ok": True})
                break
            else:
                answer = {"ok": False, "error": f"unknown op {op!r}", "type": "ValueError"}
        except BaseException as exc:  # noqa: BLE001 - every failure is an answer, never a dead pipe
            answer = _failure(exc)
        send(answer)
    answers.close()
    os._exit(0)  # Ray's at-exit shutdown can hang once the head is gone; nothing is owed here


if __name__ == "__main__":
    raise SystemExit(main())
