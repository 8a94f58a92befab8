"""Smoke tests on the Ray the team pins, and the version-skew warning of plan/deploy, on real heads.

- ``smoke --requirements`` with ``ray[serve]==2.40.0`` and ``fastapi==0.115.6`` runs a FastAPI app on
  a Ray 2.40 head (the FastAPI ingress that the newest FastAPI cannot pickle on 2.40), says so in its
  first line and report, and a second run reuses the environment.
- An unresolvable pin is exit 2 naming the package, and leaves nothing half-built in the cache.
- ``deploy`` from this (2.60) client to a Ray 2.40 cluster, with the app pinning 2.60, warns of the
  skew with what differs, and ``--require-same-ray`` makes it exit 2 without a write.

The environments are built with uv from the machine's uv cache (``UV_CACHE_DIR``), so only the first
run on a machine downloads Ray; the env folder itself is per test (``CI_SERVE_ENV_CACHE``) where the
test is about building and reusing it.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import requests

from ci_serve.cluster.address import Target
from ci_serve.cluster.dashboard import DashboardClient
from ci_serve.cluster.head import TemporaryHead
from ci_serve.cluster.pyenv import MARKER, ensure_env
from tests.conftest import REPO, ci_serve_cmd
from tests.test_smoke_ray import assert_head_gone

RAY_240 = "ray[serve]==2.40.0\nfastapi==0.115.6\n"

FASTAPI_APP = '''
from fastapi import FastAPI
from ray import serve

api = FastAPI()


@serve.deployment(ray_actor_options={"num_cpus": 0.2})
@serve.ingress(api)
class Hello:
    @api.get("/hello")
    def hello(self, name: str = "world") -> dict:
        import ray
        return {"hello": name, "ray": ray.__version__}


app = Hello.bind()
'''

REQUESTS = '''
requests:
  - name: hello on the pinned Ray
    path: /hello?name=ci
    expect: {status: 200, json: {hello: ci, ray: "2.40.0"}}
'''


@pytest.fixture
def env_cli(cli_env: dict, tmp_path: Path) -> dict:
    """cli_env with a private env cache and the machine's uv download cache."""
    uv_cache = os.environ.get("UV_CACHE_DIR") or str(Path.home() / ".cache" / "uv")
    return dict(cli_env, CI_SERVE_ENV_CACHE=str(tmp_path / "envs"), UV_CACHE_DIR=uv_cache)


