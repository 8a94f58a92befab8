"""Deploys under faults: a dashboard behind a proxy that fails 30% of requests, and cancellation.

Most tests start from ``cart-green`` live at /cart answering v2 (the ``live_v2`` fixture makes it so),
so each can run alone or in any order.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time

import pytest
import requests

from ci_serve.cluster.address import Target
from ci_serve.cluster.dashboard import DashboardClient
from ci_serve.deploy.cluster_config import build_body
from tests.conftest import REPO, ci_serve_cmd
from tests.support.dashboard_proxy import DashboardProxy, dead_address
from tests.support.processes import interrupt, wait_until

pytestmark = pytest.mark.ray
APPS = REPO / "tests" / "apps"


def config_file(tmp_path, head, **deployment):
    config = {"http_options": {"host": "127.0.0.1", "port": head.serve_port},
              "applications": [{"name": "cart", "route_prefix": "/cart", "import_path": "deploy_app:app",
                                "deployments": [{"name": "Echo", **deployment}]}]}
    path = tmp_path / "serve.yaml"
    path.write_text(json.dumps(config))
    return path


def cart_apps(head):
    client = DashboardClient(Target(head.dashboard_url, head.token))
    return {n: a for n, a in client.get_applications()["applications"].items() if n.startswith("cart")}


def deploy(head, cli_env, config, version: str, *extra: str, address: str | None = None):
    return subprocess.run(ci_serve_cmd("deploy", str(config), "--address", address or head.dashboard_url,
                                       "--working-dir", str(APPS / version), "--serve-url", head.serve_url, *extra),
                          env=dict(cli_env, RAY_AUTH_TOKEN=head.token), capture_output=True, text=True, timeout=400)


def serves_v2_from_green(head) -> bool:
    if set(cart_apps(head)) != {"cart-green"}:
        return False
    try:
        return requests.get(head.serve_url + "/cart", timeout=10).json()["version"] == "v2"
    except (requests.RequestException, ValueError, KeyError):
        return False


@pytest.fixture
def live_v2(head, cli_env, tmp_path_factory):
    """``cart-green`` live at /cart answering v2, whatever an earlier test left: from no cart application,
    v1 goes to cart-blue and v2 to cart-green."""
    if serves_v2_from_green(head):
        return
    if cart_apps(head):
        client = DashboardClient(Target(head.dashboard_url, head.token))
        client.put_applications(build_body(client.get_applications(), remove=set(cart_apps(head))))
        wait_until(lambda: not cart_apps(head), 120, "the cart applications removed")
    config = config_file(tmp_path_factory.mktemp("live"), head)
    for version in ("deploy_v1", "deploy_v2"):
        proc = deploy(head, cli_env, config, version)
        assert proc.returncode == 0, proc.stderr
    assert serves_v2_from_green(head), cart_apps(head)


def test_blue_green_through_a_proxy_failing_30_percent(head, live_v2, cli_env, tmp_path):
    config = config_file(tmp_path, head)
    with DashboardProxy(head.dashboard_url, fail_ratio=0.3, modes=("503", "drop", "drop-after")) as proxy:
        for version in ("deploy_v1", "deploy_v2"):
            proc = deploy(head, cli_env, config, version, address=proxy.url)
            assert proc.returncode == 0, proc.stderr
    assert sum(proxy.counts[k] for k in ("503", "drop", "drop-after")) > 0
    assert set(cart_apps(head)) == {"cart-green"}
    assert requests.get(head.serve_url + "/cart", timeout=10).json()["version"] == "v2"


def test_wrong_answer_on_the_preview_prefix_removes_the_candidate(head, live_v2, cli_env, tmp_path):
    config = config_file(tmp_path, head)
    reqs = tmp_path / "requests.yaml"
    reqs.write_text("requests:\n  - name: is v9\n    expect: {json: {version: v9, greeting: hello}}\n")
    report = tmp_path / "report.json"
    proc = subprocess.run(ci_serve_cmd("deploy", str(config), "--address", head.dashboard_url, "--working-dir",
                                       str(APPS / "deploy_v1"), "--requests", str(reqs), "--report", str(report)),
                          env=dict(cli_env, RAY_AUTH_TOKEN=head.token), capture_output=True, text=True, timeout=400)
    assert proc.returncode == 1, proc.stderr
    data = json.loads(report.read_text())
    assert data["result"] == "rolled-back"
    assert data["requests"][0]["passed"] is False and "/cart--blue/" in data["requests"][0]["path"]
    assert "undone: remove cart-blue" in proc.stderr
    assert "the previous version serves: cart: cart-green serves /cart (HTTP 200)" in proc.stderr
    assert set(cart_apps(head)) == {"cart-green"}
    assert requests.get(head.serve_url + "/cart", timeout=10).json()["version"] == "v2"


def test_failed_check_after_the_switch_swaps_back(head, live_v2, cli_env, tmp_path):
    config = config_file(tmp_path, head)
    report = tmp_path / "report.json"
    proc = subprocess.run(ci_serve_cmd("deploy", str(config), "--address", head.dashboard_url, "--working-dir",
                                       str(APPS / "deploy_switchfail"), "--report", str(report)),
                          env=dict(cli_env, RAY_AUTH_TOKEN=head.token), capture_output=True, text=True, timeout=400)
    assert proc.returncode == 1, proc.stderr
    data = json.loads(report.read_text())
    steps = [s["name"] for s in data["steps"]]
    assert "switch" in steps and "restore previous" in steps and "remove old" not in steps
    assert data["result"] == "rolled-back"
    assert "the previous version serves: cart: cart-green serves /cart (HTTP 200)" in proc.stderr
    assert set(cart_apps(head)) == {"cart-green"}
    assert cart_apps(head)["cart-green"]["route_prefix"] == "/cart"
    assert requests.get(head.serve_url + "/cart", timeout=10).json()["version"] == "v2"


def test_sigint_during_the_gate_removes_the_candidate(head, live_v2, cli_env, tmp_path):
    proc, report, seen = start_waiting_deploy(head, cli_env, tmp_path)
    took = interrupt(proc)  # the runner's cancel: it must finish its cleanup before the runner ends it
    _, rest = proc.communicate(timeout=60)
    print(f"exited {took:.1f} s after SIGINT")
    assert proc.returncode == 1, seen + rest
    assert "cancelled by SIGINT" in rest
    # the removal was written before exit; Ray may still be carrying it out
    wait_until(lambda: set(cart_apps(head)) == {"cart-green"}, 120, "the candidate removed")
    assert serves_v2_from_green(head)  # the live version untouched
    data = json.loads(report.read_text())
    assert data["exit_code"] == 1 and data["errors"][0]["type"] == "Cancelled"


def test_someone_elses_write_meanwhile_stops_the_deploy_without_writing(head, live_v2, cli_env, tmp_path):
    code = tmp_path / "code"
    shutil.copytree(APPS / "deploy_v1", code)
    (code / "unique.bin").write_bytes(os.urandom(1024))  # a package the cluster has not seen: it is uploaded
    config = config_file(tmp_path, head, user_config={"greeting": "race"})
    with DashboardProxy(head.dashboard_url) as proxy:
        proxy.hold("PUT", "/api/packages/")  # the deploy has read the cluster and ships its code
        proc = subprocess.Popen(ci_serve_cmd("deploy", str(config), "--address", proxy.url, "--working-dir",
                                             str(code), "--serve-url", head.serve_url),
                                env=dict(cli_env, RAY_AUTH_TOKEN=head.token), stderr=subprocess.PIPE, text=True)
        wait_until(lambda: proxy.held.is_set() or proc.poll() is not None, 300, "the package upload")
        assert proc.poll() is None, proc.communicate()[1]
        client = DashboardClient(Target(head.dashboard_url, head.token))
        snapshot = client.get_applications()
        intruder = dict(snapshot["applications"]["cart-green"]["deployed_app_config"], route_prefix="/intruder")
        client.put_applications(build_body(snapshot, put={"intruder": intruder}))
        proxy.release()
        _, rest = proc.communicate(timeout=300)
    assert proc.returncode == 1, rest
    assert "the cluster changed while this deploy ran" in rest and "intruder" in rest
    apps = cart_apps(head)
    assert set(apps) == {"cart-green"}  # no candidate was written
    assert apps["cart-green"]["deployed_app_config"]["deployments"][0].get("user_config") != {"greeting": "race"}
    client.put_applications(build_body(client.get_applications(), remove={"intruder"}))


def start_waiting_deploy(head, cli_env, tmp_path):
    """A deploy whose candidate can never be scheduled: it waits in the gate until something happens."""
    config = config_file(tmp_path, head, ray_actor_options={"num_cpus": 64})
    report = tmp_path / "report.json"
    proc = subprocess.Popen(ci_serve_cmd("deploy", str(config), "--address", head.dashboard_url, "--working-dir",
                                         str(APPS / "deploy_v1"), "--serve-url", head.serve_url, "--report",
                                         str(report)),
                            env=dict(cli_env, RAY_AUTH_TOKEN=head.token), stderr=subprocess.PIPE, text=True)
    seen = ""
    for line in proc.stderr:
        seen += line
        if "write candidate" in line:
            break
    # the candidate is written (the step ends after its PUT); wait until the cluster lists it
    wait_until(lambda: "cart-blue" in cart_apps(head) or proc.poll() is not None, 120, "the candidate listed")
    assert proc.poll() is None, seen + proc.communicate()[1]
    return proc, report, seen


def test_a_candidate_removed_during_the_gate_fails_it_at_once(head, live_v2, cli_env, tmp_path):
    proc, report, seen = start_waiting_deploy(head, cli_env, tmp_path)
    client = DashboardClient(Target(head.dashboard_url, head.token))
    client.put_applications(build_body(client.get_applications(), remove={"cart-blue"}))
    _, rest = proc.communicate(timeout=120)  # not the 600 s timeout, nor the 60 s unschedulable grace
    assert proc.returncode == 1, seen + rest
    assert "cart-blue disappeared during the gate" in rest
    assert "the previous version serves: cart: cart-green serves /cart" in rest
    assert set(cart_apps(head)) == {"cart-green"}


def test_a_change_to_another_app_during_the_gate_stops_without_writing(head, live_v2, cli_env, tmp_path):
    proc, report, seen = start_waiting_deploy(head, cli_env, tmp_path)
    client = DashboardClient(Target(head.dashboard_url, head.token))
    snapshot = client.get_applications()
    other = dict(snapshot["applications"]["cart-green"]["deployed_app_config"], route_prefix="/other")
    other["runtime_env"] = {k: v for k, v in other["runtime_env"].items() if k != "env_vars"}
    client.put_applications(build_body(snapshot, put={"other": other}))
    _, rest = proc.communicate(timeout=120)
    assert proc.returncode == 3, seen + rest
    assert "the cluster changed while this deploy ran (applications: other)" in rest
    assert "stopped without writing more" in rest
    assert json.loads(report.read_text())["steps"][-1]["name"] == "gate candidate"  # no write after the change
    apps = cart_apps(head)
    assert set(apps) == {"cart-green", "cart-blue"}  # the candidate stays where it was, the live one untouched
    assert apps["cart-green"]["status"] == "RUNNING"
    client.put_applications(build_body(client.get_applications(), remove={"other", "cart-blue"}))


def test_dead_address_exit_2_naming_it_after_the_retry_budget(cli_env, tmp_path):
    address = dead_address()
    config = tmp_path / "serve.yaml"
    config.write_text("applications:\n  - name: x\n    import_path: m:app\n")
    t0 = time.monotonic()
    proc = subprocess.run(ci_serve_cmd("deploy", str(config), "--address", address),
                          env=cli_env, capture_output=True, text=True, timeout=120)
    print(f"exit {proc.returncode} {time.monotonic() - t0:.1f} s after the start")
    assert proc.returncode == 2, proc.stderr
    assert address in proc.stderr and "Traceback" not in proc.stderr
    # it retried, then gave up when the default 40 s budget was spent, by its own count
    attempts, spent = map(int, re.search(r"\((\d+) attempts over (\d+)s\)", proc.stderr).groups())
    assert attempts >= 2 and spent <= 40, proc.stderr


def test_a_put_the_controller_refuses_is_undone_not_taken_for_nothing_changed(head, tmp_path):
    """A string autoscaling ``policy`` passes Ray's schema; the controller refuses it with HTTP 400, yet (Ray
    2.60) has already recorded the candidate. The run must see that, remove it, and exit 1, not 2.
    `deploy` validates first; the executor is driven directly to reach Ray with such a body."""
    from ci_serve.config.loader import load_config
    from ci_serve.deploy.release import Options, Release
    from ci_serve.deploy.result import DeployResult
    from ci_serve.errors import DeployFailed, InputError

    client = DashboardClient(Target(head.dashboard_url, head.token), min_interval=0.0)

    def release(**deployment):
        config = {"http_options": {"host": "127.0.0.1", "port": head.serve_port},
                  "applications": [{"name": "refused", "route_prefix": "/refused", "import_path": "deploy_app:app",
                                    "deployments": [{"name": "Echo", **deployment}]}]}
        path = tmp_path / f"serve-{time.monotonic_ns()}.yaml"
        path.write_text(json.dumps(config))
        options = Options(strategy="blue-green", working_dir=APPS / "deploy_v1", serve_url=head.serve_url,
                          timeout=180)
        return Release(client, load_config(path), options)

    first = release().execute()
    assert isinstance(first, DeployResult) and first.error is None and first.outcome == "deployed"
    assert first.live_app is not None and first.live_app.startswith("refused")
    assert first.requests and all(o.passed for o in first.requests)
    ours = {n for n in client.get_applications()["applications"] if n.startswith("refused")}
    assert len(ours) == 1
    refused = release(autoscaling_config={"min_replicas": 1, "max_replicas": 2, "policy": "deploy_app:x"}).execute()
    assert isinstance(refused.error, DeployFailed)  # the deploy's error comes back in its result
    assert not isinstance(refused.error, InputError)  # not exit 2 "nothing changed"
    assert "HTTP 400" in refused.error.message and "already recorded" in refused.error.message
    assert "the previous version serves" in refused.error.message
    assert refused.plan is not None and refused.live_app is None  # what it saw is kept; nothing new serves
    apps = client.get_applications()["applications"]
    assert {n for n in apps if n.startswith("refused")} == ours
    assert requests.get(head.serve_url + "/refused", timeout=10).json()["version"] == "v1"
