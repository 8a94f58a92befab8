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

from ci_serve.action.inputs import Inputs

REPORT_DIR = ".ci-serve"
#: the values of the ``result`` output
RESULTS = ("passed", "deployed", "unchanged", "failed", "rolled-back", "error")
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
        shown = [a for a in self.argv if a not in ("--report", self.report)]
        return "ci-serve " + " ".join(shown)


def _report(command: str) -> str:
    return f"{REPORT_DIR}/{command}.json"


def _smoke_target(inputs: Inputs) -> list[str]:
    return inputs.target or [inputs.config]


def invocation(command: str, inputs: Inputs) -> Invocation:
    """The command line for one command. Cluster commands get the token through the environment."""
    report = _report(command)
    argv: list[str] = [command]
    junit = None
    if command == "validate":
        argv += [inputs.config, "--app-dir", inputs.app_dir]
        if inputs.ray_version:  # the rules of the Ray the app pins (docs/config.md, per-release validation)
            argv += ["--ray-version", inputs.ray_version]
        elif inputs.requirements:
            argv += ["--requirements", inputs.requirements]
    elif command == "smoke":
        junit = f"{REPORT_DIR}/smoke-junit.xml"
        argv += [*_smoke_target(inputs), "--app-dir", inputs.app_dir, "--junit", junit]
        if inputs.requests:
            argv += ["--requests", inputs.requests]
        if inputs.timeout:
            argv += ["--timeout", inputs.timeout]
    elif command == "build":
        from ci_serve.config.rayservice import is_rayservice_file  # `config` a RayService: edit it, not replace it

        out = "--rayservice" if is_rayservice_file(inputs.config) else "-o"
        argv += [*(inputs.target or []), "--app-dir", inputs.app_dir, out, inputs.config]
    elif command == "plan":
        argv += [inputs.config, "--address", _need(inputs.address), "--app-dir", inputs.app_dir]
    elif command == "deploy":
        argv += [inputs.config, "--address", _need(inputs.address), "--strategy", inputs.strategy]
        for flag, value in (("--requests", inputs.requests), ("--working-dir", inputs.working_dir),
                            ("--timeout", inputs.timeout), ("--standby-address", inputs.standby_address),
                            ("--standby-url", inputs.standby_url), ("--switch-command", inputs.switch_command),
                            ("--verify-url", inputs.verify_url)):
            if value:
                argv += [flag, value]
    elif command == "status":
        argv += ["--address", _need(inputs.address)]
    else:
        raise ValueError(f"not a ci-serve command: {command}")
    if command in RAY_PIN_COMMANDS and inputs.requirements:
        argv += ["--requirements", inputs.requirements]
    elif command in RAY_PIN_COMMANDS and inputs.ray_version:
        argv += ["--ray-version", inputs.ray_version]
    argv += ["--report", report]
    return Invocation(command=command, argv=argv, report=report, junit=junit)


def _need(value: str | None) -> str:
    if not value:  # read_inputs already refused this; a bug if reached
        raise ValueError("missing address")
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
        if command == "deploy" and said in ("deployed", "unchanged"):
            return said
        return "deployed" if command == "deploy" else "passed"
    if said in ("failed", "rolled-back", "error"):
        return said
    return "error" if exit_code == 2 else "failed"


@dataclass(frozen=True)
class Outcome:
    """What one invocation did: its exit code and its report (``None`` if it wrote none)."""

    invocation: Invocation
    exit_code: int
    report: dict[str, Any] | None


def outputs(outcomes: list[Outcome], exists: Callable[[str], bool] = lambda path: True,
            fallback_result: str = "error") -> dict[str, str]:
    """The action's outputs from what ran. Missing values are empty strings, as a runner shows them.

    ``exists`` tells whether a file was written (the JUnit file is not, when smoke stopped early).
    """
    out = {"result": fallback_result, "report": "", "junit": "", "live-app": "", "plan": "",
           "live-address": "", "standby-address": ""}
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
        if report.get("live_address") and report.get("result") in ("deployed", "unchanged", "rolled-back"):
            out["live-address"] = str(report["live_address"])
            out["standby-address"] = str(report.get("standby_address") or "")
        if isinstance(report.get("plan"), dict):
            out["plan"] = json.dumps(report["plan"], sort_keys=True)
    return out
