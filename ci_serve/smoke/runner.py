"""The smoke pipeline: check inputs, start a private head, deploy, wait, send requests, clean up.

Order and why:

1. The first log line says which Ray runs the test. Inputs (target, config, requests file) are
   checked before any Ray process starts: exit 2.
2. With ``--requirements`` or ``--ray-version``, the environment holding that Ray and the app's
   packages is found or built (:func:`ci_serve.cluster.pyenv.ensure_env`); an unresolvable pin is
   exit 2. Without, the environment ci-serve runs in is used.
3. ``ray start --head`` (no dashboard) of that environment is launched, and beside it the Ray driver
   (:mod:`ci_serve.cluster.driver`) under that environment's Python. While the head boots
   (~5-10 s) the driver imports Ray and the application, to learn each deployment's options for
   the CI profile. An import error ends the run here (exit 1).
4. The driver connects to the head, starts Serve with its HTTP proxy on the head's free port, and
   hands the config to the Serve controller, as the dashboard's PUT would.
5. ``serve.status()`` is polled through the driver; :func:`ci_serve.smoke.readiness.judge_readiness` fails the
   run at once on a failure Ray reports; then the proxy's route table is awaited and the requests sent.
6. ``finally``: the driver and the head are SIGKILLed (the head by session) and the temp folder
   removed, on success, failure, timeout and cancel alike.
"""

from __future__ import annotations

import importlib.metadata
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

import requests

from ci_serve import cancel
from ci_serve.cluster import versions
from ci_serve.cluster.driver_client import DriverProcess, DriverTimeout
from ci_serve.cluster.head import HeadStartError, TemporaryHead
from ci_serve.cluster.pyenv import ensure_env, ray_requirements
from ci_serve.console import say
from ci_serve.errors import CheckFailed, CiServeError, InputError
from ci_serve.smoke import appcode, checks, logs, readiness
from ci_serve.smoke.profile import HeadCapacity, Profile, apply_profile, fit_to_head
from ci_serve.smoke.requests_file import SmokeRequest, load_requests
from ci_serve.smoke.target import AppTarget, SmokeTarget, resolve_target, route_for
from ci_serve.steps import StepLog, stops
from ci_serve.tracebacks import exception_line, trim_traceback

POLL_S = 0.2
#: how long a whole smoke test may take (``smoke --timeout``'s default)
SMOKE_TIMEOUT_S = 300.0


@dataclass
class SmokeOptions:
    target: str
    args: list[str]
    app_dir: str = "."
    requests_file: str | None = None
    timeout: float = SMOKE_TIMEOUT_S
    ci_profile: bool = True
    #: a pip requirements file: test with the Ray and packages it pins, in an environment of its own
    requirements: str | None = None
    #: shortcut for a requirements file pinning only ``ray[serve]==X``
    ray_version: str | None = None


@dataclass
class SmokeResult:
    """What a smoke test did. Filled in as the test goes, so a failed one still says how far it got:
    the requests sent so far (the others ``not run``), each application's last status."""

    outcome: str = "failed"  # "passed" once every request passed
    #: what ended the test early or failed it (``None``: passed)
    error: CiServeError | None = None
    #: the environment built or reused for ``--requirements``/``--ray-version``
    environment: dict[str, Any] | None = None
    #: keys of the config Ray ignores
    warnings: list[str] | None = None
    #: what was tested: the import path or the config file
    target: str | None = None
    requests: list[checks.Outcome] | None = None
    ci_profile: dict[str, Any] | None = None
    ray_version: str | None = None
    #: application -> status, message and each deployment's status, as last polled
    applications: dict[str, Any] | None = None

    def sections(self) -> dict[str, Any]:
        """The report's sections, under the names the report has always used; unset ones are left out."""
        out: dict[str, Any] = {}
        for name in ("environment", "warnings", "target", "requests", "ci_profile", "ray_version", "applications"):
            value = getattr(self, name)
            if value is not None:
                out[name] = [o.as_dict() for o in value] if name == "requests" else value
        return out


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


def smoke(opts: SmokeOptions, log: StepLog) -> SmokeResult:
    """One smoke test, its steps recorded in ``log``. Never raises a :class:`CiServeError`: the
    error that ended the test is the result's ``error``, next to what was seen until then."""
    result = SmokeResult()
    with stops(result):
        _smoke(opts, log, result)
    return result


