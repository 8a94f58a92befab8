"""The executor: carry out a :class:`~ci_serve.deploy.planner.ReleasePlan`; decide nothing itself.

Read the cluster once into a :class:`ClusterView`, ship the code, ask the planner, then for each
write: re-read, :mod:`guard` (nothing changed since our last read or write; the body does what the
write declares, to our applications only), PUT, gate, check. On failure the plan's undo write runs
(guarded the same way, as a clean-up), and the exit code is verified, not assumed:

- exit 1 only after the previous version was seen serving: its route in the proxy's table, and a
  request answered (a route-less app: RUNNING);
- anything else is exit 3, saying what is where.

Every ending asks the one verdict (:func:`ci_serve.deploy.verdict.exit_code`) with what it saw last.

A change to any application between our read and our write, or during a gate, stops the deploy
without writing. A read that contradicts what we saw (an application gone without a write of ours,
an empty list where there were applications) is read again until explained, or the run stops
without writing. A write whose answer was lost (a timeout, a dropped connection, a cancel) is never
assumed: the cluster is re-read and the write classified (applied, not applied, overtaken); a retry
is a new write from a fresh read, guarded again. Strategies and guarantees: docs/deploy.md.

Across two clusters (:mod:`ci_serve.deploy.two_cluster`) the same executor carries out the plan of
:func:`~ci_serve.deploy.planner.plan_two_clusters`: it holds a client per cluster, and each write acts on
the cluster it names, through the same guard and fate machinery. A traffic write (the switch, or a step
of ``--traffic-steps``) runs the user's command; it is declared to change no Serve application, and both
clusters are read before and after it to hold it to that. Its gate is the public entry's answer (the
switch) or the step's analysis (:class:`~ci_serve.deploy.traffic.Walker`). The verdict is asked the same
way: exit 1 only once the old cluster's version is seen serving.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NoReturn

from ci_serve import cancel, console
from ci_serve.cluster.dashboard import AnswerLost, DashboardClient, NotSent, SchemaRejected
from ci_serve.cluster.packages import NoUpload, ship_working_dirs
from ci_serve.config.loader import ConfigFile
from ci_serve.deploy import capacity, checks, two_cluster
from ci_serve.deploy.cluster_config import build_body
from ci_serve.deploy.gate import DEPLOY_TIMEOUT_S, UNSCHEDULABLE_GRACE_S, GateFailed, Goal, Superseded, wait_ready
from ci_serve.deploy.guard import (
    ClusterChanged,
    Expected,
    WriteFate,
    WriteRefused,
    after_write,
    check_drift,
    check_effect,
    classify,
    drifted,
    expected_from,
    unexplained,
)
from ci_serve.deploy.planner import (
    CLUSTERS,
    AppDecision,
    Cluster,
    Mode,
    PlanOptions,
    ReleasePlan,
    RequestedStrategy,
    TwoClusterPlanOptions,
    Write,
    desired_apps,
    plan_release,
    plan_two_clusters,
    refuse_while_held,
    refuse_while_held_two,
    two_cluster_apps,
)
from ci_serve.deploy.result import DeployResult
from ci_serve.deploy.traffic import Walker, overran, rollback_failed, run_shell
from ci_serve.deploy.two_cluster import SwitchFailed, TwoClusterOptions
from ci_serve.deploy.verdict import Final, Seen, exit_code, unexpected
from ci_serve.deploy.view import AppView, ClusterView, parse, read_routes, read_view, serve_url
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


@dataclass
class Options:
    strategy: RequestedStrategy = "auto"
    timeout: float = DEPLOY_TIMEOUT_S
    unschedulable_grace: float = UNSCHEDULABLE_GRACE_S
    version: str | None = None
    serve_url: str | None = None
    requests: list[Any] | None = None
    working_dir: Path | None = None
    #: ``hold``: stop after the candidates' checks; ``promote``/``abort`` the held release ``version``
    mode: Mode = "deploy"


@dataclass
class ReleaseResult:
    result: str  # "deployed" | "unchanged" | "held" | "aborted"
    strategy: str
    #: logical -> physical application now live
    live: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


class NotRestored(RestoreFailed):
    """The deploy stopped and the previous version was not seen serving (or ours is half-done): exit 3."""


#: a read that contradicts what we saw is read again this many times, this far apart, before it is believed
READ_AGAIN = 5
READ_PAUSE_S = 0.5
#: a write whose answer was lost and that was not applied is written again, each time from a fresh read
WRITE_ATTEMPTS = 4


def read_explained(read: Callable[[], dict[str, Any]], expected: Mapping[str, Expected],
                   removing: Iterable[str] = ()) -> ClusterView:
    """A read that does not contradict what we saw (``expected``; ``removing``: what a write of ours removes),
    read again (a few times) until it does not; one that still does is returned as it is, for
    :func:`stop_if_unexplained` (or the guard) to stop on. Every read a write is built from goes through here."""
    removing = frozenset(removing)
    fresh = parse(read())
    for attempt in range(READ_AGAIN):
        missing = unexplained(expected, fresh, removing)
        if not missing:
            break
        if attempt == 0:
            console.say(f"... a read of the cluster lacks {', '.join(missing)}, seen before, with no write "
                        "of ours removing it: reading again")
        cancel.pause(READ_PAUSE_S)
        fresh = parse(read())
    return fresh


def stop_if_unexplained(expected: Mapping[str, Expected], fresh: ClusterView, removing: Iterable[str] = ()) -> None:
    """:class:`ClusterChanged` (nothing written) when ``fresh`` still lacks an application we saw."""
    missing = unexplained(expected, fresh, removing)
    if missing:
        raise ClusterChanged(
            f"applications {', '.join(missing)}, seen earlier in this run, are missing from every read "
            "since, and no write of ours removed them; stopped without writing",
            "someone removed them, or the dashboard answers wrongly (a controller recovering): "
            "`ci-serve status` shows what runs; re-run the deploy")


class Release:
    def __init__(self, client: DashboardClient, config: ConfigFile, options: Options, log: StepLog | None = None, *,
                 standby: DashboardClient | None = None, two: TwoClusterOptions | None = None):
        self.client = client
        #: the dashboard each write acts on (:attr:`Write.cluster`); across two clusters the standby's too
        self.clients: dict[Cluster, DashboardClient] = {"live": client}
        if standby is not None:
            self.clients["standby"] = standby
        self.two = two
        self.log = log or StepLog()
        self.result = DeployResult()
        self.config = config
        self.opts = options
        self.outcomes: list[Outcome] = []
        #: per cluster: what it must hold, as this run last read or wrote it (the guard's reference)
        self.seen_of: dict[Cluster, dict[str, Expected]] = {"live": {}, "standby": {}}
        self.written = False  # a PUT of ours may have reached the cluster
        #: across two clusters: a PUT of ours may have reached the standby; a traffic command was started
        self.standby_written = False
        self.traffic_sent = False
        #: across two clusters: each cluster's applications, as last read
        self.snapshots: dict[Cluster, dict[str, Any]] = {"live": {}, "standby": {}}
        #: traffic steps (``--traffic-command``): the parts of the walk, one step at a time (None: one switch)
        self.walker: Walker | None = None
        self.serve = ""
        self.logicals: set[str] = set()
        #: what became of each write whose answer was lost (by step), from a re-read
        self.fates: dict[str, WriteFate | None] = {}

    @property
    def expected(self) -> dict[str, Expected]:
        """What the live cluster (the one cluster) must hold."""
        return self.seen_of["live"]

    @expected.setter
    def expected(self, value: dict[str, Expected]) -> None:
        self.seen_of["live"] = value

    # -- the whole deploy ----------------------------------------------------------------------
    def read_and_plan(self) -> ReleasePlan:
        if self.opts.mode != "deploy":  # a refusal's report names the release too
            self.result.release = self.opts.version
        with self.log.step("connect") as st:
            st.detail = f"Ray {self.client.get_version()} at {self.client.address}"
        with self.log.step("read cluster") as st:
            first = self.first_read(self.client, self.opts.serve_url)
            self.serve = serve_url(self.client.address, first, self.opts.serve_url)
            view = read_view(_Fixed(self.client, first), self.opts.serve_url)
            self.expected = expected_from(view)
            st.detail = f"{len(view.apps)} application(s) on the cluster" + "".join(f"; {n}" for n in view.notes)
        shipped_config = self.config.data
        if self.opts.mode in ("deploy", "hold"):  # promote and abort write no code: the candidates are there
            # refused while a release is held: before any upload
            refuse_while_held(view, self.config.data, PlanOptions(version=self.opts.version, mode=self.opts.mode))
            with self.log.step("ship code") as st:
                shipped_config, shipped = ship_working_dirs(
                    self.client, self.config.data, base_dir=self.config.path.resolve().parent,
                    override=self.opts.working_dir)
                self.result.packages = shipped
                st.detail = ", ".join(f"{s['app']}: {s['uri']}{' (uploaded)' if s['uploaded'] else ''}"
                                      for s in shipped) or "no working_dir"
        plan = plan_release(view, {**shipped_config},
                            PlanOptions(strategy=self.opts.strategy, version=self.opts.version,
                                        mode=self.opts.mode, now=time.time(), computed=self.computed()))
        if self.opts.mode != "deploy":
            self.result.release = plan.release
        for message in plan.warnings:
            console.say(f"NOTE  {message}")
        self.logicals = {a.logical for a in plan.apps}
        self._check_requests_target(plan)
        self.result.plan, self.result.version = plan, self.opts.version
        return plan

    def computed(self) -> dict[str, Any] | None:
        """Promote: the config with the package URIs of its code, nothing uploaded (None: the code is not here,
        which a promote does not need)."""
        if self.opts.mode != "promote":
            return None
        try:
            config, _ = ship_working_dirs(NoUpload(self.client.address), self.config.data,
                                          base_dir=self.config.path.resolve().parent, override=self.opts.working_dir)
        except CiServeError:
            return None
        return config

    def first_read(self, client: DashboardClient, serve_address: str | None) -> dict[str, Any]:
        """The read a plan is made from: an empty list may be a recovering controller's, believed only when it
        repeats and the cluster's Serve proxy (at ``serve_address``, else the dashboard's host) routes nothing."""
        first = client.get_applications()
        for _ in range(2):
            if first.get("applications"):
                break
            cancel.pause(READ_PAUSE_S)
            first = client.get_applications()
        if not first.get("applications"):
            first = self.empty_or_contradicted(first, client, serve_address)
        return first

    def empty_or_contradicted(self, empty: dict[str, Any], client: DashboardClient,
                              serve_address: str | None) -> dict[str, Any]:
        """An application list that keeps reading empty is believed only when the Serve proxy routes nothing
        (or cannot be asked): a route it lists contradicts the list, which is read again, else the run stops
        without writing (a PUT from an empty read removes every application on the cluster)."""
        listed: list[str] = []
        for _ in range(READ_AGAIN):
            routes, _why = read_routes(serve_url(client.address, empty, serve_address))
            if not routes:
                return empty
            listed = sorted(routes)
            console.say(f"... the cluster lists no application, but its Serve proxy routes "
                        f"{', '.join(f'{p} to {n}' for p, n in sorted(routes.items()))}: reading again")
            cancel.pause(READ_PAUSE_S)
            empty = client.get_applications()
            if empty.get("applications"):
                return empty
        err = ClusterChanged(
            "the cluster keeps listing no application while its Serve proxy routes "
            f"{', '.join(listed)}: the dashboard answers wrongly (a controller recovering?); stopped "
            "without writing", "`ci-serve status` shows what runs; re-run the deploy when it lists them")
        err.exit_code = exit_code(Final(failed=True))  # nothing written, nothing seen
        raise err

    def execute(self) -> DeployResult:
        """Read, plan, carry out. Never raises a :class:`CiServeError`: what stopped the deploy is the
        result's ``error``, next to what was seen until then."""
        if self.two is not None:
            return self.execute_two()
        with stops(self.result):
            try:
                try:
                    plan = self.read_and_plan()
                except Cancelled as exc:
                    self.cancelled_early(exc)
                done = self.carry_out(plan)
            except CiServeError:
                raise
            except Exception as exc:  # a bug: its verdict (3 once a write was sent), the traceback in the report
                raise unexpected(exc, wrote=self.written) from None
            self.result.live_app = ",".join(done.live[a.logical] for a in plan.apps if a.logical in done.live) or None
            # the Serve address the checks reached (its http_options); nothing of ours serves yet after a first hold
            self.result.live_url = (self.serve or None) if done.live else None
            self.result.outcome = done.result
            for message in done.warnings:
                if message not in (self.result.warnings or []):
                    self.result.warn(message)
        return self.result

    def carry_out(self, plan: ReleasePlan) -> ReleaseResult:
        if plan.mode == "abort":
            return self.abort(plan)
        if plan.strategy == "none":
            return self.unchanged(plan)
        assert plan.undo_first is not None
        if plan.first is None:  # promote: the held candidates are there; gated and checked again, as written
            self.recheck(plan)
        else:
            self.first(plan, plan.first, plan.undo_first)
        if plan.mode == "hold":
            return self.held(plan)
        if plan.switch is None:
            warnings = self.retire(plan, plan.retire) if plan.retire else []  # a routed one a route-less replaced
            return ReleaseResult("deployed", plan.strategy, self.live_after(plan), warnings)
        assert plan.undo_switch is not None
        self.fates.pop(plan.switch.step, None)
        try:
            before = self.write(plan.switch)
            self.gate("gate switch", self.goals(plan.switch, before))
            self.smoke("check switch", plan.checks_after_switch(), plan)
        except (ClusterChanged, WriteRefused, Superseded) as exc:
            # a promote that wrote nothing leaves its release held, as it was: not half-done
            self.fail(plan, exc, nothing_written=plan.mode == "promote" and not self.written)
        except Cancelled as exc:
            # recorded by the write itself, the moment its PUT returned or was re-read; absent: never sent
            fate = self.fates.get(plan.switch.step, "not applied")
            if fate == "applied":
                self.cancelled_after_switch(plan, exc)
            if fate == "not applied" and plan.mode == "promote":  # nothing written: the release stays held
                self.fail(plan, exc, nothing_written=True, short=True)
            if plan.rehold is not None:  # not known: every version back where it was, the release held again
                self.undo(plan, plan.rehold, exc)
            # never sent, or re-read as not applied: the first undo; not known: the switch's, right either way
            self.undo(plan, plan.undo_first if fate == "not applied" else plan.undo_switch, exc)
        except BaseException as exc:
            self.undo(plan, plan.undo_switch, exc)
        warnings = self.retire(plan, plan.retire) if plan.retire else []
        return ReleaseResult("deployed", plan.strategy, self.live_after(plan), warnings)

    def first(self, plan: ReleasePlan, first: Write, undo_first: Write) -> None:
        """The candidates (or the in-place configs): written, gated, checked; undone on failure."""
        try:
            before = self.write(first)
        except SchemaRejected as exc:
            # A 400 is not "nothing changed": on Ray 2.60 a PUT refused by the controller is already recorded
            # (the refused app is there, every app of the PUT redeploys). Decide from what the cluster holds.
            try:
                changed = self.refused_write_changed(exc)
            except Cancelled as cancelled:  # cancelled while finding out: undone as a cancel, never swallowed
                self.undo(plan, undo_first, cancelled)
            if not changed:
                raise  # nothing changed (exit 2)
            self.undo(plan, undo_first, exc)
        except (ClusterChanged, WriteRefused) as exc:
            self.fail(plan, exc, nothing_written=True)
        except BaseException as exc:
            if not self.written:
                if isinstance(exc, Cancelled):  # exit 1 only once the previous version is seen serving
                    self.fail(plan, exc, nothing_written=True, short=True)
                raise
            self.undo(plan, undo_first, exc)
        try:
            self.gate(first.step.replace("write", "gate"), self.goals(first, before))
            self.smoke("check candidate" if plan.switch else "check", plan.checks_before_switch(), plan)
        except (ClusterChanged, Superseded) as exc:
            self.fail(plan, exc, nothing_written=False)
        except BaseException as exc:
            self.undo(plan, undo_first, exc)

    def recheck(self, plan: ReleasePlan) -> None:
        """Promote: gate and check the held candidates as they are (nothing written). A candidate that fails
        goes, as in a deploy (exit 1 once live is seen serving); a cancel leaves the release held."""
        assert plan.undo_first is not None
        goals = [Goal(a.target, {**a.desired, "route_prefix": a.check_prefix, "name": a.target}, None)
                 for a in plan.changed if a.target]
        try:
            self.gate("gate held candidate", goals)
            self.smoke("check held candidate", plan.checks_before_switch(), plan)
        except (ClusterChanged, Superseded) as exc:
            self.fail(plan, exc, nothing_written=True)
        except Cancelled as exc:
            self.fail(plan, exc, nothing_written=True, short=True)
        except BaseException as exc:
            self.undo(plan, plan.undo_first, exc)

    def held(self, plan: ReleasePlan) -> ReleaseResult:
        """A hold stops here: the candidates passed their checks on their preview prefixes; live is untouched."""
        self.refresh_serve_url()
        self.result.preview_urls = {a.logical: self.serve + (a.check_prefix or "") for a in plan.changed}
        release = plan.release or ""
        config = self.config.path
        for logical, url in self.result.preview_urls.items():
            console.say(f"held release {release} of {logical}: the new version answers at {url}; live is untouched")
        console.say(f"next: promote it with `ci-serve promote {config} --version {release} -a {self.client.address}`"
                    f", or abort it with `ci-serve abort {config} --version {release} -a {self.client.address}`")
        return ReleaseResult("held", plan.strategy, {a.logical: a.live.name for a in plan.apps if a.live})

    def abort(self, plan: ReleasePlan) -> ReleaseResult:
        """Remove the held candidates of the release; live is left as it is (the write sends its config unchanged,
        and the guard refuses any other effect). Then what serves is checked: exit 0, else 3."""
        w = plan.remove_held
        if w is not None:
            try:
                before = self.write(w)
                self.gate("gate removal", self.goals(w, before))
            except CiServeError as exc:
                if isinstance(exc, InputError) and not self.written:
                    raise
                seen, lines = self.where(plan, budget=3.0 if isinstance(exc, Cancelled) else 20.0)
                self.stop(exit_code(Final(failed=True, wrote=self.written, seen=seen)), exc,
                          "the held release may still be there (re-run the abort); live serves: " + "; ".join(lines),
                          "now: " + "; ".join(lines), "a person must look: `ci-serve status` shows what runs")
        seen, lines = self.where(plan, budget=20.0)
        if exit_code(Final(failed=False, seen=seen)) != 0:
            raise NotRestored(("the held release was removed" if w else "nothing was held")
                              + ", but the live version is not seen serving: " + "; ".join(lines),
                              "a person must look: `ci-serve status` shows each application's message")
        console.say(("aborted: removed " + ", ".join(sorted(w.remove)) if w else "nothing to abort")
                    + "; live is as it was: " + "; ".join(lines))
        return ReleaseResult("aborted" if w else "unchanged", "none",
                             {a.logical: a.live.name for a in plan.apps if a.live}, list(plan.warnings))

    # -- writes and gates ----------------------------------------------------------------------
    def write(self, w: Write) -> ClusterView:
        """Re-read; guard (drift unless a clean-up; the declared effect always); PUT. Returns the read.

        A write whose answer was lost and that the re-read shows not applied is written again (at most
        ``WRITE_ATTEMPTS`` in all): each time a new write, from a fresh read, guarded again (never the old body)."""
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            try:
                return self._write_once(w)
            except AnswerLost as exc:
                if self.fates.get(w.step) != "not applied" or attempt == WRITE_ATTEMPTS or cancel.spent():
                    raise
                why = "it never reached the dashboard" if isinstance(exc, NotSent) else \
                    "its answer was lost and the cluster shows it not applied"
                console.say(f"... {w.step}: {why}: writing again from a fresh read")
        raise AssertionError("unreachable")

    def _write_once(self, w: Write) -> ClusterView:
        if w.traffic:
            return self.move_traffic(w)
        c = w.cluster
        with self.log.step(w.step) as st:
            fresh = self.read_fresh(removing=w.remove, cluster=c)
            stop_if_unexplained(self.seen_of[c], fresh, w.remove)
            if not w.cleanup:
                check_drift(self.seen_of[c], fresh)
            base = expected_from(fresh) if w.cleanup else self.seen_of[c]
            body = build_body(fresh.snapshot, put=dict(w.put), remove=set(w.remove), first_start=self.config.data)
            check_effect(fresh, body, w, self.logicals)
            self.written = True  # from here on the cluster may hold our write, even if the call fails
            if c == "standby":
                self.standby_written = True
            self.fates[w.step] = None  # sent, or about to be: not known until the answer or a re-read
            try:
                self.clients[c].put_applications(body)
                self.fates[w.step] = "applied"  # before anything else: a cancel from here on finds it applied
            except NotSent:  # it never reached the dashboard: written again from a fresh read (``write``)
                self.fates[w.step] = "not applied"
                raise
            except (AnswerLost, Cancelled) as exc:
                fate = self.fates[w.step] = self.settle(base, body, exc, cluster=c)
                if fate == "overtaken":
                    raise ClusterChanged(
                        f"{_what(exc)}; read again, the cluster holds neither what it held before the write "
                        f"{w.step!r} nor what the write sent: someone else wrote meanwhile; stopped without "
                        "writing more", "`ci-serve status` shows what runs; re-run the deploy") from None
                if fate != "applied":
                    raise
                if isinstance(exc, Cancelled):
                    self.seen_of[c] = after_write(base, body)
                    raise
                st.detail = "its answer was lost; read again, the cluster holds it; "
            self.seen_of[c] = after_write(base, body)
            st.detail = (st.detail or "") + "; ".join(w.says)
        return fresh

    def settle(self, before: dict[str, Expected], body: dict[str, Any], cause: BaseException,
               cluster: Cluster = "live") -> WriteFate | None:
        """What became of a write whose answer was lost (None: the cluster could not be read to tell)."""
        if isinstance(cause, Cancelled):  # the runner sends SIGKILL 10 s after SIGINT
            self.clients[cluster].retry_budget = min(self.clients[cluster].retry_budget, 3.0)
        try:
            fate = classify(before, body, self.read_fresh(cluster=cluster))
        except Cancelled:  # a CiServeError too: a cancel is never "could not be read"
            raise
        except CiServeError as err:
            console.say(f"... the answer of a write was lost, and the cluster could not be read ({err.message})")
            return None
        console.say(f"... the answer of a write was lost ({_what(cause)}); read again: {fate}")
        return fate

    def read_fresh(self, removing: frozenset[str] = frozenset(), cluster: Cluster = "live") -> ClusterView:
        """A read that does not contradict what we saw (:func:`read_explained`)."""
        return read_explained(self.clients[cluster].get_applications, self.seen_of[cluster], removing)

    def refused_write_changed(self, exc: SchemaRejected) -> bool:
        """After Ray refused our PUT (HTTP 400): does the cluster differ from what it held before? Says so on
        ``exc``. A cluster that cannot be read counts as changed (the undo then tells what is where)."""
        try:
            changed = drifted(self.expected, parse(self.client.get_applications()))
        except Cancelled:  # a CiServeError too: the caller undoes with the cancel as the cause
            raise
        except CiServeError as err:
            exc.message += f"; the cluster could not be read afterwards ({err.message})"
            return True
        if changed:
            exc.message += f", yet Ray had already recorded it (applications {', '.join(changed)} changed)"
        return bool(changed)

    @staticmethod
    def goals(w: Write, before: ClusterView) -> list[Goal]:
        def when(name: str) -> float | None:
            app = before.apps.get(name)
            return app.last_deployed_time_s if app else None

        return [Goal(n, {**c, "name": n}, when(n)) for n, c in w.put.items()] + [Goal(n, None) for n in w.remove]

    def gate(self, name: str, goals: list[Goal], timeout: float | None = None, cluster: Cluster = "live") -> None:
        must_exist = {g.name for g in goals if g.config is not None}
        client = self.clients[cluster]

        def read() -> dict[str, Any]:
            fresh = self.read_fresh(cluster=cluster)
            snapshot = fresh.snapshot
            gone = sorted(n for n in must_exist if n not in fresh.apps or fresh.apps[n].status == "DELETING")
            if gone:
                raise GateFailed(f"application {gone[0]} disappeared during the gate (removed by someone else)",
                                 "another deploy or a person removed it; `ci-serve status` shows what runs")
            check_drift(self.seen_of[cluster], fresh)
            return snapshot

        try:
            wait_ready(read, goals, timeout=timeout or self.opts.timeout,
                       unschedulable_grace=self.opts.unschedulable_grace, log=self.log, step_name=name,
                       capacity=lambda: capacity.observe(client))
        except Superseded:
            raise
        except GateFailed as err:  # why, from the cluster: the failing replicas' log tails (not for a short check)
            if timeout is not None:
                raise
            from ci_serve.cluster.logs import attach_replica_logs

            attach_replica_logs(client, err, [g.name for g in goals])
            raise

    def smoke(self, name: str, prefixes: dict[str, str], plan: ReleasePlan, *, live: bool = False) -> None:
        if not prefixes:
            return
        targets = ({a.logical: a.live.name for a in plan.apps if a.live} if live else
                   {a.logical: a.target for a in plan.changed if a.target})
        named = {getattr(r, "app", None) for r in self.opts.requests or []}
        for a in plan.apps:  # requests for an application this release leaves as it is: sent to its live version
            if a.strategy == "none" and a.logical in named and a.live is not None and a.route_prefix is not None:
                prefixes = {**prefixes, a.logical: a.live_route or a.route_prefix}
                targets.setdefault(a.logical, a.live.name)
        self.refresh_serve_url()
        with self.log.step(name) as st:
            self.outcomes.clear()
            try:
                checks.run_checks(self.opts.requests, self.serve, prefixes, self.outcomes, physical=targets)
            finally:
                self.result.requests = list(self.outcomes)
                for outcome in self.outcomes:
                    console.say("    " + outcome.line())
            st.detail = (f"{len(self.outcomes)} request(s) passed" if self.opts.requests
                         else "answered (no --requests: the route is in the proxy's table and the app answers "
                              "without a 5xx)")

    def retire(self, plan: ReleasePlan, w: Write) -> list[str]:
        """The new version is live and checked; the old one goes. A failure here is only a warning; a cancel
        is exit 3: the new version serves, the old one waits aside (the next deploy removes it)."""
        try:
            before = self.write(w)
            self.gate("gate removal", self.goals(w, before))
        except Cancelled as exc:
            self.cancelled_after_switch(plan, exc)
        except CiServeError as err:
            message = (f"the new version is live, but removing {', '.join(sorted(w.remove))} failed: {err.message}; "
                       "the next deploy removes it")
            console.say(f"WARN  {message}")
            self.result.warn(message)
            return [message]
        return []

    # -- endings -------------------------------------------------------------------------------
    def undo(self, plan: ReleasePlan, w: Write, cause: BaseException) -> NoReturn:
        """Write the plan's undo, gate it, then verify the previous version serves: exit 1, else 3."""
        cancelled = isinstance(cause, Cancelled)
        if cancelled:
            self.client.retry_budget = min(self.client.retry_budget, 3.0)
        try:
            before = self.write(w)
            goals = self.goals(w, before)
            if cancelled:  # the runner sends SIGKILL 10 s after SIGINT: do not wait long for Ray
                try:
                    self.gate(w.step.replace("remove", "gate removal").replace("restore", "gate restore"), goals,
                              timeout=3.0)
                except GateFailed:
                    console.say(f"... {w.step}: written; Ray is still carrying it out")
            else:
                self.gate("gate " + w.step, goals)
        except CiServeError as err:
            raise NotRestored(f"{_what(cause)}; then {w.step} failed: {err.message}",
                              "a person must look: `ci-serve status` shows what runs now; re-run the deploy",
                              details=_details(cause)) from None
        self.fail(plan, cause, nothing_written=True, undone=w, short=cancelled)

    def fail(self, plan: ReleasePlan, cause: BaseException, *, nothing_written: bool,
             undone: Write | None = None, short: bool = False) -> NoReturn:
        """Stop. The verdict on what is seen: exit 1 when nothing of ours remains written (or it was undone) and
        the previous version is seen serving; otherwise exit 3, saying what is where."""
        seen, lines = self.where(plan, budget=3.0 if short else 20.0)
        code = exit_code(Final(failed=True, wrote=self.written, seen=seen, half_done=not nothing_written))
        if plan.mode == "promote" and nothing_written and undone is None and isinstance(cause, CiServeError):
            cause.hint = (f"release {plan.release} is still held, as it was: re-run `ci-serve promote CONFIG "
                          f"--version {plan.release}`, or `ci-serve abort CONFIG --version {plan.release}`")
        what = f"undone: {'; '.join(undone.says)}" if undone is not None else "nothing was written"
        left = "" if nothing_written else "this deploy's candidate(s) stay where they are; "
        self.stop(code, cause, f"{what}; the previous version serves: " + "; ".join(lines),
                  f"stopped without writing more; {left}now: " + "; ".join(lines),
                  "a person must look (`ci-serve status`); the next deploy removes leftovers of ours")

    def stop(self, code: int, cause: BaseException, serving: str, not_serving: str, hint: str) -> NoReturn:
        """Raise what ends the run with the verdict's ``code``: 1 (``serving`` says what serves), 2, else 3."""
        if code == EXIT_FAILED:
            if isinstance(cause, Cancelled):
                cause.message = f"{cause.message}; " + serving
                raise cause
            raise DeployFailed(f"{_what(cause)}; {serving}", getattr(cause, "hint", None),
                               details=_details(cause)) from None
        if code == EXIT_BAD_INPUT:
            err = cause if isinstance(cause, CiServeError) else DeployFailed(_what(cause))
            err.exit_code = EXIT_BAD_INPUT
            raise err
        raise NotRestored(f"{_what(cause)}; {not_serving}", hint, details=_details(cause)) from None

    def cancelled_after_switch(self, plan: ReleasePlan, cause: Cancelled) -> NoReturn:
        seen, lines = self.where(plan, budget=2.0, previous=False)
        code = exit_code(Final(failed=True, wrote=True, seen=seen, half_done=True))
        self.stop(code, cause, "", "after the switch was written; now: " + "; ".join(lines),
                  "the new version holds the route; the old one waits aside and the next deploy removes it")

    def cancelled_early(self, cause: Cancelled) -> NoReturn:
        """A cancel before the plan: nothing was written; exit 1 only once each live version is seen serving."""
        self.client.retry_budget = min(self.client.retry_budget, 3.0)
        try:
            view = read_view(self.client, self.opts.serve_url)
            self.serve = serve_url(self.client.address, view.snapshot, self.opts.serve_url)
            expected = []
            for logical, desired in desired_apps(self.config.data):
                live = view.live_of(logical, desired.get("route_prefix"))
                route = view.route_of(live.name) if live else desired.get("route_prefix")
                expected.append((logical, route, live.name if live else None))
            found, lines = checks.seen_serving(self.client, self.serve, expected, budget=3.0)
            seen: tuple[Seen, ...] | None = tuple(found)
        except CiServeError as err:
            seen, lines = None, [f"the cluster could not be read ({err.message})"]
        code = exit_code(Final(failed=True, wrote=self.written, seen=seen))
        self.stop(code, cause, "nothing was written; " + "; ".join(lines),
                  "nothing was written, but the live version is not seen serving: " + "; ".join(lines),
                  "a person must look: `ci-serve status` shows each application's message")

    def unchanged(self, plan: ReleasePlan) -> ReleaseResult:
        """Nothing to write (but leftovers of earlier runs); still check, read-only, that live runs and answers,
        and that it passes the requests given: the version serving is the one checked."""
        if plan.tidy is not None:
            try:
                before = self.write(plan.tidy)
                self.gate("gate removal", self.goals(plan.tidy, before))
            except CiServeError as exc:
                if isinstance(exc, InputError) and not self.written:
                    raise  # nothing changed (exit 2)
                seen, lines = self.where(plan, budget=3.0 if isinstance(exc, Cancelled) else 20.0, every_app=True)
                self.stop(exit_code(Final(failed=True, wrote=self.written, seen=seen)), exc,
                          "removing leftovers of an earlier run failed; the live version serves: " + "; ".join(lines),
                          "now: " + "; ".join(lines), "a person must look: `ci-serve status` shows what runs")
        seen, lines = self.where(plan, budget=20.0, every_app=True)
        failed: CheckFailed | None = None
        if seen is not None and all(s.good for s in seen) and self.opts.requests:
            try:  # the requests the deploy was given, against the version that serves
                self.smoke("check live", {a.logical: a.live_route or a.route_prefix for a in plan.apps
                                          if a.route_prefix is not None}, plan, live=True)
            except CheckFailed as exc:
                failed = exc
                bad = {o.app for o in self.outcomes if not o.passed}
                seen = tuple(Seen(s.logical, s.holder, s.answers, s.passed and s.logical not in bad) for s in seen)
        code = exit_code(Final(failed=failed is not None, seen=seen))
        if failed is not None:
            self.stop(code, failed, "", "nothing was written (the cluster already runs this config), and the "
                      "version serving fails the requests: " + "; ".join(lines),
                      "the live version is the one failing: fix the app or the requests file, then deploy again")
        if code != 0:
            raise NotRestored("nothing was written (the cluster already runs this config), but the live version "
                              + ("could not be seen serving" if seen is None else "is not serving") + ": "
                              + "; ".join(lines),
                              "a person must look: `ci-serve status` shows each application's message")
        console.say("nothing changed (same config, same code): no write; " + "; ".join(lines))
        return ReleaseResult("unchanged", "none", self.live_after(plan))

    def where(self, plan: ReleasePlan, *, budget: float, previous: bool = True,
              every_app: bool = False) -> tuple[tuple[Seen, ...] | None, list[str]]:
        """What serves: is the previous version (or, ``previous=False``, whatever this release put there) seen
        serving its route? None when the cluster could not be read."""
        apps = plan.apps if every_app else plan.changed
        try:
            self.refresh_serve_url()
            seen, lines = checks.seen_serving(self.client, self.serve, [(a.logical, _route(a, previous),
                                                                         _expect(a, previous)) for a in apps],
                                              budget=budget)
            return tuple(seen), lines
        except CiServeError as err:
            return None, [f"the cluster could not be read ({err.message})"]

    def refresh_serve_url(self) -> None:
        """The Serve port is the cluster's: on a first start, only known once our first write started Serve."""
        if not self.opts.serve_url:
            self.serve = serve_url(self.client.address, self.client.get_applications())

    def live_after(self, plan: ReleasePlan) -> dict[str, str]:
        out = {}
        for a in plan.apps:
            if a.strategy != "none" and a.target:
                out[a.logical] = a.target
            elif a.live:
                out[a.logical] = a.live.name
        return out

    def _check_requests_target(self, plan: ReleasePlan) -> None:
        routed = {a.logical for a in plan.apps if a.route_prefix is not None}
        default = next(iter(routed)) if len(routed) == 1 else None
        for req in self.opts.requests or []:
            app = getattr(req, "app", None) or default
            if app not in routed:
                raise InputError(f"request {req.name!r} names application {app!r}, which this deploy does not ship "
                                 "on an HTTP route", f"use one of: {', '.join(sorted(routed)) or '(none)'} "
                                 "(field `app` in the requests file); route-less apps are checked by the gate only")

    # -- two clusters: the same executor over two dashboards (see :mod:`ci_serve.deploy.two_cluster`) --------
    @classmethod
    def two_clusters(cls, live: DashboardClient, standby: DashboardClient, config: ConfigFile,
                     two: TwoClusterOptions, log: StepLog | None = None) -> Release:
        """The executor of a release across two clusters: ``live`` serves now, ``standby`` gets the config."""
        options = Options(timeout=two.timeout, unschedulable_grace=two.unschedulable_grace, version=two.version,
                          serve_url=two.live_url, requests=two.requests, working_dir=two.working_dir, mode=two.mode)
        return cls(live, config, options, log, standby=standby, two=two)

    @property
    def standby(self) -> DashboardClient:
        return self.clients["standby"]

    @property
    def two_opts(self) -> TwoClusterOptions:
        assert self.two is not None
        return self.two

    def apps_two(self) -> dict[str, dict[str, Any]]:
        return two_cluster_apps(self.config.data, self.two_opts.version)

    def live_two(self) -> dict[str, AppView | None]:
        """The version of each application of the config that the live (old) cluster serves, as last read."""
        live = parse(self.snapshots["live"])
        return {logical: live.live_of(logical, app.get("route_prefix")) for logical, app in self.apps_two().items()}

    def prefixes(self) -> dict[str, str]:
        """The HTTP route of each application; route-less ones (``route_prefix: null``) have none to check."""
        return {name: app["route_prefix"] for name, app in self.apps_two().items()
                if app.get("route_prefix") is not None}

    def plan_two(self, config: Mapping[str, Any] | None = None) -> ReleasePlan:
        return plan_two_clusters(parse(self.snapshots["live"]), parse(self.snapshots["standby"]),
                                 config if config is not None else self.config.data,
                                 replace(self.plan_options_two(), now=time.time()))

    def note(self, message: str) -> None:
        if message not in (self.result.warnings or []):
            console.say(f"NOTE  {message}")
            self.result.warn(message)

    def execute_two(self) -> DeployResult:
        """Deploy to the standby, move the traffic, verify, retire the old. Never raises a :class:`CiServeError`:
        what stopped the release is the result's ``error``, next to what was seen until then."""
        with stops(self.result):
            self.release_two()
        return self.result

    def read_two(self) -> None:
        for c in CLUSTERS:
            self.seen_of[c] = expected_from(parse(self.snapshots[c]))

    def release_two(self) -> None:
        two = self.two_opts
        try:
            with self.log.step("connect live") as st:
                st.detail = f"Ray {self.client.get_version()} at {self.client.address}"
                self.snapshots["live"] = self.first_read(self.client, two.live_url)
            with self.log.step("connect standby") as st:
                st.detail = f"Ray {self.standby.get_version()} at {self.standby.address}"
                self.snapshots["standby"] = self.first_read(self.standby, two.standby_url)
        except Cancelled as exc:  # nothing written, nothing seen serving: not exit 1
            exc.exit_code = exit_code(Final(failed=True))
            raise
        self.read_two()
        self.result.live_address, self.result.standby_address = self.client.address, self.standby.address
        if two.mode != "deploy":
            self.result.release = two.version
        self.logicals = set(self.apps_two())
        if two.traffic is not None and two.mode in ("deploy", "promote"):
            try:  # before anything is written: a Prometheus that cannot be used is exit 2
                serving = tuple(a.name if a else logical for logical, a in self.live_two().items())
                steps, source = two.traffic.prepare(self.standby, self.client, tuple(self.apps_two()),
                                                    self.switch_env(), self.log, old_applications=serving)
            except Cancelled as exc:
                exc.exit_code = exit_code(Final(failed=True))
                raise
            self.walker = Walker(steps, source, self.step_check if source is None else None, self.log)
        if two.mode == "abort":
            self.abort_two()
            return
        if two.mode == "promote":
            plan = self.promote_two()
        else:
            views = parse(self.snapshots["live"]), parse(self.snapshots["standby"])
            for message in refuse_while_held_two(*views, self.apps_two(), self.plan_options_two()):
                self.note(message)
            plan = None
            try:
                with self.log.step("ship code") as st:
                    shipped, records = ship_working_dirs(self.standby, self.config.data,
                                                         base_dir=self.config.path.resolve().parent,
                                                         override=two.working_dir)
                    self.result.packages = records
                    st.detail = ", ".join(r["uri"] for r in records) or "no working_dir"
                plan = self.plan_two(shipped)
                for message in plan.warnings:
                    self.note(message)
                assert plan.first is not None
                before = self.write(plan.first)
                self.gate("gate standby", self.goals(plan.first, before), cluster="standby")
                self.check(two.standby_url, "check standby", requests=two.requests)
            except BaseException as exc:
                self.restore_standby(plan, exc)
            if two.mode == "hold":
                self.held_two()
                return
        assert plan is not None
        self.switch_and_verify(plan)
        self.finish(plan)

    def plan_options_two(self) -> TwoClusterPlanOptions:
        two = self.two_opts
        steps = two.traffic.weights if two.traffic is not None else (100,)
        return TwoClusterPlanOptions(version=two.version, mode=two.mode, keep_standby=two.keep_standby,
                                     weights=steps, switch=two.traffic is None, live_address=self.client.address,
                                     standby_address=self.standby.address)

    def reread_two(self) -> None:
        """Both clusters read again, each read explained against what was seen (else nothing more is done)."""
        for c in CLUSTERS:
            fresh = self.read_fresh(cluster=c)
            stop_if_unexplained(self.seen_of[c], fresh)
            self.snapshots[c] = fresh.snapshot
            self.seen_of[c] = expected_from(fresh)

    def finish(self, plan: ReleasePlan) -> None:
        """Traffic moved: the roles swap; the old cluster's applications go on proof that it no longer serves."""
        two = self.two_opts
        self.result.live_address, self.result.standby_address = self.standby.address, self.client.address
        self.result.live_url, self.result.live_app = two.standby_url, ",".join(self.apps_two())
        if not two.keep_standby:
            try:
                proven, why = self.proof_of_switch()
            except Cancelled:  # past the point of no return: the new version serves, checked; only the clean-up stops
                proven, why = False, "the run was cancelled before the proof that the traffic moved"
            self.result.switch_proof = why
            if proven:
                self.retire_old(plan)
            else:
                message = (f"the old cluster {self.client.address} keeps its applications: {why}. Remove them by "
                           "hand once you have checked that traffic reaches the new cluster")
                console.say(f"WARN  {message}")
                self.result.warn(message)
        self.result.outcome = "deployed"
        console.say(f"live is now {self.standby.address}; deploy the next release with "
                    f"--address {self.standby.address} --standby-address {self.client.address}")

    def held_two(self) -> None:
        """A hold stops here: the release passed its checks on the standby; live and the traffic are untouched."""
        two = self.two_opts
        self.result.outcome = "held"
        base = two.standby_url.rstrip("/")
        self.result.preview_urls = {n: base + p for n, p in self.prefixes().items()}
        self.result.live_url = self.old_url()
        self.result.live_app = ",".join(a.name for a in self.live_two().values() if a) or None
        release = two.version or ""
        for logical, url in self.result.preview_urls.items():
            console.say(f"held release {release} of {logical} on the standby: the new version answers at {url}; "
                        f"live ({self.client.address}) and the traffic are untouched")
        flags = f"--address {self.client.address} --standby-address {self.standby.address}"
        console.say(f"next: promote it with `ci-serve promote {self.config.path} --version {release} {flags} "
                    f"--standby-url {two.standby_url} --switch-command ...` (or, in steps, `--traffic-command ...` "
                    "with --traffic-steps and the flags that judge them), or abort it with "
                    f"`ci-serve abort {self.config.path} --version {release} {flags}`")

    def promote_two(self) -> ReleasePlan:
        """Take the held release live: re-gate and re-check it on the standby as it is, compare-and-swap on what
        the hold recorded again, then the traffic, verification, proof and retirement of a deploy."""
        two = self.two_opts
        try:
            plan = self.plan_two()
        except InputError:  # refused only when a second read agrees (a recovering controller lists none)
            time.sleep(1.0)
            self.snapshots = {"live": self.client.get_applications(), "standby": self.standby.get_applications()}
            self.read_two()
            plan = self.plan_two()
        for message in plan.warnings:
            self.note(message)
        self.standby_written = True  # the held applications are this release's: they go if it fails
        try:
            goals = [Goal(a.target, {**a.desired, "name": a.target}, None) for a in plan.changed if a.target]
            self.gate("gate held standby", goals, cluster="standby")
            self.check(two.standby_url, "check held standby", requests=two.requests)
        except (Cancelled, ClusterChanged, Superseded) as exc:  # nothing written: the release stays held, as it was
            self.stop_held(exc)
        except BaseException as exc:  # a held release that fails its checks goes, as a deploy's candidate does
            self.restore_standby(plan, exc)
        try:
            with self.log.step("compare with the hold") as st:  # the compare-and-swap again, right before the switch
                self.reread_two()
                fresh = self.plan_two()
                st.detail = "; ".join(f"{a.target}: release {two.version} beside "
                                      f"{a.live.name if a.live else 'nothing'}" for a in fresh.changed)
        except InputError:
            raise
        except CiServeError as exc:  # nothing written: the release stays held
            self.stop_held(exc)
        return plan

    def stop_held(self, cause: CiServeError) -> NoReturn:
        """Stopped before any write: the release stays held; exit 1 once the old cluster is seen serving."""
        seen, lines = self.old_serving(budget=3.0)
        cause.exit_code = exit_code(Final(failed=True, seen=seen))
        cause.message = f"{cause.message}; release {self.two_opts.version} stays held; " + "; ".join(lines)
        raise cause

    def abort_two(self) -> None:
        """Remove the release's held applications from the standby, nothing else; the live cluster is not touched
        (not even written). Exit 0 ``aborted``; ``unchanged`` with a warning when nothing of it is held."""
        plan = self.plan_two()
        if plan.remove_held is None:  # "nothing held" is said only when a second read agrees
            time.sleep(1.0)
            self.snapshots["standby"] = self.standby.get_applications()
            self.read_two()
            plan = self.plan_two()
        w = plan.remove_held
        if w is None:
            for message in plan.warnings:
                self.note(message)
            self.result.outcome = "unchanged"
            return
        try:
            self.write(w)
            self.gate("gate removal", [Goal(n, None) for n in sorted(w.remove)], timeout=120.0, cluster="standby")
        except CiServeError as exc:
            seen, lines = self.old_serving(budget=3.0 if isinstance(exc, Cancelled) else 20.0)
            exc.exit_code = exit_code(Final(failed=True, wrote=self.standby_written, seen=seen))
            exc.message = (f"{exc.message}; the held release may still be on the standby (re-run the abort); "
                           f"live ({self.client.address}) was not touched: " + "; ".join(lines))
            raise
        seen, lines = self.old_serving(budget=20.0)
        if exit_code(Final(failed=False, seen=seen)) != 0:
            raise RestoreFailed(f"the held release was removed, but the live cluster {self.client.address} is not "
                                "seen serving: " + "; ".join(lines),
                                "a person must look: `ci-serve status` on both clusters")
        self.result.outcome = "aborted"
        console.say(f"aborted: removed {', '.join(sorted(w.remove))} from the standby {self.standby.address}; live "
                    f"({self.client.address}) is as it was: " + "; ".join(lines))

    def check(self, base_url: str, step: str, *, requests: list[Any] | None = None, attempts: int = 3) -> None:
        outcomes: list[Outcome] = []
        with self.log.step(step) as st:
            try:
                checks.run_checks(requests, base_url, self.prefixes(), outcomes, attempts=attempts)
            finally:
                self.result.requests = outcomes
            st.detail = f"{len(outcomes)} check(s) passed at {base_url}"

    # -- traffic writes ----------------------------------------------------------------------------
    def move_traffic(self, w: Write) -> ClusterView:
        """A traffic write: the command moves the share, and no Serve application of either cluster may change
        across it. Going forward, both clusters are read before (nothing changed since our last read or write)
        and after; the way back (a clean-up) runs the command at once. Returns the standby's read."""
        assert w.weight is not None
        guarded = not w.cleanup
        views: dict[Cluster, ClusterView] = {}
        with self.log.step(w.step) as st:
            if guarded:
                for c in CLUSTERS:
                    views[c] = self.read_fresh(cluster=c)
                    stop_if_unexplained(self.seen_of[c], views[c])
                    check_drift(self.seen_of[c], views[c])
            self.written = self.traffic_sent = True  # from here on the traffic may have moved
            st.detail = self.run_traffic_command(w.weight)
        if guarded:
            for c in CLUSTERS:
                changed = drifted(self.seen_of[c], self.read_fresh(cluster=c))
                if changed:
                    raise ClusterChanged(
                        f"applications {', '.join(changed)} of the {c} cluster changed across the traffic write "
                        f"{w.step!r}, declared to change none", "another deploy or a person changed the Serve "
                        "config; re-run this deploy when it has finished")
        return views.get("standby") or parse(self.snapshots["standby"])

    def switch_env(self) -> dict[str, str]:
        return {"CI_SERVE_NEW_ADDRESS": self.standby.address, "CI_SERVE_OLD_ADDRESS": self.client.address,
                "CI_SERVE_NEW_URL": self.two_opts.standby_url, "CI_SERVE_OLD_URL": self.old_url()}

    def run_traffic_command(self, weight: int) -> str:
        """The traffic command at ``weight`` (steps); or the switch command, with the roles of ``weight``: 100
        the standby, 0 the old cluster."""
        if self.walker is not None:
            return self.walker.run_weight(weight)
        two = self.two_opts
        to_standby = weight > 0
        new_address, old_address = (self.standby.address, self.client.address) if to_standby else \
            (self.client.address, self.standby.address)
        new_url = two.standby_url if to_standby else self.old_url()
        env = dict(os.environ, CI_SERVE_NEW_ADDRESS=new_address, CI_SERVE_OLD_ADDRESS=old_address,
                   CI_SERVE_NEW_URL=new_url)
        try:
            code, out = run_shell(two.switch_command, env, two.switch_timeout)
        except subprocess.TimeoutExpired as exc:
            raise SwitchFailed(f"the switch command {overran(exc)}",
                               "make --switch-command return once traffic has moved") from None
        for line in out.splitlines()[-20:]:
            console.say(f"    | {line}")
        if code != 0:
            raise SwitchFailed(f"the switch command exited with code {code}",
                               "run it by hand with CI_SERVE_NEW_URL set to see why")
        return f"traffic moved to {new_url}"

    def traffic_gate(self, w: Write) -> None:
        """The gate after a traffic write: a step is held and judged (:meth:`Walker.hold`); the public entry
        answers from the version that took the traffic (after the switch, the last step, the way back)."""
        if self.walker is not None and w.weight:
            try:
                self.walker.hold(w.weight)
            finally:
                self.result.traffic_steps = self.walker.result.entries()
        if w.weight == 100:
            self.verify("verify public entry", self.two_opts.requests)
        elif w.weight == 0:
            self.verify_old("verify old version")

    def verify(self, step: str, requests: list[Any] | None) -> None:
        """Poll the public entry until it answers the smoke requests (the new version) or time runs out."""
        two = self.two_opts
        url = two.verify_url
        if not url:
            return
        limit = cancel.time_left(two.verify_timeout)  # after a cancel: what is left of its cleanup's time
        deadline = time.monotonic() + limit
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
                    raise SwitchFailed(f"{url} did not answer as expected within {limit:.0f}s: {last.message}",
                                       "check that --switch-command really moves the traffic behind --verify-url")
                cancel.pause(1.0)

    def verify_old(self, step: str) -> None:
        """After the way back: poll the public entry until it answers as the old version does, not as the new
        one (a balancer that ignored the weight, or applies it late, still reaches the candidate, which is about
        to be removed). Else :class:`SwitchFailed`: the caller keeps the candidate and exits 3."""
        two = self.two_opts
        url = two.verify_url
        if not url:
            return
        limit = cancel.time_left(two.verify_timeout)  # after a cancel: what is left of its cleanup's time
        deadline = time.monotonic() + limit
        why = ""
        with self.log.step(step, heartbeat=lambda: f"waiting for {url} to answer from the old version") as st:
            attempt = in_a_row = 0
            while True:
                attempt += 1
                answered, why, told = self.entry_answers_old(url, self.old_url())
                # a balancer that kept a share for the new version answers as the old one now and then: only
                # OLD_ROUNDS answers in a row count (with a share of half left, 1 in 1000 passes)
                in_a_row = in_a_row + 1 if answered else 0
                if in_a_row >= (two_cluster.OLD_ROUNDS if told else 1):
                    st.detail = f"{why} ({in_a_row} time(s) in a row, attempt {attempt})"
                    return
                if time.monotonic() >= deadline:
                    raise two_cluster.SwitchFailed(
                        f"{url} did not answer from the old version within {limit:.0f}s"
                        + (" (a cancelled run's time to clean up)" if limit < two.verify_timeout else "")
                        + f": {why}", "the traffic may still reach the standby; check the balancer's weights")
                cancel.pause(0.2 if answered else 1.0)

    def entry_answers_old(self, url: str, old_url: str) -> tuple[bool, str, bool]:
        """Does the public entry answer from the old version? The requests the old cluster, asked at its own Serve
        address, answers otherwise than the new version's requests file expects (an answer that is not a 5xx)
        tell the versions apart: the entry must answer none of them as the new version does. When none tells them
        apart (no requests file, or the old version passes it too), an answer without a 5xx is all it can show.
        (answered from the old version, why, whether the requests told the versions apart)."""
        two = self.two_opts
        old: list[Outcome] = []
        entry: list[Outcome] = []
        for base, outcomes in ((old_url, old), (url, entry)):
            try:
                checks.run_checks(two.requests, base, self.prefixes(), outcomes, attempts=1)
            except CheckFailed:
                pass
        self.result.verify = entry
        broken = [o for o in entry if o.status is None or o.status >= 500]
        if broken or not entry:
            return False, (f"{broken[0].name}: {broken[0].error or f'HTTP {broken[0].status}'}" if broken
                           else "nothing was asked"), False
        telling = {(o.app, o.name) for o in old if not o.passed and o.status is not None and o.status < 500}
        if not telling:
            return True, (f"{len(entry)} request(s) answered at {url} without a 5xx (the requests cannot tell the "
                          "versions apart: the old version passes them too, or there is no requests file)"), False
        as_new = [o for o in entry if (o.app, o.name) in telling and o.passed]
        if as_new:
            return False, f"{as_new[0].name} is still answered as the new version answers it", True
        return True, (f"{url} answers {', '.join(sorted(n for _, n in telling))} as the old cluster does, not as the "
                      "new version"), True

    def step_check(self, weight: int) -> str:
        """Without metrics, a step is judged by the requests file sent through the public entry: at 100 % all
        of it must pass; below, both versions answer, so only an answer that is not a 5xx is demanded."""
        two = self.two_opts
        url = two.verify_url
        assert url is not None, "the flags require --verify-url for traffic steps without metrics"
        outcomes: list[Outcome] = []
        try:
            checks.run_checks(two.requests, url, self.prefixes(), outcomes, attempts=1)
        except CheckFailed:
            broken = [o for o in outcomes if not o.passed and (o.status is None or o.status >= 500)]
            if weight >= 100 or broken or not outcomes:
                raise
        finally:
            self.result.verify = outcomes
        return (f"{len(outcomes)} request(s) through {url} " +
                ("passed" if weight >= 100 else "answered without a 5xx (both versions answer at this share)"))

    def switch_and_verify(self, plan: ReleasePlan) -> None:
        if self.walker is not None:
            self.result.traffic_steps, self.result.traffic_analysed = [], self.walker.result.analysed
        try:
            if self.walker is not None:
                self.walker.begin()
            for w in plan.traffic:
                self.write(w)
                self.traffic_gate(w)
        except BaseException as exc:
            self.way_back(plan, exc)

    def way_back(self, plan: ReleasePlan, cause: BaseException) -> NoReturn:
        """The plan's way back (the old cluster takes all the traffic again, then must answer), then the standby
        restored: exit 1 once the old version is seen serving, else 3."""
        assert plan.traffic_back is not None
        if self.traffic_sent and self.walker is not None:  # steps: the share back to 0 %, then the old must answer
            try:
                self.write(plan.traffic_back)
            except CiServeError as err:
                raise rollback_failed(cause, err) from None
            try:
                self.traffic_gate(plan.traffic_back)
            except CiServeError as err:
                raise RestoreFailed(f"{_what(cause)}; the new version's share went back to 0 %, but then "
                                    f"{err.message}", "a person must look: `ci-serve status` on both clusters and "
                                    "the balancer's weights", details=_details(cause)) from None
        elif self.traffic_sent:
            try:
                self.write(plan.traffic_back)
                self.traffic_gate(plan.traffic_back)
            except CiServeError as err:
                raise RestoreFailed(f"{_what(cause)}; switching traffic back to {self.client.address} then failed: "
                                    f"{err.message}",
                                    "a person must look: traffic may point at the standby cluster "
                                    f"({self.standby.address}); run the switch command by hand",
                                    details=_details(cause)) from None
        # --keep-standby after a failed traffic step: the candidate stays on the standby, taking no traffic
        self.restore_standby(plan, cause, switched_back=self.traffic_sent,
                             keep=self.walker is not None and self.two_opts.keep_standby)

    # -- two clusters: endings ---------------------------------------------------------------------
    def restore_standby(self, plan: ReleasePlan | None, cause: BaseException, *,
                        switched_back: bool = False, keep: bool = False) -> NoReturn:
        """The plan's undo on the standby (the candidate goes, what it replaced comes back; ``keep``: it stays,
        as ``--keep-standby`` asks after a failed traffic step); then the verdict."""
        if isinstance(cause, Cancelled):  # the runner sends SIGKILL 10 s after SIGINT
            self.standby.retry_budget = min(self.standby.retry_budget, 3.0)
        try:
            if keep and self.standby_written:
                message = (f"the candidate stays on the standby {self.standby.address} (--keep-standby), taking no "
                           "traffic; the next deploy replaces it")
                console.say(f"NOTE  {message}")
                self.result.warn(message)
            elif not self.standby_written or plan is None or plan.undo_first is None:
                with self.log.step("remove candidate") as st:  # the guard stopped before our write
                    st.detail = f"nothing was written to the standby {self.standby.address}"
            else:
                w = plan.undo_first
                before = self.write(w)
                removed = sorted(n for n in w.remove if n in before.apps and not before.apps[n].deleting)
                if removed and not isinstance(cause, Cancelled):  # seen gone before "removed" is said
                    self.gate("gate removal", [Goal(n, None) for n in removed], timeout=120.0, cluster="standby")
        except CiServeError as err:
            raise RestoreFailed(f"{_what(cause)}; removing the candidate from the standby cluster then failed: "
                                f"{err.message}",
                                f"live ({self.client.address}) is {'serving again' if switched_back else 'untouched'}"
                                "; clean the standby with `ci-serve status`", details=_details(cause)) from None
        # exit 1 only once the previous version is seen serving: on the old cluster, at its real Serve address
        seen, lines = self.old_serving(budget=3.0 if isinstance(cause, Cancelled) else 20.0)
        where = "traffic was switched back" if switched_back else "the live cluster was not touched"
        code = exit_code(Final(failed=True, wrote=self.standby_written or switched_back, seen=seen))
        if code == EXIT_BAD_INPUT and isinstance(cause, CiServeError):
            cause.exit_code = code
            raise cause
        if code != EXIT_FAILED:
            raise RestoreFailed(f"{_what(cause)}; {where}, but the old cluster {self.client.address} is not seen "
                                "serving: " + "; ".join(lines),
                                "a person must look: `ci-serve status` on both clusters", details=_details(cause)
                                ) from None
        if isinstance(cause, Cancelled):
            cause.message = f"{cause.message}; " + "; ".join(lines)
            raise cause
        raise DeployFailed(f"{_what(cause)}; {where}: {self.client.address} serves: " + "; ".join(lines),
                           getattr(cause, "hint", None), details=_details(cause)) from None

    def old_serving(self, *, budget: float) -> tuple[tuple[Seen, ...] | None, list[str]]:
        """Is the old cluster's live version of each application seen serving (route table and a request)?"""
        live = self.live_two()
        expected = [(logical, app.get("route_prefix"), a.name if a else None)
                    for logical, app in self.apps_two().items() for a in [live[logical]]]
        try:
            seen, lines = checks.seen_serving(self.client, self.old_url(), expected, budget=budget)
            return tuple(seen), lines
        except CiServeError as err:
            return None, [f"the old cluster could not be read ({err.message})"]

    def old_url(self) -> str:
        live_url = self.two_opts.live_url
        return live_url.rstrip("/") if live_url else serve_url(self.client.address, self.snapshots["live"])

    def proof_of_switch(self) -> tuple[bool, str]:
        """Positive proof that the public entry answers from the new version (see :mod:`two_cluster`): it passed
        the requests that the old cluster, reached at its own Serve proxy (which lists our routes), answers
        differently. An old cluster that cannot be reached proves nothing: it may still be what the public entry
        reaches."""
        two = self.two_opts
        if not two.verify_url:
            return False, "no --verify-url, so nothing proves the traffic moved"
        old_url = self.old_url()
        for prefix in self.prefixes().values():
            known, why = checks.route_holder(old_url, prefix, None, wait=0.0)
            if not known:
                return False, (f"the old cluster's Serve proxy at {old_url} could not be asked ({why}), so nothing "
                               f"shows that {two.verify_url} stopped reaching it (give --serve-url)")
        # Only an answer that is not a 5xx and differs proves it: a 5xx or no answer may be a busy moment of
        # the old cluster that the public entry still reaches; asked again, and if it persists, no proof.
        for attempt in range(two_cluster.PROOF_ATTEMPTS):
            if attempt:
                time.sleep(two_cluster.PROOF_PAUSE_S)
            outcomes: list[Outcome] = []
            try:
                checks.run_checks(two.requests, old_url, self.prefixes(), outcomes, attempts=1)
            except CheckFailed:
                answered = [o for o in outcomes if not o.passed and o.status is not None and o.status < 500]
                if answered:
                    return True, (f"{two.verify_url} passed the checks that the old cluster ({old_url}) "
                                  f"answers differently ({answered[0].name}: HTTP {answered[0].status}): the "
                                  "traffic moved")
                continue
            return False, (f"the old cluster ({old_url}) passes the same checks as {two.verify_url}, so "
                           "they cannot tell the versions apart (use a requests file that expects the new version)")
        return False, (f"the old cluster ({old_url}) answered the checks only with errors (HTTP 5xx) or not at all "
                       f"({two_cluster.PROOF_ATTEMPTS} tries), so nothing shows that {two.verify_url} stopped "
                       "reaching it")

    def retire_old(self, plan: ReleasePlan) -> None:
        """The plan's retirement: our applications (marked, or under the plain logical name) leave the old cluster.
        Traffic already moved: a failure here is a warning, not a failure."""
        try:
            time.sleep(two_cluster.DRAIN_S)
            if plan.retire is None:
                with self.log.step("retire old cluster") as st:
                    st.detail = f"nothing of ours on {self.client.address}"
                return
            self.write(plan.retire)
        except CiServeError as err:
            message = (f"the old cluster {self.client.address} keeps its applications: {err.message}; remove them "
                       "by hand, or the next release to that cluster replaces them")
            console.say(f"WARN  {message}")
            self.result.warn(message)

class _Fixed:
    """A client whose first ``get_applications`` answer is one already read."""

    def __init__(self, client: DashboardClient, snapshot: dict[str, Any]):
        self.address = client.address
        self._snapshot = snapshot

    def get_applications(self) -> dict[str, Any]:
        return self._snapshot


def _expect(a: AppDecision, previous: bool) -> str | None:
    """The physical app that should serve ``a`` now: the previous one (None: nothing of ours)."""
    if previous:
        return a.previous.name if a.previous else None
    return a.target


def _route(a: AppDecision, previous: bool) -> str | None:
    """The route ``a`` is served on: the previous version's own (the config may move it), else the config's."""
    if previous and a.previous is not None:
        return a.live_route
    return a.route_prefix


def _what(cause: BaseException) -> str:
    if isinstance(cause, CiServeError):
        return cause.message
    return f"{type(cause).__name__}: {cause}"


def _details(cause: BaseException) -> str | None:
    return cause.details if isinstance(cause, CiServeError) else None
