"""Which ``ci-serve`` commands an action run makes, and what its outputs are: pure functions.

``auto`` is the pull-request-to-production pipeline: validate, smoke, then deploy when an address is
given. Each command writes its report under :data:`REPORT_DIR` in the workspace, so later steps of
the job (which see the workspace at another path than the container) find it by a relative path.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ci_serve.action.inputs import Inputs

REPORT_DIR = ".ci-serve"
#: the values of the ``result`` output
RESULTS = ("passed", "deployed", "unchanged", "held", "aborted", "failed", "rolled-back", "error")
#: what a command that exits 0 may say it did, taken as the ``result`` output
_DONE_WORDS = {"deploy": ("deployed", "unchanged", "held"), "promote": ("deployed", "unchanged"),
               "abort": ("aborted", "unchanged")}
#: commands whose report says what serves afterwards (``url``, ``live-app``, ``release``)
RELEASE_WRITERS = ("deploy", "promote", "abort")
#: commands that import the app's code in the action's own Python, so ``requirements`` (its Ray pin
#: left out) is installed into it before them; ``smoke`` builds an environment of its own from it
IMPORTS_APP = ("validate", "build", "plan", "deploy")
#: commands given the app's Ray pin: smoke tests on it, plan and deploy compare it with the cluster's
RAY_PIN_COMMANDS = ("smoke", "plan", "deploy")


@dataclass(frozen=True)
class Invocation:
    """One ``ci-serve`` command line (without the program name) and where its report goes."""

    command: str
    argv: list[str]
    report: str
    junit: str | None = None

    @property
    def title(self) -> str:
        """The command line in one line: a value of several lines (a traffic command) by its first, then …"""
        shown = [a if "\n" not in a.strip() else a.strip().splitlines()[0] + " …"
                 for a in self.argv if a not in ("--report", self.report)]
        return "ci-serve " + " ".join(shown)


def _report(command: str) -> str:
    return f"{REPORT_DIR}/{command}.json"


def _smoke_target(inputs: Inputs) -> list[str]:
    return inputs.target or [inputs.config]


#: commands that talk to a dashboard: they take --ca-cert / --insecure
CLUSTER_COMMANDS = ("plan", "deploy", "promote", "abort", "status")
#: commands with a --serve-url
SERVE_URL_COMMANDS = ("deploy", "promote", "abort", "status")


def _app_dir(inputs: Inputs) -> list[str]:
    """``--app-dir`` only when the input is given: otherwise each command's own default holds."""
    return ["--app-dir", inputs.app_dir] if inputs.app_dir else []


