"""Issue 22 on real heads of 2.9.3 and the .venv's Ray: hold a release for review, then promote or abort it.

One head per Ray version, shared by the tests of this module in file order (each builds on the one
before, to keep the CI time small): v1 live on /shop; v2 held on its preview prefix; a plain deploy
refused while it is held; a promote of a release that is not held refused; the abort, after which live
is byte-for-byte as it was; a hold whose live app changed meanwhile, refused at promote; a promote under
a constant client, with no failed request. Someone else's application (the bystander) is there all along
and must end as it began. The pure decisions behind them: tests/test_hold.py.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import pytest
import requests

from ci_serve.cluster.head import TemporaryHead
from ci_serve.deploy.cluster_config import build_body
from tests.conftest import REPO
from tests.support import ray_versions
from tests.support.deploy_cli import deploy_cli, run_cli
from tests.support.processes import wait_until
from tests.support.traffic import Traffic

pytestmark = pytest.mark.ray
APPS = REPO / "tests" / "apps"
VERSIONS = [v for v in ("2.9.3", "current") if v in ray_versions.selected()]


@pytest.fixture(scope="module", params=[pytest.param(v, id=f"ray-{v}") for v in VERSIONS])
def head(request):
    with TemporaryHead(dashboard=True, num_cpus=2, **ray_versions.head_kwargs(request.param)) as h:
        h.ray_release = request.param
        yield h


def config_file(tmp_path: Path, head: TemporaryHead) -> Path:
    config = {"http_options": {"host": "127.0.0.1", "port": head.serve_port},
              "applications": [{"name": "shop", "route_prefix": "/shop", "import_path": "deploy_app:app",
                                "deployments": [{"name": "Echo", "user_config": {"greeting": "hi"},
                                                 # Ray records these as 5.0 and 10.0: the hold's
                                                 # record must still match at promote
                                                 "graceful_shutdown_timeout_s": 5, "health_check_period_s": 10}]}]}
    path = tmp_path / "serve.yaml"
    path.write_text(json.dumps(config))
    return path


def deploy(head, cli_env, tmp_path, code: str, *extra: str):
    return deploy_cli(head, cli_env, tmp_path, config_file(tmp_path, head), "--working-dir", str(APPS / code),
                      "--serve-url", head.serve_url, *extra)


def held_cli(verb: str, head, cli_env, tmp_path, release: str, *extra: str):
    return run_cli(cli_env, head.token, tmp_path, verb, str(config_file(tmp_path, head)), "--address",
                   head.dashboard_url, "--serve-url", head.serve_url, "--version", release, *extra)


def replica_ids(app: dict) -> set[str]:
    return {r["replica_id"] for d in app["deployments"].values() for r in d.get("replicas") or []}


def untouched(before: dict, after: dict) -> None:
    """The same config, status and route, served by the same replicas (never restarted). Ray bumps
    ``last_deployed_time_s`` of every application a PUT lists, changed or not (measured on 2.60)."""
    for key in ("deployed_app_config", "route_prefix", "status"):
        assert after[key] == before[key], key
    assert replica_ids(after) == replica_ids(before) and replica_ids(before)


def shop_apps(client) -> dict:
    return {n: a for n, a in client.get_applications()["applications"].items() if n.startswith("shop")}


def answer(head, prefix: str = "/shop") -> dict:
    return requests.get(head.serve_url + prefix, timeout=10).json()


def test_live_version(head, client, bystander, cli_env, tmp_path):
    proc, report = deploy(head, cli_env, tmp_path, "deploy_v1", "--version", "r1")
    assert proc.returncode == 0, proc.stderr
    assert report["live_app"] == "shop-blue" and answer(head)["version"] == "v1"


def test_hold_checks_the_new_version_on_its_preview_and_leaves_live_serving(head, client, cli_env, tmp_path):
    live_before = shop_apps(client)["shop-blue"]
    proc, report = deploy(head, cli_env, tmp_path, "deploy_v2", "--hold", "--version", "r2")
    assert proc.returncode == 0, proc.stderr
    assert report["result"] == "held" and report["release"] == "r2", report
    assert report["preview_urls"] == {"shop": head.serve_url + "/shop--green"}
    assert report["live_url"] == head.serve_url and report["live_app"] == "shop-blue"
    assert "promote it with `ci-serve promote" in proc.stderr
    assert answer(head)["version"] == "v1" and answer(head, "/shop--green")["version"] == "v2"
    untouched(live_before, shop_apps(client)["shop-blue"])
    status, data = run_cli(cli_env, head.token, tmp_path, "status", "--address", head.dashboard_url,
                           "--serve-url", head.serve_url)
    assert status.returncode == 0, status.stderr
    held = data["managed"]["shop"]["held"]
    assert [(h["release"], h["candidate"], h["preview_url"]) for h in held] == [
        ("r2", "shop-green", head.serve_url + "/shop--green")]
    assert "held: release r2 (shop-green, RUNNING), preview at" in status.stdout


def test_a_plain_deploy_is_refused_while_a_release_is_held(head, client, cli_env, tmp_path):
    before = shop_apps(client)
    proc, report = deploy(head, cli_env, tmp_path, "deploy_v2", "--version", "r3")
    assert proc.returncode == 2, proc.stderr
    assert "release r2 of shop is held for review" in proc.stderr and "ci-serve promote CONFIG --version r2" in \
        proc.stderr
    assert shop_apps(client) == before


def test_a_promote_of_a_release_that_is_not_held_is_refused(head, client, cli_env, tmp_path):
    before = shop_apps(client)
    proc, report = held_cli("promote", head, cli_env, tmp_path, "r9")
    assert proc.returncode == 2, proc.stderr
    assert "no release r9 of shop is held on this cluster; held: r2 of shop (shop-green)" in proc.stderr
    assert report["result"] != "deployed" and report["release"] == "r9" and shop_apps(client) == before


def test_abort_removes_the_held_release_and_leaves_live_exactly_as_it_was(head, client, cli_env, tmp_path):
    live_before = copy.deepcopy(shop_apps(client)["shop-blue"])
    proc, report = held_cli("abort", head, cli_env, tmp_path, "r2")
    assert proc.returncode == 0, proc.stderr
    assert report["result"] == "aborted" and report["release"] == "r2"
    apps = shop_apps(client)
    assert set(apps) == {"shop-blue"}
    untouched(live_before, apps["shop-blue"])
    assert answer(head)["version"] == "v1"
    again, report = held_cli("abort", head, cli_env, tmp_path, "r2")
    assert again.returncode == 0 and report["result"] == "unchanged", again.stderr
    assert "no release r2 of these applications is held" in again.stderr


def test_a_promote_is_refused_when_live_changed_since_the_hold(head, client, cli_env, tmp_path):
    proc, _ = deploy(head, cli_env, tmp_path, "deploy_v2", "--hold", "--version", "r4")
    assert proc.returncode == 0, proc.stderr
    snapshot = client.get_applications()  # someone changes live meanwhile (a lightweight change, by hand)
    live = copy.deepcopy(snapshot["applications"]["shop-blue"]["deployed_app_config"])
    live["deployments"][0]["user_config"] = {"greeting": "changed by hand"}
    client.put_applications(build_body(snapshot, put={"shop-blue": live}))
    wait_until(lambda: answer(head).get("greeting") == "changed by hand", 120, "the hand-made change")
    before = shop_apps(client)
    proc, report = held_cli("promote", head, cli_env, tmp_path, "r4")
    assert proc.returncode == 2, proc.stderr
    assert "the live version of shop changed since release r4 was held" in proc.stderr
    assert shop_apps(client) == before and answer(head)["version"] == "v1"
    proc, _ = held_cli("abort", head, cli_env, tmp_path, "r4")
    assert proc.returncode == 0, proc.stderr


def test_promote_takes_the_held_release_live_under_a_constant_client(head, client, cli_env, tmp_path):
    proc, report = deploy(head, cli_env, tmp_path, "deploy_v2", "--hold", "--version", "r5")
    assert proc.returncode == 0, proc.stderr
    candidate = report["preview_urls"]["shop"]
    held_since = shop_apps(client)["shop-green"]["last_deployed_time_s"]
    time.sleep(1.0)  # a promote may run days later; what it finds must be exactly what the hold left
    with Traffic(head.serve_url + "/shop", clients=2) as traffic:
        traffic.wait_for_answers(20)
        proc, report = held_cli("promote", head, cli_env, tmp_path, "r5")
        traffic.wait_for_answers(20)
    assert proc.returncode == 0, proc.stderr
    assert report["result"] == "deployed" and report["release"] == "r5" and report["live_app"] == "shop-green"
    assert traffic.failures == [], traffic.failures[:5]
    assert {"v1", "v2"} <= set(traffic.versions(0)) | set(traffic.versions(1))
    for c in range(2):  # never back to v1 once v2 answered
        seen = traffic.versions(c)
        assert "v1" not in seen[seen.index("v2"):] if "v2" in seen else True
    assert answer(head)["version"] == "v2" and set(shop_apps(client)) == {"shop-green"}
    assert requests.get(candidate, timeout=10).status_code == 404
    # moved to its route, never redeployed: the replicas that were reviewed are the ones serving
    env = shop_apps(client)["shop-green"]["deployed_app_config"]["runtime_env"]["env_vars"]
    assert env["CI_SERVE_VERSION"] == "r5" and "CI_SERVE_HOLD" in env
    assert shop_apps(client)["shop-green"]["last_deployed_time_s"] >= held_since
    status, data = run_cli(cli_env, head.token, tmp_path, "status", "--address", head.dashboard_url,
                           "--serve-url", head.serve_url)
    assert data["managed"]["shop"]["held"] == [] and data["managed"]["shop"]["live"] == "shop-green"


def test_a_release_whose_hold_changed_nothing_is_promoted_as_unchanged(head, client, cli_env, tmp_path):
    """A tag that changes nothing: the hold writes nothing (unchanged), and its promote says so, exit 0."""
    before = shop_apps(client)
    proc, report = deploy(head, cli_env, tmp_path, "deploy_v2", "--hold", "--version", "r6")
    assert proc.returncode == 0 and report["result"] == "unchanged", proc.stderr
    proc, report = held_cli("promote", head, cli_env, tmp_path, "r6", "--working-dir", str(APPS / "deploy_v2"))
    assert proc.returncode == 0 and report["result"] == "unchanged", proc.stderr
    assert "already runs this config" in proc.stderr
    assert set(shop_apps(client)) == set(before)
