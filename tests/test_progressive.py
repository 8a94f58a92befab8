"""Traffic steps across two real Ray clusters, judged by a real Prometheus (issue 23).

Two heads on loopback with token auth, one on the image's Ray and one on an older release CI runs (2.46:
the heads of an upgrade are exactly what two clusters are for), each reporting its metrics every second.
A real HAProxy holds both in one backend; the traffic command sets their weights through its runtime API.
A real Prometheus (Debian's) scrapes both heads from the service-discovery file each writes, behind basic
auth, so the header path is the real one. A client sends requests through HAProxy the whole time while
`ci-serve deploy` / `promote` run as a user runs them, with --traffic-command and --prometheus-url.

The heads are shared, so the tests run in this order (each Ray is the analysed new side once): a good release
goes from 2.46 (green, live) to the image's Ray (blue, standby) and walks 10, 50, 100; the roles swap and a
bad release goes to the 2.46 side and is rolled back at 10; then a release held on the 2.46 side is promoted
without a Prometheus. Run alone, a test first puts what it needs in place.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from ci_serve.cluster.address import Target
from ci_serve.cluster.dashboard import DashboardClient
from ci_serve.cluster.head import HeadStartError, TemporaryHead, free_port
from ci_serve.cluster.packages import ship_working_dirs
from ci_serve.deploy.analysis import Thresholds
from ci_serve.deploy.ownership import with_marker
from ci_serve.deploy.prometheus import Prometheus as PrometheusAPI
from ci_serve.deploy.prometheus import parse_headers, session_from_node_summary, session_of
from ci_serve.errors import EXIT_BAD_INPUT, InputError
from tests.conftest import REPO, ci_serve_cmd
from tests.support.deploy_cli import run_cli
from tests.support.haproxy import WeightedHAProxy, haproxy_binary
from tests.support.processes import wait_until
from tests.support.prometheus import PASSWORD, Prometheus, prometheus_binary
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


def deploy(head: TemporaryHead, version: str, failing_path: str | None = None, name: str = "shop") -> None:
    """Put the shop of ``version`` on ``head`` (unless it runs already) and wait until it is RUNNING. Under
    another ``name`` it carries our marker for ``shop``, as a one-cluster blue-green deploy leaves it
    (``shop-green``): a two-cluster release finds it live and retires it."""
    env = {"SHOP_VERSION": version, **({"SHOP_FAILING_PATH": failing_path} if failing_path else {})}
    app = {"route_prefix": "/shop", "import_path": "progressive_app:app",
           "runtime_env": {"working_dir": str(APP), "env_vars": env}}
    if name != "shop":
        app = with_marker(app, "shop", version)
        env = app["runtime_env"]["env_vars"]
    config = {"http_options": {"host": "127.0.0.1", "port": head.serve_port}, "applications": [{"name": name, **app}]}
    client = client_of(head)
    now = client.get_applications()["applications"].get(name) or {}
    if (now.get("deployed_app_config") or {}).get("runtime_env", {}).get("env_vars") != env:
        shipped, _ = ship_working_dirs(client, config, base_dir=REPO)
        client.put_applications(shipped)
    wait_until(lambda: requests.get(f"{head.serve_url}/shop/", timeout=10).status_code == 200
               and requests.get(f"{head.serve_url}/shop/", timeout=10).json().get("version") == version,
               240, f"{version} answering on {head.serve_url}", poll=0.5)


def set_weights(proxy: WeightedHAProxy, live: str, other: str) -> None:
    for name, weight in ((live, 100), (other, 0)):
        subprocess.run(["socat", "stdio", f"UNIX-CONNECT:{proxy.socket}"], input=f"set server serve/{name} weight "
                       f"{weight}\n", text=True, check=True, capture_output=True, timeout=10)


def wait_scraped(prom: Prometheus, heads) -> None:
    """Both heads' metrics agents are targets and up (the service-discovery files list them)."""
    sessions = {session_of(client_of(h)) for h in heads.values()}

    def seen() -> bool:
        rows = prom.query("count by (SessionName) (ray_node_cpu_count)")
        return sessions <= {r["metric"].get("SessionName") for r in rows}

    wait_until(seen, 120, "Prometheus scraping both heads", poll=1.0)


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
    # the default --metrics-lag is Ray's report interval plus this (tests/support/prometheus.py scrapes every 1s)
    assert PrometheusAPI(prom.url, parse_headers([prom.auth_header])).scrape_interval() == 1.0
    with pytest.raises(InputError, match="cannot be used"):
        PrometheusAPI(heads["blue"].dashboard_url).check()  # a Ray dashboard is not a Prometheus