def invocation(command: str, inputs: Inputs) -> Invocation:
    """The command line for one command. Cluster commands get the token through the environment.
    ``inputs.ca_cert`` must be a path by now (main writes PEM content to a file first)."""
    report = _report(command)
    argv: list[str] = [command]
    junit = None
    if command == "validate":
        argv += [inputs.config, *_app_dir(inputs)]
        if inputs.ray_version:  # the rules of the Ray the app pins (docs/config.md, per-release validation)
            argv += ["--ray-version", inputs.ray_version]
        elif inputs.requirements:
            argv += ["--requirements", inputs.requirements]
    elif command == "smoke":
        junit = f"{REPORT_DIR}/smoke-junit.xml"
        argv += [*_smoke_target(inputs), *_app_dir(inputs), "--junit", junit]
        if inputs.requests:
            argv += ["--requests", inputs.requests]
        if inputs.timeout:
            argv += ["--timeout", inputs.timeout]
    elif command == "build":
        from ci_serve.config.rayservice import is_rayservice_file  # `config` a RayService: edit it, not replace it

        out = "--rayservice" if is_rayservice_file(inputs.config) else "-o"
        argv += [*(inputs.target or []), *_app_dir(inputs), out, inputs.config]
    elif command == "plan":
        argv += [inputs.config, "--address", _need(inputs.address), *_app_dir(inputs)]
    elif command == "deploy":
        argv += [inputs.config, "--address", _need(inputs.address), "--strategy", inputs.strategy]
        argv += ["--hold"] if inputs.hold else []
        argv += _flags(("--version", inputs.release), ("--requests", inputs.requests),
                       ("--working-dir", inputs.working_dir))
        argv += _release_flags(inputs, traffic=True)
    elif command in ("promote", "abort"):
        # the candidate is already on the cluster: no strategy, package or Ray pin; promote checks it again
        argv += [inputs.config, "--address", _need(inputs.address), "--version", _need(inputs.release)]
        argv += _flags(("--requests", inputs.requests)) if command == "promote" else []
        argv += _release_flags(inputs, traffic=command == "promote")  # a promote walks the same steps
    elif command == "status":
        argv += ["--address", _need(inputs.address)]
        argv += _flags(("--standby-address", inputs.standby_address), ("--standby-url", inputs.standby_url))
    else:
        raise ValueError(f"not a ci-serve command: {command}")
    if command in RAY_PIN_COMMANDS and inputs.requirements:
        argv += ["--requirements", inputs.requirements]
    elif command in RAY_PIN_COMMANDS and inputs.ray_version:
        argv += ["--ray-version", inputs.ray_version]
    if command in SERVE_URL_COMMANDS and inputs.serve_url:
        argv += ["--serve-url", inputs.serve_url]
    if command in CLUSTER_COMMANDS and inputs.ca_cert:
        argv += ["--ca-cert", inputs.ca_cert]
    if command in CLUSTER_COMMANDS and inputs.insecure:
        argv.append("--insecure")
    for name, words in inputs.extra_args:
        if name == command:
            argv += list(words)
    argv += ["--report", report]
    return Invocation(command=command, argv=argv, report=report, junit=junit)


def _flags(*pairs: tuple[str, str | None]) -> list[str]:
    return [word for flag, value in pairs if value for word in (flag, value)]


def _release_flags(inputs: Inputs, *, traffic: bool) -> list[str]:
    """The flags deploy, promote and abort share: the gate's timeout and the two-cluster ones; with
    ``traffic`` a progressive release's steps (instead of the one switch; an abort moves no traffic)."""
    return [*_flags(("--timeout", inputs.timeout), ("--standby-address", inputs.standby_address),
                    ("--standby-url", inputs.standby_url), ("--switch-command", inputs.switch_command),
                    ("--verify-url", inputs.verify_url)),
            *(inputs.traffic.argv() if inputs.traffic and traffic else [])]


def _need(value: str | None) -> str:
    if not value:  # read_inputs already refused this; a bug if reached
        raise ValueError("missing address or release")
    return value


def pipeline(inputs: Inputs) -> list[Invocation]:
    """The commands to run, in order; the run stops at the first that does not exit 0."""
    if inputs.command == "auto":
        names = ["validate", "smoke"] + (["deploy"] if inputs.address else [])
    else:
        names = [inputs.command]
    return [invocation(name, inputs) for name in names]


def needs_requirements(invocations: list[Invocation]) -> bool:
    return any(inv.command in IMPORTS_APP for inv in invocations)


def result_word(command: str, exit_code: int, report: dict[str, Any] | None) -> str:
    """The ``result`` output for a command's outcome, always one of :data:`RESULTS`."""
    said: str | None = (report or {}).get("result")
    if exit_code == 0:
        if said in _DONE_WORDS.get(command, ()):
            return str(said)
        return {"deploy": "deployed", "promote": "deployed", "abort": "aborted"}.get(command, "passed")
    if said in ("failed", "rolled-back", "error"):
        return said
    return "error" if exit_code == 2 else "failed"


@dataclass(frozen=True)
class Outcome:
    """What one invocation did: its exit code and its report (``None`` if it wrote none)."""

    invocation: Invocation
    exit_code: int
    report: dict[str, Any] | None


