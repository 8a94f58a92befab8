"""Issue 21's cases that Ray produces on demand, on real heads of 2.9.3 and the .venv's Ray.

One head per Ray version, shared by the tests of this module in file order (they build on each other,
to keep the CI time small): a live version on /shop; a cancel before any write while live answers 500; a
release that moves its prefix and fails; a release that makes it route-less and fails to import; an
unchanged re-deploy whose requests fail against live (as after an in-place write whose run was killed);
an application deployed imperatively under the plain name. The pure decisions behind them: tests/test_deploy_edges.py.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from ci_serve.cluster.head import TemporaryHead
from ci_serve.cluster.pyenv import ensure_env
from ci_serve.deploy.cluster_config import build_body
from tests.conftest import REPO, ci_serve_cmd
from tests.support import ray_versions
from tests.support.dashboard_proxy import DashboardProxy
from tests.support.deploy_cli import deploy_cli
from tests.support.processes import interrupt, wait_until

pytestmark = pytest.mark.ray
APPS = REPO / "tests" / "apps"
VERSIONS = [v for v in ("2.9.3", "current") if v in ray_versions.selected()]


@pytest.fixture(scope="module", params=[pytest.param(v, id=f"ray-{v}") for v in VERSIONS])
def head(request):
    with TemporaryHead(dashboard=True, num_cpus=2, **ray_versions.head_kwargs(request.param)) as h:
        h.ray_release = request.param
        yield h


def config_file(tmp_path: Path, head, *, route_prefix: str | None = "/shop", greeting: str = "hi") -> Path:
    config = {"http_options": {"host": "127.0.0.1", "port": head.serve_port},
              "applications": [{"name": "shop", "route_prefix": route_prefix, "import_path": "deploy_app:app",
                                "deployments": [{"name": "Echo", "user_config": {"greeting": greeting}}]}]}
    path = tmp_path / f"serve-{time.monotonic_ns()}.yaml"
    path.write_text(json.dumps(config))
    return path


def deploy(head, cli_env, tmp_path, config: Path, code: str, *extra: str):
    return deploy_cli(head, cli_env, tmp_path, config, "--working-dir", str(APPS / code), "--serve-url",
                      head.serve_url, *extra)


def apps(client) -> dict:
    return {n: a for n, a in client.get_applications()["applications"].items() if n.startswith("shop")}


def answer(head, prefix: str = "/shop") -> dict:
    return requests.get(head.serve_url + prefix, timeout=10).json()


def test_live_version(head, client, bystander, cli_env, tmp_path):
    proc, report = deploy(head, cli_env, tmp_path, config_file(tmp_path, head), "deploy_v1")
    assert proc.returncode == 0, proc.stderr
    assert report["live_app"] == "shop-blue" and answer(head) == {"version": "v1", "greeting": "hi"}


def test_a_cancel_before_any_write_while_live_answers_500_is_exit_3(head, client, cli_env, tmp_path):
    """Live is RUNNING but answers 500 (someone wrote a user_config that breaks it). A cancel before any write
    of ours used to be exit 1 ("the previous version serves") without a look at what serves: it is exit 3,
    saying what is seen, and nothing is written."""
    snapshot = client.get_applications()
    live = snapshot["applications"]["shop-blue"]["deployed_app_config"]
    failing = copy.deepcopy(live)
    failing["deployments"][0]["user_config"] = {"greeting": "fail"}
    client.put_applications(build_body(snapshot, put={"shop-blue": failing}))
    wait_until(lambda: requests.get(head.serve_url + "/shop", timeout=10).status_code == 500, 120,
               "live answering 500")
    written = apps(client)["shop-blue"]["last_deployed_time_s"]
    code = tmp_path / "code"
    shutil.copytree(APPS / "deploy_v2", code)
    (code / "unique.bin").write_bytes(os.urandom(1024))  # a package the cluster has not seen: it is uploaded
    report = tmp_path / "cancel.json"
    try:
        with DashboardProxy(head.dashboard_url) as proxy:
            proxy.hold("PUT", "/api/packages/")  # the deploy has read the cluster and ships its code: no write yet
            proc = subprocess.Popen(ci_serve_cmd("deploy", str(config_file(tmp_path, head)), "--address", proxy.url,
                                                 "--working-dir", str(code), "--serve-url", head.serve_url,
                                                 "--report", str(report)),
                                    env=dict(cli_env, RAY_AUTH_TOKEN=head.token), stderr=subprocess.PIPE, text=True)
            wait_until(lambda: proxy.held.is_set() or proc.poll() is not None, 300, "the package upload")
            assert proc.poll() is None, proc.communicate()[1]
            interrupt(proc)  # the runner's cancel; it must finish its cleanup before the runner ends it
            proxy.release()
            _, rest = proc.communicate(timeout=60)
        assert proc.returncode == 3, rest
        assert json.loads(report.read_text())["exit_code"] == 3
        assert "the live version is not seen serving: shop: shop-blue holds /shop but answered 500" in rest, rest
        assert set(apps(client)) == {"shop-blue"} and apps(client)["shop-blue"]["last_deployed_time_s"] == written
    finally:  # live as it was, for the tests that follow
        client.put_applications(build_body(client.get_applications(), put={"shop-blue": live}))
        wait_until(lambda: requests.get(head.serve_url + "/shop", timeout=10).status_code == 200, 120, "live healthy")
    assert answer(head) == {"version": "v1", "greeting": "hi"}


def test_a_failed_release_that_moves_the_prefix_is_exit_1_with_the_previous_version_serving(
        head, client, cli_env, tmp_path):
    proc, _ = deploy(head, cli_env, tmp_path, config_file(tmp_path, head, route_prefix="/new"), "deploy_broken")
    assert proc.returncode == 1, proc.stderr
    assert "shop: shop-blue serves /shop (HTTP 200)" in proc.stderr
    assert set(apps(client)) == {"shop-blue"} and answer(head)["version"] == "v1"


def test_a_routed_app_becoming_route_less_with_code_that_cannot_import_leaves_live_serving(
        head, client, cli_env, tmp_path):
    """The first write used to remove shop-blue as "a leftover" while adding the route-less shop; the gate
    failed, the undo removed shop, and nothing of ours was left (exit 1 all the same)."""
    proc, report = deploy(head, cli_env, tmp_path, config_file(tmp_path, head, route_prefix=None), "deploy_broken")
    assert proc.returncode == 1, proc.stderr
    assert "ModuleNotFoundError" in proc.stderr and "shop: shop-blue serves /shop (HTTP 200)" in proc.stderr
    assert report["plan"]["applications"][0]["replaces"] == "shop-blue"
    wait_until(lambda: set(apps(client)) == {"shop-blue"}, 60, "the route-less candidate removed")
    assert answer(head)["version"] == "v1"


def test_an_unchanged_redeploy_whose_requests_fail_against_live_is_exit_3(head, client, cli_env, tmp_path):
    """As after an in-place write whose run was killed before its checks: the re-run finds nothing to write,
    and the version serving is the one failing the requests. Not exit 0, not 1 ("the previous version
    serves"): exit 3, saying so."""
    reqs = tmp_path / "requests.yaml"
    reqs.write_text("requests:\n  - name: greets in French\n    expect: {json: {greeting: bonjour}}\n")
    before = apps(client)["shop-blue"]["last_deployed_time_s"]
    proc, report = deploy(head, cli_env, tmp_path, config_file(tmp_path, head), "deploy_v1", "--requests", str(reqs))
    assert proc.returncode == 3, proc.stderr
    assert "the version serving fails the requests" in proc.stderr and report["exit_code"] == 3
    assert apps(client)["shop-blue"]["last_deployed_time_s"] == before  # nothing written
    proc, report = deploy(head, cli_env, tmp_path, config_file(tmp_path, head), "deploy_v1", "--requests", str(reqs),
                          "--version", "same-code")
    assert proc.returncode == 3, proc.stderr


def test_an_imperative_app_under_the_plain_name_is_refused_before_any_write(head, client, cli_env, tmp_path):
    """`serve.run` under the plain name: the dashboard used to answer 400 to the switch, then to the restore
    (exit 3). Refused before any write, exit 2, with the fix."""
    client.put_applications(build_body(client.get_applications(), remove={"shop-blue"}))
    # what Ray reports for an app a PUT left out, while it is deleted (docs/deploy.md, "Applications being
    # deleted"): DELETING, with no deployed_app_config, so its marker cannot be read there
    deleting = client.get_applications()["applications"].get("shop-blue")
    print(f"Ray {head.ray_release}: an app a PUT left out, read at once: {deleting and deleting['status']}, "
          f"deployed_app_config {'null' if deleting and deleting['deployed_app_config'] is None else 'set'}")
    assert deleting is None or (deleting["status"] == "DELETING" and deleting["deployed_app_config"] is None)
    wait_until(lambda: not apps(client), 120, "shop-blue removed")
    env = ensure_env(ray_versions.requirements(head.ray_release)) if head.ray_release != "current" else None
    python = str(env.python) if env else sys.executable
    subprocess.run([python, str(APPS / "imperative_shop.py"), str(APPS / "deploy_v1")], check=True, timeout=300,
                   env={**cli_env, **head.driver_env()}, cwd=tmp_path, capture_output=True)
    assert apps(client)["shop"]["deployed_app_config"] is None
    proc, report = deploy(head, cli_env, tmp_path, config_file(tmp_path, head), "deploy_v2")
    assert proc.returncode == 2, proc.stderr
    assert "deployed imperatively" in proc.stderr and 'serve.delete("shop")' in proc.stderr
    assert not any(s["name"].startswith(("write", "switch", "remove", "restore")) for s in report["steps"])
    assert set(apps(client)) == {"shop"} and answer(head)["version"] == "v1"


def test_bystander_untouched(client, bystander):
    now = client.get_applications()["applications"]["bystander"]
    assert now["status"] == "RUNNING" and now["deployed_app_config"] == bystander["deployed_app_config"]
