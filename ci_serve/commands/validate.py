"""`ci-serve validate CONFIG [--app-dir DIR] [--no-import] [--ray-version X | --requirements FILE]`: every
problem, with file:line:column, by the rules of the Ray release the config is meant for."""

from __future__ import annotations

import argparse
from typing import Any

from ci_serve.cluster import versions
from ci_serve.config.validate import validate_step
from ci_serve.errors import ConfigError, InputError
from ci_serve.steps import Done, StepLog


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", metavar="CONFIG",
                        help="the Serve config file (YAML), or a KubeRay RayService manifest (its serveConfigV2)")
    parser.add_argument("--app-dir", default=None, metavar="DIR",
                        help="folder the import paths are imported from (default: each application's local "
                             "runtime_env.working_dir, relative to CONFIG, else the current folder)")
    parser.add_argument("--no-import", action="store_true",
                        help="skip importing the application code (structure and values only)")
    parser.add_argument("--ray-version", default=None, metavar="X.Y.Z",
                        help="check by the rules of this Ray release, the one the cluster runs (default: the Ray "
                             "ci-serve runs on)")
    parser.add_argument("--requirements", default=None, metavar="FILE",
                        help="check by the rules of the Ray this pip requirements file pins (`ray[serve]==X`), "
                             "read as `smoke` reads it")


def execute(args: argparse.Namespace, log: StepLog) -> Done:
    version, source = target_release(getattr(args, "ray_version", None), getattr(args, "requirements", None))
    checked = validate_step(args.config, args.app_dir, check_imports=not args.no_import, log=log,
                            ray_version=version, source=source)
    error = ConfigError(f"{args.config}: {_count(checked.problems)} found", FIX_HINT,
                        problems=checked.problems) if checked.problems else None
    return Done("valid", checked.sections(), error)


def target_release(ray_version: str | None, requirements: str | None) -> tuple[str | None, str]:
    """(the Ray release to check for, None for ci-serve's own; where it came from)."""
    if ray_version and requirements:
        raise InputError("pass either --ray-version or --requirements, not both",
                         "the Ray pin (`ray[serve]==X`) in the requirements file names the release")
    if ray_version:
        return ray_version, "--ray-version"
    if requirements:
        pinned = versions.pinned_ray(versions.read_requirements(requirements))
        if pinned:
            return pinned, f"pinned by {requirements}"
        return None, f"{requirements} pins no exact Ray (`ray[serve]==X`): the Ray ci-serve runs on"
    return None, ""


FIX_HINT = "fix each problem at the line shown (the `fix:` line says how), then run validate again"


def _count(problems: list[Any]) -> str:
    return "1 problem" if len(problems) == 1 else f"{len(problems)} problems"
