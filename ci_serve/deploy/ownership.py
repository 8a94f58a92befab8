"""What makes an application on a cluster ours: a marker in its ``runtime_env.env_vars``.

Every application this tool writes carries ``CI_SERVE_APP`` (the logical name: the config's
application name) and ``CI_SERVE_VERSION`` (the release, ``--version`` or ``$GITHUB_SHA``, when one is
given). Names prove nothing: another team's ``api-green`` is not our candidate of ``api``. So:

- an application with ``CI_SERVE_APP: X`` belongs to logical application ``X``;
- an application without the marker is never changed or removed, with one documented exception:
  an application under the exact plain logical name ``X`` (deployed by hand, or by ``serve deploy``)
  is *adopted*: it is taken as X's live version and replaced by a marked one on the next deploy;
- applications written before the marker existed (``X-blue``/``X-green`` with only
  ``CI_SERVE_VERSION``) are recognised by that variable, but since anyone may set it,
  :meth:`ClusterView.members` counts them only on the logical app's route or preview prefixes.

A candidate held for a reviewer (``deploy --hold``) also carries ``CI_SERVE_HOLD``: when it was held,
the route it is for, the live application it is to replace (name and config digest) and its own config
digest. It is written once, when the candidate is created, and never edited: ``runtime_env.env_vars`` is
part of Ray's code version, so editing it would restart the replicas. ``promote`` and ``abort`` find
the release from it alone, and refuse when the live app or the candidate no longer match it
(compare-and-swap on what the hold recorded). A promoted candidate keeps it; it is held only while
another version holds its route (:meth:`ClusterView.held`).

The markers are ignored when comparing configs (a new commit with the same code writes nothing); in
place they are kept as the running app has them, since ``runtime_env`` is part of Ray's code version.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

APP_VAR = "CI_SERVE_APP"
VERSION_VAR = "CI_SERVE_VERSION"
HOLD_VAR = "CI_SERVE_HOLD"
MARKER_VARS = frozenset({APP_VAR, VERSION_VAR, HOLD_VAR})
COLOURS = ("blue", "green")


def _env_vars(app_config: Any) -> dict[str, Any]:
    runtime_env = app_config.get("runtime_env") if isinstance(app_config, dict) else None
    env = runtime_env.get("env_vars") if isinstance(runtime_env, dict) else None
    return env if isinstance(env, dict) else {}


def version_of(app_config: Any) -> str | None:
    value = _env_vars(app_config).get(VERSION_VAR)
    return str(value) if value is not None else None


def marker_of(app_config: Any) -> str | None:
    """The logical name in the marker, or None."""
    value = _env_vars(app_config).get(APP_VAR)
    return str(value) if isinstance(value, str) and value else None


def owner_of(physical: str, app_config: Any) -> str | None:
    """The logical application a physical one belongs to, or None: not ours, never touched.

    Adoption of a plain-named app is NOT decided here (see :func:`adoptable`)."""
    marked = marker_of(app_config)
    if marked:
        return marked
    if version_of(app_config) is not None:  # written by ci-serve before CI_SERVE_APP existed
        for colour in COLOURS:
            if physical.endswith(f"-{colour}") and len(physical) > len(colour) + 1:
                return physical[: -len(colour) - 1]
    return None


def adoptable(physical: str, app_config: Any, logical: str) -> bool:
    """An unmarked application under the exact plain logical name: ours to replace (documented). Only a
    declarative one: an app deployed with ``serve.run`` (no ``deployed_app_config``) cannot be replaced or
    moved through the REST API (Ray answers 400), so it is refused like any foreign application."""
    return physical == logical and isinstance(app_config, dict) and owner_of(physical, app_config) is None


def with_marker(app_config: dict[str, Any], logical: str, version: str | None) -> dict[str, Any]:
    app = copy.deepcopy(app_config)
    runtime_env = dict(app.get("runtime_env") or {})
    env_vars = dict(runtime_env.get("env_vars") or {})
    env_vars[APP_VAR] = logical
    if version:
        env_vars[VERSION_VAR] = version
    else:
        env_vars.pop(VERSION_VAR, None)
    runtime_env["env_vars"] = env_vars
    app["runtime_env"] = runtime_env
    return app


def without_marker(app_config: Any) -> dict[str, Any]:
    """The app config as the user wrote it: the markers and the physical name removed."""
    from ci_serve.config.plan import without_env_vars

    return without_env_vars(app_config, MARKER_VARS)


def markers_of(app_config: Any) -> dict[str, str]:
    """The marker variables an application carries, as they are."""
    return {k: str(v) for k, v in _env_vars(app_config).items() if k in MARKER_VARS}


def with_markers_of(app_config: dict[str, Any], running: Any) -> dict[str, Any]:
    """``app_config`` with exactly the markers ``running`` carries (an in-place update keeps Ray's code version)."""
    app = without_marker(app_config)
    found = markers_of(running)
    if found:
        runtime_env = dict(app.get("runtime_env") or {})
        runtime_env["env_vars"] = {**dict(runtime_env.get("env_vars") or {}), **found}
        app["runtime_env"] = runtime_env
    return app


def _canonical(value: Any) -> Any:
    """Numbers as Ray's schema records them: ``5`` is sent, ``5.0`` comes back (measured on 2.60)."""
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return value


def config_digest(app_config: Any) -> str:
    """A short digest of an application config as Ray records it: its name and the hold marker left out (a
    candidate's digest is taken before the marker that records it is added), numbers compared by value."""
    from ci_serve.config.plan import without_env_vars

    canon = json.dumps(_canonical(without_env_vars(app_config, frozenset({HOLD_VAR}))), sort_keys=True,
                       separators=(",", ":"), default=str)
    return hashlib.sha256(canon.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Hold:
    """What ``deploy --hold`` recorded on a candidate when it created it."""

    #: when (epoch seconds)
    at: float
    #: the route prefix the candidate is for (None: route-less)
    route: str | None
    #: the live application it is to replace, and the digest of its config then (None: nothing was live)
    live: str | None
    live_digest: str | None
    #: the digest of the candidate's own config as written
    digest: str
    #: the whole release, per application of its config: ``{"held": candidate}`` for each one held, or
    #: ``{"live": name, "digest": d}`` for each one it left unchanged (promote checks them all)
    apps: dict[str, dict[str, str]] = field(default_factory=dict)

    def encode(self) -> str:
        return json.dumps({"at": round(self.at, 3), "route": self.route, "live": self.live,
                           "live_digest": self.live_digest, "digest": self.digest, "apps": self.apps},
                          sort_keys=True, separators=(",", ":"))


def hold_of(app_config: Any) -> Hold | None:
    """The hold marker of an application, or None (absent, or not ours to read)."""
    raw = _env_vars(app_config).get(HOLD_VAR)
    if not isinstance(raw, str):
        return None
    try:
        data = json.loads(raw)
        apps = data.get("apps") or {}
        if not isinstance(apps, dict) or not all(isinstance(v, dict) for v in apps.values()):
            return None
        return Hold(float(data["at"]), data.get("route"), data.get("live"), data.get("live_digest"),
                    str(data["digest"]), {str(k): {str(a): str(b) for a, b in v.items()} for k, v in apps.items()})
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


def with_hold(app_config: dict[str, Any], *, at: float, route: str | None, live: Any, live_name: str | None,
              release_apps: dict[str, dict[str, str]] | None = None) -> dict[str, Any]:
    """``app_config`` (markers in, on its preview prefix) marked held: the marker records it, the live app it is
    to replace, and the whole release (``release_apps``, see :attr:`Hold.apps`)."""
    hold = Hold(at, route, live_name, config_digest(live) if live_name is not None else None,
                config_digest(app_config), dict(release_apps or {}))
    app = copy.deepcopy(app_config)
    runtime_env = dict(app.get("runtime_env") or {})
    runtime_env["env_vars"] = {**dict(runtime_env.get("env_vars") or {}), HOLD_VAR: hold.encode()}
    app["runtime_env"] = runtime_env
    return app
