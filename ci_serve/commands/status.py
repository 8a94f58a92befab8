"""`ci-serve status`: the applications on a cluster (like `serve status`) and which incarnation is live."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TYPE_CHECKING, Any

from ci_serve import console, secrets
from ci_serve.commands.options import add_cluster_arguments
from ci_serve.errors import InputError
from ci_serve.steps import Done, StepLog

if TYPE_CHECKING:
    from ci_serve.deploy.view import ClusterView


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_cluster_arguments(parser)
    parser.add_argument("--serve-url", metavar="URL",
                        help="the cluster's Serve HTTP address, for the proxy's route table "
                             "(default: dashboard host, Serve port)")
    parser.add_argument("--standby-address", metavar="URL",
                        help="across two clusters: the standby's dashboard, to list the releases held there "
                             "(beside the live version of --address)")
    parser.add_argument("--standby-url", metavar="URL",
                        help="the standby's Serve HTTP address, for the held releases' preview URLs "
                             "(default: its dashboard host, Serve port)")
    parser.add_argument("--json", action="store_true", help="print JSON on stdout instead of a table")


def execute(args: argparse.Namespace, log: StepLog) -> Done:
    from ci_serve.cluster.dashboard import DashboardAccess
    from ci_serve.deploy.view import read_view, serve_url

    client = DashboardAccess(args.address, args.ca_cert, args.insecure).client()
    version = client.get_version()
    view = read_view(client, args.serve_url)
    serve = serve_url(client.address, view.snapshot, args.serve_url)
    now = time.time()
    managed = view.managed()
    for m in managed.values():
        for h in m["held"]:
            h["preview_url"] = serve + (h["route_prefix"] or "")
            h["held_ago_s"] = round(max(0.0, now - h["held_at"]), 1)
    data: dict[str, Any] = {"address": client.address, "ray_version": version, "managed": managed,
            "applications": view.ray_apps(), "routes": view.routes,
            "notes": list(view.notes) + view.disagreements()}
    if args.standby_address:
        data["standby"] = standby_holds(args, view, now)
    elif args.standby_url:
        raise InputError("--standby-url needs --standby-address", "name the standby's dashboard too")
    if args.json:
        sys.stdout.write(secrets.mask(json.dumps(data, indent=2)) + "\n")
    else:
        show(data, version, client.address)
    return Done("passed", data)


def standby_holds(args: argparse.Namespace, live: ClusterView, now: float) -> dict[str, Any]:
    """The releases held on the standby cluster (``deploy --hold`` across two clusters): judged against what is
    live on ``live`` (:func:`~ci_serve.deploy.two_cluster_hold.hold_state`)."""
    from ci_serve.cluster.dashboard import DashboardAccess
    from ci_serve.deploy.two_cluster_hold import standby_holds as holds_of
    from ci_serve.deploy.view import read_view, serve_url

    client = DashboardAccess(args.standby_address, args.ca_cert, args.insecure).client()
    standby = read_view(client, args.standby_url)
    serve = serve_url(client.address, standby.snapshot, args.standby_url)
    held = []
    for logical in standby.logical_names():
        routes = {m.hold.route for m in standby.members(logical) if m.hold is not None}
        for route in sorted(routes, key=str):
            for h in holds_of(standby, live, logical, route):
                if h.state == "held" and h.app.hold is not None:
                    held.append({"app": logical, "release": h.release, "standby_app": h.app.name,
                                 "status": h.app.status, "preview_url": serve + (route or ""),
                                 "held_at": h.app.hold.at, "held_ago_s": round(max(0.0, now - h.app.hold.at), 1)})
    return {"address": client.address, "held": held}


def show(data: dict[str, Any], version: str, address: str) -> None:
    """The table `ci-serve status` prints: like `serve status`, plus which incarnation is live."""
    out = sys.stdout
    console.say(f"Ray {version} at {address}: {len(data['applications'])} application(s)", stream=out)
    for logical, m in data["managed"].items():
        extra = f", also {', '.join(m['candidates'])}" if m["candidates"] else ""
        console.say(f"  {logical}: live {m['live'] or '-'}, version {m['version'] or '-'}, "
                    f"{m['status'] or '-'} at {m['route_prefix'] or '-'}{extra}", stream=out)
        for h in m["held"]:
            console.say(f"    held: release {h['release'] or '-'} ({h['candidate']}, {h['status']}), preview at "
                        f"{h['preview_url']}, held {_ago(h['held_ago_s'])} ago; `ci-serve promote` or `ci-serve "
                        f"abort` CONFIG --version {h['release']}", stream=out)
    for name, app in data["applications"].items():
        owner = f" (ci-serve: {app['owner']})" if app["owner"] else ""
        console.say(f"{name}: {app['status']} route_prefix={app['route_prefix']}{owner}", stream=out)
        if app["message"]:
            console.say("    " + app["message"].strip().splitlines()[-1][:300], stream=out)
        for dname, dep in app["deployments"].items():
            msg = f"  {dep['message'][:200]}" if dep["message"] else ""
            console.say(f"    {dname}: {dep['status']} ({dep['replicas']} replicas){msg}", stream=out)
    if "standby" in data:
        held = data["standby"]["held"]
        console.say(f"standby {data['standby']['address']}: "
                    + (f"{len(held)} release(s) held" if held else "no release held"), stream=out)
        for h in held:
            console.say(f"  held: release {h['release']} of {h['app']} ({h['standby_app']}, {h['status']}), preview at "
                        f"{h['preview_url']}, held {_ago(h['held_ago_s'])} ago; `ci-serve promote` or `ci-serve abort` "
                        f"CONFIG --version {h['release']} with the same two-cluster flags", stream=out)
    for note in data["notes"]:
        console.say(f"NOTE  {note}", stream=out)


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"
