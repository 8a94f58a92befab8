"""`ci-serve config`: the config a cluster runs (like `serve config`), env_vars redacted."""

from __future__ import annotations

import argparse
import sys

from ci_serve import secrets
from ci_serve.commands.options import add_cluster_arguments
from ci_serve.errors import InputError
from ci_serve.steps import Done, StepLog


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_cluster_arguments(parser)
    parser.add_argument("--app", metavar="NAME",
                        help="only this application: a logical name (its live version) or a physical one")


def execute(args: argparse.Namespace, log: StepLog) -> Done:
    import yaml

    from ci_serve.cluster.dashboard import DashboardAccess
    from ci_serve.deploy.view import read_view

    client = DashboardAccess(args.address, args.ca_cert, args.insecure).client()
    client.get_version()
    view = read_view(client)
    configs = view.configs(args.app)
    if args.app and not configs:
        names = ", ".join(sorted(view.apps)) or "none"
        raise InputError(f"no application {args.app!r} on the cluster", f"applications there: {names}")
    text = "\n---\n\n".join(yaml.safe_dump(c, sort_keys=False) for c in configs) if configs else "No config.\n"
    sys.stdout.write(secrets.mask(text))
    return Done("passed", {"applications": configs})
