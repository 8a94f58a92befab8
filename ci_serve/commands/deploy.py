"""`ci-serve deploy CONFIG`: blue-green or in-place to a Ray cluster, gated on RUNNING, rolled back on failure.

A thin adapter: flags into :class:`~ci_serve.deploy.stage.DeployInputs`, then
:func:`ci_serve.deploy.stage.deploy`.
"""

from __future__ import annotations

import argparse
import math
import os
from typing import TYPE_CHECKING

from ci_serve.commands.options import add_cluster_arguments, add_ray_pin_arguments, add_report_argument
from ci_serve.deploy.gate import DEPLOY_TIMEOUT_S, UNSCHEDULABLE_GRACE_S
from ci_serve.deploy.planner import STRATEGIES, Mode
from ci_serve.deploy.two_cluster import VERIFY_TIMEOUT_S
from ci_serve.errors import InputError
from ci_serve.steps import StepLog

if TYPE_CHECKING:
    from ci_serve.deploy.result import DeployResult
    from ci_serve.deploy.stage import RayPin, ReleaseInputs, Standby
    from ci_serve.deploy.traffic import TrafficSettings



def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", metavar="CONFIG", help="Serve config file (multi-app or 2.0) or RayService manifest")
    add_cluster_arguments(parser)
    parser.add_argument("--strategy", choices=STRATEGIES, default="auto",
                        help="auto (default): in-place for lightweight changes, blue-green otherwise")
    add_release_arguments(parser)
    parser.add_argument("--hold", action="store_true",
                        help="stop before the switch: the new version is checked on its preview prefix (the "
                             "standby across two clusters) and waits there, live untouched, for `ci-serve "
                             "promote` or `ci-serve abort` with the same --version")
    add_wait_arguments(parser)
    add_two_cluster_arguments(parser)
    add_ray_pin_arguments(parser)
    add_report_argument(parser)


def add_held_arguments(parser: argparse.ArgumentParser, verb: str) -> None:
    """``promote`` and ``abort``: the config, the cluster, the release, and deploy's checks and two-cluster flags."""
    parser.add_argument("config", metavar="CONFIG", help="the Serve config the release was held with")
    add_cluster_arguments(parser)
    parser.add_argument("--version", dest="release_version", metavar="TEXT", required=True,
                        help=f"the held release to {verb} (the --version of `deploy --hold`)")
    parser.add_argument("--serve-url", metavar="URL",
                        help="the cluster's Serve HTTP address for checks and the proxy's route table "
                             "(default: dashboard host, Serve port); across two clusters, the live one's")
    if verb == "promote":
        parser.add_argument("--requests", metavar="FILE", help="smoke requests to check the held version with")
        parser.add_argument("--working-dir", metavar="DIR",
                            help="as given to `deploy --hold`: only to tell a release whose hold found nothing to "
                                 "change (exit 0, unchanged); nothing is uploaded, the held candidate is promoted")
    add_wait_arguments(parser)
    add_two_cluster_arguments(parser)
    add_report_argument(parser)


def add_wait_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--timeout", type=float, default=DEPLOY_TIMEOUT_S, metavar="SECONDS",
                        help=f"how long the gate waits for RUNNING (default {DEPLOY_TIMEOUT_S:g})")
    parser.add_argument("--unschedulable-grace", type=float, metavar="SECONDS",
                        default=float(os.environ.get("CI_SERVE_UNSCHEDULABLE_GRACE_S") or UNSCHEDULABLE_GRACE_S),
                        help="fail this long after replicas are reported unschedulable "
                             "(default 60, or $CI_SERVE_UNSCHEDULABLE_GRACE_S)")


