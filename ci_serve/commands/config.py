"""`ci-serve config`: the config a cluster runs (like `serve config`), env_vars redacted."""

from __future__ import annotations

import argparse
import sys

from ci_serve import secrets
from ci_serve.cli import add_cluster_arguments
from ci_serve.errors import InputError
from ci_serve.report import Run


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_cluster_arguments(parser)
    parser.add_argument("--app", metavar="NAME",
                        help="only this application: a logical name (its live version) or a physical one")


def run(args: argparse.Namespace, run: Run) -> int:
    import yaml

    from ci_serve.cluster.address import resolve_target
    from ci_serve.cluster.dashboard import DashboardClient
    from ci_serve.deploy.view import read_view

    client = DashboardClient(resolve_target(args.address), ca_cert=args.ca_cert, insecure=args.insecure)
    client.get_version()
    view = read_view(client)
    configs = view.configs(args.app)
    if args.app and not configs:
        names = ", ".join(sorted(view.apps)) or "none"
        raise InputError(f"no application {args.app!r} on the cluster", f"applications there: {names}")
    run.data["applications"] = configs
    run.result = "passed"
    text = "\n---\n\n".join(yaml.safe_dump(c, sort_keys=False) for c in configs) if configs else "No config.\n"
    sys.stdout.write(secrets.mask(text))
    return 0