def _smoke(opts: SmokeOptions, log: StepLog, result: SmokeResult) -> None:
    deadline = time.monotonic() + opts.timeout
    cpus = machine_cpus()
    requirements, where = _requirements(opts)
    say(_ray_line(requirements, where))  # the first line: which Ray this smoke test runs
    if requirements and versions.SERVE_EXTRA_LINE in requirements:
        say(f"NOTE  {where} pins Ray without the [serve] extra; its packages are added (`ray[serve]`)")
    # Serve reports replicas that cannot be scheduled after this many seconds (default 30). Worker
    # prestart: the raylet starts one idle worker per CPU while the head boots, so the Serve controller
    # and proxy get a worker at once (measured: Serve start about 0.5 s sooner; docs/benchmarks.md).
    head_env = {"RAY_SERVE_SLOW_STARTUP_WARNING_S": "10", "RAY_enable_worker_prestart": "1"}
    head = TemporaryHead(dashboard=False, num_cpus=cpus, lean=True, extra_env=head_env)
    python = sys.executable
    try:
        with log.step("check inputs"):
            target = resolve_target(opts.target, opts.args, opts.app_dir,
                                    versions.pinned_ray(requirements) if requirements else None)
            reqs = load_requests(opts.requests_file) if opts.requests_file else None
            planned = plan_requests(target, reqs)
        if requirements is not None:
            with log.step("Python environment") as st:
                env = ensure_env(requirements, log=say)
                versions.check_smoke_supported(env.ray_version, f"installed from {where}")  # a range pin
                st.detail = (f"Ray {env.ray_version}, " + (f"built with {env.installer} in {env.seconds:.1f}s"
                             if env.built else "reused") + f", {env.path}")
            result.environment = {"path": str(env.path), "built": env.built, "installer": env.installer,
                                  "seconds": round(env.seconds, 3), "ray_version": env.ray_version}
            python = str(env.python)
            head.ray = str(env.ray)
    except BaseException:
        head.stop()  # nothing started yet: removes the temp folder
        raise
    head.extra_env["PYTHONPATH"] = os.pathsep.join(target.python_path)
    for notice in target.notices:
        say(f"NOTE  {notice}")
    for warning in target.warnings:  # keys Ray ignores: as `ci-serve validate` shows them
        say(f"WARN  {warning}")
    result.warnings = list(target.warnings)
    result.target = target.source
    outcomes = [checks.Outcome(p.name, p.app.name, p.method, p.url_path, False, None, 0.0,
                               error="not run", skipped=True) for p in planned]
    result.requests = outcomes
    driver = DriverProcess(python, _driver_env(head, target), head.temp_dir, head.temp_dir / "driver.log")
    try:
        head.launch()
        driver.start()  # imports Ray, then the app, while the head boots
        config = target.config
        if opts.ci_profile:
            with log.step("CI profile") as st:
                profile = _profile(target, HeadCapacity(cpus=cpus), deadline, driver)
                config = apply_profile(config, profile)
                st.detail = f"{len(profile.changes)} change(s), replicas ask for {profile.cpus_after:g} " \
                            f"of {cpus} CPUs" if profile.changes else "nothing to change"
            for change in profile.changes:
                say(f"         {change}")
            result.ci_profile = {"enabled": True, **profile.as_dict()}
        else:
            result.ci_profile = {"enabled": False}
        with log.step("start Ray head") as st:
            head.wait_ready(max(1.0, deadline - time.monotonic()))
            st.detail = f"{cpus} CPUs, temp {head.temp_dir}"
        with log.step("start Serve") as st:
            _connect(driver, head, deadline)
            result.ray_version = driver.ray_version
            st.detail = f"Ray {driver.ray_version}, Python {driver.hello.get('python') if driver.hello else '?'}"
        pending: dict[str, Any] = {}
        with log.step("deploy", heartbeat=lambda: _pending_line(pending)):
            _deploy(driver, config, deadline)
            _wait_running(driver, target, head, deadline, opts.timeout, pending, result)
            _wait_routes(head, target, deadline)
        with log.step("requests") as st:
            outcomes = _send_all(planned, head.serve_url, deadline)
            result.requests = outcomes
            failed = [o for o in outcomes if not o.passed]
            st.detail = f"{len(outcomes) - len(failed)} of {len(outcomes)} passed"
            if failed:
                st.status = "failed"
        if failed:
            raise CheckFailed(f"{len(failed)} of {len(outcomes)} request(s) failed: "
                              + ", ".join(repr(o.name) for o in failed),
                              "each failure above shows the expected and the actual value")
        result.outcome = "passed"
    finally:
        if driver.ray_version:
            result.ray_version = driver.ray_version
        with log.step("stop Ray head"):
            try:
                driver.stop()
            finally:
                head.stop()


def _requirements(opts: SmokeOptions) -> tuple[str | None, str]:
    """The requirements text of the environment to test with (None: this one's Ray) and its source."""
    if opts.ray_version and opts.requirements:
        raise InputError("pass either --ray-version or --requirements, not both",
                         "put the Ray pin (`ray[serve]==X`) into the requirements file")
    if opts.ray_version:
        text, where = ray_requirements(opts.ray_version), "--ray-version"
    elif opts.requirements:
        text, where = versions.read_requirements(opts.requirements), opts.requirements
        if not versions.mentions_ray(text):
            text = "ray[serve]\n" + text  # the newest, as `pip install ray[serve]` would
        elif versions.lacks_serve_extra(text):  # `ray==2.40.0`: the same Ray, with Serve's packages
            text += versions.SERVE_EXTRA_LINE + "\n"
    else:
        return None, ""
    versions.check_smoke_supported(versions.pinned_ray(text), f"pinned by {where}")
    return text, where


