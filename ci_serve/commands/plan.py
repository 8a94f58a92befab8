"""`ci-serve plan CONFIG --address URL [--app-dir DIR] [--report FILE]`: what a deploy would change.

Reads the config (problems -> exit 2, as `validate --no-import`), imports each application's code
from ``--app-dir`` when it can (to see deployments added to or removed from the code; an app that does
not import here is compared on its config alone, with a warning), reads the cluster's applications
and prints :func:`ci_serve.config.plan.plan_changes`'s verdict. Changes nothing on the cluster.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ci_serve import console
from ci_serve.cli import add_cluster_arguments, add_ray_pin_arguments
from ci_serve.config.loader import ConfigFile
from ci_serve.config.plan import Plan, plan_changes
from ci_serve.config.validate import IMPORT_WORKERS, code_dir, validate_config
from ci_serve.errors import ConfigError
from ci_serve.report import Run


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", metavar="CONFIG",
                        help="the Serve config file (YAML) you would deploy, or a KubeRay RayService manifest")
    add_cluster_arguments(parser)
    parser.add_argument("--app-dir", default=None, metavar="DIR",
                        help="folder the import paths are imported from (default: each application's local "
                             "runtime_env.working_dir, relative to CONFIG, else the current folder)")
    parser.add_argument("--report", metavar="FILE", help="write the plan as JSON (under \"plan\") to FILE")
    add_ray_pin_arguments(parser)


def run(args: argparse.Namespace, run: Run) -> int:
    from ci_serve.cluster.address import resolve_target
    from ci_serve.cluster.dashboard import DashboardClient

    with console.step(run, f"read {args.config}"):
        checked = validate_config(args.config, args.app_dir, check_imports=False)
        run.data["problems"] = [p.as_dict() for p in checked.problems]
        for problem in checked.problems:
            console.say(problem.render())
        if checked.problems or checked.config is None:
            raise ConfigError(f"{args.config}: {len(checked.problems)} problem(s); nothing was compared",
                              f"run `ci-serve validate {args.config}` and fix them", problems=checked.problems)
        for notice in checked.config.notices:
            console.say(f"NOTE  {notice}")
        run.data["warnings"] = [w.as_dict() for w in checked.warnings]  # as validate prints them
        for warning in checked.warnings:
            console.say(f"WARN  {warning.render().removeprefix('warning: ')}")
    config = checked.config
    desired = with_package_uris(config.data, config.path.resolve().parent)
    with console.step(run, f"import the code from {args.app_dir or 'each working_dir or .'}") as st:
        code = import_graphs(config, args.app_dir)
        st.detail = f"{len(code)} of {len(config.applications)} application(s) imported"
    client = DashboardClient(resolve_target(args.address), ca_cert=args.ca_cert, insecure=args.insecure)
    with console.step(run, f"read the applications on {client.address}") as st:
        version = client.get_version()
        live = client.get_applications()
        st.detail = f"Ray {version}, {len(live['applications'])} application(s) live"
    from ci_serve.cluster.versions import check_skew  # Ray version skew: warn, or exit 2 when required
    check_skew(run, version, args.requirements, args.ray_version, args.require_same_ray)
    plan = plan_changes(desired, live, code)
    run.data["plan"] = plan.as_dict()
    for line in render(plan, config.path, client.address):  # the plan is the output: stdout
        console.say(line, stream=sys.stdout)
    run.result = "planned"
    return 0


def with_package_uris(data: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    """Local ``working_dir`` folders as the ``gcs://`` URI a deploy would upload them under (no upload),
    so unchanged code compares equal to what runs."""
    from ci_serve.cluster.packages import directory_uri, is_remote_uri

    data = copy.deepcopy(data)
    for app in data.get("applications") or []:
        env = app.get("runtime_env") if isinstance(app, dict) else None
        source = env.get("working_dir") if isinstance(env, dict) else None
        if isinstance(source, str) and not is_remote_uri(source):
            folder = (base_dir / Path(source).expanduser()).resolve()
            if folder.is_dir():
                env["working_dir"] = directory_uri(folder, env.get("excludes"))
    return data


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