# -- `ci-serve deploy` / `promote` with --traffic-command (the contract) -----------------------------------
#: the traffic command of these tests: it records each call (the weight from the environment and from
#: ``{weight}``, the time before and after the proxy took it), then sets the weights as a user's would
RECORDING = """\
#!/bin/sh
set -eu
t0=$(date +%s.%N)
"{script}" "$1" "$2"
echo "$CI_SERVE_TRAFFIC_WEIGHT $3 $t0 $(date +%s.%N)" >> "{calls}"
"""


def apps_of(head: TemporaryHead) -> dict:
    return client_of(head).get_applications()["applications"]


def ensure_serving(head: TemporaryHead, version: str, name: str = "shop") -> None:
    """``version`` answers on ``head`` from ``name`` (a test run alone finds the heads empty; in order, the
    previous test left it)."""
    try:
        if requests.get(f"{head.serve_url}/shop/", timeout=10).json().get("version") == version and \
                name in apps_of(head):
            return
    except (requests.RequestException, ValueError):
        pass
    deploy(head, version, name=name)


def cli_config(tmp_path, head: TemporaryHead, version: str, failing_path: str | None = None):
    env = {"SHOP_VERSION": version, **({"SHOP_FAILING_PATH": failing_path} if failing_path else {})}
    config = {"http_options": {"host": "127.0.0.1", "port": head.serve_port},
              "applications": [{"name": "shop", "route_prefix": "/shop", "import_path": "progressive_app:app",
                                "runtime_env": {"working_dir": str(APP), "env_vars": env}}]}
    path = tmp_path / f"serve-{version}.yaml"
    path.write_text(json.dumps(config))
    return path


def smoke_requests(tmp_path, version: str):
    """The release's smoke requests: its root answers its version (a broken /shop/cart passes them)."""
    path = tmp_path / f"requests-{version}.yaml"
    path.write_text(f"requests:\n  - name: version\n    path: /\n    expect:\n      json: {{version: {version}, "
                    f"path: shop}}\n")
    return path


def recording_command(tmp_path, proxy: WeightedHAProxy, new: str, old: str) -> tuple[str, Path]:
    calls = tmp_path / "traffic-calls.log"
    script = tmp_path / "traffic.sh"
    script.write_text(RECORDING.format(script=proxy.traffic_script, calls=calls))
    script.chmod(0o755)
    return f"{script} {new} {old} {{weight}}", calls


def calls_of(path: Path) -> list[tuple[int, float, float]]:
    """(weight, unix time before the proxy took it, after) of each traffic command call; the two ways the
    command is told the weight ($CI_SERVE_TRAFFIC_WEIGHT and {weight}) agree."""
    out = []
    for line in path.read_text().splitlines() if path.exists() else []:
        env_weight, arg_weight, t0, t1 = line.split()
        assert env_weight == arg_weight, line
        out.append((int(env_weight), float(t0), float(t1)))
    return out


def two_cluster_flags(heads, proxy, live: str, standby: str, command: str, interval: float = INTERVAL_S):
    return ("--address", heads[live].dashboard_url, "--serve-url", heads[live].serve_url,
            "--standby-address", heads[standby].dashboard_url, "--standby-url", heads[standby].serve_url,
            "--verify-url", proxy.url, "--traffic-command", command, "--traffic-steps", "10,50,100",
            "--step-interval", f"{interval:g}", "--timeout", "180")


def metric_flags(prom: Prometheus) -> tuple[str, ...]:
    return ("--prometheus-url", prom.url, "--prometheus-header", prom.auth_header,
            "--min-requests", str(LIMITS.min_requests), "--max-error-rate", f"{LIMITS.max_error_rate:g}",
            "--metrics-lag", f"{METRICS_LAG_S:g}")


