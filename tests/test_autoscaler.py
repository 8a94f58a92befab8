"""The gate on a cluster run by Ray's real autoscaler (issue 12), with Ray's fake node provider.

The head is ``RAY_FAKE_CLUSTER=1 ray start --head --autoscaling-config=FILE`` with one CPU and an
on-demand node type (``ondemand``: 1 CPU and 1 ``ondemand`` resource, 0 to 1 nodes) that the
autoscaler starts, as a real second node on this machine, only when a demand needs it
(tests/support/clusters.py writes the config and starts and stops it by its own process session).

- A release whose replicas ask for ``ondemand`` waits (past a grace of 0 s) while the autoscaler
  launches the node, and is deployed.
- A release asking for a resource no node type has fails at once with exit 1, naming what it asked
  for and the nodes there are; the live version is untouched.

``CI_SERVE_AUTOSCALER_RAY`` (requirements text, e.g. ``ray[serve]==2.40.0 fastapi==0.115.6``) runs the
head on another Ray release (ci_serve.cluster.pyenv); Ray before 2.40 has no ``gcs_address`` option in
the fake provider (its nodes join port 6379), so 2.40 is the oldest this can run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
import requests

from ci_serve.cluster.address import Target
from ci_serve.cluster.dashboard import DashboardClient, parse_version
from tests.conftest import REPO, ci_serve_cmd
from tests.support.clusters import AutoscalingHead

pytestmark = pytest.mark.ray
APPS = REPO / "tests" / "apps"


@pytest.fixture(scope="module")
def head():
    types = {"ondemand": {"resources": {"CPU": 1, "ondemand": 1}, "min_workers": 0, "max_workers": 1}}
    ray = None
    if os.environ.get("CI_SERVE_AUTOSCALER_RAY"):
        from ci_serve.cluster.pyenv import ensure_env

        ray = ensure_env(os.environ["CI_SERVE_AUTOSCALER_RAY"].replace(" ", "\n")).ray
    with AutoscalingHead(worker_types=types, num_cpus=1, ray=ray) as h:
        yield h


@pytest.fixture(scope="module")
def client(head):
    return DashboardClient(Target(head.dashboard_url, head.token))


def write_config(tmp_path: Path, head, resources: dict[str, float]) -> Path:
    config = {"http_options": {"host": "127.0.0.1", "port": head.serve_port},
              "proxy_location": "HeadOnly",  # one proxy: the nodes share this machine's ports
              "applications": [{"name": "shop", "route_prefix": "/shop", "import_path": "deploy_app:app",
                                "deployments": [{"name": "Echo", "ray_actor_options": {
                                    "num_cpus": 0, "resources": resources}}]}]}
    path = tmp_path / "serve.yaml"
    path.write_text(json.dumps(config))
    return path


def deploy(head, cli_env, tmp_path, config: Path, working_dir: Path, *extra: str):
    report = tmp_path / f"report-{time.monotonic_ns()}.json"
    proc = subprocess.run(ci_serve_cmd("deploy", str(config), "--address", head.dashboard_url, "--working-dir",
                                       str(working_dir), "--serve-url", head.serve_url, "--report", str(report),
                                       *extra),
                          env=dict(cli_env, RAY_AUTH_TOKEN=head.token), capture_output=True, text=True, timeout=500)
    return proc, (json.loads(report.read_text()) if report.exists() else {})


def active_node_types(client) -> dict[str, int]:
    """What the autoscaler reports running (the fake provider's nodes have no dashboard agent of
    their own, so the dashboard's node list does not show them)."""
    status = client.get_cluster_status() or {}
    return (status.get("autoscalerReport") or {}).get("activeNodes") or {}


def shop_apps(client) -> dict:
    return {n: a for n, a in client.get_applications()["applications"].items() if n.startswith("shop")}


def test_a_release_needing_an_on_demand_node_waits_for_the_autoscaler(head, client, cli_env, tmp_path):
    assert "ondemand" not in active_node_types(client)  # the on-demand node does not run yet
    config = write_config(tmp_path, head, {"ondemand": 0.5})
    proc, report = deploy(head, cli_env, tmp_path, config, APPS / "deploy_v1", "--unschedulable-grace", "0")
    assert proc.returncode == 0, proc.stderr
    assert report["result"] == "deployed"
    wait = report["timings"]["gate candidate"]
    print(f"\nautoscaled deploy: gate waited {wait:.1f}s, whole deploy {report['elapsed_s']:.1f}s")
    knows_bundle = parse_version(client.get_version()) >= (2, 46)  # required_resources; older: after 30 s
    if wait > 6 and knows_bundle:  # a heartbeat (every 5 s) went out while the node was coming: it says so
        assert re.search(r"wait for the autoscaler \(ondemand \(", proc.stderr), proc.stderr
    assert active_node_types(client) == {"ray.head.default": 1, "ondemand": 1}
    assert requests.get(head.serve_url + "/shop", timeout=10).json()["version"] == "v1"
    events = client.get_autoscaler_events()
    assert any("Adding 1 node(s) of type ondemand" in e for e in events), events


def test_a_demand_no_node_type_can_meet_fails_fast_live_untouched(head, client, cli_env, tmp_path):
    before = shop_apps(client)
    assert set(before) == {"shop-blue"}, "runs after the first test"
    config = write_config(tmp_path, head, {"gpu_xl": 1})
    proc, report = deploy(head, cli_env, tmp_path, config, APPS / "deploy_v2", "--unschedulable-grace", "600")
    assert proc.returncode == 1, proc.stderr
    assert report["result"] in ("failed", "rolled-back")
    print(f"\ninfeasible release: gate failed after {report['timings']['gate candidate']:.1f}s")
    assert "each replica asks for {gpu_xl: 1}; the autoscaler reports that no node type can fulfil it" in proc.stderr
    assert "node types ondemand, ray.head.default" in proc.stderr  # what there is
    assert "--timeout" not in proc.stderr.split("ERROR", 1)[-1]  # it did not wait for the timeout
    after = shop_apps(client)
    assert set(after) == {"shop-blue"}, (proc.stderr, json.dumps(client.get_applications())[:3000])
    assert after["shop-blue"]["last_deployed_time_s"] >= before["shop-blue"]["last_deployed_time_s"]
    assert after["shop-blue"]["deployed_app_config"] == before["shop-blue"]["deployed_app_config"]
    assert requests.get(head.serve_url + "/shop", timeout=10).json()["version"] == "v1"
