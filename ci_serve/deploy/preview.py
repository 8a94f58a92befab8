"""``plan``: what a deploy of a config would do, computed as the deploy computes it, changing nothing.

The same validation (exit 2), the same package URIs (computed, not uploaded), the same cluster view
and the same planner as :func:`ci_serve.deploy.stage.deploy`. Each application's code is imported
when it can be (:func:`ci_serve.config.validate.import_graphs`), so the diff also shows deployments
added to or removed from the code; an application that does not import here is compared on its
config alone, with a warning.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ci_serve.cluster.dashboard import DashboardAccess
from ci_serve.cluster.versions import SkewRefused
from ci_serve.config.plan import Plan
from ci_serve.config.validate import check_before_deploy, import_graphs, require_valid
from ci_serve.console import say
from ci_serve.deploy.planner import ReleasePlan
from ci_serve.deploy.stage import RayPin, ReleaseInputs, operator_check, skew
from ci_serve.errors import CiServeError
from ci_serve.steps import StepLog, stops


@dataclass
class PlanInputs:
    config: str
    cluster: DashboardAccess = field(default_factory=DashboardAccess)
    release: ReleaseInputs = field(default_factory=ReleaseInputs)
    pin: RayPin = field(default_factory=RayPin)
    #: where the code is imported from (``None``: each application's local working_dir, else .)
    app_dir: str | None = None


@dataclass
class PlanResult:
    outcome: str = "planned"
    error: CiServeError | None = None
    problems: list[dict[str, Any]] | None = None
    warnings: list[dict[str, Any]] | None = None
    ray_skew: dict[str, Any] | None = None
    #: the planner's decision, its diff refined by the code where it imported
    plan: ReleasePlan | None = None
    config_path: Path | None = None
    address: str = ""

    def sections(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in ("problems", "warnings", "ray_skew"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if isinstance(self.error, SkewRefused):  # refused for the skew: the report still says what differs
            out["ray_skew"] = self.error.record
        if self.plan is not None:
            out["plan"] = self.plan.as_dict()
        return out

    def lines(self) -> list[str]:
        """The plan for a reader: the field-by-field diff, then the writes a deploy would send."""
        if self.plan is None or self.config_path is None:
            return []
        return render(self.plan.diff, self.config_path, self.address) + render_writes(self.plan)


def preview(inputs: PlanInputs, log: StepLog) -> PlanResult:
    """Plan a deploy of ``inputs.config``, its steps recorded in ``log``. Never raises a
    :class:`CiServeError`: the error is the result's ``error``."""
    result = PlanResult()
    with stops(result):
        _preview(inputs, log, result)
    return result


def _preview(inputs: PlanInputs, log: StepLog, result: PlanResult) -> None:
    from ci_serve.cluster.packages import NoUpload, ship_working_dirs
    from ci_serve.config.plan import plan_changes
    from ci_serve.deploy.ownership import MARKER_VARS
    from ci_serve.deploy.planner import PlanOptions, plan_release
    from ci_serve.deploy.view import read_view

    checked = check_before_deploy(inputs.config, log, inputs.cluster)
    result.problems = [p.as_dict() for p in checked.problems]
    config = require_valid(checked, inputs.config)
    result.warnings = [w.as_dict() for w in checked.warnings]
    _, working_dir, version = inputs.release.load()
    with log.step(f"import the code from {inputs.app_dir or 'each working_dir or .'}") as st:
        for name, why in import_graphs(checked, inputs.app_dir).items():
            say(f"WARN  {name}: {why}; comparing its config only "
                "(deployments added to or removed from the code are not seen)")
        code = {name: graph.deployments for name, graph in checked.graphs.items()}
        st.detail = f"{len(code)} of {len(config.applications)} application(s) imported"
    client = inputs.cluster.client()
    with log.step(f"read the applications on {client.address}") as st:
        ray_version = client.get_version()
        view = read_view(client, inputs.release.serve_url)
        st.detail = f"Ray {ray_version}, {len(view.apps)} application(s)" + "".join(f"; {n}" for n in view.notes)
    result.ray_skew = skew(ray_version, inputs.pin)
    result.warnings += operator_check(client, config, log)  # refused as deploy refuses: exit 2
    desired, _ = ship_working_dirs(NoUpload(client.address), config.data, base_dir=config.path.resolve().parent,
                                   override=working_dir)
    release = plan_release(view, desired, PlanOptions(strategy=inputs.release.strategy,
                                                      version=version))
    if code:  # the code's deployments refine the diff (deployments added to or removed from the code)
        release.diff = plan_changes({"applications": [{**a.desired, "name": a.logical} for a in release.apps]},
                                    view.snapshot, code, ignore_env=MARKER_VARS,
                                    live_names={a.logical: a.live.name if a.live else None for a in release.apps})
    result.plan, result.config_path, result.address = release, config.path, client.address


def render_writes(release: ReleasePlan) -> list[str]:
    lines = [f"deploy would: strategy {release.strategy}"]
    for app in release.apps:
        live = app.live.name if app.live else "nothing"
        lines.append(f"  {app.logical}: {app.kind} ({', '.join(app.reasons) or 'no change'}), live {live}, "
                     f"{app.strategy}")
    writes = release.writes()
    if not writes:
        lines.append("  no write")
    for n, w in enumerate(writes, 1):
        lines.append(f"  {n}. {w.step}: {'; '.join(w.says)}  [effect: {w.effect}]")
    for undo in (release.undo_first, release.undo_switch):
        if undo is not None:
            lines.append(f"  on failure, {undo.step}: {'; '.join(undo.says)}")
    return lines


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