def add_two_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    two = parser.add_argument_group(
        "blue-green across two clusters",
        "deploy the whole config to a standby cluster, check it, run --switch-command to move the traffic, "
        "verify the public entry; switch back on failure (see docs/two-clusters.md)")
    two.add_argument("--standby-address", metavar="URL", help="dashboard of the standby cluster (the new version)")
    two.add_argument("--standby-url", metavar="URL", help="Serve HTTP address of the standby cluster, for checks")
    two.add_argument("--switch-command", metavar="CMD",
                     help="shell command that moves traffic to $CI_SERVE_NEW_URL (also gets CI_SERVE_NEW_ADDRESS, "
                          "CI_SERVE_OLD_ADDRESS); the one input run by a shell")
    two.add_argument("--verify-url", metavar="URL", help="the public entry that must answer from the new version")
    two.add_argument("--verify-timeout", type=float, default=VERIFY_TIMEOUT_S, metavar="SECONDS",
                     help="how long the public entry may take to answer from the new version (default 60)")
    two.add_argument("--keep-standby", action="store_true",
                     help="after the switch, keep the old cluster's applications running as a warm standby "
                          "(after a failed traffic step: keep the candidate on the standby)")
    steps = parser.add_argument_group(
        "traffic steps across two clusters",
        "move the traffic in steps instead of one switch, each held and judged by Serve's own metrics in "
        "Prometheus (see docs/progressive.md)")
    steps.add_argument("--traffic-command", metavar="CMD",
                       help="shell command that gives the new cluster $CI_SERVE_TRAFFIC_WEIGHT percent of the "
                            "traffic ({weight} in it is replaced too); replaces --switch-command")
    steps.add_argument("--traffic-steps", metavar="LIST",
                       help="the new cluster's share at each step, in percent (default 10,50,100; the last is 100)")
    steps.add_argument("--step-interval", type=float, metavar="SECONDS",
                       help="how long each step holds before it is judged (default 60)")
    steps.add_argument("--prometheus-url", metavar="URL",
                       help="Prometheus that scrapes both clusters: each step is judged on the Serve request "
                            "metrics of each version (without it, no metric is analysed: each step sends the "
                            "requests through --verify-url)")
    steps.add_argument("--prometheus-header", metavar="'NAME: VALUE'", action="append", default=[],
                       help="a header for Prometheus, e.g. 'Authorization: Bearer TOKEN' (repeatable; masked)")
    steps.add_argument("--max-error-rate", type=float, metavar="PERCENT",
                       help="a step fails when more of the new version's answers are 5xx (default 1)")
    steps.add_argument("--max-p99-ms", type=float, metavar="MS",
                       help="a step fails when the new version's P99 latency is above this")
    steps.add_argument("--min-requests", type=int, metavar="N",
                       help="fewer requests to the new version in an interval say nothing: the step is held up "
                            "to 3 more intervals, then fails (default 20)")
    steps.add_argument("--metrics-lag", type=float, metavar="SECONDS",
                       help="how far Prometheus lags the Serve proxies (default: Ray's report interval, 10 s, "
                            "plus Prometheus's scrape interval, read from its config)")


def add_release_arguments(parser: argparse.ArgumentParser) -> None:
    """The inputs that decide what a deploy writes: shared by `deploy` and `plan`."""
    parser.add_argument("--requests", metavar="FILE", help="smoke requests to check the new version with")
    parser.add_argument("--working-dir", metavar="DIR",
                        help="folder to upload as every application's runtime_env.working_dir")
    parser.add_argument("--version", dest="release_version", metavar="TEXT",
                        help="release version shown by `status` (default: $GITHUB_SHA)")
    parser.add_argument("--serve-url", metavar="URL",
                        help="the cluster's Serve HTTP address for checks and the proxy's route table "
                             "(default: dashboard host, Serve port); across two clusters, the live one's")


def release_inputs(args: argparse.Namespace) -> ReleaseInputs:
    from ci_serve.deploy.stage import ReleaseInputs

    return ReleaseInputs(strategy=getattr(args, "strategy", "auto"), requests_file=getattr(args, "requests", None),
                         working_dir=getattr(args, "working_dir", None), version=args.release_version,
                         serve_url=args.serve_url)


def ray_pin(args: argparse.Namespace) -> RayPin:
    from ci_serve.deploy.stage import RayPin

    return RayPin(args.requirements, args.ray_version, args.require_same_ray)


def execute(args: argparse.Namespace, log: StepLog) -> DeployResult:
    return execute_mode(args, log, "hold" if args.hold else "deploy")


def execute_mode(args: argparse.Namespace, log: StepLog, mode: Mode) -> DeployResult:
    """``deploy`` (``--hold``), ``promote`` and ``abort``: one stage, one executor."""
    from ci_serve.cluster.dashboard import DashboardAccess
    from ci_serve.deploy.stage import DeployInputs, deploy

    if args.timeout <= 0 or args.unschedulable_grace < 0:
        raise InputError("--timeout must be positive and --unschedulable-grace not negative")
    pinned = getattr(args, "requirements", None) or getattr(args, "ray_version", None) or \
        getattr(args, "require_same_ray", False)
    inputs = DeployInputs(config=args.config, cluster=DashboardAccess(args.address, args.ca_cert, args.insecure),
                          release=release_inputs(args), pin=ray_pin(args) if pinned else None,
                          timeout=args.timeout, unschedulable_grace=args.unschedulable_grace,
                          standby=standby(args, mode), mode=mode)
    return deploy(inputs, log)


