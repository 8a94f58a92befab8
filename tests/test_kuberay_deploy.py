"""`deploy` and `plan` against a cluster that KubeRay runs (ci_serve.deploy.stage.operator_check).

The refusal runs against one real head started with the two variables KubeRay's Downward API gives a head
Pod (RAY_CLOUD_INSTANCE_ID = the Pod's name, RAY_NODE_TYPE_NAME = its group), named as KubeRay 1.0-1.3 name
the cluster of a RayService "shop": the raylet reports them in ``/nodes?view=summary`` as a real KubeRay head
does. The warnings are decided on answers in that measured shape (tests/test_kuberay_detection.py), through
a stand-in client: no Kubernetes here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ci_serve.cluster.address import Target
from ci_serve.cluster.dashboard import DashboardClient
from ci_serve.cluster.head import TemporaryHead
from ci_serve.config.loader import load_config
from ci_serve.deploy.stage import operator_check
from ci_serve.errors import InputError
from ci_serve.steps import StepLog
from tests.support.deploy_cli import deploy_cli, run_cli
from tests.test_kuberay_detection import NEW_POD, node, serve, summary

POD = "shop-raycluster-x2b4z-head-q7k9m"  # KubeRay 1.0-1.3: <rayservice>-raycluster-<5>-head-<5>


@pytest.fixture(scope="module")
def kuberay_head() -> Iterator[TemporaryHead]:
    with TemporaryHead(dashboard=True, num_cpus=1, lean=True,
                       extra_env={"RAY_CLOUD_INSTANCE_ID": POD, "RAY_NODE_TYPE_NAME": "headgroup"}) as head:
        yield head


def plain_config(tmp_path: Path) -> Path:
    path = tmp_path / "serve.yaml"
    path.write_text(json.dumps({"applications": [{"name": "shop", "route_prefix": "/shop",
                                                  "import_path": "deploy_app:app"}]}))
    return path


MANIFEST = """\
apiVersion: ray.io/v1
kind: RayService
metadata:
  name: shop
spec:
  serveConfigV2: |
    applications:
      - name: shop
        route_prefix: /shop
        import_path: deploy_app:app
        runtime_env:
          working_dir: "https://example.com/shop.zip"
"""


@pytest.mark.ray
def test_deploy_and_plan_refuse_a_rayservice_cluster(kuberay_head, cli_env, tmp_path):
    client = DashboardClient(Target(kuberay_head.dashboard_url, kuberay_head.token), min_interval=0.0)
    before = client.get_applications()["applications"]
    config = plain_config(tmp_path)
    proc, report = deploy_cli(kuberay_head, cli_env, tmp_path, config)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "RayService (or RayJob) 'shop'" in out and POD in out and "headgroup" in out, out
    assert "build --rayservice" in out and "kubectl" in out, out
    assert report["result"] == "error"
    assert client.get_applications()["applications"] == before  # nothing written

    proc, _ = run_cli(cli_env, kuberay_head.token, tmp_path, "plan", str(config), "--address",
                      kuberay_head.dashboard_url)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2 and "RayService (or RayJob) 'shop'" in out, out
    assert client.get_applications()["applications"] == before


class Answers:
    """The two reads operator_check makes, answered as a real head answers them."""

    address = "http://10.0.0.5:8265"

    def __init__(self, serve_details: dict[str, Any] | None, nodes: dict[str, Any] | None):
        self.serve_details, self.nodes = serve_details, nodes

    def get_applications(self) -> dict[str, Any]:
        return self.serve_details or {"applications": {}}

    def get_node_summary(self) -> dict[str, Any] | None:
        return self.nodes


def check(tmp_path: Path, answers: Answers, *, manifest: bool = False) -> list[dict[str, Any]]:
    path = tmp_path / ("rayservice.yaml" if manifest else "serve.yaml")
    if manifest:
        path.write_text(MANIFEST)
    else:
        plain_config(tmp_path)
    return operator_check(answers, load_config(path), StepLog())  # type: ignore[arg-type]


def test_probable_rayservice_is_a_warning_with_the_evidence(tmp_path):
    found = check(tmp_path, Answers(serve(NEW_POD), summary(node(NEW_POD, instance=NEW_POD, group="headgroup"))))
    assert len(found) == 1 and found[0]["severity"] == "warning"
    assert "probably created by KubeRay" in found[0]["message"] and NEW_POD in found[0]["message"]
    assert "re-applies" in found[0]["message"] and "build --rayservice" in found[0]["hint"]


def test_kuberay_raycluster_of_its_own_is_a_warning(tmp_path):
    pod = "raycluster-kuberay-head-x7k2p"
    found = check(tmp_path, Answers(None, summary(node(pod, instance=pod, group="headgroup"))))
    assert len(found) == 1 and "a KubeRay RayCluster" in found[0]["message"]


def test_manifest_to_an_unrecognised_cluster_is_a_warning(tmp_path):
    found = check(tmp_path, Answers(None, None), manifest=True)  # e.g. /nodes hidden by a proxy
    assert len(found) == 1 and "is a RayService manifest" in found[0]["message"]


def test_plain_config_to_an_unrecognised_cluster_says_nothing(tmp_path):
    assert check(tmp_path, Answers(serve(""), summary(node("runner-12ab")))) == []


def test_certain_owner_is_refused(tmp_path):
    with pytest.raises(InputError) as info:
        check(tmp_path, Answers(None, summary(node(POD, instance=POD, group="headgroup"))))
    assert "'shop'" in info.value.message and "kubectl" in (info.value.hint or "")
