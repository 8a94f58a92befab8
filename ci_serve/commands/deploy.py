"""`ci-serve deploy CONFIG`: blue-green or in-place to a Ray cluster, gated on RUNNING, rolled back on failure."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ci_serve import console
from ci_serve.cli import add_cluster_arguments, add_ray_pin_arguments, add_report_argument
from ci_serve.config.loader import ConfigFile
from ci_serve.errors import ConfigError, InputError
from ci_serve.report import Run

if TYPE_CHECKING:
    from ci_serve.cluster.dashboard import DashboardClient
    from ci_serve.smoke.requests_file import SmokeRequest

STRATEGIES = ("auto", "in-place", "blue-green")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", metavar="CONFIG", help="Serve config file (multi-app or 2.0) or RayService manifest")
    add_cluster_arguments(parser)
    parser.add_argument("--strategy", choices=STRATEGIES, default="auto",
                        help="auto (default): in-place for lightweight changes, blue-green otherwise")
    add_release_arguments(parser)
    parser.add_argument("--timeout", type=float, default=600.0, metavar="SECONDS",
                        help="how long the gate waits for RUNNING (default 600)")
    parser.add_argument("--unschedulable-grace", type=float, metavar="SECONDS",
                        default=float(os.environ.get("CI_SERVE_UNSCHEDULABLE_GRACE_S") or 60.0),
                        help="fail this long after replicas are reported unschedulable "
                             "(default 60, or $CI_SERVE_UNSCHEDULABLE_GRACE_S)")
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
    two.add_argument("--verify-timeout", type=float, default=60.0, metavar="SECONDS",
                     help="how long the public entry may take to answer from the new version (default 60)")
    two.add_argument("--keep-standby", action="store_true",
                     help="after the switch, keep the old cluster's applications running as a warm standby")
    add_ray_pin_arguments(parser)
    add_report_argument(parser)


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


def validated_config(path: str, run: Run) -> ConfigFile:
    """The config, checked exactly as `ci-serve validate --no-import` checks it: any problem is exit 2
    before anything is read from or written to a cluster. (The one call to the validator on the deploy path.)"""
    from ci_serve.config.validate import validate_config

    with console.step(run, f"validate {path}") as st:
        checked = validate_config(path, None, check_imports=False)
        run.data["problems"] = [p.as_dict() for p in checked.problems]
        for problem in checked.problems:
            console.say(problem.render())
        if checked.problems or checked.config is None:
            st.detail = f"{len(checked.problems)} problem(s)"
            raise ConfigError(f"{path}: {len(checked.problems)} problem(s); nothing was written",
                              f"run `ci-serve validate {path}` and fix them", problems=checked.problems)
        for notice in checked.config.notices:
            console.say(f"NOTE  {notice}")
        run.data["warnings"] = [w.as_dict() for w in checked.warnings]  # as validate prints them
        for warning in checked.warnings:
            console.say(f"WARN  {warning.render().removeprefix('warning: ')}")
        st.detail = f"{len(checked.config.applications)} application(s)"
    return checked.config


def release_inputs(args: argparse.Namespace) -> tuple[list[SmokeRequest] | None, Path | None, str | None]:
    """(requests, working_dir, version) from the flags, checked."""
    reqs = None
    if args.requests:
        from ci_serve.smoke.requests_file import load_requests
        reqs = load_requests(args.requests)
    working_dir = Path(args.working_dir) if args.working_dir else None
    if working_dir is not None and not working_dir.is_dir():
        raise InputError(f"--working-dir {working_dir} is not a folder", "pass the folder that holds your app code")
    version = args.release_version or os.environ.get("GITHUB_SHA") or None
    return reqs, working_dir, version


def run(args: argparse.Namespace, run: Run) -> int:
    from ci_serve.cluster.address import resolve_target
    from ci_serve.cluster.dashboard import DashboardClient
    from ci_serve.deploy.release import Options, Release

    if args.timeout <= 0 or args.unschedulable_grace < 0:
        raise InputError("--timeout must be positive and --unschedulable-grace not negative")
    config = validated_config(args.config, run)
    reqs, working_dir, version = release_inputs(args)
    target = resolve_target(args.address)
    client = DashboardClient(target, ca_cert=args.ca_cert, insecure=args.insecure)
    if args.requirements or args.ray_version or args.require_same_ray:  # Ray version skew: warn, or exit 2
        from ci_serve.cluster.versions import check_skew
        to = DashboardClient(resolve_target(args.standby_address), ca_cert=args.ca_cert,
                             insecure=args.insecure) if args.standby_address else client
        check_skew(run, to.get_version(), args.requirements, args.ray_version, args.require_same_ray)
    if args.standby_address or args.standby_url or args.switch_command:
        return run_two_clusters(args, run, client, config, reqs, working_dir, version)
    options = Options(strategy=args.strategy, timeout=args.timeout, unschedulable_grace=args.unschedulable_grace,
                      version=version, serve_url=args.serve_url, requests=reqs, working_dir=working_dir)
    return Release(client, run, config, options).execute()


def run_two_clusters(args: argparse.Namespace, run: Run, live: DashboardClient, config: ConfigFile,
                     reqs: list[SmokeRequest] | None, working_dir: Path | None, version: str | None) -> int:
    from ci_serve.cluster.address import normalize_address, resolve_target
    from ci_serve.cluster.dashboard import DashboardClient
    from ci_serve.deploy.two_cluster import TwoClusterOptions, TwoClusterRelease

    needed = (("--standby-address", args.standby_address), ("--standby-url", args.standby_url),
              ("--switch-command", args.switch_command))
    missing = [flag for flag, value in needed if not value]
    if missing:
        raise InputError(f"a deploy across two clusters needs {', '.join(missing)} too",
                         "pass --standby-address, --standby-url and --switch-command together")
    if args.strategy != "auto":
        raise InputError("--strategy does not apply across two clusters: the whole config goes to the standby")
    if args.verify_timeout <= 0:
        raise InputError("--verify-timeout must be positive")
    standby_target = resolve_target(args.standby_address)
    if normalize_address(args.standby_address) == live.address:
        raise InputError("--standby-address is the live cluster's address",
                         "the standby must be the other cluster (the one not serving traffic)")
    standby = DashboardClient(standby_target, ca_cert=args.ca_cert, insecure=args.insecure)
    options = TwoClusterOptions(
        standby_url=normalize_address(args.standby_url), switch_command=args.switch_command,
        verify_url=normalize_address(args.verify_url) if args.verify_url else None, keep_standby=args.keep_standby,
        requests=reqs, working_dir=working_dir, timeout=args.timeout, unschedulable_grace=args.unschedulable_grace,
        version=version, verify_timeout=args.verify_timeout,
        live_url=normalize_address(args.serve_url) if args.serve_url else None)
    return TwoClusterRelease(live, standby, run, config, options).execute()