def run_release(cli_env, heads, tmp_path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    proc, report = run_cli(cli_env, heads["blue"].token, tmp_path, *args, timeout=600)
    print(proc.stdout, proc.stderr, sep="\n")  # shown when the test fails
    print(json.dumps({"traffic_steps": report.get("traffic_steps")}))
    return proc, report


def no_secret_in(prom: Prometheus, proc: subprocess.CompletedProcess[str], report: dict) -> None:
    value = prom.auth_header.partition(": ")[2]
    token = value.split()[-1]
    for where, text in (("stdout", proc.stdout), ("stderr", proc.stderr), ("report", json.dumps(report))):
        assert token not in text and PASSWORD not in text, f"the Prometheus header's value leaked into {where}"


def answers_in_unix_time(client: Traffic, offset: float) -> list[tuple[float, object]]:
    return sorted(((t + offset, a) for per_client in client.answers for t, a in per_client), key=lambda x: x[0])


def numbers(entry: dict) -> str:
    def side(n: dict) -> str:
        return f"{n['requests']} req / {n['errors']} 5xx / p99 {n['p99_ms']} ms"

    return f"{entry['weight']} % {entry['verdict']}: new {side(entry['new'])} | old {side(entry['old'])}"


class RetirementWatch:
    """When the old cluster's ``name`` went away, seen by polling its dashboard (unix time, or None)."""

    def __init__(self, head: TemporaryHead, name: str = "shop"):
        self.client = client_of(head)
        self.name = name
        self.gone_at: float | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self.stop.is_set() and self.gone_at is None:
            try:
                apps = self.client.get_applications()["applications"]
            except Exception:  # noqa: BLE001  (a busy dashboard: ask again)
                apps = {self.name: {}}
            if (apps.get(self.name) or {"status": "DELETING"}).get("status") == "DELETING":
                self.gone_at = time.time()
            self.stop.wait(0.3)

    def __enter__(self) -> RetirementWatch:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)


def test_cli_refuses_bad_traffic_inputs_before_any_write(heads, proxy, prom, cli_env, tmp_path):
    """Exit 2 and nothing written for traffic flags that cannot work; a wrong Prometheus header is refused by
    the real Prometheus and its value is never printed."""
    before = {n: a.get("last_deployed_time_s") for n, a in apps_of(heads["green"]).items()}
    command, calls = recording_command(tmp_path, proxy, "green", "blue")
    flags = two_cluster_flags(heads, proxy, "blue", "green", command)
    config = str(cli_config(tmp_path, heads["green"], "v9"))
    wrong = "Authorization: Basic " + base64.b64encode(b"ci:not-the-password-5e1b").decode()
    cases = {
        "both switch forms": (*flags, "--switch-command", "true"),
        "steps without a standby": ("--address", heads["blue"].dashboard_url, "--traffic-command", command),
        "decreasing steps": (*flags, "--traffic-steps", "50,10,100"),
        "a wrong Prometheus header": (*flags, "--prometheus-url", prom.url, "--prometheus-header", wrong),
    }
    for case, args in cases.items():
        proc, report = run_release(cli_env, heads, tmp_path, "deploy", config, *args)
        assert proc.returncode == 2, (case, proc.stderr[-3000:])
        secret = wrong.split()[-1]
        assert secret not in proc.stdout + proc.stderr + json.dumps(report), f"{case}: the header's value leaked"
    assert calls_of(calls) == [], "no traffic command ran"
    after = {n: a.get("last_deployed_time_s") for n, a in apps_of(heads["green"]).items()}
    assert after == before, "nothing was written to the standby"


