"""Traffic steps across two real Ray clusters, judged by a real Prometheus (issue 23).

Two heads on loopback with token auth, one on the image's Ray and one on an older release CI runs (2.46:
the heads of an upgrade are exactly what two clusters are for), each reporting its metrics every second.
A real HAProxy holds both in one backend; the traffic command sets their weights through its runtime API.
A real Prometheus (Debian's) scrapes both heads from the service-discovery file each writes, behind basic
auth, so the header path is the real one. A client sends requests through HAProxy the whole time; the walk
of ci_serve/deploy/traffic.py is driven directly, and once end to end through ``ci-serve deploy
--traffic-command`` (the one executor: standby write, gate, checks, traffic writes, rollback, undo).
"""

from __future__ import annotations

import json
import os
import shutil
import time

import pytest
import requests

from ci_serve.cluster.address import Target
from ci_serve.cluster.dashboard import DashboardClient
from ci_serve.cluster.head import HeadStartError, TemporaryHead, free_port
from ci_serve.cluster.packages import ship_working_dirs
from ci_serve.deploy.analysis import Thresholds
from ci_serve.deploy.prometheus import Prometheus as PrometheusAPI
from ci_serve.deploy.prometheus import VersionMetrics, parse_headers, session_from_node_summary, session_of
from ci_serve.deploy.traffic import StepFailed, TrafficOptions, walk
from ci_serve.errors import EXIT_BAD_INPUT, InputError
from ci_serve.steps import StepLog
from tests.conftest import REPO
from tests.support.haproxy import WeightedHAProxy, haproxy_binary
from tests.support.processes import wait_until
from tests.support.prometheus import Prometheus, prometheus_binary
from tests.support.ray_versions import head_kwargs, selected
from tests.support.traffic import Traffic

# Under CI they must be there (scripts/test installs them): a skip would hide the test.
pytestmark = [pytest.mark.ray, pytest.mark.skipif(
    not (haproxy_binary() and prometheus_binary() and shutil.which("socat")) and not os.environ.get("CI"),
    reason="haproxy, prometheus or socat is not installed (apt-get install haproxy prometheus socat)")]

APP = REPO / "tests" / "apps" / "progressive"
#: the older release: one CI already runs (tests/support/ray_versions.py), with session_name and Serve metrics
OLDER = "2.46.0"
INTERVAL_S = 6.0
#: the client sends ~20-60 requests/s through the proxy on a loaded 2-core runner: 10 % of 6 s is a few dozen
LIMITS = Thresholds(max_error_rate=1.0, min_requests=10)
METRICS_ENV = {"RAY_metrics_report_interval_ms": "1000"}
#: a count reaches Prometheus within a report (1 s) and a scrape (1 s) of it
METRICS_LAG_S = 2.5


@pytest.fixture(scope="module")
def heads():
    older = OLDER if OLDER in selected() else "current"
    blue = TemporaryHead(dashboard=True, num_cpus=2, extra_env=METRICS_ENV)
    green = TemporaryHead(dashboard=True, num_cpus=2, extra_env=METRICS_ENV, **head_kwargs(older))
    green.token = blue.token
    try:
        blue.launch()
        green.launch()
        for head in (blue, green):
            try:
                head.wait_ready()
            except HeadStartError as err:  # its log goes with its temp folder: show it here
                pytest.fail(f"{err.message} (Ray {head.ray or 'current'}):\n{err.details}")
        yield {"blue": blue, "green": green}
    finally:
        blue.stop()
        green.stop()


@pytest.fixture(scope="module")
def proxy(heads, tmp_path_factory):
    servers = {name: head.serve_url for name, head in heads.items()}
    with WeightedHAProxy(tmp_path_factory.mktemp("haproxy"), servers, free_port(), live="blue") as p:
        yield p


@pytest.fixture(scope="module")
def prom(heads, tmp_path_factory):
    files = [head.temp_dir / "prom_metrics_service_discovery.json" for head in heads.values()]
    with Prometheus(tmp_path_factory.mktemp("prometheus"), files, basic_auth=True) as p:
        yield p


def client_of(head: TemporaryHead) -> DashboardClient:
    return DashboardClient(Target(head.dashboard_url, head.token), min_interval=0.0)


def deploy(head: TemporaryHead, version: str, failing_path: str | None = None) -> None:
    """Put the shop of ``version`` on ``head`` (unless it runs already) and wait until it is RUNNING."""
    env = {"SHOP_VERSION": version, **({"SHOP_FAILING_PATH": failing_path} if failing_path else {})}
    config = {"http_options": {"host": "127.0.0.1", "port": head.serve_port},
              "applications": [{"name": "shop", "route_prefix": "/shop", "import_path": "progressive_app:app",
                                "runtime_env": {"working_dir": str(APP), "env_vars": env}}]}
    client = client_of(head)
    now = client.get_applications()["applications"].get("shop") or {}
    if (now.get("deployed_app_config") or {}).get("runtime_env", {}).get("env_vars") != env:
        shipped, _ = ship_working_dirs(client, config, base_dir=REPO)
        client.put_applications(shipped)
    wait_until(lambda: requests.get(f"{head.serve_url}/shop/", timeout=10).status_code == 200
               and requests.get(f"{head.serve_url}/shop/", timeout=10).json().get("version") == version,
               240, f"{version} answering on {head.serve_url}", poll=0.5)


