"""Deploys to a cluster of two nodes (issue 12), with the code shipped from a real git checkout.

A head (1 CPU: Serve's controller and proxy) and a worker node started with ``ray start --address``
on this machine (its own ports, the head's token; tests/support/clusters.py). Replicas ask for a
custom resource only the worker has, so they run there, and the code they run is the package the
deploy uploaded, fetched by the worker from the head. The checkout is a git repository served with
``working_dir: service`` of it:

1. first deploy: the replica runs on the worker; what it sees of its working_dir holds no ``.git``
   and no ignored file, and the executable bit of a script survived;
2. a commit that changes no shipped file: ``unchanged``, nothing written;
3. new code: blue-green onto the worker while a client sends requests throughout; none fails.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from ci_serve.cluster.address import Target
from ci_serve.cluster.dashboard import DashboardClient
from ci_serve.cluster.head import TemporaryHead
from tests.support.clusters import WorkerNode, alive_nodes
from tests.support.deploy_cli import deploy_cli
from tests.support.traffic import Traffic
from tests.test_packages_git import git

pytestmark = pytest.mark.ray

APP = '''
import os
import stat
from pathlib import Path

import ray
from ray import serve

VERSION = "{version}"


@serve.deployment(ray_actor_options={{"num_cpus": 0, "resources": {{"edge": 1}}}})
class Where:
    async def __call__(self, request) -> dict:
        here = Path.cwd()
        return {{"version": VERSION, "node": ray.get_runtime_context().get_node_id(),
                "files": sorted(p.name for p in here.iterdir()),
                "script_executable": bool((here / "run.sh").stat().st_mode & stat.S_IXUSR)}}


app = Where.bind()
'''


@pytest.fixture(scope="module")
def cluster():
    with TemporaryHead(dashboard=True, num_cpus=1) as head, WorkerNode(head, resources={"edge": 2}) as worker:
        yield head, worker


def worker_node_id(head: TemporaryHead) -> str:
    (node,) = [n for n in alive_nodes(head) if n.get("resourcesTotal", {}).get("edge")]
    return node["nodeId"]


def checkout(tmp_path: Path, version: str) -> Path:
    repo = tmp_path / "repo"
    service = repo / "service"
    if not repo.exists():
        service.mkdir(parents=True)
        git(repo, "init", "-q", "-b", "main")
        (repo / ".gitignore").write_text("*.log\n__pycache__/\n")
        (repo / "README.md").write_text("the shop\n")
        (service / "run.sh").write_text("#!/bin/sh\nexec python -c 'print(1)'\n")
        (service / "run.sh").chmod(0o755)
    (service / "shop_app.py").write_text(APP.format(version=version))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", version)
    (service / "debug.log").write_text("ignored, never shipped\n")
    return repo


def write_config(repo: Path, head: TemporaryHead) -> Path:
    config = {"http_options": {"host": "127.0.0.1", "port": head.serve_port},
              "proxy_location": "HeadOnly",  # the nodes share this machine's ports: one proxy
              "applications": [{"name": "shop", "route_prefix": "/shop", "import_path": "shop_app:app",
                                "runtime_env": {"working_dir": "service"}}]}
    path = repo / "serve.yaml"
    path.write_text(json.dumps(config))
    return path


def deploy(head, cli_env, repo: Path, *extra: str):
    """Deploy from the checkout, as a workflow does; the report goes beside it, not into it."""
    return deploy_cli(head, cli_env, repo, repo / "serve.yaml", "--serve-url", head.serve_url, *extra,
                      report_dir=repo.parent)


def test_two_nodes_code_from_git_blue_green_on_the_worker(cluster, cli_env, tmp_path):
    head, _ = cluster
    on_worker = worker_node_id(head)
    client = DashboardClient(Target(head.dashboard_url, head.token))

    repo = checkout(tmp_path, "v1")
    write_config(repo, head)
    proc, report = deploy(head, cli_env, repo)
    assert proc.returncode == 0, proc.stderr
    answer = requests.get(head.serve_url + "/shop", timeout=10).json()
    assert answer["version"] == "v1" and answer["node"] == on_worker, answer
    files = set(answer["files"]) - {"__pycache__"}  # the import's own cache, written on the worker
    assert files == {"run.sh", "shop_app.py"}, answer  # no .git, no debug.log: the package we shipped
    assert answer["script_executable"] is True
    first_uri = report["packages"][0]["uri"]

    (repo / "README.md").write_text("the shop, documented\n")  # outside the working_dir
    (repo / "service" / "debug.log").write_text("more noise\n")  # ignored
    git(repo, "commit", "-q", "-am", "docs only")
    before = client.get_applications()["applications"]["shop-blue"]["last_deployed_time_s"]
    proc, report = deploy(head, cli_env, repo)
    assert proc.returncode == 0, proc.stderr
    assert report["result"] == "unchanged" and report["packages"][0]["uri"] == first_uri
    assert client.get_applications()["applications"]["shop-blue"]["last_deployed_time_s"] == before

    checkout(tmp_path, "v2")
    with Traffic(head.serve_url + "/shop") as traffic:
        traffic.wait_for_answers(5)  # the live version answers before the deploy
        proc, report = deploy(head, cli_env, repo)
        traffic.wait_for_answers(5)  # and the new one after it
    assert proc.returncode == 0, proc.stderr
    assert report["result"] == "deployed" and report["strategy"] == "blue-green"
    versions = traffic.versions()
    assert traffic.failures == [] and len(versions) > 20, traffic.failures[:5]
    assert versions[0] == "v1" and versions[-1] == "v2"
    answer = requests.get(head.serve_url + "/shop", timeout=10).json()
    assert answer["version"] == "v2" and answer["node"] == on_worker, answer
    apps = client.get_applications()["applications"]
    assert set(n for n in apps if n.startswith("shop")) == {"shop-green"}