def test_cli_a_good_release_walks_10_50_100_then_retires_the_old_cluster(heads, proxy, prom, cli_env, tmp_path):
    """2.46 (green) serves v2; `ci-serve deploy` of v4 to the image's Ray (blue) walks 10, 50, 100 under a
    constant client, judged by Prometheus; the old cluster's app goes only after the public entry answered v4."""
    # v2 runs under a colour, as a one-cluster deploy left it: the old version's metrics are read by that name
    ensure_serving(heads["green"], "v2", name="shop-green")
    set_weights(proxy, "green", "blue")
    wait_scraped(prom, heads)
    command, calls = recording_command(tmp_path, proxy, "blue", "green")
    offset = time.time() - time.monotonic()
    with Traffic(proxy.url + "/shop/cart", clients=2, pause=0.01) as client, \
            RetirementWatch(heads["green"], "shop-green") as old:
        client.wait_for_answers(20)
        proc, report = run_release(
            cli_env, heads, tmp_path, "deploy", str(cli_config(tmp_path, heads["blue"], "v4")),
            *two_cluster_flags(heads, proxy, "green", "blue", command), *metric_flags(prom),
            "--requests", str(smoke_requests(tmp_path, "v4")), "--version", "v4")
        client.wait_for_answers(20)  # and after the release
        # Ray lists a removed app for a moment after the PUT that removes it
        wait_until(lambda: old.gone_at is not None or proc.returncode != 0, 60, "the old cluster's shop retired",
                   poll=0.5)

    assert proc.returncode == 0, proc.stderr[-5000:]
    assert report["result"] == "deployed" and report["traffic_analysed"] is True
    assert [w for w, _, _ in calls_of(calls)] == [10, 50, 100]
    assert proxy.weights() == {"blue": 100, "green": 0}
    entries = report["traffic_steps"]
    assert [(e["weight"], e["verdict"]) for e in entries] == [(10, "pass"), (50, "pass"), (100, "pass")], entries
    for e in entries:
        assert e["new"]["requests"] >= LIMITS.min_requests and e["new"]["errors"] == 0, e
        assert e["new"]["error_rate"] == 0 and e["new"]["p99_ms"] is not None, e
    ten = entries[0]
    assert 0.03 <= ten["new"]["requests"] / (ten["new"]["requests"] + ten["old"]["requests"]) <= 0.25, ten
    assert entries[2]["old"]["requests"] == 0, "at 100 % the old cluster takes nothing"
    assert client.failures == [], client.failures[:10]
    answers = answers_in_unix_time(client, offset)
    assert {"v2", "v4"} <= {a["version"] for _, a in answers if isinstance(a, dict)}, "the client saw both"
    assert answers[-1][1]["version"] == "v4"
    # the old cluster's app was retired, and only after the public entry answered from v4 (and the last
    # answer of v2 reached the client before that)
    assert old.gone_at is not None, "the old cluster's shop was not retired"
    first_v4 = min(t for t, a in answers if isinstance(a, dict) and a["version"] == "v4")
    last_v2 = max(t for t, a in answers if isinstance(a, dict) and a["version"] == "v2")
    assert first_v4 < last_v2 < old.gone_at
    names = [s["name"] for s in report["steps"]]
    assert names.index("verify public entry") < names.index("retire old cluster"), names
    assert "the traffic moved" in (report.get("switch_proof") or ""), report.get("switch_proof")
    assert "...  hold 50%: 50 %, " in proc.stderr and "s to go: new " in proc.stderr, "a heartbeat with live numbers"
    no_secret_in(prom, proc, report)
    print("measured (good release, 2.46 -> image's Ray):", *map(numbers, entries),
          f"client: {len(answers)} answers, 0 failed", sep="\n  ")


