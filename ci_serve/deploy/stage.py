"""The deploy stage as one call: check the config, read the release inputs, compare Ray versions,
then release to one cluster or across two (:mod:`~ci_serve.deploy.two_cluster`), both by the one executor
(:mod:`~ci_serve.deploy.release`). ``plan`` shares the first steps (:mod:`~ci_serve.deploy.preview`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ci_serve import ledger
from ci_serve.cluster.dashboard import DashboardAccess
from ci_serve.config.problems import Problem
from ci_serve.config.validate import check_before_deploy, require_valid
from ci_serve.console import say
from ci_serve.deploy.gate import DEPLOY_TIMEOUT_S, UNSCHEDULABLE_GRACE_S
from ci_serve.deploy.planner import Mode, RequestedStrategy
from ci_serve.deploy.result import DeployResult
from ci_serve.deploy.two_cluster import VERIFY_TIMEOUT_S
from ci_serve.deploy.verdict import Final, exit_code
from ci_serve.errors import Cancelled, InputError
from ci_serve.steps import StepLog, stops

if TYPE_CHECKING:
    from ci_serve.cluster.dashboard import DashboardClient
    from ci_serve.config.loader import LoadedConfig
    from ci_serve.deploy.traffic import TrafficSettings
    from ci_serve.smoke.requests_file import SmokeRequest


@dataclass
class ReleaseInputs:
    """What decides what a deploy writes; ``plan`` takes the same."""

    strategy: RequestedStrategy = "auto"
    #: smoke requests to check the new version with
    requests_file: str | None = None
    #: uploaded as every application's runtime_env.working_dir
    working_dir: str | None = None
    #: shown by `status`; ``None``: $GITHUB_SHA
    version: str | None = None
    #: the cluster's Serve HTTP address (default: dashboard host, Serve port)
    serve_url: str | None = None

    def load(self) -> tuple[list[SmokeRequest] | None, Path | None, str | None]:
        """(requests, working_dir, version), checked."""
        reqs = None
        if self.requests_file:
            from ci_serve.smoke.requests_file import load_requests
            reqs = load_requests(self.requests_file)
        working_dir = Path(self.working_dir) if self.working_dir else None
        if working_dir is not None and not working_dir.is_dir():
            raise InputError(f"--working-dir {working_dir} is not a folder", "pass the folder that holds your app code")
        return reqs, working_dir, self.version or os.environ.get("GITHUB_SHA") or None


@dataclass
class RayPin:
    """The Ray the app was tested with, compared with the cluster's (:func:`~ci_serve.cluster.versions.check_skew`)."""

    requirements: str | None = None
    ray_version: str | None = None
    #: a difference is exit 2, not a warning
    require_same: bool = False


@dataclass
class Standby:
    """Blue-green across two clusters: the standby cluster, how traffic moves to it, how that is verified."""

    address: str
    url: str
    switch_command: str
    verify_url: str | None = None
    verify_timeout: float = VERIFY_TIMEOUT_S
    keep_standby: bool = False
    #: ``--traffic-command`` and its steps (None: one ``--switch-command``)
    traffic: TrafficSettings | None = None


@dataclass
class DeployInputs:
    config: str
    cluster: DashboardAccess = field(default_factory=DashboardAccess)
    release: ReleaseInputs = field(default_factory=ReleaseInputs)
    pin: RayPin | None = None
    #: how long each gate waits for RUNNING
    timeout: float = DEPLOY_TIMEOUT_S
    unschedulable_grace: float = UNSCHEDULABLE_GRACE_S
    standby: Standby | None = None
    #: ``deploy --hold``, ``promote``, ``abort`` (of release ``release.version``)
    mode: Mode = "deploy"


def deploy(inputs: DeployInputs, log: StepLog) -> DeployResult:
    """Deploy ``inputs.config``, its steps recorded in ``log``. Never raises a :class:`CiServeError`:
    the error that stopped the deploy is the result's ``error``, next to what was seen until then."""
    before = DeployResult()
    with stops(before):
        checked = check_before_deploy(inputs.config, log, inputs.cluster)
        before.problems = [p.as_dict() for p in checked.problems]
        config = require_valid(checked, inputs.config)
        before.warnings = [w.as_dict() for w in checked.warnings]  # as validate reports them
        reqs, working_dir, version = inputs.release.load()
        if inputs.mode != "deploy" and not version:
            raise InputError(f"{'--hold' if inputs.mode == 'hold' else inputs.mode} needs the release version",
                             "pass --version (the action passes the commit, $GITHUB_SHA)")
        live = inputs.cluster.client()
        standby = DashboardAccess(inputs.standby.address, inputs.cluster.ca_cert,
                                  inputs.cluster.insecure).client() if inputs.standby else None
        if inputs.pin is not None:
            before.ray_skew = skew((standby or live).get_version(), inputs.pin)
        for cluster in (live, standby) if standby is not None else (live,):
            before.warnings += operator_check(cluster, config, log)
        if inputs.standby is not None and standby is not None:
            done = _two_clusters(inputs, inputs.standby, live, standby, config, reqs, working_dir, version, log)
        else:
            from ci_serve.deploy.release import Options, Release

            options = Options(strategy=inputs.release.strategy, timeout=inputs.timeout,
                              unschedulable_grace=inputs.unschedulable_grace, version=version,
                              serve_url=inputs.release.serve_url, requests=reqs, working_dir=working_dir,
                              mode=inputs.mode)
            done = Release(live, config, options, log).execute()
    if isinstance(before.error, Cancelled):  # before any cluster was seen: exit 1 would claim what nobody saw
        before.error.exit_code = exit_code(Final(failed=True, wrote=ledger.wrote()))
    if before.error is not None:
        return before
    done.problems, done.ray_skew = before.problems, before.ray_skew
    done.warnings = [*(before.warnings or []), *(done.warnings or [])]
    return done


