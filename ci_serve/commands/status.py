"""`ci-serve status`: the applications on a cluster (like `serve status`) and which colour/version is live."""

from __future__ import annotations

import argparse
import json
import sys

from ci_serve import console, secrets
from ci_serve.cli import add_cluster_arguments
from ci_serve.report import Run


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_cluster_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print JSON on stdout instead of a table")


def run(args: argparse.Namespace, run: Run) -> int:
    from ci_serve.cluster.address import resolve_target
    from ci_serve.cluster.dashboard import DashboardClient
    from ci_serve.deploy.view import managed_view, ray_view

    client = DashboardClient(resolve_target(args.address), ca_cert=args.ca_cert, insecure=args.insecure)
    version = client.get_version()
    snapshot = client.get_applications()
    data = {"address": client.address, "ray_version": version, "managed": managed_view(snapshot),
            "applications": ray_view(snapshot)}
    run.data.update(data)
    run.result = "passed"
    if args.json:
        sys.stdout.write(secrets.mask(json.dumps(data, indent=2)) + "\n")
        return 0
    out = sys.stdout
    console.say(f"Ray {version} at {client.address}: {len(data['applications'])} application(s)", stream=out)
    for logical, m in data["managed"].items():
        extra = f", candidate {', '.join(m['candidates'])}" if m["candidates"] else ""
        console.say(f"  {logical}: live {m['live'] or '-'} ({m['colour'] or '-'}), version {m['version'] or '-'}, "
                    f"{m['status'] or '-'} at {m['route_prefix'] or '-'}{extra}", stream=out)
    for name, app in data["applications"].items():
        console.say(f"{name}: {app['status']} route_prefix={app['route_prefix']}", stream=out)
        if app["message"]:
            console.say("    " + app["message"].strip().splitlines()[-1][:300], stream=out)
        for dname, dep in app["deployments"].items():
            msg = f"  {dep['message'][:200]}" if dep["message"] else ""
            console.say(f"    {dname}: {dep['status']} ({dep['replicas']} replicas){msg}", stream=out)
    return 0
