"""One typed view of a cluster's Serve applications, parsed once, and which incarnation is live.

``GET /api/serve/applications/`` differs between Ray releases. Up to 2.46 (measured on 2.9.3, 2.20,
2.30, 2.40, 2.46), after a PUT that only moves an application's route prefix, its top-level
``route_prefix`` keeps the OLD value while ``deployed_app_config.route_prefix`` and the proxy have the
new one; from 2.50 both agree. So the prefix an application *claims* is read from its
``deployed_app_config`` (what was sent, on every release), the top-level field only for applications
deployed without one; and which application a prefix *serves* is read from the Serve proxy's own
table (``GET <serve>/-/routes``: prefix -> application), the claim only when the table cannot be read.

:meth:`ClusterView.live_of` is the one answer to "which incarnation of logical application X is
live"; ``plan``, ``deploy``, ``status``, ``config`` and the two-cluster mode all ask it.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from types import EllipsisType
from typing import Any
from urllib.parse import urlsplit

import requests

from ci_serve import cancel, secrets
from ci_serve.deploy.ownership import (
    COLOURS,
    Hold,
    adoptable,
    config_digest,
    hold_of,
    marker_of,
    owner_of,
    version_of,
)

#: how a route-less application (``route_prefix: null``) is shown
NO_ROUTE = "(no route)"


def preview_prefix(route_prefix: str | None, logical: str, colour: str) -> str:
    """A candidate's own route prefix, beside the live one: ``/shop`` -> ``/shop--green``."""
    base = (route_prefix or f"/{logical}").rstrip("/")
    return f"{base}--{colour}" if base else f"/--{logical}-{colour}"


def is_preview(prefix: str | None, logical: str) -> bool:
    if not prefix:
        return False
    return any(prefix.endswith(f"--{c}") or prefix == f"/--{logical}-{c}" for c in (*COLOURS, "old"))


@dataclass(frozen=True)
class DeploymentView:
    name: str
    status: str
    message: str
    replicas: int


@dataclass(frozen=True)
class AppView:
    """One physical application as Ray reports it, plus ours: owner (logical name) and version."""

    name: str
    status: str
    message: str
    #: the top-level ``route_prefix`` Ray reports (stale after a route change on Ray <= 2.46)
    reported_prefix: str | None
    #: ``deployed_app_config`` (None: deployed imperatively with ``serve.run``)
    config: dict[str, Any] | None
    last_deployed_time_s: float | None
    deployments: dict[str, DeploymentView]
    owner: str | None
    version: str | None
    #: written by ``deploy --hold`` when it created this candidate (see :mod:`~ci_serve.deploy.ownership`)
    hold: Hold | None = None

    @property
    def declarative(self) -> bool:
        return self.config is not None

    @property
    def deleting(self) -> bool:
        """Being deleted. Measured on Ray 2.60: an app a PUT left out reports ``deployed_app_config: null``
        while it is DELETING, so its marker cannot be read there. It is part of the view, but it is
        nobody's live version, never blocks a name or a route, and finishing its deletion is no change."""
        return self.status == "DELETING"

    @property
    def claimed_prefix(self) -> str | None:
        """The route prefix the app was given: its config's (reliable on every Ray), else the report."""
        if self.config is not None and "route_prefix" in self.config:
            prefix = self.config["route_prefix"]
            return prefix if isinstance(prefix, str) else None  # null: a route-less application
        return self.reported_prefix


def _parse_app(name: str, raw: Any) -> AppView:
    raw = raw if isinstance(raw, dict) else {}
    config = raw.get("deployed_app_config")
    config = copy.deepcopy(config) if isinstance(config, dict) else None
    deps = raw.get("deployments") if isinstance(raw.get("deployments"), dict) else {}
    deployments = {}
    for dname, d in sorted(deps.items()):
        d = d if isinstance(d, dict) else {}
        replicas = d.get("replicas")
        deployments[dname] = DeploymentView(dname, str(d.get("status") or "UNKNOWN"), str(d.get("message") or ""),
                                            len(replicas) if isinstance(replicas, list) else 0)
    when = raw.get("last_deployed_time_s")
    prefix = raw.get("route_prefix")
    return AppView(name=name, status=str(raw.get("status") or "UNKNOWN"), message=str(raw.get("message") or ""),
                   reported_prefix=prefix if isinstance(prefix, str) else None, config=config,
                   last_deployed_time_s=float(when) if isinstance(when, (int, float)) else None,
                   deployments=deployments, owner=owner_of(name, config), version=version_of(config),
                   hold=hold_of(config) if marker_of(config) else None)


