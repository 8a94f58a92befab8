"""One deploy of a Serve config to a cluster: read, ship code, decide, write, gate, check, switch or roll back.

Strategies (see docs/deploy.md):

- **blue-green**: each changed application gets a candidate ``<name>-<colour>`` on a preview route
  prefix beside the live one; gate; smoke requests against the preview; then ONE write moves the
  live route prefix to the candidate and removes the old application; the switch is checked with a
  request. Any failure before the switch removes the candidate and leaves the live version as it was.
  A first deploy is the same with nothing to remove.
- **in-place**: the changed applications are rewritten under their live physical names; gate; smoke
  against the live prefix; on failure the previous configs are written back and gated again.
- **auto**: in-place when every change is lightweight, blue-green when any is heavyweight or new,
  and no write at all when nothing changed.

Before every write the cluster is re-read and compared with what the decision was based on; if
someone else changed it meanwhile, the deploy stops without writing.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ci_serve import console
from ci_serve.cluster.dashboard import DashboardClient
from ci_serve.cluster.packages import ship_working_dirs
from ci_serve.config.loader import ConfigFile
from ci_serve.deploy import capacity, checks
from ci_serve.deploy.changes import Change, classify_all, verdict
from ci_serve.deploy.cluster_config import ClusterChanged, build_body, check_unchanged
from ci_serve.deploy.gate import GateFailed, Goal, Superseded, wait_ready
from ci_serve.deploy.naming import (
    COLOURS,
    Incarnation,
    find_live,
    incarnations,
    other_colour,
    physical_name,
    preview_prefix,
    with_version,
    without_version,
)
from ci_serve.errors import Cancelled, CiServeError, DeployFailed, InputError, RestoreFailed
from ci_serve.report import Run
from ci_serve.smoke.checks import Outcome


@dataclass
class Options:
    strategy: str = "auto"
    timeout: float = 600.0
    unschedulable_grace: float = 60.0
    version: str | None = None
    serve_url: str | None = None
    requests: list[Any] | None = None
    working_dir: Path | None = None


@dataclass
class AppPlan:
    logical: str
    route_prefix: str
    desired: dict[str, Any]
    live: Incarnation | None
    change: Change
    leftovers: list[str] = field(default_factory=list)
    candidate: str = ""
    preview: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.logical, "change": self.change.kind,
                "reason": ", ".join(self.change.reasons), "live": self.live.physical if self.live else None,
                "live_version": self.live.version if self.live else None, "candidate": self.candidate or None,
                "route_prefix": self.route_prefix}


class Release:
    def __init__(self, client: DashboardClient, run: Run, config: ConfigFile, options: Options):
        self.client = client
        self.run = run
        self.config = config
        self.opts = options
        self.outcomes: list[Outcome] = []
        self.seen: dict[str, Any] = {}  # the latest snapshot our decisions are based on
        self.full_plan: Any = None
        self.put_attempted = False

    # -- the whole deploy ----------------------------------------------------------------------
    def execute(self) -> int:
        with console.step(self.run, "connect") as st:
            st.detail = f"Ray {self.client.get_version()} at {self.client.address}"
        with console.step(self.run, "read cluster") as st:
            self.seen = self.client.get_applications()
            st.detail = f"{len(self.seen['applications'])} application(s) on the cluster"
        with console.step(self.run, "ship code") as st:
            shipped_config, shipped = ship_working_dirs(
                self.client, self.config.data, base_dir=self.config.path.resolve().parent,
                override=self.opts.working_dir)
            self.run.data["packages"] = shipped
            st.detail = ", ".join(f"{s['app']}: {s['uri']}{' (uploaded)' if s['uploaded'] else ''}"
                                  for s in shipped) or "no working_dir"
        plans = self.plan(shipped_config)
        changed = [p for p in plans if p.change.kind != "none"]
        report_plan = self.full_plan.as_dict()
        report_plan["verdict"] = verdict([p.change.kind for p in plans])
        ours = {p.logical: p.as_dict() for p in plans}
        for entry in report_plan["applications"]:
            entry.update({k: v for k, v in ours.get(entry["name"], {}).items() if k not in entry})
            entry["change"] = ours.get(entry["name"], {}).get("change")
        self.run.data["plan"] = report_plan
        self.run.data["version"] = self.opts.version
        if not changed:
            self.run.data["strategy"] = "none"
            self.run.data["live_app"] = ",".join(p.live.physical for p in plans if p.live)
            self.run.result = "unchanged"
            console.say("nothing changed (same config, same code): no write")
            return 0
        strategy = self.opts.strategy
        if strategy == "auto":
            light = all(p.change.kind == "lightweight" for p in changed)
            strategy = "in-place" if light else "blue-green"
        self.run.data["strategy"] = strategy
        if strategy == "blue-green":
            self.blue_green(changed)
        else:
            self.in_place(changed)
        self.run.data["live_app"] = ",".join(p.candidate if p in changed else p.live.physical
                                             for p in plans if p in changed or p.live)
        self.run.result = "deployed"
        return 0

    def plan(self, shipped_config: dict[str, Any]) -> list[AppPlan]:
        apps = self.seen.get("applications") or {}
        plans: list[AppPlan] = []
        entries = [a for a in shipped_config.get("applications") or [] if isinstance(a, dict)]
        if not entries:
            raise InputError(f"{self.config.path} has no applications to deploy",
                             "list them under `applications:` (see `ci-serve validate`)")
        for app in entries:
            logical = app.get("name")
            if not isinstance(logical, str) or not logical:
                raise InputError("every application in the config needs a name",
                                 "add `name: my-app` to each entry under `applications`")
            if any(p.logical == logical for p in plans):
                raise InputError(f"application name {logical!r} is used twice in {self.config.path}",
                                 "give each application its own name")
            desired = copy.deepcopy(app)
            desired.pop("name", None)
            desired.setdefault("route_prefix", "/")
            route_prefix = desired["route_prefix"]
            desired = with_version(desired, self.opts.version)
            live = find_live(apps, logical, route_prefix)
            plan = AppPlan(logical, route_prefix, desired, live, Change("none"))
            plan.leftovers = [i.physical for i in incarnations(apps, logical)
                              if not live or i.physical != live.physical]
            plans.append(plan)
        kinds, full = classify_all({"applications": [{**p.desired, "name": p.logical} for p in plans]},
                                   self.seen, {p.logical: p.live is not None for p in plans})
        for p in plans:
            p.change = kinds.get(p.logical, Change("new"))
        self.full_plan = full
        return plans

    # -- writes --------------------------------------------------------------------------------
    def write(self, name: str, *, put: dict[str, dict[str, Any]] | None = None, remove: set[str] | None = None,
              check: bool = True) -> dict[str, Any]:
        """Re-read, make sure nobody else changed the cluster, write. Returns the snapshot written over."""
        with console.step(self.run, name) as st:
            now = self.client.get_applications()
            if check:
                check_unchanged(self.seen, now)
            body = build_body(now, put=put, remove=remove or set(), first_start=self.config.data)
            self.put_attempted = True  # from here on the cluster may hold our write, even if the call fails
            self.client.put_applications(body)
            st.detail = ", ".join([*(put or {}), *(f"-{r}" for r in sorted(remove or ()))])
        return now

    def gate(self, name: str, goals: list[Goal], timeout: float | None = None) -> None:
        result = wait_ready(self.client.get_applications, goals, timeout=timeout or self.opts.timeout,
                            unschedulable_grace=self.opts.unschedulable_grace, run=self.run, step_name=name,
                            capacity=lambda: capacity.observe(self.client))
        self.seen = result.snapshot

    @staticmethod
    def _time(snapshot: dict[str, Any], name: str) -> float | None:
        app = (snapshot.get("applications") or {}).get(name)
        return app.get("last_deployed_time_s") if isinstance(app, dict) else None

    def serve_url(self) -> str:
        if self.opts.serve_url:
            return self.opts.serve_url.rstrip("/")
        http = self.seen.get("http_options") or {}
        port = http.get("port") or 8000
        host = urlsplit(self.client.address).hostname or "127.0.0.1"
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}"

    def smoke(self, name: str, prefixes: dict[str, str]) -> None:
        with console.step(self.run, name) as st:
            self.outcomes.clear()
            try:
                checks.run_checks(self.opts.requests, self.serve_url(), prefixes, self.outcomes)
            finally:
                self.run.data["requests"] = checks.as_dicts(self.outcomes)
                for outcome in self.outcomes:
                    console.say("    " + outcome.line())
            st.detail = (f"{len(self.outcomes)} request(s) passed" if self.opts.requests
                         else "answered (no --requests: any answer but 404/5xx passes)")

    # -- blue-green ----------------------------------------------------------------------------
    def blue_green(self, plans: list[AppPlan]) -> None:
        for p in plans:
            colour = other_colour(p.live.colour) if p.live and p.live.colour in COLOURS else "blue"
            p.candidate = physical_name(p.logical, colour)
            p.preview = preview_prefix(p.route_prefix, p.logical, colour)
        put = {p.candidate: {**p.desired, "route_prefix": p.preview} for p in plans}
        leftovers = {name for p in plans for name in p.leftovers if name != p.candidate}
        self.put_attempted = False
        try:
            before = self.write("write candidate", put=put, remove=leftovers)
            self.gate("gate candidate", [Goal(p.candidate, put[p.candidate], self._time(before, p.candidate))
                                         for p in plans] + [Goal(n, None) for n in leftovers])
            self.smoke("check candidate", {p.logical: p.preview for p in plans})
        except Superseded:
            raise  # another deploy wrote the same candidate after us: it is theirs now
        except BaseException as exc:
            if not self.put_attempted:
                raise  # nothing was written (bad config, credentials, someone else's change)
            self.remove_candidates(plans, exc)
        # The switch: the candidate takes the live route prefix and the old version steps aside to a preview
        # prefix of its own, still running, in one write. Only after the switch is checked is the old one
        # removed; a failed check swaps back at once, to replicas that never stopped.
        switched = {p.candidate: {**p.desired, "route_prefix": p.route_prefix} for p in plans}
        for p in plans:
            if p.live:
                switched[p.live.physical] = {**p.live.config, "route_prefix": _aside(p)}
        self.put_attempted = False
        written = False
        try:
            before = self.write("switch", put=switched)
            written = True
            self.gate("gate switch", [Goal(n, c, self._time(before, n)) for n, c in switched.items()])
            self.smoke("check switch", {p.logical: p.route_prefix for p in plans})
        except (ClusterChanged, Superseded) as exc:
            # Someone else wrote meanwhile: touch nothing (our candidate may even share a name with theirs).
            exc.hint = ("the live version was not touched; the candidate stays on its preview prefix until the "
                        "next deploy removes it. " + (exc.hint or ""))
            raise
        except BaseException as exc:
            if not self.put_attempted:
                self.remove_candidates(plans, exc)  # the switch was never sent: live untouched
            if written and isinstance(exc, Cancelled):
                raise  # switched to a candidate that passed the gate and the checks: it stays live
            self.restore(plans, exc, switched=True)  # swap back to the old version, still running
        old = {p.live.physical for p in plans if p.live}
        if old:
            self.remove_old(old)

    def remove_old(self, old: set[str]) -> None:
        """The new version is live and checked; the old one goes. A failure here is only a warning."""
        try:
            self.write("remove old", remove=old, check=False)
            self.gate("gate removal", [Goal(n, None) for n in old])
        except Cancelled:
            raise
        except CiServeError as err:
            console.say(f"WARN  the new version is live, but removing {', '.join(sorted(old))} failed: "
                        f"{err.message}; the next deploy removes it")
            self.run.data.setdefault("warnings", []).append(err.message)

    def cleanup_gate(self, name: str, goals: list[Goal], cause: BaseException) -> None:
        """Gate a clean-up write. After a cancellation the runner sends SIGKILL 10 s after SIGINT, so the
        write must go out at once (short retries) and the wait for Ray to finish it is brief."""
        if not isinstance(cause, Cancelled):
            self.gate(name, goals)
            return
        try:
            self.gate(name, goals, timeout=3.0)
        except GateFailed:
            console.say(f"... {name}: written; Ray is still carrying it out")

    def remove_candidates(self, plans: list[AppPlan], cause: BaseException) -> None:
        names = {p.candidate for p in plans}
        if isinstance(cause, Cancelled):
            self.client.retry_budget = min(self.client.retry_budget, 3.0)
        try:
            self.write("remove candidate", remove=names, check=False)
            self.cleanup_gate("gate removal", [Goal(n, None) for n in names], cause)
        except CiServeError as err:
            raise RestoreFailed(
                f"{_what(cause)}; removing the candidate(s) {', '.join(sorted(names))} then failed: {err.message}",
                "the live version was not touched, but the candidate may still run on its preview prefix; "
                "check with `ci-serve status` and re-run the deploy", details=_details(cause)) from None
        if isinstance(cause, Cancelled):
            raise cause
        live = ", ".join(p.live.physical for p in plans if p.live) or "nothing (first deploy)"
        raise DeployFailed(f"{_what(cause)}; the candidate was removed, live is unchanged: {live}",
                           getattr(cause, "hint", None), details=_details(cause)) from None

    # -- in-place ------------------------------------------------------------------------------
    def in_place(self, plans: list[AppPlan]) -> None:
        for p in plans:
            p.candidate = p.live.physical if p.live else physical_name(p.logical, "blue")
            if p.live:  # the version marker is part of Ray's code version: changing it would restart replicas
                p.desired = with_version(without_version(p.desired), p.live.version)
        put = {p.candidate: {**p.desired, "route_prefix": p.route_prefix} for p in plans}
        self.put_attempted = False
        try:
            before = self.write("write config", put=put)
            self.gate("gate", [Goal(p.candidate, put[p.candidate], self._time(before, p.candidate)) for p in plans])
            self.smoke("check", {p.logical: p.route_prefix for p in plans})
        except Superseded:
            raise  # another deploy wrote these applications after us: writing ours back would undo theirs
        except BaseException as exc:
            if not self.put_attempted:
                raise
            self.restore(plans, exc, switched=False)

    def restore(self, plans: list[AppPlan], cause: BaseException, *, switched: bool) -> None:
        """Write back the previous config of our applications and gate it; exit 1 if that worked, 3 if not."""
        put = {p.live.physical: p.live.config for p in plans if p.live}
        remove = {p.candidate for p in plans if p.candidate not in put}
        if isinstance(cause, Cancelled):
            self.client.retry_budget = min(self.client.retry_budget, 3.0)
        try:
            before = self.write("restore previous", put=put, remove=remove, check=False)
            self.cleanup_gate("gate restore", [Goal(n, c, self._time(before, n)) for n, c in put.items()]
                              + [Goal(n, None) for n in remove], cause)
        except CiServeError as err:
            raise RestoreFailed(f"{_what(cause)}; restoring the previous version then failed: {err.message}",
                                "a person must look: `ci-serve status` shows what runs now",
                                details=_details(cause)) from None
        if isinstance(cause, Cancelled):
            raise cause
        restored = ", ".join(sorted(put)) or "nothing (first deploy, candidate removed)"
        raise DeployFailed(f"{_what(cause)}; the previous version was restored: {restored}",
                           getattr(cause, "hint", None), details=_details(cause)) from None


def _aside(plan: AppPlan) -> str:
    """Where the old version waits, still running, between the switch and its removal."""
    assert plan.live is not None
    colour = plan.live.colour if plan.live.colour in COLOURS else "old"
    return preview_prefix(plan.route_prefix, plan.logical, colour)


def _what(cause: BaseException) -> str:
    if isinstance(cause, CiServeError):
        return cause.message
    return f"{type(cause).__name__}: {cause}"


def _details(cause: BaseException) -> str | None:
    return cause.details if isinstance(cause, CiServeError) else None
