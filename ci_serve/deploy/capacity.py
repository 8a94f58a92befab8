"""Can the cluster place an application's replicas? Judged from what Ray's autoscaler reports, not
from Serve's message.

Serve says "replicas that have taken more than 30s to be scheduled" alike for replicas no node could
ever hold, for replicas waiting for a node the autoscaler is starting, and for replicas whose
runtime_env is still being built. What tells them apart is the cluster's own account of resource
demands, which Ray's monitor writes to the GCS and the dashboard serves at ``GET /api/cluster_status``
(the same on Ray 2.9-2.60; the dashboard camelCases dictionary keys, but not the resource names in
the lists read here):

- ``loadMetricsReport.resourceDemand``: ``[[bundle, count], ...]``, the bundles of actors and tasks
  waiting for resources, feasible or not;
- ``loadMetricsReport.nodeTypes``: ``[[total resources, count], ...]`` of the live nodes;
- ``autoscalerReport`` (only when an autoscaler runs): node types active, launching
  (``pendingLaunches``) and starting (``pendingNodes``).

When no node type of its config can ever fit a bundle, Ray's autoscaler says so in a cluster event,
``Error: No available node types can fulfill resource request {...}`` (``GET /api/v0/cluster_events``,
source ``AUTOSCALER``, every 30 s while the demand lasts). Without an autoscaler, a bundle no live
node could hold even when empty can never be placed. Anything else unmet is *pending*: a node is
coming, or (without an autoscaler) the cluster is full for now.

:func:`read_capacity` turns one snapshot into a :class:`Capacity` and the rest is pure; :func:`observe`
is the one function that asks the dashboard.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ci_serve.cluster.dashboard import DashboardClient

Bundle = dict[str, float]

#: resources every node has that say nothing about what a replica asked for
_INTERNAL = re.compile(r"^(node:.*|object_store_memory|objectStoreMemory|accelerator_type:.*)$")
INFEASIBLE_EVENT = re.compile(r"No available node types can fulfill resource request (\{.*?\})")
_READ_ONLY_TYPE = re.compile(r"^node_?[0-9a-f]{40,}$", re.IGNORECASE)
#: "...replica: {...}" (Ray 2.60) or "...replica:\n{...}" (Ray 2.40)
_REQUIRED_IN_MESSAGE = re.compile(r"Resources required for each replica:\s*(\{.*?\})")


@dataclass(frozen=True)
class Capacity:
    """One snapshot of the cluster's resource demands and of what its autoscaler does about them."""

    #: unmet bundles (waiting or infeasible) with how many of each
    demands: tuple[tuple[Bundle, int], ...] = ()
    #: an autoscaler runs (Ray's monitor reports on it): pending demands will get nodes when they can
    autoscaler: bool = False
    #: total resources of each live node
    nodes: tuple[Bundle, ...] = ()
    #: the autoscaler's node types that run or are starting (it reports no others)
    node_types: tuple[str, ...] = ()
    #: node types being launched or started
    launching: tuple[str, ...] = ()
    #: bundles the autoscaler said no node type can fulfil
    infeasible: tuple[Bundle, ...] = ()

    def unmet(self, bundle: Bundle) -> int:
        """How many of ``bundle`` wait for resources (0: none does)."""
        return sum(count for demand, count in self.demands if same_bundle(demand, bundle))

    def never_fits(self, bundle: Bundle) -> bool:
        """No node type can ever hold ``bundle``: the autoscaler said so, or (with no autoscaler) no
        live node could, even empty."""
        if self.autoscaler:
            return any(same_bundle(bundle, b) for b in self.infeasible)
        return bool(self.nodes) and not any(fits(bundle, total) for total in self.nodes)

    def describe_nodes(self) -> str:
        """``node types ray.head.default, ondemand; nodes {CPU: 1}, {CPU: 1, ondemand: 1}`` (each shape once)."""
        shapes = ", ".join(dict.fromkeys(show_bundle(n) for n in self.nodes)) or "none reported"
        if self.node_types:
            return f"node types {', '.join(self.node_types)}; nodes {shapes}"
        return f"nodes {shapes}"


