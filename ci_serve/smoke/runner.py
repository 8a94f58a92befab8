"""The smoke pipeline: check inputs, start a private head, deploy, wait, send requests, clean up.

Order and why:

1. Inputs (target, config, requests file) are checked before any Ray process starts: exit 2.
2. ``ray start --head`` (no dashboard) is launched; while it boots (~5-10 s) the application code is
   imported in a child process (:func:`ci_serve.config.inspect.inspect_app`) to learn each
   deployment's options for the CI profile. An import error ends the run here (exit 1).
3. This process connects to the head as a driver, starts Serve with its HTTP proxy on the head's
   free port, and hands the config to the Serve controller, as the dashboard's PUT would.
4. ``serve.status()`` is polled; :func:`ci_serve.smoke.readiness.judge` fails the run at once on a
   failure Ray reports; then the proxy's route table is awaited and the requests are sent.
5. ``finally``: the driver disconnects (fast while the head lives; after the head is gone Ray's
   at-exit shutdown would hang for seconds) and the head is SIGKILLed by session and its temp folder
   removed, on success, failure, timeout and cancel alike.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import requests

from ci_serve import cancel
from ci_serve.cluster.head import HeadStartError, TemporaryHead
from ci_serve.console import say, step
from ci_serve.errors import Cancelled, CheckFailed, CiServeError
from ci_serve.report import Run
from ci_serve.smoke import appcode, checks, junit, logs, readiness
from ci_serve.smoke.profile import HeadCapacity, Profile, apply_profile, fit_to_head
from ci_serve.smoke.requests_file import SmokeRequest, load_requests
from ci_serve.smoke.target import AppTarget, SmokeTarget, resolve_target, route_for

POLL_S = 0.2


@dataclass
class SmokeOptions:
    target: str
    args: list[str]
    app_dir: str = "."
    requests_file: str | None = None
    timeout: float = 300.0
    ci_profile: bool = True
    junit: str | None = None


@dataclass
class PlannedRequest:
    request: SmokeRequest | None  # None: the default "answers without a 5xx" check
    app: AppTarget
    url_path: str
    name: str
    method: str


def machine_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def plan_requests(target: SmokeTarget, reqs: list[SmokeRequest] | None) -> list[PlannedRequest]:
    if reqs is None:
        return [PlannedRequest(None, app, app.route_prefix or "/", f"{app.name} answers at {app.route_prefix}", "GET")
                for app in target.apps if app.route_prefix is not None]
    planned = []
    for req in reqs:
        app, url_path = route_for(target, req)
        planned.append(PlannedRequest(req, app, url_path, req.name, req.method))
    return planned


def smoke(opts: SmokeOptions, run: Run) -> int:
    deadline = time.monotonic() + opts.timeout
    cpus = machine_cpus()
    # Serve reports replicas that cannot be scheduled after this many seconds (default 30).
    head = TemporaryHead(dashboard=False, num_cpus=cpus, lean=True,
                         extra_env={"RAY_SERVE_SLOW_STARTUP_WARNING_S": "10"})
    # Ray reads its auth settings when it is first imported (the config check below imports it).
    os.environ.update(head.driver_env())
    try:
        with step(run, "check inputs"):
            target = resolve_target(opts.target, opts.args, opts.app_dir)
            reqs = load_requests(opts.requests_file) if opts.requests_file else None
            planned = plan_requests(target, reqs)
    except BaseException as exc:
        head.stop()  # nothing started yet: removes the temp folder
        if opts.junit and isinstance(exc, CiServeError):
            junit.write(opts.junit, [], elapsed_s=run.elapsed(), deploy_error=exc.message, deploy_details=exc.details)
        raise
    head.extra_env["PYTHONPATH"] = os.pathsep.join(target.python_path)
    for notice in target.notices:
        say(f"note: {notice}")
    for warning in target.warnings:  # keys Ray ignores: as `ci-serve validate` shows them
        say(f"WARN  {warning}")
    run.data["warnings"] = list(target.warnings)
    run.data["target"] = target.source
    outcomes = [checks.Outcome(p.name, p.app.name, p.method, p.url_path, False, None, 0.0,
                               error="not run", skipped=True) for p in planned]
    run.data["requests"] = [o.as_dict() for o in outcomes]
    driver = _Driver()
    failure: CiServeError | None = None
    try:
        head.launch()
        _warm_imports()  # while the head boots (Ray's import is ~1.5 s of CPU)
        config = target.config
        if opts.ci_profile:
            with step(run, "CI profile") as st:
                profile = _profile(target, HeadCapacity(cpus=cpus), deadline)
                config = apply_profile(config, profile)
                st.detail = f"{len(profile.changes)} change(s), replicas ask for {profile.cpus_after:g} " \
                            f"of {cpus} CPUs" if profile.changes else "nothing to change"
            for change in profile.changes:
                say(f"         {change}")
            run.data["ci_profile"] = {"enabled": True, **profile.as_dict()}
        else:
            run.data["ci_profile"] = {"enabled": False}
        with step(run, "start Ray head") as st:
            head.wait_ready(max(1.0, deadline - time.monotonic()))
            st.detail = f"{cpus} CPUs, temp {head.temp_dir}"
        with step(run, "start Serve"):
            driver.connect(head)
        pending: dict[str, Any] = {}
        with step(run, "deploy", heartbeat=lambda: _pending_line(pending)):
            driver.deploy(config)
            _wait_running(driver, target, head, deadline, opts.timeout, pending, run)
            _wait_routes(head, target, deadline)
        with step(run, "requests") as st:
            outcomes = _send_all(planned, head.serve_url, deadline)
            run.data["requests"] = [o.as_dict() for o in outcomes]
            failed = [o for o in outcomes if not o.passed]
            st.detail = f"{len(outcomes) - len(failed)} of {len(outcomes)} passed"
            if failed:
                st.status = "failed"
        if failed:
            raise CheckFailed(f"{len(failed)} of {len(outcomes)} request(s) failed: "
                              + ", ".join(repr(o.name) for o in failed),
                              "each failure above shows the expected and the actual value")
        run.result = "passed"
        return 0
    except CiServeError as err:
        failure = err
        raise
    finally:
        if opts.junit:
            ran = any(not o.skipped for o in outcomes)
            junit.write(opts.junit, outcomes, elapsed_s=run.elapsed(),
                        deploy_error=None if ran or failure is None else failure.message,
                        deploy_details=None if failure is None else failure.details)
        with step(run, "stop Ray head"):
            try:
                driver.disconnect()
            finally:
                head.stop()


def _profile(target: SmokeTarget, capacity: HeadCapacity, deadline: float) -> Profile:
    from ci_serve.config.inspect import merge_deployment_options

    options: dict[str, dict[str, dict[str, Any]]] = {}
    for app in target.apps:
        raw = next(a for a in target.config["applications"] if a.get("name", "default") == app.name)
        in_config = {d["name"]: {k: v for k, v in d.items() if k != "name"}
                     for d in raw.get("deployments") or [] if isinstance(d, dict) and "name" in d}
        try:
            code = appcode.code_options(app.import_path, app.args, target.python_path, deadline - time.monotonic())
        except appcode.AppCodeError as exc:
            if app.local_code:
                raise CheckFailed(f"application {app.name!r} cannot be imported: {exc.message}", exc.hint,
                                  details=exc.details) from None
            say(f"note: {app.name}: cannot import {app.import_path} here (its runtime_env brings the code); "
                "CI profile from the config only")
            options[app.name] = in_config
            continue
        options[app.name] = {name: merge_deployment_options(opts, in_config.get(name, {}))
                             for name, opts in code.items()}
    return fit_to_head(options, capacity)


def _warm_imports() -> None:
    import ray  # noqa: F401
    import ray.serve._private.api  # noqa: F401
    import ray.serve.schema  # noqa: F401


def _pending_line(pending: dict[str, Any]) -> str:
    return "; ".join(f"{k}: {v}" for k, v in pending.items()) or "waiting for the controller"


def _wait_running(driver: _Driver, target: SmokeTarget, head: TemporaryHead, deadline: float, timeout: float,
                  pending: dict[str, Any], run: Run) -> None:
    names = [a.name for a in target.apps]
    t0 = time.monotonic()
    while True:
        cancel.check()  # a cancel swallowed inside Ray's client surfaces here
        apps = driver.status()
        verdict = readiness.judge(apps, names)
        run.data["applications"] = {n: {"status": a["status"], "message": a["message"][:2000],
                                        "deployments": {d: v["status"] for d, v in a["deployments"].items()}}
                                    for n, a in apps.items()}
        if verdict.state == "ready":
            return
        if verdict.state == "failed":
            raise _deploy_failure(verdict, head)
        pending.clear()
        pending.update(verdict.pending)
        if time.monotonic() > deadline:
            raise CheckFailed(
                f"not every application was RUNNING within the {timeout:g}s timeout "
                f"(waited {time.monotonic() - t0:.0f}s for Serve)",
                "raise --timeout if the app is just slow to start; the state of each application is below",
                details="\n".join(f"{k}: {v}" for k, v in verdict.pending.items()))
        time.sleep(POLL_S)


def _deploy_failure(verdict: readiness.Verdict, head: TemporaryHead) -> CheckFailed:
    details = logs.trim_traceback(verdict.message.strip())
    cause = None if verdict.unschedulable else logs.exception_line(verdict.message)
    log = logs.failure_log(head.logs_dir, verdict.app, verdict.deployment)
    if log and not verdict.unschedulable:
        details = f"{details}\n{log}" if details else log
    if verdict.unschedulable:
        hint = (f"the temporary head has {head.num_cpus} CPUs and no GPUs; run without --no-ci-profile to fit the "
                "config to it, or lower num_cpus/num_gpus/num_replicas")
    elif verdict.deployment:
        hint = "the replica's constructor or health check raised; the traceback and the replica's log are below"
    else:
        hint = "the application could not be built (import error, bad `args`); see the traceback below"
    reason = f"{verdict.reason}: {cause}" if cause else verdict.reason
    return CheckFailed(reason, hint, details=details or None)


def _wait_routes(head: TemporaryHead, target: SmokeTarget, deadline: float) -> None:
    """RUNNING can come a moment before the proxy knows the routes: wait for its route table."""
    wanted = {a.route_prefix for a in target.apps if a.route_prefix is not None}
    last = ""
    while True:
        cancel.check()  # a cancel swallowed inside Ray's client surfaces here
        try:
            resp = requests.get(f"{head.serve_url}/-/routes", timeout=5)
            if resp.status_code == 200 and wanted <= set(resp.json()):
                return
            last = f"{resp.status_code} {checks.short(resp.content, 200)}"
        except (requests.RequestException, ValueError) as exc:
            last = str(exc)
        if time.monotonic() > deadline:
            raise CheckFailed("the applications are RUNNING but the HTTP proxy does not route to them",
                              "this is a Ray problem, not your app's; retry", details=f"last /-/routes answer: {last}")
        time.sleep(POLL_S)


def _send_all(planned: list[PlannedRequest], base_url: str, deadline: float) -> list[checks.Outcome]:
    outcomes = []
    with requests.Session() as session:
        for item in planned:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                outcomes.append(checks.Outcome(item.name, item.app.name, item.method, item.url_path, False, None,
                                               0.0, error="not run: timeout reached", skipped=True))
                say(outcomes[-1].line())
                continue
            req = item.request or SmokeRequest(name=item.name)
            answer = checks.send(session, base_url, item.url_path, req, timeout=min(60.0, remaining))
            problems = checks.compare(req.expect, answer) if item.request else checks.default_check(answer)
            out = checks.Outcome(item.name, item.app.name, item.method, item.url_path, not problems, answer.status,
                                 answer.elapsed_ms, error=problems[0] if problems else None, mismatches=problems)
            say(out.line())
            for problem in problems:
                say(f"       {problem}")
            outcomes.append(out)
    return outcomes


class _Driver:
    """This process as a Ray driver of the temporary head (Ray imported lazily)."""

    def __init__(self) -> None:
        self.connected = False
        self.client: Any = None

    def connect(self, head: TemporaryHead) -> None:
        os.environ.update(head.driver_env())
        import ray

        logging.getLogger("ray.serve").setLevel(logging.WARNING)
        self.connected = True  # set first: a cancel right after init must still disconnect
        with _signals_deferred(on_signal=head.stop):
            try:
                ray.init(address=head.gcs_address, logging_level=logging.WARNING, log_to_driver=False,
                         _node_ip_address="127.0.0.1")
            except Exception as exc:
                raise HeadStartError(f"could not connect to the temporary Ray head: {_last_line(exc)}",
                                     "see the head's log below", details=head.log_tail()) from None
            logging.getLogger("ray.serve").setLevel(logging.WARNING)
            try:
                self.client = _start_serve({"host": "127.0.0.1", "port": head.serve_port})
            except Exception as exc:
                raise HeadStartError(f"Serve did not start on the temporary head: {_last_line(exc)}",
                                     details=str(exc)[-3000:]) from None

    def deploy(self, config: dict[str, Any]) -> None:
        from ray.serve.schema import ServeDeploySchema

        body = {k: v for k, v in config.items() if k not in ("http_options", "grpc_options", "proxy_location")}
        try:
            self.client.deploy_apps(ServeDeploySchema.model_validate(body))
            cancel.check()
        except CiServeError:  # Cancelled by a signal: not Ray's failure
            raise
        except Exception as exc:
            _reraise_cancel(exc)  # the controller refused the config
            raise CheckFailed(f"the Serve controller refused the config: {_last_line(exc)}",
                              "check the config with `ci-serve validate`", details=str(exc)[-3000:]) from None

    def status(self) -> dict[str, dict[str, Any]]:
        from ray import serve

        return readiness.snapshot(serve.status())

    def disconnect(self) -> None:
        if not self.connected:
            return
        import ray

        try:
            ray.shutdown()
        except Exception:  # the head is thrown away next anyway
            pass
        self.connected = False


def _start_serve(http_options: dict[str, Any]) -> Any:
    """Start the Serve controller and return its client without waiting for the HTTP proxy: the
    proxy comes up while the replicas start, and :func:`_wait_routes` waits for it before the first
    request (``serve_start`` would wait for it first, 1-2 s on a busy 2-CPU runner). Falls back to
    ``serve_start`` when this Ray lacks the internals."""
    from ray.serve._private import api

    create = getattr(api, "_create_controller_and_proxy_refs", None)
    coerce = getattr(api, "_coerce_controller_options", None)
    if create is None or coerce is None:
        return api.serve_start(http_options=http_options)
    from ray.serve._private.client import ServeControllerClient
    from ray.serve.context import _set_global_client

    controller, _proxy_ready = create(http_options, None, None, None, coerce(None), None)
    client = ServeControllerClient(controller)
    _set_global_client(client)
    return client


@contextmanager
def _signals_deferred(on_signal: Callable[[], None] | None = None, grace_s: float = 5.0) -> Iterator[None]:
    """Hold SIGINT/SIGTERM until the block ends, then re-deliver the first to the CLI's handler.

    An exception raised by a signal handler inside ``ray.init`` can land while Ray builds a native
    object; seen here: the half-built GCS accessor's destructor deadlocked and the run hung with the
    head alive. ``ray.init`` also installs ``sys.exit`` as the SIGTERM handler (same hazard); that is
    disabled for the block. The delay is the few seconds of connecting and starting Serve; if the
    block is still running ``grace_s`` after a signal, ``on_signal`` (stop the head) runs from a
    timer thread, so Ray's calls fail fast instead of the cancel waiting for their own timeouts.
    """
    import ray._private.utils as ray_utils

    got: list[int] = []
    timer: list[threading.Timer] = []

    def record(signum: int, frame: object) -> None:
        got.append(signum)
        if on_signal is not None and not timer:
            timer.append(threading.Timer(grace_s, on_signal))
            timer[0].daemon = True
            timer[0].start()

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    set_sigterm_handler = ray_utils.set_sigterm_handler
    for sig in previous:
        signal.signal(sig, record)
    ray_utils.set_sigterm_handler = lambda handler: None
    try:
        yield
    finally:
        for t in timer:
            t.cancel()
        ray_utils.set_sigterm_handler = set_sigterm_handler
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if got:
            signal.raise_signal(got[0])  # the CLI's handler raises Cancelled (once) from here


def _reraise_cancel(exc: BaseException) -> None:
    """Ray wraps exceptions raised inside it (ray.init turns any into ConnectionError): a signal's
    :class:`Cancelled` must still reach the CLI as itself."""
    seen = 0
    cur: BaseException | None = exc
    while cur is not None and seen < 20:
        if isinstance(cur, Cancelled):
            raise cur
        cur = cur.__cause__ or cur.__context__
        seen += 1


def _last_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[-1] if lines else type(exc).__name__
