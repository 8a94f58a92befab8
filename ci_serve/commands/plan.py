"""`ci-serve plan CONFIG --address URL [deploy's inputs] [--app-dir DIR] [--report FILE]`: what `deploy` would do.

Takes the same inputs as `deploy` (``--working-dir``, ``--version``, ``--strategy``, ``--serve-url``,
``--requests``) and runs the same steps up to the decision: the same validation (exit 2), the same
package URIs (computed, not uploaded), the same cluster view and the same planner. It prints the
planner's writes with their declared effects and the field-by-field diff. It also imports each
application's code from ``--app-dir`` when it can, to show deployments added to or removed from the code
(an app that does not import here is compared on its config alone, with a warning). It changes nothing
on the cluster. The logic is :mod:`ci_serve.deploy.preview`'s; this reads the flags and prints the plan.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from ci_serve import console
from ci_serve.commands.deploy import add_release_arguments, ray_pin, release_inputs
from ci_serve.commands.options import add_cluster_arguments, add_ray_pin_arguments
from ci_serve.deploy.planner import STRATEGIES
from ci_serve.steps import StepLog

if TYPE_CHECKING:
    from ci_serve.deploy.preview import PlanResult


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", metavar="CONFIG",
                        help="the Serve config file (YAML) you would deploy, or a KubeRay RayService manifest")
    add_cluster_arguments(parser)
    parser.add_argument("--app-dir", default=None, metavar="DIR",
                        help="folder the import paths are imported from (default: each application's local "
                             "runtime_env.working_dir, relative to CONFIG, else the current folder)")
    parser.add_argument("--strategy", choices=STRATEGIES, default="auto",
                        help="as for deploy (default auto)")
    add_release_arguments(parser)
    parser.add_argument("--report", metavar="FILE", help="write the plan as JSON (under \"plan\") to FILE")
    add_ray_pin_arguments(parser)


def execute(args: argparse.Namespace, log: StepLog) -> PlanResult:
    from ci_serve.cluster.dashboard import DashboardAccess
    from ci_serve.deploy.preview import PlanInputs, preview

    inputs = PlanInputs(config=args.config, cluster=DashboardAccess(args.address, args.ca_cert, args.insecure),
                        release=release_inputs(args), pin=ray_pin(args), app_dir=args.app_dir)
    result = preview(inputs, log)
    for line in result.lines():  # the plan is the output: stdout
        console.say(line, stream=sys.stdout)
    return result
