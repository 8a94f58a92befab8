"""What a deploy did, one cluster or two: the typed result the edge turns into the report."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ci_serve.cluster.versions import SkewRefused
from ci_serve.errors import CiServeError

if TYPE_CHECKING:
    from ci_serve.deploy.planner import ReleasePlan
    from ci_serve.smoke.checks import Outcome


@dataclass
class DeployResult:
    """Filled in as the deploy goes, so a failed one still says what it saw: the plan, the requests
    checked so far, the packages shipped. Unset fields are left out of the report."""

    #: "deployed", "unchanged" (nothing to write); the error's own word when ``error`` is set
    outcome: str = "failed"
    #: what stopped the deploy (``None``: done); its exit code says whether the previous version serves
    error: CiServeError | None = None
    #: the config's problems, as `ci-serve validate` reports them (any: nothing was written)
    problems: list[dict[str, Any]] | None = None
    #: the config's warnings (as validate reports them), then the deploy's own, as text
    warnings: list[Any] | None = None
    #: the cluster's Ray against the app's pin (:func:`ci_serve.cluster.versions.check_skew`)
    ray_skew: dict[str, Any] | None = None
    #: across two clusters: the dashboards of the cluster that serves and of the one that stands by
    live_address: str | None = None
    standby_address: str | None = None
    #: the working_dir package of each application: its URI and whether it was uploaded
    packages: list[dict[str, Any]] | None = None
    #: one cluster: the planner's decision, with the release version it writes
    plan: ReleasePlan | None = None
    version: str | None = None
    #: the smoke requests of the last check, as far as it got
    requests: list[Outcome] | None = None
    #: across two clusters: the public entry's answers after the switch
    verify: list[Outcome] | None = None
    #: where what serves now answers: the Serve address this run checked (two clusters: the new live one)
    live_url: str | None = None
    #: what serves now: the physical application of each logical one, comma-separated
    live_app: str | None = None
    #: across two clusters: why the old cluster's applications were removed, or kept
    switch_proof: str | None = None
    #: hold, promote, abort: the release (its version)
    release: str | None = None
    #: a hold: logical application -> the URL where its held candidate answers
    preview_urls: dict[str, str] | None = None
    #: traffic steps (:meth:`~ci_serve.deploy.traffic.TrafficWalk.entries`): one entry per step reached
    traffic_steps: list[dict[str, Any]] | None = None
    #: whether Prometheus judged the steps (False: each held its interval and checked the public entry)
    traffic_analysed: bool | None = None

    def warn(self, message: str) -> None:
        self.warnings = [*(self.warnings or []), message]

    def sections(self) -> dict[str, Any]:
        """The report's sections, under the names the report has always used."""
        out: dict[str, Any] = {}
        for name in ("problems", "warnings", "ray_skew", "live_address", "standby_address", "packages"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if isinstance(self.error, SkewRefused):  # refused for the skew: the report still says what differs
            out["ray_skew"] = self.error.record
        if self.plan is not None:
            out.update(plan=self.plan.as_dict(), version=self.version, strategy=self.plan.strategy)
        for name in ("requests", "verify"):
            outcomes = getattr(self, name)
            if outcomes is not None:
                out[name] = [o.as_dict() for o in outcomes]
        for name in ("live_url", "live_app", "switch_proof", "release", "preview_urls", "traffic_steps",
                     "traffic_analysed"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out
