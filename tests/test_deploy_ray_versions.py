"""The deploy scenarios of issue 11 against real heads of several Ray releases (tests/support/ray_versions.py).

One head per Ray version, shared by the tests of this module in file order; the tool's client is the
.venv's Ray. The order replays the Ray 2.40/2.46 loss: v1, then v2 blue-green under a constant client,
then a release that cannot import (on those releases Ray keeps reporting the live app's top-level
route_prefix as its old preview prefix). A foreign look-alike application and a route-less one are
tested on each version too. ``CI_SERVE_TEST_RAY_VERSIONS=2.9.3`` runs one version.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
import requests

from ci_serve.cluster.head import TemporaryHead
from ci_serve.cluster.packages import upload_directory
from ci_serve.deploy.cluster_config import build_body
from tests.conftest import REPO
from tests.support import ray_versions
from tests.support.deploy_cli import deploy_cli
from tests.support.processes import wait_until
from tests.support.traffic import Traffic

pytestmark = pytest.mark.ray
APPS = REPO / "tests" / "apps"


@pytest.fixture(scope="module", params=ray_versions.params())
def head(request):
    with TemporaryHead(dashboard=True, num_cpus=2, **ray_versions.head_kwargs(request.param)) as h:
        h.ray_release = request.param
        yield h


def config_file(tmp_path: Path, head, *, name: str = "shop", route_prefix: str | None = "/shop",
                greeting: str = "hi", import_path: str = "deploy_app:app", deployment: str = "Echo") -> Path:
    config = {"http_options": {"host": "127.0.0.1", "port": head.serve_port},
              "applications": [{"name": name, "route_prefix": route_prefix, "import_path": import_path,
                                "deployments": [{"name": deployment, "user_config": {"greeting": greeting}}]}]}
    path = tmp_path / f"serve-{time.monotonic_ns()}.yaml"
    path.write_text(json.dumps(config))
    return path


def deploy(head, cli_env, tmp_path, config: Path, code: str, *extra: str) -> tuple[subprocess.CompletedProcess, dict]:
    return deploy_cli(head, cli_env, tmp_path, config, "--working-dir", str(APPS / code), "--serve-url",
                      head.serve_url, *extra)


def apps(client, prefix: str = "shop") -> dict:
    return {n: a for n, a in client.get_applications()["applications"].items() if n.startswith(prefix)}


def routes(head) -> dict:
    return requests.get(head.serve_url + "/-/routes", timeout=10).json()


def answer(head, prefix: str = "/shop") -> dict:
    return requests.get(head.serve_url + prefix, timeout=10).json()


def test_first_deploy(head, client, bystander, cli_env, tmp_path):
    proc, report = deploy(head, cli_env, tmp_path, config_file(tmp_path, head), "deploy_v1", "--version", "v1")
    assert proc.returncode == 0, proc.stderr
    assert report["result"] == "deployed" and report["live_app"] == "shop-blue"
    assert answer(head) == {"version": "v1", "greeting": "hi"}
    assert set(apps(client)) == {"shop-blue"} and routes(head)["/shop"] == "shop-blue"


def test_blue_green_under_a_constant_client(head, client, bystander, cli_env, tmp_path):
    with Traffic(head.serve_url + "/shop") as load:
        load.wait_for_answers(6)  # the client's first answers
        proc, report = deploy(head, cli_env, tmp_path, config_file(tmp_path, head), "deploy_v2", "--version", "v2")
        load.wait_for_answers(6)  # answers after the deploy
    assert proc.returncode == 0, proc.stderr
    assert report["live_app"] == "shop-green" and report["strategy"] == "blue-green"
    print(f"Ray {head.ray_release}: {load.total} requests during blue-green, {len(load.failures)} failed")
    versions = load.versions()
    assert load.failures == [] and versions[0] == "v1" and versions[-1] == "v2"
    assert set(apps(client)) == {"shop-green"} and routes(head)["/shop"] == "shop-green"


def test_release_that_cannot_import_leaves_live_serving(head, client, bystander, cli_env, tmp_path):
    """The third deploy of the Ray 2.40/2.46 reproduction: live must keep its name, its route and its answers."""
    reported = client.get_applications()["applications"]["shop-green"]["route_prefix"]
    if ray_versions.has_stale_route_prefix(head.ray_release):
        assert reported == "/shop--green"  # the stale field this release is known for, still there
    proc, report = deploy(head, cli_env, tmp_path, config_file(tmp_path, head), "deploy_broken", "--version", "v3")
    assert proc.returncode == 1, proc.stderr
    assert "ModuleNotFoundError" in proc.stderr
    assert "the previous version serves: shop: shop-green serves /shop (HTTP 200)" in proc.stderr
    assert set(apps(client)) == {"shop-green"} and answer(head)["version"] == "v2"


def test_a_crashing_replica_shows_its_log_tail_read_from_the_cluster(head, client, bystander, cli_env, tmp_path):
    """The gate fails on replicas that crash in their constructor: the error's details (log, report,
    and so the Action's summary) carry the replica's own output, read through the dashboard's log API."""
    proc, report = deploy(head, cli_env, tmp_path, config_file(tmp_path, head), "deploy_crashing", "--version", "v4")
    assert proc.returncode == 1, proc.stderr
    details = "\n".join(str(e.get("details") or "") for e in report["errors"])
    if head.ray_release.startswith("2.52."):  # its log API fails every read with token auth on (logs.py)
        assert "replica logs: the dashboard's log API failed to read them (HTTP 500: " in details, details[-3000:]
        assert "UNAUTHENTICATED" in details
    else:
        assert "replica logs (last lines, from the dashboard's log API):" in details, details[-3000:]
        assert "replica constructor says: loading /models/weights.bin" in details
        assert "replica constructor says: loading /models/weights.bin" in proc.stderr
    assert head.token not in details + proc.stderr
    assert set(apps(client)) == {"shop-green"} and answer(head)["version"] == "v2"