def standby(args: argparse.Namespace, mode: Mode = "deploy") -> Standby | None:
    """The two-cluster flags, all or none of the three that name the standby and the switch. ``abort`` only
    removes the held release from the standby: it needs --standby-address, and no switch command."""
    from ci_serve.deploy.stage import Standby

    traffic = traffic_settings(args, mode)
    command = getattr(args, "traffic_command", None)
    if command and args.switch_command:
        raise InputError("--traffic-command and --switch-command both move the traffic: pass one",
                         "--traffic-command with --traffic-steps moves it in steps; --switch-command in one")
    needed = (("--standby-address", args.standby_address), ("--standby-url", args.standby_url),
              ("--switch-command (or --traffic-command)", args.switch_command or command))
    missing = [flag for flag, value in needed if not value]
    if len(missing) == len(needed):
        return None
    if mode == "abort":
        if not args.standby_address:
            raise InputError("an abort across two clusters needs --standby-address, the cluster the release is "
                             "held on", "pass --standby-address (--standby-url and --switch-command are not needed)")
    elif missing:
        raise InputError(f"a {'promote' if mode == 'promote' else 'deploy'} across two clusters needs "
                         f"{', '.join(missing)} too",
                         "pass --standby-address, --standby-url and --switch-command (or --traffic-command) "
                         "together")
    if getattr(args, "strategy", "auto") != "auto":
        raise InputError("--strategy does not apply across two clusters: the whole config goes to the standby")
    if args.verify_timeout <= 0:
        raise InputError("--verify-timeout must be positive")
    return Standby(args.standby_address, args.standby_url or "", args.switch_command or "", args.verify_url,
                   args.verify_timeout, args.keep_standby, traffic=traffic)


#: the flags that only mean something with --traffic-command (their defaults are None or []: a flag given is
#: seen, even with its default value; the defaults are applied in :func:`traffic_settings`)
TRAFFIC_FLAGS = ("--traffic-steps", "--step-interval", "--prometheus-url", "--prometheus-header", "--max-error-rate",
                 "--max-p99-ms", "--min-requests", "--metrics-lag")

#: the flags that only mean something with --prometheus-url
METRIC_FLAGS = ("--prometheus-header", "--max-error-rate", "--max-p99-ms", "--min-requests", "--metrics-lag")


def traffic_settings(args: argparse.Namespace, mode: Mode) -> TrafficSettings | None:
    """``--traffic-command`` and its steps, checked (exit 2 before anything is written)."""
    from ci_serve.deploy.traffic import TrafficSettings, parse_interval, parse_thresholds, parse_weights

    given = [flag for flag in TRAFFIC_FLAGS if getattr(args, flag[2:].replace("-", "_"), None) not in (None, [])]
    if not getattr(args, "traffic_command", None):
        if given:
            raise InputError(f"{given[0]} applies to traffic steps only",
                             "pass --traffic-command too (with --standby-address and --standby-url)")
        return None
    if not args.standby_address:
        raise InputError("--traffic-command moves traffic between two clusters: it needs --standby-address and "
                         "--standby-url", "traffic steps do not fit one cluster (docs/progressive.md says why)")
    judged = [flag for flag in METRIC_FLAGS if flag in given]
    if judged and not args.prometheus_url:
        raise InputError(f"{judged[0]} applies to steps judged on metrics, and no --prometheus-url is given",
                         "pass --prometheus-url too, or leave it out: without metrics each step is judged by the "
                         "requests sent through --verify-url")
    from ci_serve.deploy.prometheus import parse_headers

    headers = parse_headers(args.prometheus_header)
    if args.metrics_lag is not None and not 0 <= args.metrics_lag < math.inf:
        raise InputError(f"--metrics-lag {args.metrics_lag:g}: must be a number of seconds, 0 or more",
                         "leave it out to derive it from Prometheus's scrape interval")
    weights = parse_weights("10,50,100" if args.traffic_steps is None else args.traffic_steps)
    interval = parse_interval(60.0 if args.step_interval is None else args.step_interval)
    limits = parse_thresholds(1.0 if args.max_error_rate is None else args.max_error_rate, args.max_p99_ms,
                              20 if args.min_requests is None else args.min_requests)
    if mode in ("hold", "abort"):
        return None  # checked as the promote will take them; a hold stops before the traffic moves, an abort moves none
    if not args.prometheus_url and not args.verify_url:
        raise InputError("traffic steps without --prometheus-url are judged through the public entry, and no "
                         "--verify-url names it",
                         "pass --verify-url (the address your users reach), and --prometheus-url to judge each "
                         "step on Serve's metrics")
    return TrafficSettings(args.traffic_command, weights, interval, limits,
                           args.prometheus_url, headers, args.metrics_lag)