def public_url(report: dict[str, Any], serve_url: str | None, address: str | None) -> str:
    """The ``url`` output: where what serves now answers. The report's ``live_url`` (the Serve address
    the deploy checked, from the cluster's ``http_options`` or ``serve-url``; two clusters: the new live
    one), else ``serve-url``, else the dashboard's host on Serve's default port 8000; plus the route
    prefix when the plan has exactly one. After a hold or an abort that is the live version, which they
    leave as it was (empty when nothing was live). Empty when the command did not end serving."""
    result = report.get("result")
    if result not in ("deployed", "unchanged", "held", "aborted"):
        return ""
    if result in ("held", "aborted") and not report.get("live_app"):
        return ""  # the first release held (or its hold aborted): nothing serves yet
    base = str(report.get("live_url") or serve_url or "")
    if not base and address:
        host = urlsplit(address if "://" in address else f"http://{address}").hostname
        if host:
            base = f"http://{f'[{host}]' if ':' in host else host}:8000"
    if not base:
        return ""
    plan = report.get("plan") if isinstance(report.get("plan"), dict) else {}
    prefixes = {a.get("route_prefix") for a in (plan or {}).get("applications") or [] if isinstance(a, dict)}
    prefixes.discard(None)
    prefix = str(prefixes.pop()) if len(prefixes) == 1 else "/"
    return base.rstrip("/") + (prefix.rstrip("/") if prefix.startswith("/") else "")


def preview_urls(report: dict[str, Any]) -> dict[str, str]:
    """A hold's ``preview_urls`` (logical application -> where its held candidate answers), in the
    report's order; empty for anything but a hold."""
    if report.get("result") != "held" or not isinstance(report.get("preview_urls"), dict):
        return {}
    return {str(app): str(url) for app, url in report["preview_urls"].items() if url}


def release_of(outcome: Outcome) -> str:
    """The release a deploy, promote or abort acted on: its report's ``release``, else the
    ``--version`` it was given; empty when it had none."""
    said = (outcome.report or {}).get("release")
    if said:
        return str(said)
    argv = outcome.invocation.argv
    return argv[argv.index("--version") + 1] if "--version" in argv[:-1] else ""


def outputs(outcomes: list[Outcome], exists: Callable[[str], bool] = lambda path: True,
            fallback_result: str = "error", inputs: Inputs | None = None) -> dict[str, str]:
    """The action's outputs from what ran. Missing values are empty strings, as a runner shows them.

    ``exists`` tells whether a file was written (the JUnit file is not, when smoke stopped early).
    ``preview-url`` is the first held candidate's URL (in the config's order); every application's
    is in the summary and in the report's ``preview_urls``.
    """
    out = {"result": fallback_result, "report": "", "junit": "", "live-app": "", "plan": "",
           "live-address": "", "standby-address": "", "url": "", "preview-url": "", "release": "",
           "traffic-steps": ""}
    if not outcomes:
        return out
    last = outcomes[-1]
    out["result"] = result_word(last.invocation.command, last.exit_code, last.report)
    written = [o for o in outcomes if o.report is not None]
    if written:
        out["report"] = written[-1].invocation.report
    for o in outcomes:
        report = o.report or {}
        if o.invocation.junit and exists(o.invocation.junit):
            out["junit"] = o.invocation.junit
        if report.get("live_app"):
            out["live-app"] = str(report["live_app"])
        if report.get("live_address") and report.get("result") in ("deployed", "unchanged", "held", "aborted",
                                                                  "rolled-back"):
            out["live-address"] = str(report["live_address"])
            out["standby-address"] = str(report.get("standby_address") or "")
        if isinstance(report.get("plan"), dict):
            out["plan"] = json.dumps(report["plan"], sort_keys=True)
        if o.invocation.command in RELEASE_WRITERS:
            out["url"] = public_url(report, inputs.serve_url if inputs else None, inputs.address if inputs else None)
            out["preview-url"] = next(iter(preview_urls(report).values()), "")
            out["release"] = release_of(o)
        if isinstance(report.get("traffic_steps"), list):
            out["traffic-steps"] = json.dumps(report["traffic_steps"], sort_keys=True)
    return out