def _ray_line(requirements: str | None, where: str) -> str:
    if requirements is None:
        return f"smoke test on Ray {_own_ray_version()} (ci-serve's own; --requirements or --ray-version " \
               "test with the Ray your cluster runs)"
    pinned = versions.pinned_ray(requirements)
    if pinned:
        return f"smoke test on Ray {pinned} (pinned by {where}), in an environment of its own"
    return f"smoke test on the newest Ray that {where} allows, in an environment of its own"


def _own_ray_version() -> str:
    try:
        return importlib.metadata.version("ray")
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"


def _driver_env(head: TemporaryHead, target: SmokeTarget) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_") and k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(head.driver_env())
    env.update(PYTHONPATH=os.pathsep.join(target.python_path), PYTHONUNBUFFERED="1",
               RAY_SERVE_SLOW_STARTUP_WARNING_S="10")
    return env


def _profile(target: SmokeTarget, capacity: HeadCapacity, deadline: float, driver: DriverProcess) -> Profile:
    from ci_serve.config.inspect import AppImportError, import_timeout, merge_deployment_options

    options: dict[str, dict[str, dict[str, Any]]] = {}
    wanted = [{"name": a.name, "import_path": a.import_path, "args": a.args} for a in target.apps]
    allowed = deadline - time.monotonic()
    try:
        answer = driver.call("inspect", allowed, apps=wanted, app_dir=target.python_path[0])
    except DriverTimeout:
        late = import_timeout(", ".join(a.import_path for a in target.apps), allowed)
        raise CheckFailed(late.message, late.hint) from None  # in smoke, an app that cannot import fails the check
    for app in target.apps:
        raw = next(a for a in target.config["applications"] if a.get("name", "default") == app.name)
        in_config = {d["name"]: {k: v for k, v in d.items() if k != "name"}
                     for d in raw.get("deployments") or [] if isinstance(d, dict) and "name" in d}
        try:
            code = appcode.code_options(answer["apps"][app.name], app.import_path)
        except AppImportError as exc:
            if app.local_code:
                raise CheckFailed(f"application {app.name!r} cannot be imported: {exc.message}", exc.hint,
                                  details=exc.details) from None
            say(f"NOTE  {app.name}: cannot import {app.import_path} here (its runtime_env brings the code); "
                "CI profile from the config only")
            options[app.name] = in_config
            continue
        options[app.name] = {name: merge_deployment_options(opts, in_config.get(name, {}))
                             for name, opts in code.items()}
    return fit_to_head(options, capacity)


def _connect(driver: DriverProcess, head: TemporaryHead, deadline: float) -> None:
    answer = driver.call("connect", max(1.0, deadline - time.monotonic()), gcs_address=head.gcs_address,
                         serve_port=head.serve_port)
    if answer.get("ok"):
        return
    if answer.get("stage") == "init":
        raise HeadStartError(f"could not connect to the temporary Ray head: {answer.get('error')}",
                             "see the head's log below", details=head.log_tail())
    raise HeadStartError(f"Serve did not start on the temporary head: {answer.get('error')}",
                         details=str(answer.get("details") or "")[-3000:] or None)


def _deploy(driver: DriverProcess, config: dict[str, Any], deadline: float) -> None:
    answer = driver.call("deploy", max(1.0, deadline - time.monotonic()), config=config)
    if not answer.get("ok"):
        raise CheckFailed(f"the Serve controller refused the config: {answer.get('error')}",
                          "check the config with `ci-serve validate`",
                          details=str(answer.get("details") or "")[-3000:] or None)


def _pending_line(pending: dict[str, Any]) -> str:
    return "; ".join(f"{k}: {v}" for k, v in pending.items()) or "waiting for the controller"


def _wait_running(driver: DriverProcess, target: SmokeTarget, head: TemporaryHead, deadline: float, timeout: float,
                  pending: dict[str, Any], result: SmokeResult) -> None:
    names = [a.name for a in target.apps]
    t0 = time.monotonic()
    while True:
        cancel.check()  # a cancel swallowed inside Ray's client surfaces here
        answer = driver.call("status", max(1.0, deadline - time.monotonic()))
        if not answer.get("ok"):
            raise CheckFailed(f"could not read Serve's status: {answer.get('error')}",
                              details=str(answer.get("details") or "")[-3000:] or None)
        apps = answer["apps"]
        verdict = readiness.judge_readiness(apps, names)
        result.applications = {n: {"status": a["status"], "message": a["message"][:2000],
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


def _deploy_failure(verdict: readiness.ReadinessVerdict, head: TemporaryHead) -> CheckFailed:
    details = trim_traceback(verdict.message.strip())
    cause = None if verdict.unschedulable else exception_line(verdict.message)
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