def set_weights(proxy: WeightedHAProxy, live: str, other: str) -> None:
    import subprocess

    for name, weight in ((live, 100), (other, 0)):
        subprocess.run(["socat", "stdio", f"UNIX-CONNECT:{proxy.socket}"], input=f"set server serve/{name} weight "
                       f"{weight}\n", text=True, check=True, capture_output=True, timeout=10)


def source(prom: Prometheus, heads, new: str, old: str) -> VersionMetrics:
    api = PrometheusAPI(prom.url, parse_headers([prom.auth_header]))
    api.check()
    return VersionMetrics(api, ("shop",), session_of(client_of(heads[new])), session_of(client_of(heads[old])))


def wait_scraped(prom: Prometheus, heads) -> None:
    """Both heads' metrics agents are targets and up (the service-discovery files list them)."""
    sessions = {session_of(client_of(h)) for h in heads.values()}

    def seen() -> bool:
        rows = prom.query("count by (SessionName) (ray_node_cpu_count)")
        return sessions <= {r["metric"].get("SessionName") for r in rows}

    wait_until(seen, 120, "Prometheus scraping both heads", poll=1.0)


def walk_under_load(proxy, metrics, new: str, old: str, capsys):
    log = StepLog()
    options = TrafficOptions(proxy.traffic_command(new, old), (10, 50, 100), INTERVAL_S, LIMITS,
                             metrics_lag=METRICS_LAG_S)
    offset = time.time() - time.monotonic()
    with Traffic(proxy.url + "/shop/cart", clients=2, pause=0.01) as client:
        client.wait_for_answers(20)
        result = walk(options, metrics, log=log)
        client.wait_for_answers(20)  # and after the walk
    err = capsys.readouterr().err
    print(err)
    print(json.dumps({"versions": f"{new} <- {old}", "traffic_steps": result.entries()}))
    return result, client, log, offset, err


def test_session_of_each_head_and_the_socket_path_fallback(heads, prom):
    older = OLDER if OLDER in selected() else None
    assert client_of(heads["green"]).get_version() == (older or client_of(heads["blue"]).get_version())
    for head in heads.values():
        client = client_of(head)
        session = session_of(client)
        assert session.startswith("session_")
        # the fallback older releases need, checked on these heads against what /api/version says
        assert session_from_node_summary(client.get_node_summary()) == session
    with pytest.raises(InputError, match="refused the query") as info:
        PrometheusAPI(prom.url).check()  # no --prometheus-header: basic auth refuses
    assert info.value.exit_code == EXIT_BAD_INPUT
    assert PrometheusAPI(prom.url, parse_headers([prom.auth_header])).check().startswith("Prometheus 2.")
    with pytest.raises(InputError, match="cannot be used"):
        PrometheusAPI(heads["blue"].dashboard_url).check()  # a Ray dashboard is not a Prometheus


def test_a_good_release_walks_10_50_100_under_load(heads, proxy, prom, capsys):
    deploy(heads["blue"], "v1")
    deploy(heads["green"], "v2")
    set_weights(proxy, "blue", "green")
    wait_scraped(prom, heads)
    before = len(proxy.weights_set())

    result, client, _, _, err = walk_under_load(proxy, source(prom, heads, "green", "blue"), "green", "blue", capsys)

    assert result.error is None, result.error and result.error.message
    ten = result.entries()[0]
    assert 0.03 <= ten["new"]["requests"] / (ten["new"]["requests"] + ten["old"]["requests"]) <= 0.25, ten
    assert proxy.weights_set()[before:] == [10, 50, 100]
    assert proxy.weights() == {"blue": 0, "green": 100}
    entries = result.entries()
    assert [(e["weight"], e["verdict"]) for e in entries] == [(10, "pass"), (50, "pass"), (100, "pass")]
    assert all(e["new"]["requests"] >= LIMITS.min_requests and e["new"]["errors"] == 0 for e in entries)
    assert client.failures == [], client.failures[:10]
    assert {"v1", "v2"} <= set(client.versions(0)) | set(client.versions(1))
    assert client.versions(0)[-1] == "v2"
    assert "...  hold 50%: 50 %" in err and "new " in err, "the heartbeat shows live numbers"


