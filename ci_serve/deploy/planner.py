"""The release planner: pure. (cluster view, desired config, options) -> a plan of ordered writes.

Every write carries its declared effect (which physical applications it creates, changes, removes),
checked by :mod:`ci_serve.deploy.guard` against a fresh read before it is sent. The planner decides
everything; the executor (:mod:`ci_serve.deploy.release`) only carries the plan out.

Per logical application (the config's name):

- its **live** incarnation is :meth:`ClusterView.live_of`'s answer; other incarnations of ours
  (marked, see :mod:`ci_serve.deploy.ownership`) are leftovers of earlier runs;
- its **change** is ``config.plan.plan_changes``'s verdict against that live one (``new`` when nothing
  is live): ``none``, ``lightweight`` or ``heavyweight``;
- its **strategy**: ``none`` when unchanged; ``in-place`` when every change of the run is lightweight
  (``--strategy auto``), or when the app is *name-bound*: it has no HTTP route (``route_prefix: null``,
  reached by handle) or the cluster serves gRPC (clients pick an app by name), so a blue-green rename
  would take it away from its clients; ``blue-green`` otherwise.

Refused before any write (exit 2, :class:`~ci_serve.errors.InputError`), naming the app and the fix:
a foreign application (not ours, not adoptable) under a name we need, or serving or claiming a route
prefix we need; ``--strategy blue-green`` for a name-bound app; any deploy of an application while a
release of it is held.

A release held for review is the same plan in other modes (:attr:`ReleasePlan.mode`), never another
executor's: ``hold`` is blue-green whose candidates carry the hold marker
(:func:`~ci_serve.deploy.ownership.with_hold`), carried out up to its checks; ``promote`` starts from
the held view (:func:`plan_from_hold`): no candidate write, the candidates re-gated and re-checked,
then the same switch, undo and retire; ``abort`` is the undo of a hold: one clean-up write removing
the held candidates.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, get_args

from ci_serve.config.plan import Plan, heaviest, plan_changes
from ci_serve.deploy.ownership import (
    COLOURS,
    MARKER_VARS,
    config_digest,
    marker_of,
    with_hold,
    with_marker,
    with_markers_of,
    without_marker,
)
from ci_serve.deploy.two_cluster_hold import StandbyHold, cas_failure, probably_promoted, standby_holds
from ci_serve.deploy.view import NO_ROUTE, AppView, ClusterView, preview_prefix
from ci_serve.errors import InputError

Kind = Literal["none", "lightweight", "heavyweight", "new"]
#: how an application is released (``none``: it is unchanged)
Strategy = Literal["none", "in-place", "blue-green"]
#: what a user may ask for (``deploy --strategy``, the action's ``strategy`` input)
RequestedStrategy = Literal["auto", "in-place", "blue-green"]
STRATEGIES: tuple[RequestedStrategy, ...] = get_args(RequestedStrategy)
#: what a run of the plan does: all of it; up to the candidates' checks (``--hold``); from a held release on
#: (``promote``); the undo of a hold (``abort``)
Mode = Literal["deploy", "hold", "promote", "abort"]
#: which cluster a write acts on: the one serving now, or (across two clusters) the standby
Cluster = Literal["live", "standby"]
CLUSTERS: tuple[Cluster, ...] = get_args(Cluster)
#: one cluster, or blue-green across two (the standby gets the whole config, traffic moves to it)
Topology = Literal["one", "two"]


@dataclass(frozen=True)
class Effect:
    """What a write does to the cluster's physical applications (nothing else may change)."""

    created: frozenset[str] = frozenset()
    changed: frozenset[str] = frozenset()
    removed: frozenset[str] = frozenset()

    def is_within(self, declared: Effect) -> bool:
        return (self.created <= declared.created and self.changed <= declared.changed
                and self.removed <= declared.removed)

    def __str__(self) -> str:
        parts = [f"{verb} {', '.join(sorted(names))}" for verb, names in
                 (("create", self.created), ("change", self.changed), ("remove", self.removed)) if names]
        return "; ".join(parts) or "nothing"


@dataclass(frozen=True)
class Write:
    """One PUT: ``put`` (physical name -> app config) added or replaced, ``remove`` left out; the rest of
    the body is the cluster's own config as read right before the write."""

    step: str
    put: Mapping[str, dict[str, Any]]
    remove: frozenset[str]
    effect: Effect
    #: what it does, in words ("add candidate shop-green on /shop--green")
    says: tuple[str, ...]
    #: a clean-up write: its actual effect may be a part of the declared one (a candidate already gone)
    cleanup: bool = False
    #: (name, logical, route prefix) of held candidates this write removes: each must still be one, waiting on
    #: its preview prefix and not live, in the read right before the write (the guard checks)
    held_only: tuple[tuple[str, str, str | None], ...] = ()
    #: the cluster the write acts on (its dashboard gets the PUT; a traffic write: the cluster gaining the share)
    cluster: Cluster = "live"
    #: a traffic write: the new cluster's share in percent (the traffic or switch command is run; no PUT). Its
    #: declared effect is nothing: no Serve application of either cluster may change across it
    weight: int | None = None

    @property
    def traffic(self) -> bool:
        return self.weight is not None


def traffic_write(weight: int, *, switch: bool, back: bool = False) -> Write:
    """A traffic step: the new cluster's share set to ``weight`` % (``switch``: the one-step form, the switch
    command; ``back``: the way back, the old cluster taking all the traffic again)."""
    if switch:
        step, says = ("switch back", "switch the traffic back to the old cluster") if back else \
            ("switch", "switch the traffic to the new cluster")
    else:
        step = f"traffic back to {weight}%" if back else f"traffic {weight}%"
        says = f"give the new cluster {weight} % of the traffic"
    return Write(step, {}, frozenset(), Effect(), (says,), cleanup=back, cluster="live" if back else "standby",
                 weight=weight)


