"""Is this Ray cluster run by the KubeRay operator, and created for a RayService? Read from the dashboard alone.

A pure decision over the parsed answers of ``GET /api/serve/applications/`` and ``GET /nodes?view=summary``
(the caller fetches them; either may be missing). What it relies on, from KubeRay's and Ray's source, the
node fields measured on real Ray 2.60.0 and 2.9.3 heads started with KubeRay's two variables:

- KubeRay (1.1 on) sets ``RAY_CLOUD_INSTANCE_ID`` to the Pod's name and ``RAY_NODE_TYPE_NAME`` to its group
  (``headgroup`` on the head) in every Ray container (``ray-operator/controllers/ray/common/pod.go``).
  Ray's raylet records both in the node's ``GcsNodeInfo`` (``instance_id``, ``node_type_name``), which the
  node summary shows as ``raylet.instanceId`` and ``raylet.nodeTypeName``; Ray 2.52 on also show the first
  as ``controller_info.node_instance_id`` in the Serve details, and Ray with default node labels (about 2.48
  on) labels the head ``ray.io/node-group: headgroup``. The summary's ``hostname`` is the Pod's name too, once
  the node's reporter has reported (it was null right after a 2.9.3 head started).
- The head Pod is named ``<raycluster>-head-<5 random>`` (or ``<raycluster>-head`` with KubeRay 1.5's
  deterministic head names). A RayService (and a RayJob) names its RayCluster ``<name>-raycluster-<5>``
  (KubeRay 1.0-1.3) or ``<name>-<5>`` (1.4 on); the 5 characters come from Kubernetes' random alphabet,
  which has no vowels and no 0, 1, 3.

What it cannot tell: a RayService's cluster from a RayJob's (both named by ``GenerateRayClusterName``), nor,
on KubeRay 1.4 on, from a RayCluster someone named ``<word>-<5 such characters>`` by hand.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: KubeRay's value of the ``ray.io/group`` label (and so of RAY_NODE_TYPE_NAME) on a head Pod
HEAD_GROUP = "headgroup"
#: k8s.io/apimachinery/pkg/util/rand: the alphabet of generated name suffixes (no vowels, no 0/1/3)
_RAND = "[bcdfghjklmnpqrstvwxz2456789]"
_HEAD_POD = re.compile(rf"^(?P<cluster>[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)-head(?:-{_RAND}{{5}})?$")
_OWNED_OLD = re.compile(rf"^(?P<owner>.+)-raycluster-{_RAND}{{5}}$")  # KubeRay 1.0-1.3
_OWNED_NEW = re.compile(rf"^(?P<owner>.+)-{_RAND}{{5}}$")  # KubeRay 1.4 on


@dataclass(frozen=True)
class KubeRayEvidence:
    """What the dashboard says about the operator behind the cluster."""

    #: the head Pod's name, and the RayCluster's derived from it
    pod: str
    cluster: str
    #: the RayService (or RayJob) the cluster was created for, when its name is one KubeRay generates
    owner: str | None
    #: False when only the 1.4-on name shape says so, which a hand-named RayCluster can also have
    owner_certain: bool
    #: each fact seen, as ``source: field = value``
    signals: tuple[str, ...]

    @property
    def operator_owned(self) -> bool:
        """The cluster was created by a KubeRay RayService or RayJob, whose operator re-applies its own config."""
        return self.owner is not None

    def describe(self) -> str:
        who = (f"created by KubeRay for the RayService (or RayJob) {self.owner!r}" if self.owner_certain else
               f"probably created by KubeRay for a RayService (or RayJob) {self.owner!r}") if self.owner else \
            "a KubeRay RayCluster"
        return f"cluster {self.cluster!r} (head Pod {self.pod!r}) is {who}; seen: {'; '.join(self.signals)}"


def detect_kuberay(serve_details: Mapping[str, Any] | None,
                   node_summary: Mapping[str, Any] | None) -> KubeRayEvidence | None:
    """The evidence that KubeRay runs the cluster, or None when the answers show none.

    ``serve_details``: the JSON of ``GET /api/serve/applications/``; ``node_summary``: the JSON of
    ``GET /nodes?view=summary`` (``{"data": {"summary": [...]}}``). KubeRay is recognised by its head group
    (``headgroup``) together with a head Pod name; a head Pod name alone counts only in the shape KubeRay
    1.0-1.3 gave RayService and RayJob clusters (``<name>-raycluster-<5>-head-<5>``)."""
    signals: list[str] = []
    pods: list[str] = []
    head_group = False
    for node in _heads(node_summary):
        raylet = _mapping(node.get("raylet"))
        labels = _mapping(raylet.get("labels"))
        for source, value in (("raylet.nodeTypeName", raylet.get("nodeTypeName")),
                              ("raylet.labels[ray.io/node-group]", labels.get("ray.io/node-group"))):
            if value == HEAD_GROUP:
                head_group = True
                signals.append(f"/nodes?view=summary: head {source} = {value!r}")
        for source, value in (("raylet.instanceId", raylet.get("instanceId")), ("hostname", node.get("hostname"))):
            if isinstance(value, str) and _HEAD_POD.match(value):
                pods.append(value)
                signals.append(f"/nodes?view=summary: head {source} = {value!r}")
    controller = serve_details.get("controller_info") if isinstance(serve_details, Mapping) else None
    if isinstance(controller, Mapping):
        value = controller.get("node_instance_id")
        if isinstance(value, str) and _HEAD_POD.match(value):
            pods.append(value)
            signals.append(f"/api/serve/applications/: controller_info.node_instance_id = {value!r}")
    if not pods:
        return None
    pod = pods[0]
    matched = _HEAD_POD.match(pod)
    assert matched is not None  # every name in pods matched it
    cluster = matched.group("cluster")
    old = _OWNED_OLD.match(cluster)
    if not head_group and not old:
        return None  # a host named like a head Pod, and nothing else: not enough
    new = None if old else _OWNED_NEW.match(cluster)
    owner = old.group("owner") if old else new.group("owner") if new else None
    return KubeRayEvidence(pod=pod, cluster=cluster, owner=owner, owner_certain=bool(old),
                           signals=tuple(dict.fromkeys(signals)))


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _heads(node_summary: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    data = node_summary.get("data") if isinstance(node_summary, Mapping) else None
    summary = data.get("summary") if isinstance(data, Mapping) else None
    if not isinstance(summary, list):
        return []
    nodes = [n for n in summary if isinstance(n, Mapping)]
    heads = [n for n in nodes if isinstance(n.get("raylet"), Mapping) and n["raylet"].get("isHeadNode")]
    if not heads and len(nodes) == 1:  # a one-node cluster whose summary lacks isHeadNode
        return nodes
    return heads