def test_a_release_failing_a_path_the_client_uses_goes_back_to_zero_at_10(heads, proxy, prom, capsys):
    # green serves v2 and takes everything; blue gets v3, which answers 500 on /shop/cart (not on /shop/)
    deploy(heads["green"], "v2")
    deploy(heads["blue"], "v3", failing_path="cart")
    set_weights(proxy, "green", "blue")
    wait_scraped(prom, heads)
    before = len(proxy.weights_set())

    result, client, log, offset, _ = walk_under_load(proxy, source(prom, heads, "blue", "green"), "blue", "green",
                                                     capsys)

    assert isinstance(result.error, StepFailed), result.error
    assert "traffic step 10 % fail" in result.error.message and "error rate" in result.error.message
    assert proxy.weights_set()[before:] == [10, 0] and result.rolled_back
    assert proxy.weights() == {"blue": 0, "green": 100}
    [entry] = result.entries()
    assert entry["weight"] == 10 and entry["verdict"] == "fail" and entry["new"]["errors"] > 0
    # the window opened after the metrics lag: none of the answers sent before the step (the deploy's own
    # requests to /shop/, which v3 answers well) is in it: every request it counted on v3 was a /shop/cart
    assert entry["new"]["errors"] == entry["new"]["requests"], entry
    # the client saw failures only for the new version's share, and only during that step
    step = {s.name: s for s in log.steps}
    start = step["traffic 10%"].started_at
    end = step["traffic back to 0%"].started_at + (step["traffic back to 0%"].elapsed_s or 0)
    answers = [(t + offset, a) for per_client in client.answers for t, a in per_client]
    failed = [t for t, a in answers if isinstance(a, str)]
    assert failed and all(a == "HTTP 500" for _, a in answers if isinstance(a, str))
    assert all(start <= t <= end + 1.0 for t in failed), "a failure outside the 10 % step"
    during = [a for t, a in answers if start <= t <= end]
    assert len(failed) <= 0.25 * len(during), (len(failed), len(during))
    assert requests.get(proxy.url + "/shop/cart", timeout=10).json()["version"] == "v2", "the old version serves"


def test_the_deploy_command_rolls_a_release_back_at_10_through_the_one_executor(heads, proxy, prom, tmp_path):
    """The same failing release, end to end through ``ci-serve deploy --traffic-command``: the one executor
    writes it to the standby (blue), gates and checks it there, moves 10 % to it, Prometheus judges the step
    failed, the share goes back to 0, the candidate leaves the standby, exit 1 with the old version serving."""
    import subprocess
    import sys

    deploy(heads["green"], "v2")
    deploy(heads["blue"], "v1")
    set_weights(proxy, "green", "blue")
    wait_scraped(prom, heads)
    before = len(proxy.weights_set())
    config = tmp_path / "serve.json"
    config.write_text(json.dumps({"applications": [{
        "name": "shop", "route_prefix": "/shop", "import_path": "progressive_app:app",
        "runtime_env": {"working_dir": str(APP), "env_vars": {"SHOP_VERSION": "v3", "SHOP_FAILING_PATH": "cart"}}}]}))
    report = tmp_path / "report.json"
    blue, green = heads["blue"], heads["green"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "GITHUB_", "INPUT_"))}
    with Traffic(proxy.url + "/shop/cart", clients=2, pause=0.01) as client:
        client.wait_for_answers(20)
        proc = subprocess.run(
            [sys.executable, "-m", "ci_serve", "deploy", str(config), "--address", green.dashboard_url,
             "--serve-url", green.serve_url, "--standby-address", blue.dashboard_url, "--standby-url",
             blue.serve_url, "--traffic-command", proxy.traffic_command("blue", "green"), "--traffic-steps",
             "10,50,100", "--step-interval", str(INTERVAL_S), "--metrics-lag", str(METRICS_LAG_S),
             "--min-requests", str(LIMITS.min_requests), "--prometheus-url", prom.url, "--prometheus-header",
             prom.auth_header, "--verify-url", proxy.url, "--report", str(report)],
            env=dict(env, HOME=str(tmp_path), RAY_AUTH_TOKEN=blue.token), capture_output=True, text=True, timeout=600)
        client.wait_for_answers(20)
    print(proc.stderr)
    data = json.loads(report.read_text())
    assert proc.returncode == 1, proc.stderr
    assert proxy.weights_set()[before:] == [10, 0]
    assert proxy.weights() == {"blue": 0, "green": 100}
    assert [(e["weight"], e["verdict"]) for e in data["traffic_steps"]] == [(10, "fail")]
    assert data["traffic_analysed"] is True and data["traffic_steps"][0]["new"]["errors"] > 0
    assert "traffic step 10 % fail" in proc.stderr
    assert requests.get(proxy.url + "/shop/cart", timeout=10).json()["version"] == "v2", "the old version serves"
    # the candidate left the standby: blue runs what it ran before (v1, not ours: written back as it was)
    wait_until(lambda: requests.get(f"{blue.serve_url}/shop/", timeout=10).json().get("version") == "v1", 240,
               "the standby back to its previous version", poll=1.0)
    assert all(f.startswith("HTTP 500") for f in client.failures), client.failures[:10]