@dataclass(frozen=True)
class ClusterView:
    apps: dict[str, AppView]
    #: the Serve proxy's route table (prefix -> application), None when it could not be read
    routes: dict[str, str] | None
    #: the raw answer (bodies are built from it: cluster-wide options are sent back unchanged)
    snapshot: dict[str, Any] = field(repr=False, default_factory=dict)
    notes: tuple[str, ...] = ()

    # -- routes ------------------------------------------------------------------------------
    def serving(self, prefix: str) -> str | None:
        """The application the proxy routes ``prefix`` to (the route table; the claims without it)."""
        if self.routes is not None:
            return self.routes.get(prefix)
        claims = [a.name for a in self.apps.values() if a.claimed_prefix == prefix]
        return claims[0] if len(claims) == 1 else None

    def route_of(self, name: str) -> str | None:
        """The prefix application ``name`` serves: from the route table when it lists the app, else its claim."""
        if self.routes is not None:
            held = sorted(p for p, n in self.routes.items() if n == name)
            if len(held) == 1:
                return held[0]
        app = self.apps.get(name)
        return app.claimed_prefix if app else None

    def disagreements(self) -> list[str]:
        """Where Ray's status fields and the proxy disagree (shown by ``status``; decided by the proxy)."""
        out = []
        for app in self.apps.values():
            if app.config is not None and "route_prefix" in app.config and app.reported_prefix != app.claimed_prefix:
                out.append(f"{app.name}: Ray reports route_prefix {app.reported_prefix}, its config says "
                           f"{app.claimed_prefix} (stale field of Ray <= 2.46); the config's is used")
        if self.routes is not None:
            for prefix, name in sorted(self.routes.items()):
                claim = self.apps[name].claimed_prefix if name in self.apps else None
                if name in self.apps and claim != prefix:
                    out.append(f"the proxy routes {prefix} to {name}, which claims {claim}")
        return out

    # -- ownership ---------------------------------------------------------------------------
    def members(self, logical: str, route_prefix: str | None | EllipsisType = ...) -> list[AppView]:
        """Every physical application that is an incarnation of ``logical``: marked ours, or adoptable.

        An application of the tool before the marker (``X-blue``/``X-green`` with only ``CI_SERVE_VERSION``,
        a variable anyone may set) counts only on the route the config gives ``logical`` or on one of its
        preview prefixes, when that route is known: another team's ``api-green`` at ``/payments`` that
        happens to set ``CI_SERVE_VERSION`` is not our ``api``."""
        allowed = None if route_prefix is ... else {route_prefix} | {
            preview_prefix(route_prefix, logical, c) for c in (*COLOURS, "old")}
        return [a for _, a in sorted(self.apps.items()) if not a.deleting and (
                (a.owner == logical and (allowed is None or marker_of(a.config) or a.claimed_prefix in allowed))
                or adoptable(a.name, a.config, logical))]

    def live_of(self, logical: str, route_prefix: str | None | EllipsisType = ...) -> AppView | None:
        """THE answer to "which incarnation of ``logical`` is live".

        ``route_prefix`` is the config's (None: a route-less app; omitted: not known, as in ``status``).
        The live one is the member the proxy serves the route prefix with; failing that (the app is not
        RUNNING, or the table was not read), the only member claiming it; failing that, the only member
        not on a preview prefix (the config moved the app to another prefix).
        """
        members = self.members(logical, route_prefix)
        if not members:
            return None
        if route_prefix is None:
            plain = [m for m in members if m.name == logical]
            return plain[0] if plain else None
        names = {m.name for m in members}
        if route_prefix is not ...:
            holder = self.serving(route_prefix)
            if holder in names:
                return self.apps[holder]
            claims = [m for m in members if m.claimed_prefix == route_prefix]
            if len(claims) == 1:
                return claims[0]
        settled = [m for m in members if not is_preview(self.route_of(m.name), logical)]
        return settled[0] if len(settled) == 1 else None

    def held(self, logical: str, route_prefix: str | None | EllipsisType = ..., *, stale: bool = False
             ) -> list[AppView]:
        """The held candidates of ``logical``: members marked by ``deploy --hold``, waiting on a preview prefix,
        not live, beside the very live version the hold saw (name and config digest). A promoted version keeps
        its marker: live, it is not held; moved aside by a later switch, it does not match what serves now, so
        it is a leftover like any other. ``stale``: also the marked candidates whose live version has changed
        since their hold (promote names them; a deploy removes them as leftovers)."""
        live = self.live_of(logical, route_prefix)
        out = []
        for m in self.members(logical, route_prefix):
            if m.hold is None or (live is not None and m.name == live.name) or not is_preview(m.claimed_prefix,
                                                                                               logical):
                continue
            same_live = (m.hold.live == (live.name if live else None)) and (
                live is None or config_digest(live.config) == m.hold.live_digest)
            if same_live or stale:
                out.append(m)
        return out

    def logical_names(self) -> list[str]:
        return sorted({a.owner for a in self.apps.values() if a.owner})

    def declarative_configs(self) -> dict[str, dict[str, Any]]:
        return {n: copy.deepcopy(a.config) for n, a in self.apps.items() if a.config is not None and not a.deleting}

    # -- for people ------------------------------------------------------------------------
    def managed(self) -> dict[str, Any]:
        """Per logical application of ours: live physical app, version, status, route, other incarnations."""
        out = {}
        for logical in self.logical_names():
            live = self.live_of(logical)
            others = [m.name for m in self.members(logical) if not live or m.name != live.name]
            held = [{"release": h.version, "candidate": h.name, "route_prefix": h.claimed_prefix,
                     "held_at": h.hold.at, "status": h.status} for h in self.held(logical) if h.hold is not None]
            out[logical] = {"live": live.name if live else None, "version": live.version if live else None,
                            "status": live.status if live else None,
                            "route_prefix": self.route_of(live.name) if live else None, "candidates": others,
                            "held": held}
        return out

    def ray_apps(self) -> dict[str, Any]:
        """Per physical application: status, message, route prefix, deployments (like ``serve status``)."""
        return {a.name: {"status": a.status, "message": a.message, "route_prefix": self.route_of(a.name),
                         "reported_route_prefix": a.reported_prefix, "owner": a.owner,
                         "last_deployed_time_s": a.last_deployed_time_s,
                         "deployments": {d.name: {"status": d.status, "message": d.message, "replicas": d.replicas}
                                         for d in a.deployments.values()}}
                for _, a in sorted(self.apps.items())}

    def configs(self, app: str | None = None) -> list[dict[str, Any]]:
        """The declarative config of each application (``serve config``), env_vars redacted; ``app`` may
        be a physical name or a logical one (then its live incarnation)."""
        names = sorted(self.apps)
        if app is not None:
            live = self.live_of(app)
            names = [n for n in names if n == app or (live is not None and n == live.name)]
        return [secrets.redact_config(self.apps[n].config or {"name": n, "note": "deployed imperatively"})
                for n in names]