def test_unchanged_redeploy_checks_live_and_writes_nothing(head, client, bystander, cli_env, tmp_path):
    before = apps(client)["shop-green"]["last_deployed_time_s"]
    proc, report = deploy(head, cli_env, tmp_path, config_file(tmp_path, head), "deploy_v2", "--version", "v2b")
    assert proc.returncode == 0, proc.stderr
    assert report["result"] == "unchanged"
    assert "shop-green serves /shop" in proc.stderr
    assert apps(client)["shop-green"]["last_deployed_time_s"] == before


def test_in_place_user_config_change(head, client, bystander, cli_env, tmp_path):
    ids = {r["replica_id"] for d in apps(client)["shop-green"]["deployments"].values() for r in d["replicas"]}
    proc, report = deploy(head, cli_env, tmp_path, config_file(tmp_path, head, greeting="bonjour"), "deploy_v2")
    assert proc.returncode == 0, proc.stderr
    assert report["strategy"] == "in-place"
    assert answer(head) == {"version": "v2", "greeting": "bonjour"}
    now = {r["replica_id"] for d in apps(client)["shop-green"]["deployments"].values() for r in d["replicas"]}
    assert now == ids  # reconfigured, not restarted


def test_release_whose_checks_fail_leaves_live_serving(head, client, bystander, cli_env, tmp_path):
    reqs = tmp_path / "requests.yaml"
    reqs.write_text("requests:\n  - name: is v9\n    expect: {json: {version: v9}}\n")
    proc, report = deploy(head, cli_env, tmp_path, config_file(tmp_path, head, greeting="bonjour"), "deploy_v1",
                          "--requests", str(reqs))
    assert proc.returncode == 1, proc.stderr
    assert "the previous version serves: shop: shop-green serves /shop (HTTP 200)" in proc.stderr
    assert set(apps(client)) == {"shop-green"} and answer(head) == {"version": "v2", "greeting": "bonjour"}


