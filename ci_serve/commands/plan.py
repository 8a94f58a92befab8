"""`ci-serve plan CONFIG --address URL [deploy's inputs] [--app-dir DIR] [--report FILE]`: what `deploy` would do.

Takes the same inputs as `deploy` (``--working-dir``, ``--version``, ``--strategy``, ``--serve-url``,
``--requests``) and runs the same steps up to the decision: the same validation (exit 2), the same
package URIs (computed, not uploaded), the same cluster view and the same planner. It prints the
planner's writes with their declared effects and the field-by-field diff. It also imports each
application's code from ``--app-dir`` when it can, to show deployments added to or removed from the code
(an app that does not import here is compared on its config alone, with a warning). It changes nothing
on the cluster.
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ci_serve import console
from ci_serve.cli import add_cluster_arguments, add_ray_pin_arguments
from ci_serve.commands.deploy import add_release_arguments, release_inputs, validated_config
from ci_serve.config.loader import ConfigFile
from ci_serve.config.plan import Plan
from ci_serve.config.validate import IMPORT_WORKERS, code_dir
from ci_serve.report import Run


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", metavar="CONFIG",
                        help="the Serve config file (YAML) you would deploy, or a KubeRay RayService manifest")
    add_cluster_arguments(parser)
    parser.add_argument("--app-dir", default=None, metavar="DIR",
                        help="folder the import paths are imported from (default: each application's local "
                             "runtime_env.working_dir, relative to CONFIG, else the current folder)")
    parser.add_argument("--strategy", choices=("auto", "in-place", "blue-green"), default="auto",
                        help="as for deploy (default auto)")
    add_release_arguments(parser)
    parser.add_argument("--report", metavar="FILE", help="write the plan as JSON (under \"plan\") to FILE")
    add_ray_pin_arguments(parser)


def run(args: argparse.Namespace, run: Run) -> int:
    from ci_serve.cluster.address import resolve_target
    from ci_serve.cluster.dashboard import DashboardClient
    from ci_serve.cluster.packages import ship_working_dirs
    from ci_serve.deploy.planner import PlanOptions, plan_release
    from ci_serve.deploy.view import read_view

    config = validated_config(args.config, run)
    _, working_dir, version = release_inputs(args)
    with console.step(run, f"import the code from {args.app_dir or 'each working_dir or .'}") as st:
        code = import_graphs(config, args.app_dir)
        st.detail = f"{len(code)} of {len(config.applications)} application(s) imported"
    client = DashboardClient(resolve_target(args.address), ca_cert=args.ca_cert, insecure=args.insecure)
    with console.step(run, f"read the applications on {client.address}") as st:
        ray_version = client.get_version()
        view = read_view(client, args.serve_url)
        st.detail = f"Ray {ray_version}, {len(view.apps)} application(s)" + "".join(f"; {n}" for n in view.notes)
    from ci_serve.cluster.versions import check_skew  # Ray version skew: warn, or exit 2 when required
    check_skew(run, ray_version, args.requirements, args.ray_version, args.require_same_ray)
    desired, _ = ship_working_dirs(_NoUpload(client), config.data, base_dir=config.path.resolve().parent,
                                   override=working_dir)
    release = plan_release(view, desired, PlanOptions(strategy=args.strategy, version=version))
    if code:  # the code's deployments refine the diff (deployments added to or removed from the code)
        from ci_serve.config.plan import plan_changes
        from ci_serve.deploy.ownership import MARKER_VARS

        release.diff = plan_changes({"applications": [{**a.desired, "name": a.logical} for a in release.apps]},
                                    view.snapshot, code, ignore_env=MARKER_VARS,
                                    live_names={a.logical: a.live.name if a.live else None for a in release.apps})
    run.data["plan"] = release.as_dict()
    for line in render(release.diff, config.path, client.address):  # the plan is the output: stdout
        console.say(line, stream=sys.stdout)
    for line in render_writes(release):
        console.say(line, stream=sys.stdout)
    run.result = "planned"
    return 0


class _NoUpload:
    """The package URIs a deploy would use, without uploading anything."""

    def __init__(self, client: Any):
        self.address = client.address

    def package_exists(self, uri: str) -> bool:
        return True

    def upload_package(self, uri: str, data: bytes) -> None:  # pragma: no cover - never called
        raise AssertionError("plan never uploads")


def render_writes(release: Any) -> list[str]:
    lines = [f"deploy would: strategy {release.strategy}"]
    for app in release.apps:
        live = app.live.name if app.live else "nothing"
        lines.append(f"  {app.logical}: {app.kind} ({', '.join(app.reasons) or 'no change'}), live {live}, "
                     f"{app.strategy}")
    writes = release.writes()
    if not writes:
        lines.append("  no write" + ("" if release.strategy == "none" else ""))
    for n, w in enumerate(writes, 1):
        lines.append(f"  {n}. {w.step}: {'; '.join(w.says)}  [effect: {w.effect}]")
    for w in (release.undo_first, release.undo_switch):
        if w is not None:
            lines.append(f"  on failure, {w.step}: {'; '.join(w.says)}")
    return lines


def import_graphs(config: ConfigFile, app_dir: str | None) -> dict[str, dict[str, dict[str, Any]]]:
    from ci_serve.config.inspect import AppImportError, inspect_app

    def one(app: dict[str, Any]) -> tuple[str, dict[str, dict[str, Any]] | None]:
        name = str(app.get("name", "default"))
        try:
            graph = inspect_app(app["import_path"], code_dir(config, app, app_dir), app.get("args") or None)
        except AppImportError as err:
            console.say(f"WARN  {name}: {err.message}; comparing its config only "
                        "(deployments added to or removed from the code are not seen)")
            return name, None
        return name, graph.deployments

    with ThreadPoolExecutor(max_workers=IMPORT_WORKERS) as pool:
        return {name: graph for name, graph in pool.map(one, config.applications) if graph is not None}


def render(plan: Plan, path: Path, address: str) -> list[str]:
    lines = [f"plan: {path} against {address}: {plan.verdict.upper()}"]
    if not plan.applications:
        lines.append("  (the config has no applications)")
    for app in plan.applications:
        live = f" (live as {app.live_name})" if app.live_name and app.live_name != app.name else ""
        lines.append(f"  application {app.name}{live}: {app.action}, {app.verdict}")
        lines += [f"    ~ {c.field}: {_show(c.old)} -> {_show(c.new)}  [{c.kind}]" for c in app.changes]
        for dep in app.deployments:
            if dep.action == "unchanged":
                continue
            mark = {"added": "+", "removed": "-"}.get(dep.action, "~")
            lines.append(f"    {mark} deployment {dep.name}: {dep.action}, {dep.verdict}")
            lines += [f"        ~ {c.field}: {_show(c.old)} -> {_show(c.new)}  [{c.kind}]" for c in dep.changes]
    if plan.left_alone:
        lines.append(f"  left alone (live, not in this config): {', '.join(plan.left_alone)}")
    lines.append({"none": "nothing to deploy: the cluster already runs this config",
                  "lightweight": "lightweight: applied to running replicas, no restart",
                  "heavyweight": "heavyweight: replicas restart (a blue-green deploy keeps the old version "
                                 "serving meanwhile)"}[plan.verdict])
    return lines


def _show(value: Any) -> str:
    raw = isinstance(value, str) and (value.startswith("(") or value == "***")  # markers, not values
    text = value if raw else json.dumps(value, default=str)
    return text if len(text) <= 100 else text[:97] + "..."
