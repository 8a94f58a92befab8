"""Blue-green across two real Ray clusters with a real HAProxy in front (issue 8).

Two heads on loopback with token auth, HAProxy (Debian's package) routing the public port to the
live one, and the switch command a user would write: rewrite the backend, hot-reload the proxy.
A client sends requests through the proxy the whole time; none may fail across the switch.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import requests

from ci_serve.cluster.address import Target
from ci_serve.cluster.dashboard import DashboardClient
from ci_serve.cluster.head import TemporaryHead, free_port
from tests.conftest import REPO
from tests.support.deploy_cli import run_cli
from tests.support.haproxy import HAProxy, haproxy_binary
from tests.support.traffic import Traffic

# Under CI the proxy must be there (scripts/test installs it): a skip would hide the test.
pytestmark = [pytest.mark.ray, pytest.mark.skipif(not haproxy_binary() and not os.environ.get("CI"),
                                                  reason="haproxy is not installed (apt-get install haproxy)")]
APPS = REPO / "tests" / "apps"


@pytest.fixture(scope="module")
def clusters():
    # Both heads read the same token from the environment, as a team with one token per environment would.
    blue = TemporaryHead(dashboard=True, num_cpus=2)
    green = TemporaryHead(dashboard=True, num_cpus=2)
    green.token = blue.token
    try:
        blue.start()
        green.start()
        yield blue, green
    finally:
        blue.stop()
        green.stop()


def write_config(tmp_path: Path, head: TemporaryHead, app_dir: str) -> Path:
    config = {"http_options": {"host": "127.0.0.1", "port": head.serve_port},
              "applications": [{"name": "shop", "route_prefix": "/shop", "import_path": "deploy_app:app",
                                "runtime_env": {"working_dir": str(APPS / app_dir)},
                                "deployments": [{"name": "Echo", "user_config": {"greeting": "hi"}}]}]}
    path = tmp_path / f"serve-{app_dir}-{head.serve_port}.yaml"
    path.write_text(json.dumps(config))
    return path


def requests_file(tmp_path: Path, version: str) -> Path:
    path = tmp_path / f"requests-{version}.yaml"
    path.write_text(f"requests:\n  - name: version\n    path: /\n    expect:\n"
                    f"      json: {{version: {version}, greeting: hi}}\n")
    return path


def deploy_two(cli_env, tmp_path, live, standby, proxy, app_dir, version, *extra):
    return run_cli(cli_env, live.token, tmp_path, "deploy", str(write_config(tmp_path, standby, app_dir)),
                   "--address", live.dashboard_url, "--standby-address", standby.dashboard_url,
                   "--standby-url", standby.serve_url, "--switch-command", str(proxy.switch_script),
                   "--verify-url", proxy.url, "--requests", str(requests_file(tmp_path, version)), *extra)


def test_switch_between_clusters_under_load_then_a_failing_candidate(clusters, cli_env, tmp_path):
    blue, green = clusters
    # v1 runs on blue, deployed the ordinary way; the proxy points at it.
    proc, _ = run_cli(cli_env, blue.token, tmp_path, "deploy", str(write_config(tmp_path, blue, "deploy_v1")),
                      "--address", blue.dashboard_url)
    assert proc.returncode == 0, proc.stderr
    with HAProxy(tmp_path / "proxy", blue.serve_url, free_port()) as proxy:
        assert requests.get(proxy.url + "/shop", timeout=10).json()["version"] == "v1"

        with Traffic(proxy.url + "/shop") as client:
            client.wait_for_answers(5)  # the live version answers through the proxy before the deploy
            proc, report = deploy_two(cli_env, tmp_path, blue, green, proxy, "deploy_v2", "v2")
            client.wait_for_answers(5)  # and the new one after it
        assert proc.returncode == 0, proc.stderr
        assert report["result"] == "deployed"
        assert report["live_address"] == green.dashboard_url and report["standby_address"] == blue.dashboard_url
        assert client.failures == [], client.failures[:10]
        versions = client.versions()
        assert versions[0] == "v1" and versions[-1] == "v2"
        # once v2 answered through the proxy, v1 never did again
        assert "v1" not in versions[versions.index("v2"):]
        assert proxy.backend() == f"127.0.0.1:{green.serve_port}"
        blue_apps = DashboardClient(Target(blue.dashboard_url, blue.token)).get_applications()["applications"]
        assert "shop" not in blue_apps, "without --keep-standby the old cluster's app is retired"

        # A release that cannot import, sent to the standby (now blue): proxy and live (green) untouched.
        green_before = DashboardClient(Target(green.dashboard_url, green.token)).get_applications()
        with Traffic(proxy.url + "/shop") as client:
            proc, report = deploy_two(cli_env, tmp_path, green, blue, proxy, "deploy_broken", "v3")
        assert proc.returncode == 1, proc.stderr
        assert report["result"] == "rolled-back"
        assert "live cluster was not touched" in proc.stderr
        assert client.failures == [] and set(client.versions()) == {"v2"}
        assert proxy.backend() == f"127.0.0.1:{green.serve_port}"
        green_after = DashboardClient(Target(green.dashboard_url, green.token)).get_applications()
        assert green_after["applications"]["shop"]["last_deployed_time_s"] == \
            green_before["applications"]["shop"]["last_deployed_time_s"]
        blue_apps = DashboardClient(Target(blue.dashboard_url, blue.token)).get_applications()["applications"]
        assert "shop" not in blue_apps, "the failed candidate was removed from the standby"

        # A release whose replicas crash on the standby: why, from the standby's own log API
        proc, report = deploy_two(cli_env, tmp_path, green, blue, proxy, "deploy_crashing", "v4")
        assert proc.returncode == 1, proc.stderr
        details = "\n".join(str(e.get("details") or "") for e in report["errors"])
        assert "replica logs (last lines, from the dashboard's log API):" in details, details[-3000:]
        assert "replica constructor says: loading /models/weights.bin" in details
        assert proxy.backend() == f"127.0.0.1:{green.serve_port}"


def test_failed_verification_switches_back(clusters, cli_env, tmp_path):
    """A switch command that 'moves' nothing: the public entry keeps answering v2 from green, so
    verification of v4 fails; the switch runs reversed and the exit is 1 with the live still serving."""
    green, blue = clusters[1], clusters[0]
    with HAProxy(tmp_path / "proxy", green.serve_url, free_port()) as proxy:
        noop = tmp_path / "noop-switch.sh"
        noop.write_text("#!/bin/sh\necho \"pretending to switch to $CI_SERVE_NEW_URL\" >> "
                        f"{tmp_path}/switch.log\n")
        noop.chmod(0o755)
        proc, report = run_cli(cli_env, green.token, tmp_path, "deploy", str(write_config(tmp_path, blue, "deploy_v1")),
                               "--address", green.dashboard_url, "--standby-address", blue.dashboard_url,
                               "--standby-url", blue.serve_url, "--switch-command", str(noop),
                               "--verify-url", proxy.url, "--requests", str(requests_file(tmp_path, "v1")),
                               "--verify-timeout", "5")
        assert proc.returncode == 1, proc.stderr
        lines = (tmp_path / "switch.log").read_text().splitlines()
        assert lines == [f"pretending to switch to {blue.serve_url}", f"pretending to switch to {green.serve_url}"]
        assert requests.get(proxy.url + "/shop", timeout=10).json()["version"] == "v2"


def test_no_proof_that_traffic_moved_keeps_the_old_cluster(clusters, cli_env, tmp_path):
    """`--switch-command true` without --verify-url: exit 0, but the old cluster, which still takes the
    traffic, keeps its applications, and the run says so (issue 11)."""
    green, blue = clusters[1], clusters[0]
    with HAProxy(tmp_path / "proxy", green.serve_url, free_port()) as proxy:
        proc, report = run_cli(cli_env, green.token, tmp_path, "deploy", str(write_config(tmp_path, blue, "deploy_v1")),
                               "--address", green.dashboard_url, "--serve-url", green.serve_url,
                               "--standby-address", blue.dashboard_url, "--standby-url", blue.serve_url,
                               "--switch-command", "true")
        assert proc.returncode == 0, proc.stderr
        assert "keeps its applications" in proc.stderr and "nothing proves the traffic moved" in proc.stderr
        assert "shop" in DashboardClient(Target(green.dashboard_url, green.token)).get_applications()["applications"]
        assert requests.get(proxy.url + "/shop", timeout=10).json()["version"] == "v2"


def test_a_foreign_app_under_our_name_on_the_standby_is_not_touched(clusters, cli_env, tmp_path):
    """Another team's `api` (marked as theirs) on the standby: the two-cluster write is guarded as a
    one-cluster one is: nothing is written to the standby, exit 1 after the old cluster is seen serving."""
    from ci_serve.cluster.packages import upload_directory
    from ci_serve.deploy.cluster_config import build_body

    green, blue = clusters[1], clusters[0]
    standby = DashboardClient(Target(blue.dashboard_url, blue.token), min_interval=0.0)
    uri, _ = upload_directory(standby, APPS / "deploy_v1")
    foreign = {"route_prefix": "/payments", "import_path": "deploy_app:app",
               "runtime_env": {"working_dir": uri, "env_vars": {"CI_SERVE_APP": "payments"}}}
    standby.put_applications(build_body(standby.get_applications(), put={"api": foreign}))
    deadline = time.monotonic() + 120
    while standby.get_applications()["applications"].get("api", {}).get("status") != "RUNNING":
        assert time.monotonic() < deadline, "the foreign app did not start"
        time.sleep(0.5)
    before = standby.get_applications()["applications"]
    config = tmp_path / "api.yaml"
    config.write_text(json.dumps({"applications": [{"name": "api", "route_prefix": "/api",
                                                    "import_path": "deploy_app:app",
                                                    "runtime_env": {"working_dir": str(APPS / "deploy_v2")}}]}))
    switched = tmp_path / "switched"
    proc, report = run_cli(cli_env, green.token, tmp_path, "deploy", str(config), "--address", green.dashboard_url,
                           "--serve-url", green.serve_url, "--standby-address", blue.dashboard_url,
                           "--standby-url", blue.serve_url, "--switch-command", f"touch {switched}")
    assert proc.returncode == 1, proc.stderr
    assert "api is not ours" in proc.stderr and "nothing was written to the standby" in proc.stderr
    assert not switched.exists()
    after = standby.get_applications()["applications"]
    assert set(after) == set(before)
    assert all(after[n]["last_deployed_time_s"] == before[n]["last_deployed_time_s"] for n in before)
    assert requests.get(green.serve_url + "/shop", timeout=10).json()["version"] == "v2"


# -- hold, promote, abort across two clusters (issue 22) -------------------------------------------------------
def two_flags(live, standby, proxy):
    return ("--address", live.dashboard_url, "--serve-url", live.serve_url, "--standby-address",
            standby.dashboard_url, "--standby-url", standby.serve_url, "--switch-command", str(proxy.switch_script),
            "--verify-url", proxy.url, "--timeout", "120")


def apps_of(head):
    return DashboardClient(Target(head.dashboard_url, head.token)).get_applications()["applications"]


def shop_of(head):
    """The head's applications of ours for `shop` (a one-cluster deploy names it shop-blue), by name."""
    return {n: a for n, a in apps_of(head).items()
            if ((a.get("deployed_app_config") or {}).get("runtime_env") or {}).get("env_vars", {}).get(
                "CI_SERVE_APP") == "shop" and a.get("status") != "DELETING"}


