"""``ci-serve smoke TARGET``: test a Serve app on a temporary Ray head, checked and cleaned up.

A thin adapter: parse, call :func:`ci_serve.smoke.runner.smoke`, write its JUnit file, return its result.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ci_serve.errors import CiServeError, InputError
from ci_serve.smoke.runner import SMOKE_TIMEOUT_S
from ci_serve.steps import StepLog

if TYPE_CHECKING:
    from ci_serve.smoke.runner import SmokeResult



def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="TARGET",
                        help="an import path `module:attribute` (an application or a builder function), served "
                             "at route prefix `/`, or a Serve config file (multi-application or 2.0 format) or a "
                             "KubeRay RayService manifest (its serveConfigV2)")
    parser.add_argument("args", nargs="*", metavar="KEY=VALUE",
                        help="arguments for a builder function (import path targets only)")
    parser.add_argument("--requests", metavar="FILE",
                        help="YAML file of requests to send and check (default: every application must answer "
                             "at its route prefix without a 5xx)")
    parser.add_argument("--app-dir", metavar="DIR", default=".",
                        help="folder put first on the import path, like `serve run -d` (default: .)")
    parser.add_argument("--timeout", metavar="SECONDS", type=float, default=SMOKE_TIMEOUT_S,
                        help=f"give up after this long in all (default: {SMOKE_TIMEOUT_S:g})")
    parser.add_argument("--report", metavar="FILE", help="write a JSON account of the run to FILE")
    parser.add_argument("--junit", metavar="FILE", help="write a JUnit XML file, one test case per request")
    pins = parser.add_mutually_exclusive_group()
    pins.add_argument("--requirements", metavar="FILE",
                      help="pip requirements file with the Ray pin (`ray[serve]==2.40.0`) and the app's packages: "
                           "the head and the app run in an environment built from it with uv, cached by its "
                           "content (default: ci-serve's own Ray)")
    pins.add_argument("--ray-version", metavar="X",
                      help="test on Ray X: short for a requirements file holding only `ray[serve]==X`")
    parser.add_argument("--no-ci-profile", dest="ci_profile", action="store_false",
                        help="deploy the config as written (default: fit replicas and resources to this machine)")


def execute(args: argparse.Namespace, log: StepLog) -> SmokeResult:
    from ci_serve.smoke import junit
    from ci_serve.smoke.runner import SmokeOptions, smoke

    if not args.timeout > 0:
        raise InputError(f"--timeout must be a positive number of seconds, got {args.timeout:g}")
    opts = SmokeOptions(target=args.target, args=list(args.args), app_dir=args.app_dir,
                        requests_file=args.requests, timeout=args.timeout, ci_profile=args.ci_profile,
                        requirements=args.requirements, ray_version=args.ray_version)
    result = None
    try:
        result = smoke(opts, log)
    finally:  # also when something other than a CiServeError stops the run (a cancel, a bug)
        if args.junit:
            stopped = CiServeError("the smoke test stopped before it finished (see the log)")
            junit.write_for(args.junit, (result.requests or []) if result else [], result.error if result else stopped,
                            elapsed_s=log.elapsed())
    return result
