"""What the config checks claim about Ray, checked against a real Ray head (Ray 2.60 here):
a module name with a hyphen imports; `autoscaling_config.policy.name` is accepted and ignored (the
default policy runs); a string `policy` passes Ray's schema and the Serve controller refuses it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from ci_serve.cluster.address import Target
from ci_serve.cluster.dashboard import DashboardClient, SchemaRejected
from ci_serve.config import validate_config

from .conftest import REPO

APPS = REPO / "tests" / "apps"
DEFAULT_POLICY = "ray.serve.autoscaling_policy:default_autoscaling_policy"

pytestmark = pytest.mark.ray


def wait_for(client: DashboardClient, name: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    app: dict = {}
    while time.monotonic() < deadline:
        app = client.get_applications()["applications"].get(name) or {}
        if app.get("status") in ("RUNNING", "DEPLOY_FAILED"):
            return app
        time.sleep(0.5)
    raise AssertionError(f"{name} did not settle: {app.get('status')} {app.get('message')}")


def test_claims_about_ray_hold_on_a_real_head(tmp_path: Path, make_head) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "whisperx-deployment.py").write_text((APPS / "plain_app.py").read_text())
    head = make_head(num_cpus=4, cwd=code, extra_env={"PYTHONPATH": f"{code}:{APPS}"})
    client = DashboardClient(Target(head.dashboard_url, head.token))
    auto = {"min_replicas": 1, "max_replicas": 2}
    config = {
        "http_options": {"host": "127.0.0.1", "port": head.serve_port},
        "applications": [
            {"name": "hyphen", "route_prefix": "/hyphen", "import_path": "whisperx-deployment:app"},
            {"name": "policy_name", "route_prefix": "/policy_name", "import_path": "plain_app:app",
             "deployments": [{"name": "Plain", "autoscaling_config": {**auto, "policy": {"name": "plain_app.x"}}}]},
            {"name": "policy_string", "route_prefix": "/policy_string", "import_path": "plain_app:app",
             "deployments": [{"name": "Plain", "autoscaling_config": {**auto, "policy": "plain_app:x"}}]},
        ]}
    path = tmp_path / "serve_config.yaml"
    import yaml

    path.write_text(yaml.safe_dump(config))
    checked = validate_config(path, check_imports=False)
    assert [(p.path, p.severity) for p in checked.problems] == [
        ("applications[2].deployments[0].autoscaling_config.policy", "error")]
    assert [p.path for p in checked.warnings] == ["applications[1].deployments[0].autoscaling_config.policy.name"]

    string_policy = config["applications"].pop()
    client.put_applications(config)  # Ray takes the hyphenated module and the ignored key
    assert wait_for(client, "hyphen")["status"] == "RUNNING"  # the importer found whisperx-deployment.py
    named = wait_for(client, "policy_name")
    assert named["status"] == "RUNNING"
    policy = named["deployments"]["Plain"]["deployment_config"]["autoscaling_config"]["policy"]
    assert policy["policy_function"] == DEFAULT_POLICY and "name" not in policy  # ignored: the default runs

    from ray.serve.schema import ServeDeploySchema

    config["applications"].append(string_policy)
    ServeDeploySchema.model_validate(config)  # Ray's schema takes a string policy ...
    with pytest.raises(SchemaRejected) as refused:  # ... and the Serve controller refuses it
        client.put_applications(config)
    # with a raw traceback of the controller: ServeController.apply_config ... 'str' object has no attribute 'get'
    assert "apply_config" in (refused.value.details or "") and "'str'" in refused.value.details
    # the 400 is not "nothing changed" (seen on 2.60): the controller has already recorded the refused
    # application and every application of the PUT is DEPLOYING again. ci-serve refuses the file before any PUT.
    apps = client.get_applications()["applications"]
    assert "policy_string" in apps, apps
    assert wait_for(client, "hyphen")["status"] == wait_for(client, "policy_name")["status"] == "RUNNING"
