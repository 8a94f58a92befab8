"""Shared fixtures. Ray tests run against real heads on loopback with token auth on."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ci_serve import cancel, secrets
from ci_serve.cluster.address import Target
from ci_serve.cluster.dashboard import DashboardClient
from ci_serve.cluster.head import TemporaryHead
from ci_serve.cluster.packages import upload_directory
from tests.support.faults import MATRIX_KEY
from tests.support.processes import wait_until

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"


@pytest.fixture(autouse=True)
def _clean_secret_registry() -> Iterator[None]:
    yield
    secrets.clear()
    cancel.clear()


@pytest.fixture
def make_head() -> Iterator:
    """Factory: ``head = make_head(num_cpus=4)``; every head it made is stopped after the test."""
    heads: list[TemporaryHead] = []

    def factory(**kwargs) -> TemporaryHead:
        kwargs.setdefault("dashboard", True)
        head = TemporaryHead(**kwargs)
        heads.append(head)
        return head.start()

    yield factory
    for head in heads:
        head.stop()


@pytest.fixture(scope="module")
def ray_head() -> Iterator[TemporaryHead]:
    """One head with a dashboard, shared by a test module. Tests must clean up the apps they deploy."""
    with TemporaryHead(dashboard=True, num_cpus=4) as head:
        yield head


@pytest.fixture(scope="module")
def head() -> Iterator[TemporaryHead]:
    """One head with a dashboard and 2 CPUs, shared by a test module: the size the deploy tests need.
    A module that needs another size defines its own ``head``."""
    with TemporaryHead(dashboard=True, num_cpus=2) as h:
        yield h


@pytest.fixture(scope="module")
def client(head: TemporaryHead) -> DashboardClient:
    """A dashboard client for the module's ``head``, unpaced (tests poll at their own rate)."""
    return DashboardClient(Target(head.dashboard_url, head.token), min_interval=0.0)


@pytest.fixture(scope="module")
def bystander(head: TemporaryHead, client: DashboardClient) -> Iterator[dict[str, Any]]:
    """Someone else's application on the module's head, deployed before any of ours; its status.

    At the module's end (a teardown, so the order of the tests does not matter) it must be as it was:
    RUNNING, with the same config. (test_deploy.py also checks its replicas were never restarted, on 2.60.)"""
    uri, _ = upload_directory(client, REPO / "tests" / "apps" / "deploy_v1")
    client.put_applications({"http_options": {"host": "127.0.0.1", "port": head.serve_port}, "applications": [
        {"name": "bystander", "route_prefix": "/by", "import_path": "deploy_app:app",
         "runtime_env": {"working_dir": uri}}]})
    wait_until(lambda: (client.get_applications()["applications"].get("bystander") or {}).get("status")
               == "RUNNING", 180, "the bystander RUNNING")
    before = client.get_applications()["applications"]["bystander"]
    yield before
    now = client.get_applications()["applications"].get("bystander")
    assert now is not None, "the bystander was removed"
    assert now["status"] == "RUNNING", now["status"]
    assert now["deployed_app_config"] == before["deployed_app_config"], "the bystander's config was changed"
    # Ray 2.60 stamps a new last_deployed_time_s on every app named in a PUT, even an unchanged one;
    # the declarative API cannot avoid it (see ci_serve/deploy/cluster_config.py).


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    """An environment for running ``ci-serve`` as a subprocess: no RAY_* leaking in from the developer."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "GITHUB_", "INPUT_"))}
    env["HOME"] = str(tmp_path / "home")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def ci_serve_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "ci_serve", *args]


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """The fault matrix's count of (step, fault) pairs tried (tests/test_fault_matrix.py)."""
    tried = config.stash.get(MATRIX_KEY, None)
    if tried:
        terminalreporter.write_sep("-", f"fault matrix: {tried['cells']} (step, fault) pairs tried, "
                                        f"{tried['injected']} injected, in {tried.get('seconds', 0)} s")