def read_capacity(cluster_status: Any, autoscaler_messages: list[str] | None = None) -> Capacity | None:
    """A :class:`Capacity` from ``/api/cluster_status``'s ``clusterStatus`` and the autoscaler's event
    messages; None when the cluster reports no load (no monitor runs: nothing to judge by)."""
    if not isinstance(cluster_status, dict):
        return None
    load = _get(cluster_status, "loadMetricsReport", "load_metrics_report")
    if not isinstance(load, dict):
        return None
    demands = tuple((b, c) for b, c in (_pairs(_get(load, "resourceDemand", "resource_demand"))
                                        + _pairs(_get(load, "pgDemand", "pg_demand"))) if b)
    report = _get(cluster_status, "autoscalerReport", "autoscaler_report")
    active = _get(report, "activeNodes", "active_nodes") if isinstance(report, dict) else None
    names: list[str] = sorted(active) if isinstance(active, dict) else []
    # A head started without an autoscaling config runs Ray's read-only autoscaler: one "node type"
    # per live node, named node_<node id> (camelCased by the dashboard); it can launch nothing.
    autoscaler = isinstance(report, dict) and not (names and all(_READ_ONLY_TYPE.match(n) for n in names))
    launching: list[str] = []
    if not autoscaler:
        names = []
    else:
        launches = _get(report, "pendingLaunches", "pending_launches")
        launching = [f"{t} (launching)" for t, n in sorted(launches.items()) if n] if isinstance(launches, dict) else []
        for node in _get(report, "pendingNodes", "pending_nodes") or []:
            if isinstance(node, (list, tuple)) and len(node) >= 3:
                launching.append(f"{node[1]} ({node[2]})")
    nodes = tuple(total for total, _ in _pairs(_get(load, "nodeTypes", "node_types")))
    launching_types = [t.split(" (")[0] for t in launching]
    infeasible = tuple(b for b in (parse_bundle(m, INFEASIBLE_EVENT) for m in autoscaler_messages or []) if b)
    return Capacity(demands=demands, autoscaler=autoscaler, nodes=nodes,
                    node_types=tuple(dict.fromkeys([*names, *launching_types])), launching=tuple(launching),
                    infeasible=infeasible)


def observe(client: DashboardClient) -> Capacity | None:
    """The cluster's :class:`Capacity` now; None when it reports none or cannot be asked (the gate then
    judges by Serve's message). The autoscaler's events are read only when there is an unmet demand."""
    from ci_serve.errors import CiServeError

    try:
        status = client.get_cluster_status()
        capacity = read_capacity(status)
        if capacity is not None and capacity.autoscaler and capacity.demands:
            capacity = read_capacity(status, client.get_autoscaler_events())
    except CiServeError:
        return None
    return capacity


def replica_bundle(deployment: dict[str, Any]) -> Bundle | None:
    """What one replica of a deployment asks for, as Ray reports it: ``required_resources`` (newer
    Ray), else the bundle in Serve's "Resources required for each replica" message; None if neither."""
    required = deployment.get("required_resources")
    if isinstance(required, dict) and required:
        return clean(required)
    return parse_bundle(str(deployment.get("message") or ""), _REQUIRED_IN_MESSAGE)


def parse_bundle(text: str, pattern: re.Pattern[str]) -> Bundle | None:
    """The ``{...}`` a pattern captures (JSON from Serve, a Python repr from the autoscaler)."""
    found = pattern.search(text or "")
    if not found:
        return None
    raw = found.group(1)
    for parse in (json.loads, ast.literal_eval):
        try:
            value = parse(raw)
        except (ValueError, SyntaxError, TypeError):
            continue
        if isinstance(value, dict):
            return clean(value)
    return None


def clean(bundle: dict[str, Any]) -> Bundle:
    """Numbers only, zeros and node-internal resources dropped: the part that decides placement."""
    out: Bundle = {}
    for key, value in bundle.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            continue
        if _INTERNAL.match(str(key)):
            continue
        out[str(key)] = float(value)
    return out


def same_bundle(a: Bundle, b: Bundle) -> bool:
    a, b = clean(a), clean(b)
    return a.keys() == b.keys() and all(abs(a[k] - b[k]) < 1e-6 for k in a)


def fits(bundle: Bundle, total: Bundle) -> bool:
    return all(total.get(k, 0.0) + 1e-6 >= v for k, v in clean(bundle).items())


def show_bundle(bundle: Bundle) -> str:
    """``{CPU: 1, ondemand: 0.5}``."""
    items = {k: v for k, v in clean(bundle).items() if k != "memory"}  # bytes: long, and rarely the point
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in sorted(items.items())) + "}"


def _get(data: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if key in data:
            return data[key]
    return None


def _pairs(value: Any) -> list[tuple[Bundle, int]]:
    """``[[{...}, 2], ...]`` leniently."""
    out: list[tuple[Bundle, int]] = []
    for item in value if isinstance(value, list) else []:
        if isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[0], dict):
            count = item[1] if isinstance(item[1], int) and not isinstance(item[1], bool) else 1
            out.append((clean(item[0]), count))
    return out