def test_hold_abort_then_hold_promote_across_two_clusters(clusters, cli_env, tmp_path):
    """The held release waits on the standby (the proxy still reaches the live cluster); a deploy is refused
    while it waits; abort removes it and nothing else; held again, promote switches under a constant client
    with no failed request; a later hold is refused promotion once the live app changed."""
    blue, green = clusters
    proc, _ = run_cli(cli_env, blue.token, tmp_path, "deploy", str(write_config(tmp_path, blue, "deploy_v1")),
                      "--address", blue.dashboard_url, "--version", "v1")
    assert proc.returncode == 0, proc.stderr
    config = str(write_config(tmp_path, green, "deploy_v2"))
    v2 = ("--requests", str(requests_file(tmp_path, "v2")))
    with HAProxy(tmp_path / "proxy", blue.serve_url, free_port()) as proxy:
        flags = two_flags(blue, green, proxy)
        [(live_name, blue_before)] = shop_of(blue).items()

        proc, report = run_cli(cli_env, blue.token, tmp_path, "deploy", config, "--hold", "--version", "v2",
                               *flags, *v2)
        assert proc.returncode == 0, proc.stderr
        assert report["result"] == "held" and report["release"] == "v2"
        assert report["preview_urls"] == {"shop": green.serve_url + "/shop"}
        assert report["live_url"] == blue.serve_url
        assert requests.get(green.serve_url + "/shop", timeout=10).json()["version"] == "v2"
        assert requests.get(proxy.url + "/shop", timeout=10).json()["version"] == "v1"
        assert proxy.backend() == f"127.0.0.1:{blue.serve_port}"
        assert "CI_SERVE_HOLD" in apps_of(green)["shop"]["deployed_app_config"]["runtime_env"]["env_vars"]
        status, data = run_cli(cli_env, blue.token, tmp_path, "status", "--address", blue.dashboard_url,
                               "--serve-url", blue.serve_url, "--standby-address", green.dashboard_url,
                               "--standby-url", green.serve_url)
        assert status.returncode == 0, status.stderr
        assert [(h["app"], h["release"], h["preview_url"]) for h in data["standby"]["held"]] == [
            ("shop", "v2", green.serve_url + "/shop")]
        assert "held: release v2 of shop (shop, RUNNING), preview at" in status.stdout

        held_at = apps_of(green)["shop"]["last_deployed_time_s"]
        proc, report = run_cli(cli_env, blue.token, tmp_path, "deploy", config, "--version", "v9", *flags, *v2)
        assert proc.returncode == 2, proc.stderr
        assert "release v2 of shop is held" in proc.stderr and "ci-serve promote" in proc.stderr
        assert apps_of(green)["shop"]["last_deployed_time_s"] == held_at

        proc, report = run_cli(cli_env, blue.token, tmp_path, "abort", config, "--version", "v2", "--address",
                               blue.dashboard_url, "--standby-address", green.dashboard_url)
        assert proc.returncode == 0, proc.stderr
        assert report["result"] == "aborted"
        assert "shop" not in apps_of(green)
        assert apps_of(blue)[live_name]["last_deployed_time_s"] == blue_before["last_deployed_time_s"]
        assert apps_of(blue)[live_name]["deployed_app_config"] == blue_before["deployed_app_config"]
        assert requests.get(proxy.url + "/shop", timeout=10).json()["version"] == "v1"
        proc, report = run_cli(cli_env, blue.token, tmp_path, "abort", config, "--version", "v2", "--address",
                               blue.dashboard_url, "--standby-address", green.dashboard_url)
        assert proc.returncode == 0 and report["result"] == "unchanged", proc.stderr
        assert "nothing to abort" in proc.stderr
        proc, report = run_cli(cli_env, blue.token, tmp_path, "promote", config, "--version", "v2", *flags, *v2)
        assert proc.returncode == 2 and "no release v2 of shop is held" in proc.stderr, proc.stderr
        assert proxy.backend() == f"127.0.0.1:{blue.serve_port}"

        proc, report = run_cli(cli_env, blue.token, tmp_path, "deploy", config, "--hold", "--version", "v2",
                               *flags, *v2)
        assert proc.returncode == 0 and report["result"] == "held", proc.stderr
        with Traffic(proxy.url + "/shop") as client:
            client.wait_for_answers(5)
            proc, report = run_cli(cli_env, blue.token, tmp_path, "promote", config, "--version", "v2", *flags, *v2)
            client.wait_for_answers(5)
        assert proc.returncode == 0, proc.stderr
        assert report["result"] == "deployed" and report["live_address"] == green.dashboard_url
        assert client.failures == [], client.failures[:10]
        versions = client.versions()
        assert versions[0] == "v1" and versions[-1] == "v2" and "v1" not in versions[versions.index("v2"):]
        assert proxy.backend() == f"127.0.0.1:{green.serve_port}"
        assert shop_of(blue) == {}, "the old cluster's app is retired on proof that traffic moved"

        # The roles swap: green serves. v3 held on blue; then green's live app changes: promote is refused.
        flags = two_flags(green, blue, proxy)
        v3 = str(write_config(tmp_path, blue, "deploy_v1"))
        proc, report = run_cli(cli_env, green.token, tmp_path, "deploy", v3, "--hold", "--version", "v3", *flags,
                               "--requests", str(requests_file(tmp_path, "v1")))
        assert proc.returncode == 0 and report["result"] == "held", proc.stderr
        changed = json.loads(write_config(tmp_path, green, "deploy_v2").read_text())
        changed["applications"][0]["deployments"][0]["user_config"]["greeting"] = "hey"
        (tmp_path / "changed.yaml").write_text(json.dumps(changed))
        proc, _ = run_cli(cli_env, green.token, tmp_path, "deploy", str(tmp_path / "changed.yaml"), "--address",
                          green.dashboard_url, "--version", "v2")
        assert proc.returncode == 0, proc.stderr
        held_at = apps_of(blue)["shop"]["last_deployed_time_s"]
        proc, report = run_cli(cli_env, green.token, tmp_path, "promote", v3, "--version", "v3", *flags)
        assert proc.returncode == 2, proc.stderr
        assert "changed since release v3 was held" in proc.stderr
        assert proxy.backend() == f"127.0.0.1:{green.serve_port}"
        assert apps_of(blue)["shop"]["last_deployed_time_s"] == held_at
        assert requests.get(proxy.url + "/shop", timeout=10).json() == {"version": "v2", "greeting": "hey"}
        proc, report = run_cli(cli_env, green.token, tmp_path, "abort", v3, "--version", "v3", "--address",
                               green.dashboard_url, "--standby-address", blue.dashboard_url)
        assert proc.returncode == 0 and report["result"] == "aborted", proc.stderr