@dataclass
class AppDecision:
    logical: str
    route_prefix: str | None
    desired: dict[str, Any]
    live: AppView | None
    kind: Kind
    reasons: tuple[str, ...] = ()
    strategy: Strategy = "none"
    #: the physical app the new version is written to (a candidate, or the live one in place)
    target: str | None = None
    #: where the new version is checked before the switch
    check_prefix: str | None = None
    leftovers: tuple[str, ...] = ()
    #: the route the live version serves now (it differs from ``route_prefix`` when the config moves it)
    live_route: str | None = None
    #: a routed incarnation the new route-less one replaces (its name changes): it keeps serving until
    #: the new one passed its checks, then is retired
    replaces: AppView | None = None

    @property
    def previous(self) -> AppView | None:
        """The version that serves before this release: the live one, or the routed one being replaced."""
        return self.live or self.replaces

    @property
    def name_bound(self) -> bool:
        return self.route_prefix is None

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.logical, "change": self.kind, "reason": ", ".join(self.reasons),
                "strategy": self.strategy, "live": self.live.name if self.live else None,
                "live_version": self.live.version if self.live else None,
                "candidate": self.target if self.strategy == "blue-green" else None,
                "route_prefix": self.route_prefix, "leftovers": list(self.leftovers),
                **({"replaces": self.replaces.name} if self.replaces else {})}


@dataclass
class ReleasePlan:
    apps: list[AppDecision]
    diff: Plan
    strategy: Strategy
    #: the first write (candidates on preview prefixes, in-place configs), None when nothing changes
    first: Write | None = None
    #: undoes ``first`` before any switch
    undo_first: Write | None = None
    #: moves live route prefixes to the candidates; the old versions step aside, still running
    switch: Write | None = None
    #: undoes ``switch`` (and ``first``): the old versions back on their prefixes, candidates removed
    undo_switch: Write | None = None
    #: removes the old versions once the switch is checked
    retire: Write | None = None
    #: removes leftovers of earlier runs when nothing else changes
    tidy: Write | None = None
    #: abort: removes the held candidates (nothing else)
    remove_held: Write | None = None
    #: promote: undoes ``switch`` keeping the release held (the old versions back on their routes, the
    #: candidates back on their preview prefixes), for a cancel whose switch may or may not have been applied
    rehold: Write | None = None
    mode: Mode = "deploy"
    #: hold, promote, abort: the release (``CI_SERVE_VERSION``) held
    release: str | None = None
    warnings: list[str] = field(default_factory=list)
    topology: Topology = "one"
    #: two clusters: the traffic steps, in order (the last at 100 %: the switch), each followed by a gate
    traffic: list[Write] = field(default_factory=list)
    #: two clusters: the way back after a failed step (the old cluster takes all the traffic again)
    traffic_back: Write | None = None

    @property
    def changed(self) -> list[AppDecision]:
        return [a for a in self.apps if a.strategy != "none"]

    def checks_before_switch(self) -> dict[str, str]:
        return {a.logical: a.check_prefix for a in self.changed if a.check_prefix is not None}

    def checks_after_switch(self) -> dict[str, str]:
        return {a.logical: a.route_prefix for a in self.changed
                if a.strategy == "blue-green" and a.route_prefix is not None}

    def writes(self) -> list[Write]:
        if self.mode == "abort":
            return [self.remove_held] if self.remove_held else []
        if self.mode == "hold":
            return [w for w in (self.tidy, self.first) if w is not None]
        if self.topology == "two":
            return [w for w in (self.first, *self.traffic, self.retire) if w is not None]
        return [w for w in (self.tidy, self.first, self.switch, self.retire) if w is not None]

    def as_dict(self) -> dict[str, Any]:
        data = self.diff.as_dict()
        ours = {a.logical: a.as_dict() for a in self.apps}
        for entry in data["applications"]:
            entry.update({k: v for k, v in ours.get(entry["name"], {}).items() if k not in entry})
            entry["change"] = ours.get(entry["name"], {}).get("change")
        data["strategy"] = self.strategy
        if self.mode != "deploy":
            data["mode"], data["release"] = self.mode, self.release
        data["verdict"] = heaviest("heavyweight" if a.kind == "new" else a.kind for a in self.apps)
        data["writes"] = [{"step": w.step, "effect": str(w.effect), "says": list(w.says)} for w in self.writes()]
        if self.undo_first or self.undo_switch:
            data["rollback"] = [{"step": w.step, "effect": str(w.effect), "says": list(w.says)}
                                for w in (self.undo_first, self.undo_switch) if w is not None]
        return data


@dataclass(frozen=True)
class PlanOptions:
    strategy: RequestedStrategy = "auto"
    version: str | None = None
    #: ``hold``, ``promote`` or ``abort`` release ``version``
    mode: Mode = "deploy"
    #: when the plan is made (epoch seconds): what a hold records
    now: float = 0.0
    #: promote: the config with the package URIs its code would have (None: not computable), to tell a
    #: release whose hold found nothing to change (the config already runs) from one that is not held
    computed: Mapping[str, Any] | None = None


def grpc_enabled(view: ClusterView, config: Mapping[str, Any]) -> bool:
    """gRPC clients pick an application by name: true when the cluster (or, on a first start, the file)
    registers servicer functions."""
    for source in (view.snapshot.get("grpc_options"), config.get("grpc_options")):
        if isinstance(source, dict) and source.get("grpc_servicer_functions"):
            return True
    return False


