"""ci_serve.cluster.kuberay.detect_kuberay: named table cases over dashboard answers shaped as Ray returns them.

There is no Kubernetes here, so the answers are built by hand, in the shape a real head gives: a head started
with KubeRay's two variables (RAY_CLOUD_INSTANCE_ID, RAY_NODE_TYPE_NAME) answers ``/nodes?view=summary`` with
``raylet.instanceId`` / ``raylet.nodeTypeName`` set to them, and 2.60 also labels it ``ray.io/node-group``
(measured on Ray 2.60.0 and 2.9.3 heads); Pod names follow KubeRay's own generators (GenerateRayClusterName,
PodName in ray-operator/controllers/ray/utils/util.go).
"""

from __future__ import annotations

from typing import Any

import pytest

from ci_serve.cluster.kuberay import detect_kuberay


def summary(*nodes: dict[str, Any]) -> dict[str, Any]:
    return {"result": True, "msg": "Node summary fetched.", "data": {"summary": list(nodes)}}


def node(hostname: str, *, head: bool = True, instance: str = "", group: str = "",
         labels: dict[str, str] | None = None) -> dict[str, Any]:
    raylet = {"nodeId": "a" * 56, "nodeManagerHostname": hostname, "isHeadNode": head, "state": "ALIVE",
              "instanceId": instance, "nodeTypeName": group, "labels": {"ray.io/node-id": "a" * 56, **(labels or {})}}
    return {"hostname": hostname, "ip": "10.0.0.5", "raylet": raylet}


def serve(instance: str | None) -> dict[str, Any]:
    controller = {"node_id": "a" * 56, "node_ip": "10.0.0.5", "actor_name": "SERVE_CONTROLLER_ACTOR"}
    if instance is not None:  # Ray 2.52 on
        controller["node_instance_id"] = instance
    return {"controller_info": controller, "applications": {}, "proxy_location": "EveryNode"}


NEW_POD = "rayservice-sample-x7k2p-head-bq9zt"  # KubeRay 1.4 on: <service>-<5>, then -head-<5>
OLD_POD = "rayservice-sample-raycluster-2xq5n-head-d8w4v"  # KubeRay 1.0-1.3: <service>-raycluster-<5>

CASES = {
    # name: (serve details, node summary, expected (cluster, owner, owner_certain) or None)
    "kuberay-1.5-rayservice-on-ray-2.60": (
        serve(NEW_POD), summary(node(NEW_POD, instance=NEW_POD, group="headgroup",
                                     labels={"ray.io/node-group": "headgroup"})),
        ("rayservice-sample-x7k2p", "rayservice-sample", False)),
    "kuberay-1.2-rayservice-on-ray-2.9": (
        {"controller_info": {"node_id": "a" * 56}, "applications": {}},
        summary(node(OLD_POD, instance=OLD_POD, group="headgroup")),
        ("rayservice-sample-raycluster-2xq5n", "rayservice-sample", True)),
    "kuberay-1.0-no-variables-old-name-shape": (
        None, summary(node(OLD_POD)), ("rayservice-sample-raycluster-2xq5n", "rayservice-sample", True)),
    "kuberay-deterministic-head-name": (
        serve("my-svc-x7k2p-head"), summary(node("my-svc-x7k2p-head", instance="my-svc-x7k2p-head", group="headgroup")),
        ("my-svc-x7k2p", "my-svc", False)),
    "kuberay-raycluster-of-its-own": (
        serve("raycluster-kuberay-head-x7k2p"),
        summary(node("raycluster-kuberay-head-x7k2p", instance="raycluster-kuberay-head-x7k2p", group="headgroup")),
        ("raycluster-kuberay", None, False)),
    "hand-named-raycluster-looks-generated": (  # the ambiguity: reported, but not as certain
        None, summary(node("ml-bcdfg-head-x7k2p", instance="ml-bcdfg-head-x7k2p", group="headgroup")),
        ("ml-bcdfg", "ml", False)),
    "head-listed-after-a-worker": (
        None, summary(node("rayservice-sample-x7k2p-small-group-worker-qq2zn", head=False,
                           instance="rayservice-sample-x7k2p-small-group-worker-qq2zn", group="small-group"),
                      node(NEW_POD, instance=NEW_POD, group="headgroup")),
        ("rayservice-sample-x7k2p", "rayservice-sample", False)),
    "label-only-no-node-type": (
        None, summary(node(NEW_POD, labels={"ray.io/node-group": "headgroup"})),
        ("rayservice-sample-x7k2p", "rayservice-sample", False)),
    "local-head": (serve(""), summary(node("runner-12ab")), None),
    "vm-cluster-autoscaler-v2": (
        None, summary(node("ip-10-0-0-5", instance="i-0abc1234def567890", group="ray.head.default")), None),
    "head-pod-shaped-hostname-alone": (None, summary(node(NEW_POD)), None),
    "serve-details-alone-new-shape": (serve(NEW_POD), None, None),
    "headgroup-without-a-pod-name": (None, summary(node("my-laptop", instance="", group="headgroup")), None),
    "no-answers": (None, None, None),
    "malformed-answers": ({"controller_info": "x"}, {"data": {"summary": "x"}}, None),
}


@pytest.mark.parametrize("name", list(CASES))
def test_detect_kuberay(name: str) -> None:
    details, nodes, expected = CASES[name]
    found = detect_kuberay(details, nodes)
    if expected is None:
        assert found is None
        return
    assert found is not None
    assert (found.cluster, found.owner, found.owner_certain) == expected
    assert found.operator_owned == (expected[1] is not None)
    assert found.signals and found.cluster in found.describe()


def test_the_evidence_names_each_fact_and_where_it_was_seen() -> None:
    found = detect_kuberay(serve(NEW_POD), summary(node(NEW_POD, instance=NEW_POD, group="headgroup")))
    assert found is not None
    assert found.signals == (
        "/nodes?view=summary: head raylet.nodeTypeName = 'headgroup'",
        f"/nodes?view=summary: head raylet.instanceId = '{NEW_POD}'",
        f"/nodes?view=summary: head hostname = '{NEW_POD}'",
        f"/api/serve/applications/: controller_info.node_instance_id = '{NEW_POD}'",
    )
    assert "probably created by KubeRay for a RayService (or RayJob) 'rayservice-sample'" in found.describe()