def test_look_alike_foreign_app_is_never_touched(head, client, bystander, cli_env, tmp_path):
    """Another team's `shop-blue` at /payments: our next candidate would need its name. Exit 2, nothing written."""
    uri, _ = upload_directory(client, APPS / "deploy_v1")
    client.put_applications(build_body(client.get_applications(), put={"shop-blue": {
        "route_prefix": "/payments", "import_path": "deploy_app:app", "runtime_env": {"working_dir": uri}}}))
    wait_until(lambda: (apps(client).get("shop-blue") or {}).get("status") == "RUNNING", 180,
               "foreign shop-blue RUNNING")
    foreign = apps(client)["shop-blue"]["deployed_app_config"]
    proc, report = deploy(head, cli_env, tmp_path, config_file(tmp_path, head, greeting="bonjour"), "deploy_v1")
    assert proc.returncode == 2, proc.stderr
    assert "application shop-blue on the cluster is not ours" in proc.stderr
    assert not any(s["name"].startswith(("write", "switch", "remove")) for s in report["steps"])
    assert apps(client)["shop-blue"]["deployed_app_config"] == foreign
    assert answer(head, "/payments")["version"] == "v1" and answer(head)["version"] == "v2"
    client.put_applications(build_body(client.get_applications(), remove={"shop-blue"}))
    wait_until(lambda: "shop-blue" not in apps(client), 180, "foreign shop-blue removed")


def test_route_less_app_is_updated_in_place_never_exposed(head, client, bystander, cli_env, tmp_path):
    proc, report = deploy(head, cli_env, tmp_path, config_file(tmp_path, head, name="model", route_prefix=None),
                          "deploy_v1")
    assert proc.returncode == 0, proc.stderr
    assert report["strategy"] == "in-place" and set(apps(client, "model")) == {"model"}
    assert "model" not in routes(head).values()
    proc, report = deploy(head, cli_env, tmp_path, config_file(tmp_path, head, name="model", route_prefix=None),
                          "deploy_v2")  # new code: heavyweight, still in place under its name
    assert proc.returncode == 0, proc.stderr
    assert report["strategy"] == "in-place" and set(apps(client, "model")) == {"model"}
    assert "model" not in routes(head).values()
    proc, _ = deploy(head, cli_env, tmp_path, config_file(tmp_path, head, name="model", route_prefix=None),
                     "deploy_v1", "--strategy", "blue-green")
    assert proc.returncode == 2 and "route_prefix: null" in proc.stderr, proc.stderr


def test_a_config_only_newer_releases_accept_is_refused_with_nothing_written(head, client, bystander, cli_env,
                                                                             tmp_path):
    """Issue 25: deploy validates for the cluster's Ray (its /api/version). Ray 2.9.3 would take
    max_ongoing_requests and silently drop it; the deploy is exit 2 at the key's line, nothing written."""
    if head.ray_release != "2.9.3":
        pytest.skip("max_ongoing_requests is known from Ray 2.10 on")
    before = client.get_applications()["applications"]
    config = tmp_path / "serve_config.yaml"
    config.write_text(f"http_options: {{host: 127.0.0.1, port: {head.serve_port}}}\napplications:\n"
                      "  - name: limited\n    route_prefix: /limited\n    import_path: deploy_app:app\n"
                      "    deployments:\n      - name: Echo\n        max_ongoing_requests: 3\n")
    proc, report = deploy(head, cli_env, tmp_path, config, "deploy_v1")
    assert proc.returncode == 2, proc.stderr
    assert "rules of Ray 2.9 for Ray 2.9.3 (the cluster's, from /api/version)" in proc.stderr
    assert f"{config}:8:9: applications[0].deployments[0].max_ongoing_requests: key 'max_ongoing_requests' is " \
           "not known to Ray 2.9 (added in Ray 2.10)" in proc.stderr
    assert "write `max_concurrent_queries`" in proc.stderr
    assert [s["name"] for s in report["steps"]] == [f"validate {config}"]
    assert report["problems"][0]["line"] == 8
    after = client.get_applications()["applications"]
    assert {n: a["deployed_app_config"] for n, a in after.items()} == \
        {n: a["deployed_app_config"] for n, a in before.items()}


def test_bystander_untouched(client, bystander):
    now = client.get_applications()["applications"]["bystander"]
    assert now["status"] == "RUNNING" and now["deployed_app_config"] == bystander["deployed_app_config"]