def desired_apps(config: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(logical name, app config without the name) per application; names must be present and unique."""
    out: list[tuple[str, dict[str, Any]]] = []
    entries = [a for a in config.get("applications") or [] if isinstance(a, dict)]
    if not entries:
        raise InputError("the config has no applications to deploy",
                         "list them under `applications:` (see `ci-serve validate`)")
    for app in entries:
        logical = app.get("name")
        if not isinstance(logical, str) or not logical:
            raise InputError("every application in the config needs a name",
                             "add `name: my-app` to each entry under `applications`")
        if any(n == logical for n, _ in out):
            raise InputError(f"application name {logical!r} is used twice in the config", "give each its own name")
        desired = copy.deepcopy(app)
        desired.pop("name", None)
        desired.setdefault("route_prefix", "/")
        out.append((logical, desired))
    return out


def plan_release(view: ClusterView, config: Mapping[str, Any], options: PlanOptions = PlanOptions()) -> ReleasePlan:
    """The whole release, decided: raises :class:`InputError` (exit 2) for what must not be written."""
    if options.mode in ("promote", "abort"):
        return plan_from_hold(view, config, options)
    wanted = desired_apps(config)
    grpc = grpc_enabled(view, config)
    decisions = []
    for logical, desired in wanted:
        route_prefix = desired.get("route_prefix")
        live = view.live_of(logical, route_prefix)
        # route-less now, routed before (shop-blue on /shop): that one serves until the new one is checked
        replaces = view.live_of(logical) if route_prefix is None and live is None else None
        if replaces is not None and replaces.claimed_prefix is None:
            replaces = None
        leftovers = tuple(m.name for m in view.members(logical, route_prefix)
                          if m.name not in {x.name for x in (live, replaces) if x is not None})
        decisions.append(AppDecision(logical, route_prefix, with_marker(desired, logical, options.version),
                                     live, "none", leftovers=leftovers,
                                     live_route=_route(view, live or replaces), replaces=replaces))
    diff = plan_changes({"applications": [{**d.desired, "name": d.logical} for d in decisions]}, view.snapshot,
                        live_names={d.logical: d.live.name if d.live else None for d in decisions},
                        ignore_env=MARKER_VARS)
    by_name = {a.name: a for a in diff.applications}
    for d in decisions:
        entry = by_name[d.logical]
        if d.live is None:
            d.kind, d.reasons = "new", ("nothing live yet",)
        else:
            d.kind = entry.verdict
            d.reasons = tuple([c.field for c in entry.changes]
                              + [f"{x.name}.{c.field}" for x in entry.deployments for c in x.changes]
                              + [f"{x.name} {x.action}" for x in entry.deployments if x.action in ("added", "removed")])
    refuse_while_held(view, config, options)
    changed = [d for d in decisions if d.kind != "none"]
    all_light = all(d.kind == "lightweight" for d in changed)
    for d in changed:
        bound = d.name_bound or grpc
        if options.mode == "hold":
            _holdable(d, bound, options)
            d.strategy = "blue-green"
            continue
        if options.strategy == "blue-green" and bound:
            why = "has no HTTP route (route_prefix: null): clients reach it by its name" if d.name_bound else \
                "is on a cluster that serves gRPC, whose clients pick an application by its name"
            raise InputError(f"application {d.logical} {why}; blue-green would rename it behind their backs",
                             "deploy it with --strategy auto or in-place (updated in place, gated, checked, and "
                             "rolled back on failure)")
        if bound or options.strategy == "in-place" or (options.strategy == "auto" and all_light):
            d.strategy = "in-place"
        else:
            d.strategy = "blue-green"
    plan = ReleasePlan(decisions, diff, "none", mode=options.mode,
                       release=options.version if options.mode == "hold" else None)
    for d in decisions:
        _assign_target(d, grpc)
        _refuse_collisions(view, d)
    if options.mode == "hold":
        record = {d.logical: {"held": d.target} if d.strategy == "blue-green" and d.target else
                  {"live": d.live.name, "digest": config_digest(d.live.config)} if d.live else {}
                  for d in decisions}
        for d in decisions:
            if d.strategy != "blue-green":
                continue
            assert d.check_prefix is not None
            held = with_hold({**d.desired, "route_prefix": d.check_prefix}, at=options.now, route=d.route_prefix,
                             live=d.live.config if d.live else None, live_name=d.live.name if d.live else None,
                             release_apps=record)
            d.desired = {**held, "route_prefix": d.route_prefix}
    if not changed:
        stale = frozenset(n for d in decisions for n in d.leftovers)
        if stale:
            plan.tidy = Write("remove leftovers", {}, stale, Effect(removed=stale),
                              tuple(f"remove leftover {n} of an earlier run" for n in sorted(stale)))
        return plan
    plan.strategy = "blue-green" if any(d.strategy == "blue-green" for d in changed) else "in-place"
    _plan_writes(plan, changed)
    return plan


def _route(view: ClusterView, app: AppView | None) -> str | None:
    return view.route_of(app.name) if app is not None else None


def _candidate_name(d: AppDecision) -> str:
    colour = "blue"
    if d.live is not None:
        for c in COLOURS:
            if d.live.name.endswith(f"-{c}"):
                colour = "green" if c == "blue" else "blue"
    return f"{d.logical}-{colour}"


def _assign_target(d: AppDecision, grpc: bool) -> None:
    """Where the new version goes: a candidate beside the live one, or the live one in place."""
    if d.strategy == "blue-green":
        d.target = _candidate_name(d)
        colour = d.target.rsplit("-", 1)[1]
        d.check_prefix = preview_prefix(d.route_prefix, d.logical, colour)
    elif d.strategy == "in-place":
        d.target = d.live.name if d.live else (d.logical if d.name_bound or grpc else f"{d.logical}-blue")
        d.check_prefix = d.route_prefix


def refuse_while_held(view: ClusterView, config: Mapping[str, Any], options: PlanOptions) -> None:
    """Any write to an application while a release of it is held, but a hold of that same release again (the
    re-run of a hold that was killed or failed: its candidate is replaced, like any leftover of ours). Asked
    before the code is shipped, and again by the planner."""
    for logical, desired in desired_apps(config):
        _refuse_while_held(view, logical, desired.get("route_prefix"), options)


def _refuse_while_held(view: ClusterView, logical: str, route: str | None, options: PlanOptions) -> None:
    held = [h for h in view.held(logical, route) if not (options.mode == "hold" and h.version == options.version)]
    if held:
        h = held[0]
        release = h.version or "(no version)"
        raise InputError(
            f"release {release} of {logical} is held for review ({h.name} on {h.claimed_prefix}); a deploy now "
            "would change what the reviewer is looking at (nothing was written)",
            f"promote it (`ci-serve promote CONFIG --version {release}`) or abort it (`ci-serve abort CONFIG "
            f"--version {release}`), then deploy")


def _holdable(d: AppDecision, bound: bool, options: PlanOptions) -> None:
    """A hold needs the new version beside the live one, on a preview prefix a reviewer can reach."""
    if bound:
        why = "has no HTTP route (route_prefix: null)" if d.name_bound else \
            "is on a cluster that serves gRPC, whose clients pick an application by its name"
        raise InputError(f"application {d.logical} {why}: it cannot be held on a preview prefix beside its live "
                         "version (nothing was written)", "deploy it without --hold")
    if options.strategy == "in-place":
        raise InputError("--hold keeps the live version untouched beside a candidate; --strategy in-place "
                         "would change the live version itself", "drop --strategy in-place (or --hold)")
    if not options.version:
        raise InputError("--hold needs a release version, to promote or abort it by",
                         "pass --version (the action passes the commit, $GITHUB_SHA)")


def _refuse_collisions(view: ClusterView, d: AppDecision) -> None:
    """A foreign application under a name or on a route prefix this release needs: exit 2, nothing written."""
    members = {m.name for m in view.members(d.logical, d.route_prefix)}
    needed_names = [d.target] if d.target else []
    for name in needed_names:
        app = view.apps.get(name)
        if app is not None and not app.declarative and not app.deleting:
            raise InputError(
                f"application {name} on the cluster was deployed imperatively (serve.run: it has no "
                f"deployed_app_config), and this deploy of {d.logical} needs that name; Ray's REST API cannot "
                "replace or move such an application (it answers 400)",
                f"remove it where it was started (`serve.delete(\"{name}\")`, or `serve shutdown` on that "
                "cluster), then re-run; or give your application another name in the config (nothing was "
                "written)")
        if app is not None and name not in members and not app.deleting:
            owner = f"it belongs to ci-serve application {app.owner!r}" if app.owner else "it has no ci-serve marker"
            raise InputError(
                f"application {name} on the cluster is not ours ({owner}), but this deploy of {d.logical} needs "
                "that name", f"remove or rename {name} (it was left untouched), or give your application another "
                "name in the config")
    prefixes = [p for p in (d.route_prefix, d.check_prefix) if p is not None] if d.strategy != "none" else \
        [d.route_prefix] if d.route_prefix is not None else []
    for prefix in dict.fromkeys(prefixes):
        holders = {view.serving(prefix)} | {a.name for a in view.apps.values() if a.claimed_prefix == prefix}
        foreign = sorted(h for h in holders if h is not None and h not in members
                         and not (h in view.apps and view.apps[h].deleting))
        imperative = [h for h in foreign if h in view.apps and not view.apps[h].declarative]
        if imperative:
            raise InputError(
                f"route prefix {prefix} is held by application {imperative[0]}, deployed imperatively (serve.run: "
                f"no deployed_app_config); Ray's REST API cannot move or replace it, and this deploy of "
                f"{d.logical} needs the prefix", f"remove it where it was started (`serve.delete(\"{imperative[0]}\")`"
                f", or `serve shutdown` on that cluster), then re-run; or give {d.logical} another route_prefix "
                "(nothing was written)")
        if foreign:
            raise InputError(
                f"route prefix {prefix} is held by application {foreign[0]}, which is not ours; this deploy of "
                f"{d.logical} needs it", f"move {foreign[0]} to another prefix or give {d.logical} another "
                "route_prefix in the config (nothing was written)")


def _aside(d: AppDecision) -> str:
    """Where the old version waits, still running, between the switch and its removal."""
    assert d.live is not None
    colour = next((c for c in COLOURS if d.live.name.endswith(f"-{c}")), "old")
    return preview_prefix(d.route_prefix, d.logical, colour)


def _plan_writes(plan: ReleasePlan, changed: list[AppDecision]) -> None:
    put: dict[str, dict[str, Any]] = {}
    created: set[str] = set()
    updated: set[str] = set()
    removed: set[str] = set()
    says: list[str] = []
    undo_put: dict[str, dict[str, Any]] = {}
    for d in changed:
        assert d.target is not None
        if d.strategy == "blue-green":
            put[d.target] = {**d.desired, "route_prefix": d.check_prefix}
            created.add(d.target)
            says.append(f"add candidate {d.target} on {d.check_prefix}")
        else:
            desired = d.desired
            if d.live is not None and d.kind == "lightweight":
                # the markers are part of Ray's code version: new ones would restart the replicas
                desired = with_markers_of(desired, d.live.config) if marker_of(d.live.config) else \
                    with_marker(without_marker(desired), d.logical, d.live.version)
            put[d.target] = desired
            if d.live is not None:
                updated.add(d.target)
                undo_put[d.target] = {k: v for k, v in (d.live.config or {}).items() if k != "name"}
                says.append(f"update {d.target} in place ({d.kind})")
            else:
                created.add(d.target)
                says.append(f"add {d.target} on {d.route_prefix or NO_ROUTE}")
        for name in d.leftovers:
            if name != d.target:
                removed.add(name)
                says.append(f"remove leftover {name} of an earlier run")
    # A leftover under the candidate's own name (a killed earlier run) is replaced: declared as changed.
    reused = {d.target for d in changed if d.strategy == "blue-green" and d.target in d.leftovers}
    created -= reused
    updated |= reused
    plan.first = Write("write candidate" if plan.strategy == "blue-green" else "write config", put,
                       frozenset(removed), Effect(frozenset(created), frozenset(updated), frozenset(removed)),
                       tuple(says))
    undo_remove = frozenset(created | reused)
    plan.undo_first = Write("remove candidate" if plan.strategy == "blue-green" else "restore previous", undo_put,
                            undo_remove, Effect(changed=frozenset(undo_put), removed=undo_remove),
                            tuple([f"remove {n}" for n in sorted(undo_remove)]
                                  + [f"write back the previous config of {n}" for n in sorted(undo_put)]),
                            cleanup=True)
    green = [d for d in changed if d.strategy == "blue-green"]
    replaced = frozenset(d.replaces.name for d in changed if d.replaces is not None)
    if not green:
        if replaced:
            plan.retire = Write("remove old", {}, replaced, Effect(removed=replaced),
                                tuple(f"remove the old version {n} (it had a route; the new one has none)"
                                      for n in sorted(replaced)), cleanup=True)
        return
    switch: dict[str, dict[str, Any]] = {}
    back: dict[str, dict[str, Any]] = dict(undo_put)
    s_says: list[str] = []
    for d in green:
        assert d.target is not None
        switch[d.target] = {**d.desired, "route_prefix": d.route_prefix}
        if d.live is not None:
            live_config = {k: v for k, v in (d.live.config or {}).items() if k != "name"}
            switch[d.live.name] = {**live_config, "route_prefix": _aside(d)}
            back[d.live.name] = live_config
            s_says.append(f"move route {d.route_prefix} from {d.live.name} to {d.target}; {d.live.name} waits, "
                          f"still running, on {_aside(d)}")
        else:
            s_says.append(f"move {d.target} to its route {d.route_prefix}")
    plan.switch = Write("switch", switch, frozenset(), Effect(changed=frozenset(switch)), tuple(s_says))
    back_remove = frozenset(undo_remove)
    plan.undo_switch = Write("restore previous", back, back_remove,
                             Effect(changed=frozenset(back), removed=back_remove),
                             tuple([f"put {n} back on its route" for n in sorted(back)]
                                   + [f"remove {n}" for n in sorted(back_remove)]), cleanup=True)
    old = frozenset(d.live.name for d in green if d.live is not None) | replaced
    if old:
        plan.retire = Write("remove old", {}, old, Effect(removed=old),
                            tuple(f"remove the old version {n}" for n in sorted(old)), cleanup=True)


def plan_from_hold(view: ClusterView, config: Mapping[str, Any], options: PlanOptions) -> ReleasePlan:
    """``promote`` or ``abort`` release ``options.version``, from what the cluster holds: its held candidates
    (:meth:`ClusterView.held`) of the config's applications, and the release's record in their markers.

    Promote refuses (exit 2, nothing written) unless the cluster is exactly as the hold left it
    (compare-and-swap on the record): every application the release held has its candidate there, as
    written, on the route the config gives, beside the same live version (name and config digest); every
    application it left unchanged is still the same live version; the config has the same applications.
    The re-run of a promote that got past its switch only retires what it left. Abort removes the
    release's marked candidates waiting on preview prefixes and nothing else; with none, it writes nothing."""
    release = options.version
    if not release:
        raise InputError(f"{options.mode} needs the release to {options.mode}", "pass --version (as given to the "
                         "deploy --hold; the action's `release` output)")
    wanted = desired_apps(config)
    names = ", ".join(n for n, _ in wanted)
    held: dict[str, AppView] = {}
    marked: dict[str, AppView] = {}  # held or stale (live changed since): abort removes them; promote names them
    other: list[str] = []
    for logical, desired in wanted:
        route = desired.get("route_prefix")
        for h in view.held(logical, route, stale=True):
            if h.version != release:
                other.append(f"{h.version or '(no version)'} of {logical} ({h.name})")
            else:
                marked.setdefault(logical, h)
        mine = [h for h in view.held(logical, route) if h.version == release]
        if mine:
            held[logical] = mine[0]
    if options.mode == "abort":
        return _abort_plan(view, wanted, marked, other, release)
    if not held:
        if marked:  # the candidates are there, but the live version is not the one the hold saw
            logical, candidate = next(iter(marked.items()))
            route = dict(wanted)[logical].get("route_prefix")
            _still_as_held(logical, route, candidate, view.live_of(logical, route), release)
        if _already_promoted(view, wanted, release):
            return _promoted(view, wanted, release)
        if options.computed is not None and not other:  # a hold that found nothing to change held nothing
            same = plan_release(view, options.computed, PlanOptions(version=release))
            if same.strategy == "none" and same.tidy is None:
                same.mode, same.release = "promote", release
                same.warnings.append(f"the cluster already runs this config: release {release} has nothing to "
                                     "promote")
                return same
        held_text = f"; held: {', '.join(other)}" if other else "; nothing is held"
        raise InputError(f"no release {release} of {names} is held on this cluster{held_text} (nothing was written)",
                         "`ci-serve status` lists held releases; hold one with `ci-serve deploy --hold --version V`")
    record = next(iter(held.values())).hold
    assert record is not None
    fix = (f"abort it (`ci-serve abort CONFIG --version {release}`) and hold the release again from what runs "
           "now (nothing was written)")
    if record.apps and set(record.apps) != {n for n, _ in wanted}:
        raise InputError(f"release {release} was held with applications {', '.join(sorted(record.apps))}; the "
                         f"config has {names}", "promote with the config the release was held with, or " + fix)
    decisions: list[AppDecision] = []
    for logical, desired in wanted:
        route = desired.get("route_prefix")
        live = view.live_of(logical, route)
        entry = record.apps.get(logical, {"held": held[logical].name} if logical in held else {})
        if "held" in entry:
            found = held.get(logical)
            if found is None or found.name != entry["held"]:
                raise InputError(f"release {release} held {entry['held']} for {logical}, and it is no longer there "
                                 "as held (removed, changed or moved since)", fix)
            candidate = found
            _still_as_held(logical, route, candidate, live, release)
            cfg = {k: v for k, v in (candidate.config or {}).items() if k != "name"}
            d = AppDecision(logical, route, {**cfg, "route_prefix": route}, live,
                            "new" if live is None else "heavyweight", (f"held release {release}",), "blue-green",
                            target=candidate.name, check_prefix=candidate.claimed_prefix,
                            live_route=_route(view, live))
            _refuse_collisions(view, d)
        else:
            if live is None or live.name != entry.get("live") or config_digest(live.config) != entry.get("digest"):
                now = f"{live.name} (version {live.version or '-'})" if live else "nothing"
                raise InputError(f"{logical} changed since release {release} was held: the release left "
                                 f"{entry.get('live') or 'it'} as it was, now {now} serves, or its config changed",
                                 fix)
            cfg = {k: v for k, v in (live.config or {}).items() if k != "name"}
            d = AppDecision(logical, route, cfg, live, "none", (f"unchanged in release {release}",),
                            live_route=_route(view, live))
        decisions.append(d)
    plan = ReleasePlan(decisions, _diff(view, decisions), "blue-green", mode="promote", release=release)
    green = [d for d in decisions if d.strategy == "blue-green"]
    _plan_writes(plan, green)
    plan.first = None  # the candidates are there, as held: re-gated and re-checked, never written again
    back = {d.target: {**d.desired, "route_prefix": d.check_prefix} for d in green if d.target}
    back.update({d.live.name: {k: v for k, v in (d.live.config or {}).items() if k != "name"}
                 for d in green if d.live is not None})
    plan.rehold = Write("restore held release", back, frozenset(), Effect(changed=frozenset(back)),
                        tuple(f"put {n} back as it was" for n in sorted(back)), cleanup=True)
    return plan


def _diff(view: ClusterView, decisions: list[AppDecision]) -> Plan:
    return plan_changes({"applications": [{**d.desired, "name": d.logical} for d in decisions]}, view.snapshot,
                        live_names={d.logical: d.live.name if d.live else None for d in decisions},
                        ignore_env=MARKER_VARS)


def _abort_plan(view: ClusterView, wanted: list[tuple[str, dict[str, Any]]], marked: dict[str, AppView],
                other: list[str], release: str) -> ReleasePlan:
    """Remove the release's marked candidates (held, or stale: the live version changed since). Right before the
    write the guard checks each is still a marked candidate waiting on its preview prefix, not live."""
    decisions = []
    for logical, desired in wanted:
        route = desired.get("route_prefix")
        live = view.live_of(logical, route)
        candidate = marked.get(logical)
        source = candidate or live
        cfg = {k: v for k, v in (source.config or {}).items() if k != "name"} if source is not None else desired
        decisions.append(AppDecision(logical, route, cfg, live, "heavyweight" if candidate else "none",
                                     (f"held release {release}",) if candidate else (),
                                     "blue-green" if candidate else "none",
                                     target=candidate.name if candidate else None,
                                     check_prefix=candidate.claimed_prefix if candidate else None,
                                     live_route=_route(view, live)))
    plan = ReleasePlan(decisions, _diff(view, decisions), "blue-green" if marked else "none", mode="abort",
                       release=release)
    gone = frozenset(h.name for h in marked.values())
    if gone:
        plan.remove_held = Write("remove held release", {}, gone, Effect(removed=gone),
                                 tuple(f"remove held candidate {h.name} ({logical}, release {release})"
                                       for logical, h in marked.items()), cleanup=True,
                                 held_only=tuple((h.name, logical, dict(wanted)[logical].get("route_prefix"))
                                                 for logical, h in marked.items()))
    else:
        plan.warnings.append(f"no release {release} of these applications is held: nothing to abort"
                             + (f" (held: {', '.join(other)})" if other else ""))
    return plan


def _already_promoted(view: ClusterView, wanted: list[tuple[str, dict[str, Any]]], release: str) -> bool:
    """An application of the config is live in a version promoted from release ``release``'s hold."""
    for logical, desired in wanted:
        live = view.live_of(logical, desired.get("route_prefix"))
        if live is not None and live.version == release and live.hold is not None:
            return True
    return False


def _promoted(view: ClusterView, wanted: list[tuple[str, dict[str, Any]]], release: str) -> ReleasePlan:
    """The re-run of a promote that got past its switch: nothing to write but the retirement of what it left
    (the old versions waiting aside, removed like any leftover of ours), then live is checked as unchanged."""
    decisions = []
    for logical, desired in wanted:
        route = desired.get("route_prefix")
        live = view.live_of(logical, route)
        if live is None:
            continue
        held = {h.name for h in view.held(logical, route)}  # another release's hold is never a leftover
        others = tuple(m.name for m in view.members(logical, route) if m.name != live.name and m.name not in held)
        decisions.append(AppDecision(logical, route, {k: v for k, v in (live.config or {}).items() if k != "name"},
                                     live, "none", (f"release {release} is live",), live_route=_route(view, live),
                                     leftovers=others))
    plan = ReleasePlan(decisions, _diff(view, decisions), "none", mode="promote", release=release)
    stale = frozenset(n for d in decisions for n in d.leftovers)
    if stale:
        plan.tidy = Write("remove leftovers", {}, stale, Effect(removed=stale),
                          tuple(f"remove {n}, left by an earlier promote" for n in sorted(stale)))
    plan.warnings.append(f"release {release} is already live: nothing to promote"
                         + ("; removing what an earlier promote left" if stale else ""))
    return plan


def _still_as_held(logical: str, route: str | None, candidate: AppView, live: AppView | None, release: str) -> None:
    """Compare-and-swap on what the hold recorded: refused (exit 2) when the cluster is not as it left it."""
    hold = candidate.hold
    assert hold is not None
    fix = (f"abort it (`ci-serve abort CONFIG --version {release}`) and hold the release again from what runs "
           "now (nothing was written)")
    if hold.route != route:
        raise InputError(f"release {release} of {logical} was held for route {hold.route}, but the config gives "
                         f"{route}", "promote with the config the release was held with, or " + fix)
    if (live.name if live else None) != hold.live or (
            live is not None and config_digest(live.config) != hold.live_digest):
        now = f"{live.name} (version {live.version or '-'})" if live else "nothing"
        raise InputError(f"the live version of {logical} changed since release {release} was held: it was "
                         f"{hold.live or 'nothing'}, now {now} serves, or its config changed; the reviewer saw "
                         "the candidate beside another live version", fix)
    if config_digest(candidate.config) != hold.digest:
        raise InputError(f"the held candidate {candidate.name} of {logical} changed since release {release} was "
                         "held: it is not what was checked and reviewed", fix)


# -- two clusters ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TwoClusterPlanOptions:
    version: str | None = None
    #: ``hold``, ``promote`` or ``abort`` release ``version`` (held on the standby)
    mode: Mode = "deploy"
    #: when the plan is made (epoch seconds): what a hold records
    now: float = 0.0
    #: the traffic steps: the new cluster's share in percent, increasing, ending at 100
    weights: tuple[int, ...] = (100,)
    #: the one-step form (``--switch-command``): one switch, switched back on failure
    switch: bool = True
    #: ``--keep-standby``: the old cluster's applications stay after the switch
    keep_standby: bool = False
    #: the dashboards, as the messages name them
    live_address: str = "the live cluster"
    standby_address: str = "the standby"


def two_cluster_apps(config: Mapping[str, Any], version: str | None) -> dict[str, dict[str, Any]]:
    """Logical name -> its application config as the standby gets it: marked ours (and the release), on its
    route (``/`` by default)."""
    return {logical: with_marker(desired, logical, version) for logical, desired in desired_apps(config)}


def plan_two_clusters(live: ClusterView, standby: ClusterView, config: Mapping[str, Any],
                      options: TwoClusterPlanOptions = TwoClusterPlanOptions()) -> ReleasePlan:
    """Blue-green across two clusters, decided (see :mod:`ci_serve.deploy.two_cluster` for the guarantees).

    ``deploy``/``hold``: the whole config is written to the standby (``first``, its undo ``undo_first``: the
    standby's previous config of what it touched); ``promote`` starts from the release held there (compare-and-
    swap on what the hold recorded, :mod:`~ci_serve.deploy.two_cluster_hold`); then the traffic writes (one
    switch, or the steps of ``options.weights``), their way back (``traffic_back``), and the retirement of the
    old cluster's applications (``retire``; carried out only on the executor's proof that the public entry
    moved). ``abort`` removes the release's held applications from the standby (``remove_held``), nothing else.
    Raises :class:`InputError` (exit 2, nothing written) for what must not be written."""
    apps = two_cluster_apps(config, options.version)
    if options.mode == "abort":
        return _abort_two(live, standby, apps, options)
    plan = ReleasePlan([], _diff_two(live, apps), "blue-green", mode=options.mode, topology="two",
                       release=options.version if options.mode != "deploy" else None)
    if options.mode == "promote":
        found = _release_held(live, standby, apps, options, plan.warnings)
        plan.apps = [_two_decision(live, logical, {k: v for k, v in (h.app.config or {}).items() if k != "name"},
                                   h.app.name, f"held release {options.version}")
                     for logical, h in found.items()]
        held = frozenset(h.app.name for h in found.values())
        plan.undo_first = Write("remove candidate", {}, held, Effect(removed=held),
                                tuple(f"remove {n}" for n in sorted(held)), cleanup=True, cluster="standby")
    else:
        plan.warnings += refuse_while_held_two(live, standby, apps, options)
        put = dict(apps)
        if options.mode == "hold":  # the marker, written once with the application: what promote compares with
            for logical, app in put.items():
                now = live.live_of(logical, app.get("route_prefix"))
                put[logical] = with_hold(app, at=options.now, route=app.get("route_prefix"),
                                         live=now.config if now else None, live_name=now.name if now else None)
        plan.apps = [_two_decision(live, logical, app, logical, "the whole config goes to the standby")
                     for logical, app in put.items()]
        base = {n: {k: v for k, v in c.items() if k != "name"} for n, c in standby.declarative_configs().items()}
        ours = {m.name for logical, app in put.items() for m in standby.members(logical, app.get("route_prefix"))}
        ours = (ours - set(put)) & set(base)
        # an application still being deleted (retired by the previous release) is created anew, for Ray
        created = frozenset(n for n in put if n not in standby.apps or standby.apps[n].deleting)
        plan.first = Write("write standby", put, frozenset(ours),
                           Effect(created=created, changed=frozenset(put) - created, removed=frozenset(ours)),
                           tuple(f"put {n}" for n in put), cluster="standby")
        # only what the write touches goes back: another writer's application (or change) meanwhile stays
        touched = set(put) | ours
        previous = {n: base[n] for n in touched if n in base}
        gone = frozenset(touched - set(base))
        plan.undo_first = Write("remove candidate", previous, gone,
                                Effect(created=frozenset(previous) & ours, changed=frozenset(previous) - ours,
                                       removed=gone),
                                tuple([f"remove {n}" for n in sorted(gone)]
                                      + [f"write back the previous config of {n}" for n in sorted(previous)]),
                                cleanup=True, cluster="standby")
    weights = (100,) if options.switch else options.weights
    plan.traffic = [traffic_write(w, switch=options.switch) for w in weights]
    plan.traffic_back = traffic_write(0, switch=options.switch, back=True)
    if not options.keep_standby:
        old = frozenset(m.name for logical, app in apps.items()
                        for m in live.members(logical, app.get("route_prefix"))
                        if m.config is not None and not m.deleting)
        if old:
            plan.retire = Write("retire old cluster", {}, old, Effect(removed=old),
                                tuple(f"remove the old version {n} from the old cluster" for n in sorted(old)),
                                cleanup=True, cluster="live")
    return plan


def _two_decision(live: ClusterView, logical: str, app: dict[str, Any], target: str, why: str) -> AppDecision:
    route = app.get("route_prefix")
    now = live.live_of(logical, route)
    return AppDecision(logical, route, app, now, "new" if now is None else "heavyweight", (why,), "blue-green",
                       target=target, check_prefix=route, live_route=_route(live, now))


def _diff_two(live: ClusterView, apps: dict[str, dict[str, Any]]) -> Plan:
    return plan_changes({"applications": [{**a, "name": n} for n, a in apps.items()]}, live.snapshot,
                        live_names={n: (x.name if (x := live.live_of(n, a.get("route_prefix"))) else None)
                                    for n, a in apps.items()}, ignore_env=MARKER_VARS)


def _standby_holds(live: ClusterView, standby: ClusterView, apps: dict[str, dict[str, Any]]) -> list[StandbyHold]:
    return [h for logical, app in apps.items() for h in standby_holds(standby, live, logical, app.get("route_prefix"))]


def refuse_while_held_two(live: ClusterView, standby: ClusterView, apps: dict[str, dict[str, Any]],
                          options: TwoClusterPlanOptions) -> list[str]:
    """A deploy (or the hold of another release) to a standby that holds a release: exit 2, naming it. A hold
    the live cluster has moved away from is replaced, with a warning (returned); a promoted one's leftover is
    no hold at all."""
    holds = _standby_holds(live, standby, apps)
    # the same hold run again (a re-run of a job that was cancelled or killed) replaces its own release
    rerun = options.mode == "hold"
    held = [h for h in holds if h.state == "held" and not (rerun and h.release == options.version)]
    if held:
        h = held[0]
        raise InputError(
            f"release {h.release} of {h.logical} is held for review on the standby {options.standby_address} "
            f"({h.app.name}); a deploy now would replace what the reviewer is looking at (nothing was written)",
            f"promote it (`ci-serve promote CONFIG --version {h.release}` with the same cluster flags) or abort "
            f"it (`ci-serve abort CONFIG --version {h.release} --address {options.live_address} --standby-address "
            f"{options.standby_address}`), then deploy")
    return [f"the standby's {h.app.name} (release {h.release}, once held) is replaced: the live cluster no longer "
            "runs what it was held against, so it could not be promoted" for h in holds if h.state == "stale"]


def _release_held(live: ClusterView, standby: ClusterView, apps: dict[str, dict[str, Any]],
                  options: TwoClusterPlanOptions, warnings: list[str]) -> dict[str, StandbyHold]:
    """Promote: the standby application holding release ``version`` of each app of the config, as the hold
    recorded it (compare-and-swap); else :class:`InputError` (exit 2), nothing written."""
    release = options.version
    holds = _standby_holds(live, standby, apps)
    found: dict[str, StandbyHold] = {}
    missing = []
    for logical, app in apps.items():
        mine = [h for h in holds if h.logical == logical and h.app.version == release and h.state != "superseded"]
        if not mine:
            missing.append(logical)
            continue
        h = mine[0]
        why = cas_failure(h, app.get("route_prefix"))
        if why and probably_promoted(h) and cas_failure(replace(h, state="held"), app.get("route_prefix")) is None:
            # what the hold replaces is gone: only a promote's retirement (after its proof that traffic moved)
            # removes it; this one was interrupted after it, or is run again: it is finished, not refused
            warnings.append(f"the live cluster runs no {logical} any more ({h.app.hold.live if h.app.hold else '-'} "
                            f"was there when release {release} was held): a promote of it got as far as retiring "
                            "it; this one finishes it")
            why = None
        if why:
            raise InputError(f"{why} (nothing was written)",
                             f"abort it (`ci-serve abort CONFIG --version {release}` with the same cluster "
                             "flags) and hold the release again from what runs now")
        found[logical] = h
    if missing:
        others = sorted({f"{h.release} of {h.logical}" for h in holds if h.state == "held"})
        raise InputError(
            f"no release {release} of {', '.join(missing)} is held on the standby {options.standby_address}"
            f"{'; held: ' + ', '.join(others) if others else ''} (nothing was written)",
            "hold one with `ci-serve deploy --hold --version V` and the two-cluster flags; after a promote the "
            "roles swap: --address names the cluster that serves now")
    return found


def _abort_two(live: ClusterView, standby: ClusterView, apps: dict[str, dict[str, Any]],
               options: TwoClusterPlanOptions) -> ReleasePlan:
    """Remove the release's held applications from the standby, nothing else; the live cluster is only read."""
    release = options.version
    holds = [h for h in _standby_holds(live, standby, apps) if h.app.version == release and h.state != "superseded"]
    for h in holds:
        if probably_promoted(h):
            raise InputError(
                f"the live cluster {options.live_address} runs no {h.logical}, which release {release} was held "
                f"against: it was probably promoted, and {options.standby_address} serves it now (nothing was "
                "written)", f"after a promote the roles swap: name {options.standby_address} with --address; to "
                f"remove it anyway, `ci-serve status -a {options.standby_address}` shows it")
    names = frozenset(h.app.name for h in holds)
    plan = ReleasePlan([], _diff_two(live, apps), "blue-green" if names else "none", mode="abort", topology="two",
                       release=release)
    for logical, app in apps.items():
        route = app.get("route_prefix")
        mine = next((h for h in holds if h.logical == logical), None)
        now = live.live_of(logical, route)
        plan.apps.append(AppDecision(logical, route, app, now, "heavyweight" if mine else "none",
                                     (f"held release {release}",) if mine else (),
                                     "blue-green" if mine else "none", target=mine.app.name if mine else None,
                                     check_prefix=route if mine else None, live_route=_route(live, now)))
    if names:
        plan.remove_held = Write("remove held release", {}, names, Effect(removed=names),
                                 tuple(f"remove {n}" for n in sorted(names)), cluster="standby")
    else:
        plan.warnings.append(f"no release {release} of {', '.join(apps)} is held on the standby: nothing to abort")
    return plan