@pytest.mark.ray
def test_smoke_runs_on_the_pinned_ray_and_reuses_its_environment(env_cli: dict, tmp_path: Path) -> None:
    (tmp_path / "hello.py").write_text(FASTAPI_APP)
    (tmp_path / "requests.yaml").write_text(REQUESTS)
    (tmp_path / "requirements.txt").write_text(RAY_240)
    reports = []
    for i in range(2):
        report = tmp_path / f"report{i}.json"
        proc = subprocess.run(ci_serve_cmd("smoke", "hello:app", "--requirements", "requirements.txt",
                                           "--requests", "requests.yaml", "--report", str(report)),
                              env=env_cli, cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr
        first = proc.stderr.splitlines()[0]
        assert first.startswith("smoke test on Ray 2.40.0 (pinned by requirements.txt)"), first
        assert "ok   start Serve  (Ray 2.40.0," in proc.stderr
        assert "ok   hello on the pinned Ray" in proc.stderr  # the replica itself answered from 2.40.0
        assert_head_gone(proc.stderr)
        reports.append(json.loads(report.read_text()))
    assert [r["ray_version"] for r in reports] == ["2.40.0", "2.40.0"]
    built, reused = (r["environment"] for r in reports)
    assert built["built"] is True and built["installer"] == "uv"
    assert reused["built"] is False and reused["path"] == built["path"]
    assert "reused" in reports[1]["steps"][1]["detail"]
    assert [p.name for p in (tmp_path / "envs").iterdir() if p.is_dir()] == [Path(built["path"]).name]
    # Ray starts its dashboard with `python -B`: the bytecode must be compiled when the environment is built
    assert list(Path(built["path"]).glob("lib/python3*/site-packages/ray/dashboard/__pycache__/*.pyc"))


def test_unresolvable_pin_is_exit_2_naming_the_package(env_cli: dict, tmp_path: Path) -> None:
    (tmp_path / "hello.py").write_text(FASTAPI_APP)
    (tmp_path / "requirements.txt").write_text("ray[serve]==2.40.0\nci-serve-no-such-package-4711==1.0\n")
    report = tmp_path / "report.json"
    proc = subprocess.run(ci_serve_cmd("smoke", "hello:app", "--requirements", "requirements.txt",
                                       "--report", str(report)),
                          env=env_cli, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    error = proc.stderr.split("ERROR", 1)[1]
    assert "the requirements could not be installed" in error
    assert "ci-serve-no-such-package-4711" in error.splitlines()[0]  # the resolver's line names it
    data = json.loads(report.read_text())
    assert data["exit_code"] == 2 and data["result"] == "error"
    assert "start Ray head" not in data["timings"]
    envs = tmp_path / "envs"
    assert not [p for p in envs.iterdir() if p.is_dir()], "a failed build must leave no environment behind"


def test_ray_version_that_does_not_exist_is_exit_2(env_cli: dict, tmp_path: Path) -> None:
    (tmp_path / "hello.py").write_text(FASTAPI_APP)
    proc = subprocess.run(ci_serve_cmd("smoke", "hello:app", "--ray-version", "0.0.1"),
                          env=env_cli, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "ray" in proc.stderr.split("ERROR", 1)[1].splitlines()[0].lower()


def test_half_built_environment_is_never_reused(tmp_path: Path) -> None:
    """An environment folder without its marker (a build killed midway) is removed and built again."""
    root = tmp_path / "envs"
    env = ensure_env("six==1.16.0\n", root=root)
    (env.path / MARKER).unlink()
    (env.path / "half-installed").write_text("")
    again = ensure_env("six==1.16.0\n", root=root)
    assert again.built is True and again.path == env.path
    assert not (again.path / "half-installed").exists()


@pytest.fixture(scope="module")
def head_240():
    env = ensure_env(RAY_240)
    with TemporaryHead(dashboard=True, num_cpus=2, ray=env.ray) as head:
        yield head


@pytest.mark.ray
def test_deploy_from_this_client_to_an_older_cluster_warns_of_skew(head_240, cli_env: dict, tmp_path: Path) -> None:
    client = DashboardClient(Target(head_240.dashboard_url, head_240.token), min_interval=0.0)
    assert client.get_version() == "2.40.0"
    config = tmp_path / "serve.yaml"
    config.write_text(json.dumps({
        "http_options": {"host": "127.0.0.1", "port": head_240.serve_port},
        "applications": [{"name": "shop", "route_prefix": "/shop", "import_path": "deploy_app:app",
                          "runtime_env": {"working_dir": str(REPO / "tests" / "apps" / "deploy_v1")}}]}))
    (tmp_path / "requirements.txt").write_text("ray[serve]==2.60.0\n")  # what the PR was tested on
    env = dict(cli_env, RAY_AUTH_TOKEN=head_240.token)

    def deploy(*extra: str) -> tuple[subprocess.CompletedProcess, dict]:
        report = tmp_path / "report.json"
        proc = subprocess.run(ci_serve_cmd("deploy", str(config), "--address", head_240.dashboard_url,
                                           "--requirements", "requirements.txt", "--report", str(report), *extra),
                              env=env, cwd=tmp_path, capture_output=True, text=True, timeout=400)
        return proc, json.loads(report.read_text())

    refused, data = deploy("--require-same-ray")
    assert refused.returncode == 2, refused.stderr
    assert "the cluster runs Ray 2.40.0, the app pins Ray 2.60.0 (requirements.txt)" in refused.stderr
    assert "--require-same-ray" in refused.stderr
    assert data["ray_skew"]["same"] is False
    assert client.get_applications()["applications"] == {}  # nothing was written

    proc, data = deploy()
    assert proc.returncode == 0, proc.stderr
    assert "WARN  Ray version skew: the cluster runs Ray 2.40.0, the app pins Ray 2.60.0" in proc.stderr
    assert "token authentication exists only from Ray 2.52" in proc.stderr
    assert data["ray_skew"] == {"cluster": "2.40.0", "app": "2.60.0", "source": "requirements.txt",
                                "same": False, "differences": data["ray_skew"]["differences"]}
    assert len(data["ray_skew"]["differences"]) == 2
    assert requests.get(head_240.serve_url + "/shop", timeout=10).json()["version"] == "v1"


@pytest.mark.ray
def test_plan_with_the_same_ray_says_nothing_of_skew(head_240, cli_env: dict, tmp_path: Path) -> None:
    config = tmp_path / "serve.yaml"
    config.write_text(json.dumps({"applications": [{"name": "other", "route_prefix": "/other",
                                                    "import_path": "deploy_app:app"}]}))
    proc = subprocess.run(ci_serve_cmd("plan", str(config), "--address", head_240.dashboard_url,
                                       "--app-dir", str(REPO / "tests" / "apps" / "deploy_v1"),
                                       "--ray-version", "2.40.0", "--require-same-ray"),
                          env=dict(cli_env, RAY_AUTH_TOKEN=head_240.token), cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "skew" not in proc.stderr