def test_cli_a_release_failing_a_path_the_client_uses_goes_back_to_zero_at_10(heads, proxy, prom, cli_env,
                                                                              tmp_path):
    """The image's Ray (blue) serves v4; v5 passes its smoke requests on the 2.46 side (green) but answers 500
    on /shop/cart, which the client uses: weights 10 then 0, exit 1, v4 serves, the candidate is removed."""
    ensure_serving(heads["blue"], "v4")
    set_weights(proxy, "blue", "green")
    wait_scraped(prom, heads)
    command, calls = recording_command(tmp_path, proxy, "green", "blue")
    offset = time.time() - time.monotonic()
    with Traffic(proxy.url + "/shop/cart", clients=2, pause=0.01) as client:
        client.wait_for_answers(20)
        proc, report = run_release(
            cli_env, heads, tmp_path, "deploy", str(cli_config(tmp_path, heads["green"], "v5", failing_path="cart")),
            *two_cluster_flags(heads, proxy, "blue", "green", command), *metric_flags(prom),
            "--requests", str(smoke_requests(tmp_path, "v5")), "--version", "v5")
        client.wait_for_answers(20)  # and after the rollback

    assert proc.returncode == 1, proc.stderr[-5000:]
    assert report["result"] != "deployed" and report["traffic_analysed"] is True
    assert "traffic step 10 % fail" in proc.stderr and "error rate" in proc.stderr
    made = calls_of(calls)
    assert [w for w, _, _ in made] == [10, 0], made
    assert proxy.weights() == {"blue": 100, "green": 0}
    [entry] = report["traffic_steps"]
    assert entry["weight"] == 10 and entry["verdict"] == "fail", entry
    assert entry["new"]["requests"] > 0 and entry["new"]["errors"] > 0 and entry["new"]["error_rate"] > 1, entry
    assert entry["old"]["requests"] > 0 and entry["old"]["errors"] == 0, entry
    # the window opened after the metrics lag: none of the requests sent before the step (the standby checks of
    # /shop/, which v5 answers well) is in it: every request it counted on v5 was a /shop/cart
    assert entry["new"]["errors"] == entry["new"]["requests"], entry
    # the client saw failures only for the new version's share, and only while it had 10 %
    (_, start, _), (_, _, end) = made
    answers = answers_in_unix_time(client, offset)
    failed = [t for t, a in answers if isinstance(a, str)]
    assert failed and all(a == "HTTP 500" for _, a in answers if isinstance(a, str)), failed[:5]
    assert all(start <= t <= end + 1.0 for t in failed), "a failure outside the 10 % step"
    during = [a for t, a in answers if start <= t <= end]
    assert len(failed) <= 0.25 * len(during), (len(failed), len(during))
    assert {a["version"] for _, a in answers if isinstance(a, dict)} == {"v4"}, "v5 answers only with 500s"
    assert requests.get(proxy.url + "/shop/cart", timeout=10).json()["version"] == "v4", "the old version serves"
    assert "shop" not in apps_of(heads["green"]), "the candidate is removed"
    no_secret_in(prom, proc, report)
    print("measured (bad release, image's Ray -> 2.46):", numbers(entry), f"client: {len(failed)} HTTP 500 of "
          f"{len(during)} answers while the 10 % step lasted ({end - start:.1f}s), {len(answers)} in all", sep="\n  ")


def test_cli_promote_of_a_held_release_walks_the_steps_without_metrics(heads, proxy, cli_env, tmp_path):
    """v6 held on the 2.46 side (green) with `deploy --hold`, then `ci-serve promote` walks 10, 50, 100 with
    no --prometheus-url: each step holds its interval and checks the public entry; the run says no metric was
    analysed, and the steps' numbers are null."""
    ensure_serving(heads["blue"], "v4")
    set_weights(proxy, "blue", "green")
    command, calls = recording_command(tmp_path, proxy, "green", "blue")
    config = str(cli_config(tmp_path, heads["green"], "v6"))
    flags = (*two_cluster_flags(heads, proxy, "blue", "green", command, interval=2.0),
             "--requests", str(smoke_requests(tmp_path, "v6")), "--version", "v6")
    proc, report = run_release(cli_env, heads, tmp_path, "deploy", config, "--hold", *flags)
    assert proc.returncode == 0 and report["result"] == "held", proc.stderr[-5000:]
    assert calls_of(calls) == [] and proxy.weights() == {"blue": 100, "green": 0}, "a hold moves no traffic"

    with Traffic(proxy.url + "/shop/cart", clients=1, pause=0.01) as client:
        client.wait_for_answers(10)
        proc, report = run_release(cli_env, heads, tmp_path, "promote", config, *flags)
        client.wait_for_answers(10)

    assert proc.returncode == 0, proc.stderr[-5000:]
    assert report["result"] == "deployed" and report["traffic_analysed"] is False
    assert "no metric is analysed" in proc.stderr
    assert [w for w, _, _ in calls_of(calls)] == [10, 50, 100]
    assert proxy.weights() == {"blue": 0, "green": 100}
    nulls = {"requests": None, "errors": None, "error_rate": None, "p99_ms": None}
    assert report["traffic_steps"] == [{"weight": w, "verdict": "pass", "new": nulls, "old": nulls}
                                       for w in (10, 50, 100)], report["traffic_steps"]
    assert client.failures == [], client.failures[:10]
    assert {"v4", "v6"} <= set(client.versions(0)) and client.versions(0)[-1] == "v6"
    assert (apps_of(heads["blue"]).get("shop") or {"status": "DELETING"})["status"] == "DELETING", \
        "the old app is retired"