def parse(snapshot: dict[str, Any], routes: dict[str, str] | None = None, notes: tuple[str, ...] = ()) -> ClusterView:
    found = snapshot.get("applications")
    apps: dict[str, Any] = found if isinstance(found, dict) else {}
    return ClusterView({str(n): _parse_app(str(n), raw) for n, raw in apps.items()}, routes, snapshot, notes)


def serve_url(dashboard_address: str, snapshot: dict[str, Any], override: str | None = None) -> str:
    """A cluster's Serve HTTP address: ``override``, else the dashboard's host and the Serve port it reports."""
    if override:
        return override.rstrip("/")
    found = snapshot.get("http_options")
    http: dict[str, Any] = found if isinstance(found, dict) else {}
    port = http.get("port") or 8000
    host = urlsplit(dashboard_address).hostname or "127.0.0.1"
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{port}"


def read_routes(serve_base: str, timeout: float = 5.0) -> tuple[dict[str, str] | None, str | None]:
    """The proxy's route table, or (None, why not). No credential is ever sent to the proxy."""
    timeout = cancel.time_left(timeout)
    if timeout <= 0:
        return None, f"/-/routes of the Serve proxy at {serve_base} not read: {cancel.SPENT}"
    try:
        with requests.Session() as session:
            session.trust_env = False
            resp = session.get(serve_base + "/-/routes", timeout=timeout)
    except requests.RequestException as exc:
        return None, f"the Serve proxy at {serve_base} did not answer /-/routes ({type(exc).__name__})"
    if resp.status_code != 200:
        return None, f"the Serve proxy at {serve_base} answered /-/routes with HTTP {resp.status_code}"
    try:
        data = resp.json()
    except (ValueError, json.JSONDecodeError):
        return None, f"the Serve proxy at {serve_base} answered /-/routes with something that is not JSON"
    if not isinstance(data, dict):
        return None, f"the Serve proxy at {serve_base} answered /-/routes with a {type(data).__name__}"
    return {str(k): str(v) for k, v in data.items()}, None


def read_view(client: Any, serve_override: str | None = None, *, with_routes: bool = True) -> ClusterView:
    """Read the cluster once: the applications answer, then (when Serve runs) the proxy's route table."""
    snapshot = client.get_applications()
    if not with_routes or not snapshot.get("applications"):
        return parse(snapshot, {} if with_routes and not snapshot.get("applications") else None)
    routes, note = read_routes(serve_url(client.address, snapshot, serve_override))
    return parse(snapshot, routes, (note,) if note else ())
