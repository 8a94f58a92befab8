"""The gate on a real head while an autoscaled deployment scales under live traffic: Ray reports the
deployment UPSCALING and still calls the application RUNNING, and the gate takes that as ready."""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path

import pytest
import requests

from ci_serve.cluster.address import Target
from ci_serve.cluster.dashboard import DashboardClient
from ci_serve.deploy.gate import Goal, wait_ready
from tests.conftest import REPO, ci_serve_cmd

pytestmark = pytest.mark.ray


def test_an_upscaling_deployment_under_traffic_is_ready(ray_head, cli_env, tmp_path: Path):
    marker = tmp_path / "slow-start"
    config = {"http_options": {"host": "127.0.0.1", "port": ray_head.serve_port},
              "applications": [{
                  "name": "scaler", "route_prefix": "/scaler", "import_path": "scaling_app:app",
                  "runtime_env": {"env_vars": {"SLOW_START_MARKER": str(marker)}},
                  "deployments": [{"name": "Slow", "max_ongoing_requests": 8, "autoscaling_config": {
                      "min_replicas": 1, "max_replicas": 3, "target_ongoing_requests": 1,
                      "upscale_delay_s": 0, "downscale_delay_s": 600, "look_back_period_s": 1}}]}]}
    path = tmp_path / "serve.yaml"
    path.write_text(json.dumps(config))
    report = tmp_path / "report.json"
    proc = subprocess.run(ci_serve_cmd("deploy", str(path), "--address", ray_head.dashboard_url,
                                       "--working-dir", str(REPO / "tests" / "apps" / "deploy_scaling"),
                                       "--serve-url", ray_head.serve_url, "--report", str(report)),
                          env=dict(cli_env, RAY_AUTH_TOKEN=ray_head.token), capture_output=True, text=True,
                          timeout=500)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    live = json.loads(report.read_text())["live_app"]
    client = DashboardClient(Target(ray_head.dashboard_url, ray_head.token))

    marker.touch()  # from now on a new replica hangs while starting
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            try:
                requests.get(f"{ray_head.serve_url}/scaler?sleep=1", timeout=30)
            except requests.RequestException:
                pass

    clients = [threading.Thread(target=traffic, daemon=True) for _ in range(6)]
    for thread in clients:
        thread.start()
    seen: list[str] = []

    def read() -> dict:
        snapshot = client.get_applications()
        app = snapshot["applications"][live]
        seen.append(f"{app['status']}/{app['deployments']['Slow']['status']}")
        return snapshot

    try:
        upscaling = False
        for _ in range(300):  # Ray's autoscaler decides within seconds of the load; a bounded wait
            app = client.get_applications()["applications"][live]
            if app["deployments"]["Slow"]["status"] == "UPSCALING":
                upscaling = True
                break
            stop.wait(0.3)
        assert upscaling, f"the deployment never reported UPSCALING: {app['deployments']['Slow']}"
        deployed = client.get_applications()["applications"][live]["deployed_app_config"]
        result = wait_ready(read, [Goal(live, deployed, None)], timeout=120, unschedulable_grace=60)
        print("statuses the gate saw:", seen)
        assert result.snapshot["applications"][live]["deployments"]["Slow"]["status"] == "UPSCALING"
        assert all(s == "RUNNING/UPSCALING" for s in seen[-2:]), seen
    finally:
        stop.set()
        for thread in clients:
            thread.join(timeout=40)
        # Leave the module's head empty (the only application on it is this test's).
        requests.put(ray_head.dashboard_url + "/api/serve/applications/", headers=ray_head.auth_headers(),
                     json={"applications": []}, timeout=60)

