"""`ci-serve plan` against a real Ray head: a config deployed, then changed in each class."""

from __future__ import annotations

import copy
import json
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from ci_serve.cluster.address import Target
from ci_serve.cluster.dashboard import DashboardClient

from .conftest import REPO, ci_serve_cmd

pytestmark = pytest.mark.ray
APPS = REPO / "tests" / "apps"

LIVE = {"applications": [{
    "name": "greet", "route_prefix": "/greet", "import_path": "graph_app:app",
    "runtime_env": {"env_vars": {"GREETING_KEY": "live-secret-1"}},
    "deployments": [{"name": "Greeter", "num_replicas": 1, "user_config": {"greeting": "hello"},
                     "ray_actor_options": {"num_cpus": 0.5}}]}]}


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    from ci_serve.cluster.head import TemporaryHead

    with TemporaryHead(num_cpus=4, cwd=APPS, extra_env={"PYTHONPATH": str(APPS)}) as head:
        client = DashboardClient(Target(head.dashboard_url, head.token))
        config = {"http_options": {"host": "127.0.0.1", "port": head.serve_port}, **copy.deepcopy(LIVE)}
        client.put_applications(config)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            app = client.get_applications()["applications"].get("greet") or {}
            if app.get("status") in ("RUNNING", "DEPLOY_FAILED"):
                break
            time.sleep(1)
        assert app.get("status") == "RUNNING", app
        yield head


def plan(head, tmp_path: Path, cli_env: dict, config: dict) -> tuple[subprocess.CompletedProcess, dict]:
    path, report = tmp_path / "serve_config.yaml", tmp_path / "plan.json"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    env = {**cli_env, "RAY_AUTH_TOKEN": head.token}
    proc = subprocess.run(ci_serve_cmd("plan", str(path), "--address", head.dashboard_url, "--app-dir", str(APPS),
                                       "--report", str(report)),
                          env=env, capture_output=True, text=True, timeout=180, cwd=REPO)
    return proc, (json.loads(report.read_text()) if report.exists() else {})


def changed(**deployment_fields) -> dict:
    config = copy.deepcopy(LIVE)
    config["applications"][0]["deployments"][0].update(deployment_fields)
    return config


def test_plan_against_a_real_head(deployed, tmp_path: Path, cli_env: dict) -> None:
    proc, report = plan(deployed, tmp_path, cli_env, LIVE)
    assert proc.returncode == 0, proc.stderr
    assert report["plan"]["verdict"] == "none" and report["result"] == "planned"
    assert "nothing to deploy" in proc.stdout

    proc, report = plan(deployed, tmp_path, cli_env, changed(user_config={"greeting": "hey"}, num_replicas=2))
    assert proc.returncode == 0, proc.stderr
    assert report["plan"]["verdict"] == "lightweight"
    greeter = report["plan"]["applications"][0]["deployments"][0]
    assert greeter["name"] == "Greeter" and [c["field"] for c in greeter["changes"]] == ["num_replicas", "user_config"]
    assert "~ num_replicas: 1 -> 2  [lightweight]" in proc.stdout

    config = changed(ray_actor_options={"num_cpus": 1})
    config["applications"][0]["runtime_env"]["env_vars"]["GREETING_KEY"] = "new-secret-2"
    proc, report = plan(deployed, tmp_path, cli_env, config)
    assert proc.returncode == 0, proc.stderr
    assert report["plan"]["verdict"] == "heavyweight"
    app = report["plan"]["applications"][0]
    assert [c["field"] for c in app["changes"]] == ["runtime_env.env_vars.GREETING_KEY"]
    assert "runtime_env.env_vars.GREETING_KEY: *** -> ***" in proc.stdout
    everything = proc.stdout + proc.stderr + json.dumps(report)
    assert "live-secret-1" not in everything and "new-secret-2" not in everything

    config = copy.deepcopy(LIVE)
    config["applications"].append({"name": "plain", "route_prefix": "/plain", "import_path": "plain_app:app"})
    proc, report = plan(deployed, tmp_path, cli_env, config)
    assert [(a["name"], a["action"]) for a in report["plan"]["applications"]] == [
        ("greet", "unchanged"), ("plain", "added")]


def test_plan_of_a_broken_config_is_exit_2(deployed, tmp_path: Path, cli_env: dict) -> None:
    config = changed(num_replica=2)
    proc, report = plan(deployed, tmp_path, cli_env, config)
    assert proc.returncode == 2
    assert "did you mean 'num_replicas'" in proc.stderr
    assert report["problems"][0]["path"] == "applications[0].deployments[0].num_replica"


def test_plan_prints_the_loaders_warnings_as_validate_does(deployed, tmp_path: Path, cli_env: dict) -> None:
    config = changed(autoscaling_config={"min_replicas": 1, "max_replicas": 2, "policy": {"name": "x:y"}})
    del config["applications"][0]["deployments"][0]["num_replicas"]
    proc, report = plan(deployed, tmp_path, cli_env, config)
    assert proc.returncode == 0, proc.stderr
    path = "applications[0].deployments[0].autoscaling_config.policy.name"
    assert [w["path"] for w in report["warnings"]] == [path]
    checked = subprocess.run(ci_serve_cmd("validate", str(tmp_path / "serve_config.yaml"), "--no-import"),
                             env=cli_env, capture_output=True, text=True, timeout=120, cwd=REPO)
    warn = next(line for line in checked.stderr.splitlines() if line.startswith("WARN"))
    assert path in warn and warn in proc.stderr.splitlines()  # the same line, word for word


def test_plan_reads_a_rayservice_manifest_like_the_config_it_holds(deployed, tmp_path: Path, cli_env: dict) -> None:
    inner = yaml.safe_dump(LIVE, sort_keys=False)
    manifest = ("# the production RayService\napiVersion: ray.io/v1\nkind: RayService\nmetadata:\n  name: greet\n"
                "spec:\n  serveConfigV2: |\n" + "".join(f"    {line}\n" for line in inner.splitlines())
                + "  rayClusterConfig:\n    headGroupSpec: {}\n")
    path, report = tmp_path / "ray-service.yaml", tmp_path / "plan.json"
    path.write_text(manifest)
    env = {**cli_env, "RAY_AUTH_TOKEN": deployed.token}
    proc = subprocess.run(ci_serve_cmd("plan", str(path), "--address", deployed.dashboard_url, "--app-dir", str(APPS),
                                       "--report", str(report)),
                          env=env, capture_output=True, text=True, timeout=180, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(report.read_text())["plan"]["verdict"] == "none"
    assert "RayService greet" in proc.stderr
    # a manifest sent to a cluster where nothing says KubeRay: warned, the plan goes on (docs/deploy.md)
    assert "is a RayService manifest, and nothing on" in proc.stderr
    assert any("undoes this deploy" in w["message"] for w in json.loads(report.read_text())["warnings"])