def operator_check(client: DashboardClient, config: LoadedConfig, log: StepLog) -> list[dict[str, Any]]:
    """Is the cluster run by KubeRay for a RayService (:func:`~ci_serve.cluster.kuberay.detect_kuberay`)?
    Certainly: :class:`InputError` (exit 2, before anything is written), as KubeRay owns the cluster's Serve
    config and re-applies its serveConfigV2. Probably, or a KubeRay RayCluster of its own, or a RayService
    manifest sent to a cluster where nothing says KubeRay: the warnings, printed (the deploy goes on)."""
    from ci_serve.cluster.kuberay import detect_kuberay

    def warn(message: str, hint: str) -> Problem:
        return Problem(str(config.path), None, None, "", message, hint, severity="warning")

    undone = ("KubeRay owns its Serve config (serveConfigV2) and re-applies it, undoing what this deploy "
              "writes (when the operator restarts, the head is recreated or serveConfigV2 changes)")
    fix = ("change the RayService manifest (`ci-serve build --rayservice MANIFEST`) and apply it with kubectl, "
           "or deploy to a cluster ci-serve owns")
    with log.step(f"look for a KubeRay operator behind {client.address}") as st:
        found = detect_kuberay(client.get_applications(), client.get_node_summary())
        warnings: list[Problem] = []
        if found is not None and found.operator_owned and found.owner_certain:
            st.detail = f"KubeRay's, for the RayService (or RayJob) {found.owner!r}"
            raise InputError(f"{client.address}: {found.describe()}; {undone}", fix)
        if found is not None and found.operator_owned:
            warnings.append(warn(f"{client.address}: {found.describe()}; if so, {undone}", fix))
        elif found is not None:
            warnings.append(warn(f"{client.address}: {found.describe()}, with no RayService named in it; "
                                 "KubeRay does not manage the Serve config of a RayCluster of its own",
                                 "if a RayService or RayJob does own this cluster, deploy through its manifest"))
        elif config.format == "rayservice":
            warnings.append(warn(f"{config.path} is a RayService manifest, and nothing on {client.address} says "
                                 "KubeRay runs that cluster (see docs/deploy.md); if a RayService does, "
                                 "the operator re-applies its own serveConfigV2 later and undoes this deploy",
                                 "apply the manifest with kubectl to a cluster KubeRay runs; deploy with ci-serve "
                                 "only to a cluster it owns"))
        st.detail = found.describe() if found else "none recognised"
    for w in warnings:
        say(f"WARN  {w.render()}")
    return [w.as_dict() for w in warnings]


def skew(cluster_version: str | None, pin: RayPin) -> dict[str, Any] | None:
    """The cluster's Ray against the app's pin: warned of, or (``require_same``) refused with exit 2."""
    from ci_serve.cluster.versions import check_skew

    return check_skew(cluster_version, pin.requirements, pin.ray_version, pin.require_same)


def _two_clusters(inputs: DeployInputs, two: Standby, live: DashboardClient, standby: DashboardClient,
                  config: LoadedConfig, reqs: list[SmokeRequest] | None, working_dir: Path | None,
                  version: str | None, log: StepLog) -> DeployResult:
    from ci_serve.cluster.address import normalize_address
    from ci_serve.deploy.release import Release
    from ci_serve.deploy.two_cluster import TwoClusterOptions

    if standby.address == live.address:
        raise InputError("--standby-address is the live cluster's address",
                         "the standby must be the other cluster (the one not serving traffic)")
    serve_url = inputs.release.serve_url
    options = TwoClusterOptions(
        standby_url=normalize_address(two.url) if two.url else "", switch_command=two.switch_command,
        verify_url=normalize_address(two.verify_url) if two.verify_url else None, keep_standby=two.keep_standby,
        requests=reqs, working_dir=working_dir, timeout=inputs.timeout, unschedulable_grace=inputs.unschedulable_grace,
        version=version, verify_timeout=two.verify_timeout,
        live_url=normalize_address(serve_url) if serve_url else None, mode=inputs.mode, traffic=two.traffic)
    return Release.two_clusters(live, standby, config, options, log).execute()
