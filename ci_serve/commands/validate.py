"""`ci-serve validate CONFIG [--app-dir DIR] [--no-import]`: every problem, with file:line:column."""

from __future__ import annotations

import argparse
from typing import Any

from ci_serve import console
from ci_serve.config.validate import validate_config
from ci_serve.errors import ConfigError
from ci_serve.report import Run


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", metavar="CONFIG",
                        help="the Serve config file (YAML), or a KubeRay RayService manifest (its serveConfigV2)")
    parser.add_argument("--app-dir", default=None, metavar="DIR",
                        help="folder the import paths are imported from (default: each application's local "
                             "runtime_env.working_dir, relative to CONFIG, else the current folder)")
    parser.add_argument("--no-import", action="store_true",
                        help="skip importing the application code (structure and values only)")


def run(args: argparse.Namespace, run: Run) -> int:
    check = "structure and values" if args.no_import else "structure, values and code"
    with console.step(run, f"validate {args.config} ({check})") as st:
        result = validate_config(args.config, args.app_dir, check_imports=not args.no_import)
        run.data["problems"] = [p.as_dict() for p in result.problems]
        run.data["warnings"] = [p.as_dict() for p in result.warnings]
        if result.config is not None:
            run.data["notices"] = list(result.config.notices)
            for notice in result.config.notices:
                console.say(f"NOTE  {notice}")
        for warning in result.warnings:
            console.say(f"WARN  {warning.render().removeprefix('warning: ')}")
        for problem in result.problems:
            console.say(problem.render())
        if result.problems:
            st.detail = f"{len(result.problems)} problem(s)"
            raise ConfigError(f"{args.config}: {_count(result.problems)} found", FIX_HINT,
                              problems=result.problems)
        apps = result.config.applications if result.config else []
        deployments = sum(len(a.get("deployments") or []) for a in apps)
        st.detail = f"{len(apps)} application(s), {deployments} deployment override(s)" + \
            (f", {len(result.warnings)} warning(s)" if result.warnings else "")
    run.result = "valid"
    return 0


FIX_HINT = "fix each problem at the line shown (the `fix:` line says how), then run validate again"


def _count(problems: list[Any]) -> str:
    return "1 problem" if len(problems) == 1 else f"{len(problems)} problems"