def test_cli_a_cancel_mid_walk_sets_the_share_back_to_zero(heads, proxy, cli_env, tmp_path):
    """SIGINT (what a cancelled job gets first) while the 50 % step holds: the traffic command runs with 0 at
    once, the old version serves, the candidate goes; the step cut short has no entry; exit 1."""
    ensure_serving(heads["green"], "v6")
    set_weights(proxy, "green", "blue")
    command, calls = recording_command(tmp_path, proxy, "blue", "green")
    report_path = tmp_path / "report.json"
    args = ci_serve_cmd("deploy", str(cli_config(tmp_path, heads["blue"], "v7")),
                        *two_cluster_flags(heads, proxy, "green", "blue", command, interval=5.0),
                        "--requests", str(smoke_requests(tmp_path, "v7")), "--version", "v7",
                        "--report", str(report_path))
    with Traffic(proxy.url + "/shop/cart", clients=1, pause=0.01) as client:
        client.wait_for_answers(10)
        with subprocess.Popen(args, env=dict(cli_env, RAY_AUTH_TOKEN=heads["blue"].token), cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
            try:
                wait_until(lambda: [w for w, _, _ in calls_of(calls)] == [10, 50] or proc.poll() is not None, 300,
                           "the 50 % step", poll=0.2)
                proc.send_signal(signal.SIGINT)
                out, _ = proc.communicate(timeout=180)
            finally:
                if proc.poll() is None:
                    proc.kill()
        client.wait_for_answers(10)
    print(out)
    report = json.loads(report_path.read_text())
    assert proc.returncode == 1, out[-5000:]
    assert "cancelled by SIGINT" in out
    assert [w for w, _, _ in calls_of(calls)] == [10, 50, 0]
    assert proxy.weights() == {"blue": 0, "green": 100}
    assert [(e["weight"], e["verdict"]) for e in report["traffic_steps"]] == [(10, "pass")], report["traffic_steps"]
    assert (apps_of(heads["blue"]).get("shop") or {"status": "DELETING"})["status"] == "DELETING", \
        "the candidate is removed"
    assert client.failures == [], client.failures[:10]
    assert client.versions(0)[-1] == "v6" and requests.get(proxy.url + "/shop/cart", timeout=10).json()["version"] \
        == "v6", "the old version serves"


def test_cli_a_way_back_the_balancer_ignores_is_exit_3_and_the_candidate_stays(heads, proxy, cli_env, tmp_path):
    """The traffic command takes every weight but 0 (the way back does nothing): after a cancel at 100 % the public
    entry still answers from the new version, so the old one is not seen where users reach it: exit 3, and the
    candidate, which still takes the traffic, is not removed (review of issue 23: it was removed, exit 1)."""
    ensure_serving(heads["green"], "v8")
    set_weights(proxy, "green", "blue")
    command, calls = recording_command(tmp_path, proxy, "blue", "green")
    ignoring = tmp_path / "ignores-zero.sh"
    inner = command.replace("{weight}", '"$1"')
    ignoring.write_text(f'#!/bin/sh\n[ "$CI_SERVE_TRAFFIC_WEIGHT" = 0 ] && exit 0\nexec {inner}\n')
    ignoring.chmod(0o755)
    report_path = tmp_path / "report.json"
    args = ci_serve_cmd("deploy", str(cli_config(tmp_path, heads["blue"], "v9")),
                        *two_cluster_flags(heads, proxy, "green", "blue", f"{ignoring} {{weight}}", interval=4.0),
                        "--requests", str(smoke_requests(tmp_path, "v9")), "--version", "v9", "--verify-timeout", "5",
                        "--report", str(report_path))
    try:
        with subprocess.Popen(args, env=dict(cli_env, RAY_AUTH_TOKEN=heads["blue"].token), cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
            try:
                wait_until(lambda: [w for w, _, _ in calls_of(calls)] == [10, 50, 100] or proc.poll() is not None,
                           300, "the 100 % step", poll=0.2)
                proc.send_signal(signal.SIGINT)
                out, _ = proc.communicate(timeout=180)
            finally:
                if proc.poll() is None:
                    proc.kill()
        print(out)
        report = json.loads(report_path.read_text())
        assert proc.returncode == 3, out[-5000:]
        assert report["exit_code"] == 3
        assert "did not answer from the old version" in out, out[-3000:]
        assert proxy.weights() == {"blue": 100, "green": 0}, "the way back really did nothing"
        assert apps_of(heads["blue"])["shop"]["status"] == "RUNNING", "the candidate that takes the traffic stays"
        assert requests.get(proxy.url + "/shop/", timeout=10).json()["version"] == "v9"
    finally:
        set_weights(proxy, "green", "blue")
