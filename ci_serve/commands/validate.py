"""`ci-serve validate CONFIG [--app-dir DIR] [--no-import]`: every problem, with file:line:column."""

from __future__ import annotations

import argparse
from typing import Any

from ci_serve.config.validate import validate_step
from ci_serve.errors import ConfigError
from ci_serve.steps import Done, StepLog


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", metavar="CONFIG",
                        help="the Serve config file (YAML), or a KubeRay RayService manifest (its serveConfigV2)")
    parser.add_argument("--app-dir", default=None, metavar="DIR",
                        help="folder the import paths are imported from (default: each application's local "
                             "runtime_env.working_dir, relative to CONFIG, else the current folder)")
    parser.add_argument("--no-import", action="store_true",
                        help="skip importing the application code (structure and values only)")


def execute(args: argparse.Namespace, log: StepLog) -> Done:
    checked = validate_step(args.config, args.app_dir, check_imports=not args.no_import, log=log)
    error = ConfigError(f"{args.config}: {_count(checked.problems)} found", FIX_HINT,
                        problems=checked.problems) if checked.problems else None
    return Done("valid", checked.sections(), error)


FIX_HINT = "fix each problem at the line shown (the `fix:` line says how), then run validate again"


def _count(problems: list[Any]) -> str:
    return "1 problem" if len(problems) == 1 else f"{len(problems)} problems"
