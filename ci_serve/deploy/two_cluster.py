"""Blue-green across two Ray clusters: the Serve guide's way to ship a heavyweight update.

The whole config goes to the standby cluster (the live one is not touched), is gated and
smoke-checked there through ``--standby-url``; then the user's ``--switch-command`` moves the
traffic (a load balancer API, a Kubernetes Service patch, a proxy reload) and the public entry
(``--verify-url``) must answer the smoke requests from the new version. If it does not, the switch
command runs again with the roles reversed (``CI_SERVE_NEW_URL`` is then the old cluster's Serve
address: ``--serve-url`` when given, else the dashboard's host and the Serve port it reports): exit 1
when the public entry answers again, 3 when not.

On the standby, this release replaces only applications of ours (the ownership marker, or the plain
logical name); others are left alone. On failure its previous config is written back.

The old cluster's applications of ours are removed only after a positive proof that public traffic
moved: the public entry (``--verify-url``) passed the smoke requests, and the old cluster, asked the
same requests at its own Serve proxy (which must answer and list our routes), answers at least one
differently (so they tell the versions apart). Without ``--verify-url``, when the old version passes
the same requests, or when the old cluster cannot be asked (a request that never got an answer proves
nothing), there is no proof: they are kept, the run exits 0, and a warning says so.
``--keep-standby`` keeps them in any case. A switch command that moves nothing thus never empties the
cluster that still takes the traffic. Which applications of the old cluster are ours is
:meth:`ClusterView.members`'s answer, as for a one-cluster deploy.

A release held for review (:mod:`~ci_serve.deploy.two_cluster_hold`) is this same release in other
modes: ``hold`` writes the standby's applications with the hold marker and stops after the standby's
checks; ``promote`` starts from them (compare-and-swap on the hold's record, at the start and right
before the switch), gated and checked again, then the same switch, verification, proof and retirement;
``abort`` removes them from the standby (through the same write guard), the live cluster only read.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NoReturn

from ci_serve import console, secrets
from ci_serve.cluster.dashboard import DashboardClient
from ci_serve.cluster.logs import attach_replica_logs
from ci_serve.cluster.packages import ship_working_dirs
from ci_serve.config.loader import ConfigFile
from ci_serve.deploy import capacity, checks, traffic, view
from ci_serve.deploy.cluster_config import build_body, declarative_apps
from ci_serve.deploy.gate import DEPLOY_TIMEOUT_S, UNSCHEDULABLE_GRACE_S, GateFailed, Goal, wait_ready
from ci_serve.deploy.guard import check_drift, check_effect, expected_from
from ci_serve.deploy.ownership import with_hold, with_marker
from ci_serve.deploy.planner import Effect, Mode, Write
from ci_serve.deploy.release import read_explained, stop_if_unexplained
from ci_serve.deploy.result import DeployResult
from ci_serve.deploy.traffic import TrafficOptions, TrafficRollbackFailed, TrafficSettings, run_command, walk
from ci_serve.deploy.two_cluster_hold import StandbyHold, cas_failure, probably_promoted, standby_holds
from ci_serve.deploy.verdict import Final, Seen, exit_code
from ci_serve.errors import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    Cancelled,
    CheckFailed,
    CiServeError,
    DeployFailed,
    InputError,
    RestoreFailed,
)
from ci_serve.smoke.checks import Outcome
from ci_serve.steps import StepLog, stops

#: how long the public entry may take to answer from the new cluster after the switch command
VERIFY_TIMEOUT_S = 60.0
#: in-flight requests the old proxy workers still hold get this long before the old apps go
DRAIN_S = 2.0


@dataclass
class TwoClusterOptions:
    standby_url: str
    switch_command: str
    verify_url: str | None = None
    keep_standby: bool = False
    requests: list[Any] | None = None
    working_dir: Path | None = None
    timeout: float = DEPLOY_TIMEOUT_S
    unschedulable_grace: float = UNSCHEDULABLE_GRACE_S
    version: str | None = None
    #: the live (old) cluster's real Serve address (``--serve-url``), for the switch-back and the proof
    live_url: str | None = None
    switch_timeout: float = 300.0
    verify_timeout: float = VERIFY_TIMEOUT_S
    #: ``deploy --hold``, ``promote``, ``abort`` of release ``version``
    mode: Mode = "deploy"
    #: ``--traffic-command`` and its steps: the traffic moves in steps, each judged, instead of one switch
    traffic: TrafficSettings | None = None


class SwitchFailed(CheckFailed):
    """The switch command failed, or the public entry did not answer from the new cluster."""


#: the old cluster is asked this many times for an answer that tells the versions apart (a 5xx proves nothing)
PROOF_ATTEMPTS = 3
PROOF_PAUSE_S = 1.0


class TwoClusterRelease:
    def __init__(self, live: DashboardClient, standby: DashboardClient, config: ConfigFile,
                 options: TwoClusterOptions, log: StepLog | None = None):
        self.live = live
        self.standby = standby
        self.log = log or StepLog()
        self.result = DeployResult()
        self.config = config
        self.opts = options
        self.standby_before: dict[str, Any] = {}
        #: promote: what the standby goes back to on failure (None: ``standby_before``)
        self.standby_base: dict[str, Any] | None = None
        self.live_snapshot: dict[str, Any] = {}
        #: the standby applications our write touched (None: nothing of ours was sent to the standby)
        self.standby_touched: set[str] | None = None
        #: traffic steps: the walk's options and the metrics that judge each step (None: none analysed)
        self.steps: TrafficOptions | None = None
        self.source: traffic.SampleSource | None = None

    def apps(self, config: dict[str, Any]) -> dict[str, dict[str, Any]]:
        out = {}
        for app in config.get("applications") or []:
            name = app.get("name")
            if not isinstance(name, str) or not name:
                raise InputError("every application in the config needs a name",
                                 "add `name: my-app` to each entry under `applications`")
            app = with_marker({k: v for k, v in app.items() if k != "name"}, name, self.opts.version)
            app.setdefault("route_prefix", "/")
            out[name] = app
        return out

    def prefixes(self) -> dict[str, str]:
        """The HTTP route of each application; route-less ones (``route_prefix: null``) have none to check."""
        return {name: app["route_prefix"] for name, app in self.apps(self.config.data).items()
                if app.get("route_prefix") is not None}

    def logicals(self) -> list[str]:
        return list(self.apps(self.config.data))

    # -- the whole release ---------------------------------------------------------------------
    def execute(self) -> DeployResult:
        """Deploy to the standby, switch, verify, retire the old. Never raises a :class:`CiServeError`:
        what stopped the release is the result's ``error``, next to what was seen until then."""
        with stops(self.result):
            self.release()
        return self.result

    def release(self) -> None:
        try:
            with self.log.step("connect live") as st:
                st.detail = f"Ray {self.live.get_version()} at {self.live.address}"
                self.live_snapshot = self.live.get_applications()
            with self.log.step("connect standby") as st:
                st.detail = f"Ray {self.standby.get_version()} at {self.standby.address}"
                self.standby_before = self.standby.get_applications()
        except Cancelled as exc:  # nothing written, nothing seen serving: not exit 1
            exc.exit_code = exit_code(Final(failed=True))
            raise
        self.result.live_address, self.result.standby_address = self.live.address, self.standby.address
        if self.opts.mode != "deploy":
            self.result.release = self.opts.version
        if self.opts.traffic is not None and self.opts.mode in ("deploy", "promote"):
            try:  # before anything is written: a Prometheus that cannot be used is exit 2
                self.steps, self.source = self.opts.traffic.prepare(
                    self.standby, self.live, tuple(self.logicals()), self.switch_env(), self.log)
            except Cancelled as exc:
                exc.exit_code = exit_code(Final(failed=True))
                raise
        if self.opts.mode == "abort":
            self.abort()
            return
        if self.opts.mode == "promote":
            self.promote()
        else:
            self.refuse_while_held()
            try:
                self.deploy_standby()
                self.check(self.opts.standby_url, "check standby", requests=self.opts.requests)
            except BaseException as exc:
                self.restore_standby(exc)
                raise AssertionError("unreachable") from None
            if self.opts.mode == "hold":
                self.held()
                return
        self.switch_and_verify()
        self.finish()

    def finish(self) -> None:
        """Traffic moved: the roles swap; the old cluster's applications go on proof that it no longer serves."""
        self.result.live_address, self.result.standby_address = self.standby.address, self.live.address
        self.result.live_url, self.result.live_app = self.opts.standby_url, ",".join(self.logicals())
        if not self.opts.keep_standby:
            proven, why = self.proof_of_switch()
            self.result.switch_proof = why
            if proven:
                self.retire_old()
            else:
                message = (f"the old cluster {self.live.address} keeps its applications: {why}. Remove them by "
                           "hand once you have checked that traffic reaches the new cluster")
                console.say(f"WARN  {message}")
                self.result.warn(message)
        self.result.outcome = "deployed"
        console.say(f"live is now {self.standby.address}; deploy the next release with "
                    f"--address {self.standby.address} --standby-address {self.live.address}")

    # -- a release held on the standby (see two_cluster_hold) ------------------------------------
    def holds(self) -> list[StandbyHold]:
        """The hold-marked applications of this config on the standby, as last read, judged against live."""
        standby, live = view.parse(self.standby_before), view.parse(self.live_snapshot)
        return [h for logical, app in self.apps(self.config.data).items()
                for h in standby_holds(standby, live, logical, app.get("route_prefix"))]

    def refuse_while_held(self) -> None:
        """A deploy (or the hold of another release) to a standby that holds a release: exit 2, naming it. A
        hold the live cluster has moved away from is replaced, with a warning; a promoted one's leftover is no
        hold at all."""
        holds = self.holds()
        # the same hold run again (a re-run of a job that was cancelled or killed) replaces its own release
        rerun = self.opts.mode == "hold"
        held = [h for h in holds if h.state == "held" and not (rerun and h.release == self.opts.version)]
        if held:
            h = held[0]
            raise InputError(
                f"release {h.release} of {h.logical} is held for review on the standby {self.standby.address} "
                f"({h.app.name}); a deploy now would replace what the reviewer is looking at (nothing was written)",
                f"promote it (`ci-serve promote CONFIG --version {h.release}` with the same cluster flags) or abort "
                f"it (`ci-serve abort CONFIG --version {h.release} --address {self.live.address} --standby-address "
                f"{self.standby.address}`), then deploy")
        for h in holds:
            if h.state == "stale":
                message = (f"the standby's {h.app.name} (release {h.release}, once held) is replaced: the live "
                           f"cluster no longer runs what it was held against, so it could not be promoted")
                console.say(f"NOTE  {message}")
                self.result.warn(message)

    def held(self) -> None:
        """A hold stops here: the release passed its checks on the standby; live and the traffic are untouched."""
        self.result.outcome = "held"
        base = self.opts.standby_url.rstrip("/")
        self.result.preview_urls = {n: base + p for n, p in self.prefixes().items()}
        self.result.live_url = self.old_url()
        live = view.parse(self.live_snapshot)
        self.result.live_app = ",".join(a.name for logical, app in self.apps(self.config.data).items()
                                        for a in [live.live_of(logical, app.get("route_prefix"))] if a) or None
        release = self.opts.version or ""
        for logical, url in self.result.preview_urls.items():
            console.say(f"held release {release} of {logical} on the standby: the new version answers at {url}; "
                        f"live ({self.live.address}) and the traffic are untouched")
        flags = f"--address {self.live.address} --standby-address {self.standby.address}"
        console.say(f"next: promote it with `ci-serve promote {self.config.path} --version {release} {flags} "
                    f"--standby-url {self.opts.standby_url} --switch-command ...`, or abort it with "
                    f"`ci-serve abort {self.config.path} --version {release} {flags}`")

    def release_held(self) -> dict[str, StandbyHold]:
        """Promote: the standby application holding release ``version`` of each app of the config, as the hold
        recorded it (compare-and-swap); else :class:`InputError` (exit 2), nothing written."""
        release = self.opts.version
        holds = self.holds()
        found: dict[str, StandbyHold] = {}
        missing = []
        for logical, app in self.apps(self.config.data).items():
            mine = [h for h in holds if h.logical == logical and h.app.version == release and h.state != "superseded"]
            if not mine:
                missing.append(logical)
                continue
            h = mine[0]
            why = cas_failure(h, app.get("route_prefix"))
            if why and probably_promoted(h) and cas_failure(replace(h, state="held"), app.get("route_prefix")) is None:
                # what the hold replaces is gone: only a promote's retirement (after its proof that traffic moved)
                # removes it; this one was interrupted after it, or is run again: it is finished, not refused
                message = (f"the live cluster runs no {logical} any more ({h.app.hold.live if h.app.hold else '-'} "
                           f"was there when release {release} was held): a promote of it got as far as retiring "
                           "it; this one finishes it")
                if message not in (self.result.warnings or []):
                    console.say(f"NOTE  {message}")
                    self.result.warn(message)
                why = None
            if why:
                raise InputError(f"{why} (nothing was written)",
                                 f"abort it (`ci-serve abort CONFIG --version {release}` with the same cluster "
                                 "flags) and hold the release again from what runs now")
            found[logical] = h
        if missing:
            others = sorted({f"{h.release} of {h.logical}" for h in holds if h.state == "held"})
            raise InputError(
                f"no release {release} of {', '.join(missing)} is held on the standby {self.standby.address}"
                f"{'; held: ' + ', '.join(others) if others else ''} (nothing was written)",
                "hold one with `ci-serve deploy --hold --version V` and the two-cluster flags; after a promote the "
                "roles swap: --address names the cluster that serves now")
        return found

    def promote(self) -> None:
        """Take the held release live: re-gate and re-check it on the standby as it is, compare-and-swap on what
        the hold recorded again, then the switch, verification, proof and retirement of a deploy."""
        try:
            found = self.release_held()
        except InputError:  # refused only when a second read agrees (a recovering controller lists none)
            time.sleep(1.0)
            self.live_snapshot, self.standby_before = self.live.get_applications(), self.standby.get_applications()
            found = self.release_held()
        held = {h.app.name for h in found.values()}
        # what the standby goes back to when the release fails: as before the hold (its applications removed)
        self.standby_base = {**self.standby_before, "applications": {
            n: a for n, a in (self.standby_before.get("applications") or {}).items() if n not in held}}
        self.standby_touched = held
        try:
            goals = [Goal(h.app.name, h.app.config, None) for h in found.values()]
            try:
                wait_ready(self.standby.get_applications, goals, timeout=self.opts.timeout,
                           unschedulable_grace=self.opts.unschedulable_grace, log=self.log,
                           step_name="gate held standby", capacity=lambda: capacity.observe(self.standby))
            except GateFailed as err:
                attach_replica_logs(self.standby, err, sorted(held))
                raise
            self.check(self.opts.standby_url, "check held standby", requests=self.opts.requests)
        except Cancelled as exc:  # nothing written: the release stays held, as it was
            self.stop_held(exc)
        except BaseException as exc:  # a held release that fails its checks goes, as a deploy's candidate does
            self.restore_standby(exc)
        try:
            with self.log.step("compare with the hold") as st:  # the compare-and-swap again, right before the switch
                # a read lacking what was seen is read again; still lacking it, nothing more is done
                for client, name in ((self.live, "live_snapshot"), (self.standby, "standby_before")):
                    expected = expected_from(view.parse(getattr(self, name)))
                    fresh_view = read_explained(client.get_applications, expected)
                    stop_if_unexplained(expected, fresh_view)
                    setattr(self, name, fresh_view.snapshot)
                fresh = self.release_held()
                st.detail = "; ".join(f"{h.app.name}: release {h.release} beside "
                                      f"{h.live.name if h.live else 'nothing'}" for h in fresh.values())
        except InputError:
            raise
        except CiServeError as exc:  # nothing written: the release stays held
            self.stop_held(exc)

    def stop_held(self, cause: CiServeError) -> NoReturn:
        """Stopped before any write: the release stays held; exit 1 once the old cluster is seen serving."""
        seen, lines = self.old_serving(budget=3.0)
        cause.exit_code = exit_code(Final(failed=True, seen=seen))
        cause.message = f"{cause.message}; release {self.opts.version} stays held; " + "; ".join(lines)
        raise cause

    def abort(self) -> None:
        """Remove the release's held applications from the standby, nothing else; the live cluster is not touched
        (not even written). Exit 0 ``aborted``; ``unchanged`` with a warning when nothing of it is held."""
        release = self.opts.version
        holds = [h for h in self.holds() if h.app.version == release and h.state != "superseded"]
        if not holds:  # "nothing held" is said only when a second read agrees (a recovering controller lists none)
            time.sleep(1.0)
            self.standby_before = self.standby.get_applications()
            holds = [h for h in self.holds() if h.app.version == release and h.state != "superseded"]
        for h in holds:
            if probably_promoted(h):
                raise InputError(
                    f"the live cluster {self.live.address} runs no {h.logical}, which release {release} was held "
                    f"against: it was probably promoted, and {self.standby.address} serves it now (nothing was "
                    "written)", f"after a promote the roles swap: name {self.standby.address} with --address; to "
                    f"remove it anyway, `ci-serve status -a {self.standby.address}` shows it")
        names = frozenset(h.app.name for h in holds)
        if not names:
            message = f"no release {release} of {', '.join(self.logicals())} is held on the standby: nothing to abort"
            console.say(f"NOTE  {message}")
            self.result.warn(message)
            self.result.outcome = "unchanged"
            return
        try:
            with self.log.step("remove held release") as st:
                before = expected_from(view.parse(self.standby_before))
                fresh = read_explained(self.standby.get_applications, before)
                stop_if_unexplained(before, fresh)
                check_drift(before, fresh)
                body = build_body(fresh.snapshot, remove=names)
                check_effect(fresh, body, Write("remove held release", {}, names, Effect(removed=names),
                                                tuple(f"remove {n}" for n in sorted(names)), cleanup=True),
                             self.logicals())
                self.standby_touched = set(names)
                self.standby.put_applications(body)
                st.detail = f"removed {', '.join(sorted(names))} from {self.standby.address}"
            wait_ready(self.standby.get_applications, [Goal(n, None) for n in sorted(names)], timeout=120.0,
                       log=self.log, step_name="gate removal")
        except CiServeError as exc:
            seen, lines = self.old_serving(budget=3.0 if isinstance(exc, Cancelled) else 20.0)
            exc.exit_code = exit_code(Final(failed=True, wrote=self.standby_touched is not None, seen=seen))
            exc.message = (f"{exc.message}; the held release may still be on the standby (re-run the abort); "
                           f"live ({self.live.address}) was not touched: " + "; ".join(lines))
            raise
        seen, lines = self.old_serving(budget=20.0)
        if exit_code(Final(failed=False, seen=seen)) != 0:
            raise RestoreFailed(f"the held release was removed, but the live cluster {self.live.address} is not seen "
                                "serving: " + "; ".join(lines),
                                "a person must look: `ci-serve status` on both clusters")
        self.result.outcome = "aborted"
        console.say(f"aborted: removed {', '.join(sorted(names))} from the standby {self.standby.address}; live "
                    f"({self.live.address}) is as it was: " + "; ".join(lines))

    def old_url(self) -> str:
        return self.opts.live_url.rstrip("/") if self.opts.live_url else view.serve_url(self.live.address,
                                                                                          self.live_snapshot)

    def proof_of_switch(self) -> tuple[bool, str]:
        """Positive proof that the public entry answers from the new version (see the module docstring): it
        passed the requests that the old cluster, reached at its own Serve proxy (which lists our routes),
        answers differently. An old cluster that cannot be reached proves nothing: it may still be what the
        public entry reaches."""
        if not self.opts.verify_url:
            return False, "no --verify-url, so nothing proves the traffic moved"
        old_url = self.old_url()
        for prefix in self.prefixes().values():
            known, why = checks.route_holder(old_url, prefix, None, wait=0.0)
            if not known:
                return False, (f"the old cluster's Serve proxy at {old_url} could not be asked ({why}), so nothing "
                               f"shows that {self.opts.verify_url} stopped reaching it (give --serve-url)")
        # Only an answer that is not a 5xx and differs proves it: a 5xx or no answer may be a busy moment of
        # the old cluster that the public entry still reaches; asked again, and if it persists, no proof.
        for attempt in range(PROOF_ATTEMPTS):
            if attempt:
                time.sleep(PROOF_PAUSE_S)
            outcomes: list[Outcome] = []
            try:
                checks.run_checks(self.opts.requests, old_url, self.prefixes(), outcomes, attempts=1)
            except CheckFailed:
                answered = [o for o in outcomes if not o.passed and o.status is not None and o.status < 500]
                if answered:
                    return True, (f"{self.opts.verify_url} passed the checks that the old cluster ({old_url}) "
                                  f"answers differently ({answered[0].name}: HTTP {answered[0].status}): the "
                                  "traffic moved")
                continue
            return False, (f"the old cluster ({old_url}) passes the same checks as {self.opts.verify_url}, so "
                           "they cannot tell the versions apart (use a requests file that expects the new version)")
        return False, (f"the old cluster ({old_url}) answered the checks only with errors (HTTP 5xx) or not at all "
                       f"({PROOF_ATTEMPTS} tries), so nothing shows that {self.opts.verify_url} stopped reaching it")

    def deploy_standby(self) -> None:
        with self.log.step("ship code") as st:
            shipped, records = ship_working_dirs(self.standby, self.config.data,
                                                 base_dir=self.config.path.resolve().parent,
                                                 override=self.opts.working_dir)
            self.result.packages = records
            st.detail = ", ".join(r["uri"] for r in records) or "no working_dir"
        put = self.apps(shipped)
        if self.opts.mode == "hold":  # the marker, written once with the application: what promote compares with
            live, at = view.parse(self.live_snapshot), time.time()
            for name, app in put.items():
                now = live.live_of(name, app.get("route_prefix"))
                put[name] = with_hold(app, at=at, route=app.get("route_prefix"), live=now.config if now else None,
                                      live_name=now.name if now else None)
        with self.log.step("write standby") as st:
            # the write guard, as for one cluster: nothing changed since we read the standby; the body
            # creates or replaces only our applications (or adoptable plain names) and removes only ours
            before = expected_from(view.parse(self.standby_before))
            fresh = read_explained(self.standby.get_applications, before)
            stop_if_unexplained(before, fresh)
            check_drift(before, fresh)
            ours = {m.name for logical, app in put.items()
                    for m in fresh.members(logical, app.get("route_prefix"))} - set(put)
            ours &= set(fresh.declarative_configs())
            # an application still being deleted (retired by the previous release) is created anew, for Ray
            created = frozenset(n for n in put if n not in fresh.apps or fresh.apps[n].deleting)
            write = Write("write standby", put, frozenset(ours),
                          Effect(created=created, changed=frozenset(put) - created, removed=frozenset(ours)),
                          tuple(f"put {n}" for n in put))
            body = build_body(fresh.snapshot, put=put, remove=ours, first_start=self.config.data)
            check_effect(fresh, body, write, set(put))
            self.standby_touched = set(put) | ours
            self.standby.put_applications(body)
            st.detail = ", ".join(put)
        previous = {n: (a or {}).get("last_deployed_time_s")
                    for n, a in (self.standby_before.get("applications") or {}).items()}
        goals = [Goal(name, config, previous.get(name)) for name, config in put.items()]
        goals += [Goal(name, None) for name in sorted(ours)]
        try:
            wait_ready(self.standby.get_applications, goals, timeout=self.opts.timeout,
                       unschedulable_grace=self.opts.unschedulable_grace, log=self.log, step_name="gate standby",
                       capacity=lambda: capacity.observe(self.standby))
        except GateFailed as err:  # why, from the standby: its failing replicas' log tails, as on one cluster
            attach_replica_logs(self.standby, err, [g.name for g in goals])
            raise

    def check(self, base_url: str, step: str, *, requests: list[Any] | None = None, attempts: int = 3) -> None:
        outcomes: list[Outcome] = []
        with self.log.step(step) as st:
            try:
                checks.run_checks(requests, base_url, self.prefixes(), outcomes, attempts=attempts)
            finally:
                self.result.requests = outcomes
            st.detail = f"{len(outcomes)} check(s) passed at {base_url}"

    # -- switch --------------------------------------------------------------------------------
    def switch(self, step: str, *, new_address: str, old_address: str, new_url: str) -> None:
        env = dict(os.environ, CI_SERVE_NEW_ADDRESS=new_address, CI_SERVE_OLD_ADDRESS=old_address,
                   CI_SERVE_NEW_URL=new_url)
        with self.log.step(step) as st:
            try:
                # The one input meant for a shell: it is the user's own command, run as they wrote it.
                proc = subprocess.run(self.opts.switch_command, shell=True, env=env, text=True,  # noqa: S602
                                      stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      timeout=self.opts.switch_timeout, executable="/bin/sh")
            except subprocess.TimeoutExpired:
                raise SwitchFailed(f"the switch command did not finish within {self.opts.switch_timeout:.0f}s",
                                   "make --switch-command return once traffic has moved") from None
            for line in (proc.stdout or "").splitlines()[-20:]:
                console.say(f"    | {line}")
            if proc.returncode != 0:
                raise SwitchFailed(f"the switch command exited with code {proc.returncode}",
                                   "run it by hand with CI_SERVE_NEW_URL set to see why")
            st.detail = f"traffic moved to {new_url}"

    def verify(self, step: str, requests: list[Any] | None) -> None:
        """Poll the public entry until it answers the smoke requests (the new version) or time runs out."""
        url = self.opts.verify_url
        if not url:
            return
        deadline = time.monotonic() + self.opts.verify_timeout
        with self.log.step(step, heartbeat=lambda: f"waiting for {url} to answer as expected") as st:
            attempt = 0
            while True:
                attempt += 1
                outcomes: list[Outcome] = []
                try:
                    checks.run_checks(requests, url, self.prefixes(), outcomes, attempts=1)
                except CheckFailed as exc:
                    last = exc
                else:
                    st.detail = f"{len(outcomes)} check(s) passed at {url} (attempt {attempt})"
                    return
                finally:
                    self.result.verify = outcomes
                if time.monotonic() >= deadline:
                    raise SwitchFailed(f"{url} did not answer as expected within {self.opts.verify_timeout:.0f}s: "
                                       f"{last.message}",
                                       "check that --switch-command really moves the traffic behind --verify-url")
                time.sleep(1.0)

    def switch_env(self) -> dict[str, str]:
        return {"CI_SERVE_NEW_ADDRESS": self.standby.address, "CI_SERVE_OLD_ADDRESS": self.live.address,
                "CI_SERVE_NEW_URL": self.opts.standby_url, "CI_SERVE_OLD_URL": self.old_url()}

    def switch_and_verify(self) -> None:
        if self.steps is not None:
            self.walk_traffic(self.steps)
            return
        try:
            self.switch("switch", new_address=self.standby.address, old_address=self.live.address,
                        new_url=self.opts.standby_url)
            self.verify("verify public entry", self.opts.requests)
        except BaseException as exc:
            self.switch_back(exc)
            raise AssertionError("unreachable") from None

    def walk_traffic(self, steps: TrafficOptions) -> None:
        """The traffic moves in steps (:mod:`~ci_serve.deploy.traffic`), each held and judged; the public entry
        must then answer the requests from the new version. On a failed step, a fault or a cancel the walk has
        set the share back to 0 already: the old version must answer at the public entry, then the candidate
        goes from the standby (unless --keep-standby): exit 1, or 3 when the old version is not seen serving."""
        walked = walk(steps, self.source, log=self.log, check=self.step_check if self.source is None else None)
        self.result.traffic_steps, self.result.traffic_analysed = walked.entries(), walked.analysed
        if walked.error is None:
            try:
                self.verify("verify public entry", self.opts.requests)
            except BaseException as exc:
                self.traffic_back(steps, exc)
            return
        if isinstance(walked.error, TrafficRollbackFailed):  # the share may still be the new version's
            raise walked.error
        self.after_traffic_back(walked.error, switched=bool(walked.weights_set))

    def step_check(self, weight: int) -> str:
        """Without metrics, a step is judged by the requests file sent through the public entry: at 100 % all
        of it must pass; below, both versions answer, so only an answer that is not a 5xx is demanded."""
        url = self.opts.verify_url
        assert url is not None, "the flags require --verify-url for traffic steps without metrics"
        outcomes: list[Outcome] = []
        try:
            checks.run_checks(self.opts.requests, url, self.prefixes(), outcomes, attempts=1)
        except CheckFailed as exc:
            broken = [o for o in outcomes if not o.passed and (o.status is None or o.status >= 500)]
            if weight >= 100 or broken or not outcomes:
                raise
            del exc
        finally:
            self.result.verify = outcomes
        return (f"{len(outcomes)} request(s) through {url} " +
                ("passed" if weight >= 100 else "answered without a 5xx (both versions answer at this share)"))

    def traffic_back(self, steps: TrafficOptions, cause: BaseException) -> NoReturn:
        """After the last step the public entry did not answer as the new version: the share goes back to 0."""
        try:
            with self.log.step("traffic back to 0%") as st:
                out = run_command(steps, 0)
                st.detail = "new version's share 0 %" + (f": {out}" if out else "")
        except CiServeError as err:
            raise RestoreFailed(f"{_what(cause)}; setting the new version's share back to 0 % then failed: "
                                f"{err.message}", "a person must look: traffic may still reach the standby "
                                f"cluster ({self.standby.address}); run the traffic command by hand with "
                                "CI_SERVE_TRAFFIC_WEIGHT=0", details=_details(cause)) from None
        self.after_traffic_back(cause, switched=True)

    def after_traffic_back(self, cause: BaseException, *, switched: bool) -> NoReturn:
        """The share is 0 again: the public entry must answer (the old version), then the standby is cleaned."""
        if switched:
            try:
                self.verify("verify old version", None)  # the old version answers its own way: it must answer
            except CiServeError as err:
                raise RestoreFailed(f"{_what(cause)}; the new version's share went back to 0 %, but then "
                                    f"{err.message}", "a person must look: `ci-serve status` on both clusters and "
                                    "the balancer's weights", details=_details(cause)) from None
        self.restore_standby(cause, switched_back=switched, keep=self.opts.keep_standby)

    def switch_back(self, cause: BaseException) -> None:
        live_url = self.old_url()
        try:
            self.switch("switch back", new_address=self.live.address, old_address=self.standby.address,
                        new_url=live_url)
            self.verify("verify old version", None)  # the old version answers its own way: it must answer
        except CiServeError as err:
            raise RestoreFailed(f"{_what(cause)}; switching traffic back to {self.live.address} then failed: "
                                f"{err.message}",
                                "a person must look: traffic may point at the standby cluster "
                                f"({self.standby.address}); run the switch command by hand", details=_details(cause)
                                ) from None
        self.restore_standby(cause, switched_back=True)

    # -- cleanup -------------------------------------------------------------------------------
    def restore_standby(self, cause: BaseException, *, switched_back: bool = False, keep: bool = False) -> NoReturn:
        """Put the standby's previous config back (the candidate goes; ``keep``: it stays, as
        ``--keep-standby`` asks after a failed traffic step); then raise the outcome."""
        if keep and self.standby_touched:
            message = (f"the candidate stays on the standby {self.standby.address} (--keep-standby), taking no "
                       "traffic; the next deploy replaces it")
            console.say(f"NOTE  {message}")
            self.result.warn(message)
        else:
            self.remove_candidate(cause, switched_back=switched_back)
        self.verdict_after_restore(cause, switched_back=switched_back)

    def remove_candidate(self, cause: BaseException, *, switched_back: bool) -> None:
        """The standby's previous config, written back (only what our write touched)."""
        touched = self.standby_touched
        try:
            with self.log.step("remove candidate") as st:
                if touched is None:  # the guard stopped before our write: the standby holds nothing of ours
                    st.detail = f"nothing was written to the standby {self.standby.address}"
                    touched = set()
                base = self.standby_base if self.standby_base is not None else self.standby_before
                # a read that lacks an app seen before our write (and not ours) is read again, never written from
                before = expected_from(view.parse(base))
                fresh = read_explained(self.standby.get_applications, before, removing=touched)
                stop_if_unexplained(before, fresh, touched)
                now = fresh.snapshot
                # only what our write touched goes back: another writer's app (or change) meanwhile stays
                previous = {n: c for n, c in declarative_apps(base).items() if n in touched}
                removed = (set(declarative_apps(now)) - set(declarative_apps(base))) & touched
                if touched:
                    body = build_body(now, put=previous, remove=removed, first_start=self.config.data)
                    created = frozenset(n for n in previous if n not in fresh.apps or fresh.apps[n].deleting)
                    check_effect(fresh, body, Write("remove candidate", previous, frozenset(removed), Effect(
                        created=created, changed=frozenset(previous) - created, removed=frozenset(removed)),
                        (), cleanup=True), self.logicals())
                    self.standby.put_applications(body)
                if removed and not isinstance(cause, Cancelled):  # seen gone before "removed" is said
                    wait_ready(self.standby.get_applications, [Goal(n, None) for n in sorted(removed)],
                               timeout=120.0, log=self.log, step_name="gate removal")
                if touched:
                    st.detail = f"standby {self.standby.address} back to its previous config"
        except CiServeError as err:
            raise RestoreFailed(f"{_what(cause)}; removing the candidate from the standby cluster then failed: "
                                f"{err.message}",
                                f"live ({self.live.address}) is {'serving again' if switched_back else 'untouched'}; "
                                "clean the standby with `ci-serve status`", details=_details(cause)) from None

    def verdict_after_restore(self, cause: BaseException, *, switched_back: bool) -> NoReturn:
        # exit 1 only once the previous version is seen serving: on the old cluster, at its real Serve address
        seen, lines = self.old_serving(budget=3.0 if isinstance(cause, Cancelled) else 20.0)
        where = "traffic was switched back" if switched_back else "the live cluster was not touched"
        code = exit_code(Final(failed=True, wrote=self.standby_touched is not None or switched_back, seen=seen))
        if code == EXIT_BAD_INPUT and isinstance(cause, CiServeError):
            cause.exit_code = code
            raise cause
        if code != EXIT_FAILED:
            raise RestoreFailed(f"{_what(cause)}; {where}, but the old cluster {self.live.address} is not seen "
                                "serving: " + "; ".join(lines),
                                "a person must look: `ci-serve status` on both clusters", details=_details(cause)
                                ) from None
        if isinstance(cause, Cancelled):
            cause.message = f"{cause.message}; " + "; ".join(lines)
            raise cause
        raise DeployFailed(f"{_what(cause)}; {where}: {self.live.address} serves: " + "; ".join(lines),
                           getattr(cause, "hint", None), details=_details(cause)) from None

    def old_serving(self, *, budget: float) -> tuple[tuple[Seen, ...] | None, list[str]]:
        """Is the old cluster's live version of each application seen serving (route table and a request)?"""
        old = view.parse(self.live_snapshot)
        apps = self.apps(self.config.data)
        expected = []
        for logical, app in apps.items():
            live = old.live_of(logical, app.get("route_prefix"))
            expected.append((logical, app.get("route_prefix"), live.name if live else None))
        try:
            seen, lines = checks.seen_serving(self.live, self.old_url(), expected, budget=budget)
            return tuple(seen), lines
        except CiServeError as err:
            return None, [f"the old cluster could not be read ({err.message})"]

    def retire_old(self) -> None:
        """Remove our applications (marked, or under the plain logical name) from the old live cluster."""
        try:
            with self.log.step("retire old cluster") as st:
                time.sleep(DRAIN_S)
                now = self.live.get_applications()
                old = view.parse(now)
                members = {m.name for logical, app in self.apps(self.config.data).items()
                           for m in old.members(logical, app.get("route_prefix"))}
                gone = members & set(declarative_apps(now))
                if gone:
                    body = build_body(now, remove=gone)
                    check_effect(old, body, Write("retire old cluster", {}, frozenset(gone),
                                                  Effect(removed=frozenset(gone)), (), cleanup=True), self.logicals())
                    self.live.put_applications(body)
                st.detail = f"removed {', '.join(sorted(gone)) or 'nothing'} from {self.live.address}"
        except CiServeError as err:  # traffic already moved: a leftover is a warning, not a failure
            console.say(f"WARN  the old cluster keeps its applications: {err.message}")


def _what(cause: BaseException) -> str:
    if isinstance(cause, CiServeError):
        return cause.message
    return secrets.scrub(f"{type(cause).__name__}: {cause}")


def _details(cause: BaseException) -> str | None:
    return cause.details if isinstance(cause, CiServeError) else None
