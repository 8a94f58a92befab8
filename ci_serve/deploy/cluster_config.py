"""The cluster's declarative config, rebuilt from a status snapshot, and edits that touch only our apps.

``PUT /api/serve/applications/`` replaces the whole declarative goal: an application missing from
the body is deleted. So every write starts from what the cluster runs right now (each declarative
app's ``deployed_app_config``, the cluster-wide options) and changes only the physical applications
this deploy owns. Applications deployed imperatively (``serve.run``) have no ``deployed_app_config``
and are left out of the body; Ray leaves them alone.

Whether a body does only what a write declared is :mod:`ci_serve.deploy.guard`'s check.

Measured on Ray 2.60: Ray stamps a new ``last_deployed_time_s`` on every application named in a
PUT, even one whose config is byte-for-byte unchanged (its replicas keep running, untouched). So
"unchanged" for an unrelated application means: same config, same replicas, never left RUNNING.
"""

from __future__ import annotations

import copy
from typing import Any

#: cluster-wide options read back from the status answer and sent again unchanged
CLUSTER_KEYS = ("proxy_location", "http_options", "grpc_options", "target_capacity")


def serve_running(snapshot: dict[str, Any]) -> bool:
    return bool(snapshot.get("controller_info")) or bool(snapshot.get("applications"))


def declarative_apps(snapshot: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Physical name -> deployed_app_config, for every app deployed through the declarative API and not
    being deleted (sending a DELETING app's config back would bring it back)."""
    apps = {}
    for name, raw in (snapshot.get("applications") or {}).items():
        config = (raw or {}).get("deployed_app_config") if isinstance(raw, dict) else None
        if isinstance(config, dict) and raw.get("status") != "DELETING":
            apps[name] = copy.deepcopy(config)
    return apps


def build_body(snapshot: dict[str, Any], *, put: dict[str, dict[str, Any]] | None = None,
               remove: set[str] | frozenset[str] = frozenset(),
               first_start: dict[str, Any] | None = None) -> dict[str, Any]:
    """A whole Serve config: the cluster's apps, with ``put`` (physical name -> app config) added or
    replacing, and ``remove`` left out. ``first_start`` holds the top-level options of the user's file,
    used only when Serve is not running yet (afterwards Ray ignores changes to them)."""
    body: dict[str, Any] = {}
    if serve_running(snapshot):
        for key in CLUSTER_KEYS:
            if snapshot.get(key) is not None:
                body[key] = copy.deepcopy(snapshot[key])
    else:
        for key, value in (first_start or {}).items():
            if key != "applications":
                body[key] = copy.deepcopy(value)
    apps = declarative_apps(snapshot)
    for name in remove:
        apps.pop(name, None)
    for name, config in (put or {}).items():
        config = copy.deepcopy(config)
        config["name"] = name
        apps[name] = config
    body["applications"] = [apps[name] for name in sorted(apps)]
    return body
