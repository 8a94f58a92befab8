"""The action deploying to a real Ray head on loopback (token auth on), as a release workflow runs it:
outputs (`deployed`, then `unchanged`), live-app, plan, the deploy's steps in the summary, token masked.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from ci_serve.cluster.head import TemporaryHead
from tests.container.runner import REPO
from tests.test_action_entrypoint import HEADER_SECRET, run_action

pytestmark = pytest.mark.ray


def _files(head: TemporaryHead, name: str = "shop") -> dict[str, str]:
    config = {"http_options": {"host": "127.0.0.1", "port": head.serve_port},
              "applications": [{"name": name, "route_prefix": f"/{name}", "import_path": "deploy_app:app",
                                "deployments": [{"name": "Echo", "user_config": {"greeting": "hi"}}]}]}
    app = (REPO / "tests" / "apps" / "deploy_v1" / "deploy_app.py").read_text(encoding="utf-8")
    return {"serve.yaml": json.dumps(config), "app/deploy_app.py": app}


def _deploy(tmp_path: Path, head: TemporaryHead):
    inputs = {"command": "deploy", "config": "serve.yaml", "address": head.dashboard_url,
              "ray-auth-token": head.token, "working-dir": "app", "app-dir": "app", "timeout": "300"}
    return run_action(tmp_path, inputs, files=_files(head), timeout=600)


def test_deploy_then_unchanged(head: TemporaryHead, tmp_path: Path):
    first = _deploy(tmp_path / "first", head)
    assert first.code == 0, first.log[-4000:]
    assert first.outputs["result"] == "deployed"
    assert first.outputs["live-app"].startswith("shop")
    assert json.loads(first.outputs["plan"])["applications"]
    assert first.outputs["report"] == ".ci-serve/deploy.json"
    assert "**Steps:**" in first.summary and "Live application:" in first.summary
    assert requests.get(head.serve_url + "/shop", timeout=10).json()["version"] == "v1"

    again = _deploy(tmp_path / "again", head)
    assert again.code == 0, again.log[-4000:]
    assert again.outputs["result"] == "unchanged"

    for got in (first, again):
        shown = "\n".join(ln for ln in got.log.splitlines() if not ln.startswith("::add-mask"))
        shown += got.summary + json.dumps(got.outputs)
        shown += "".join(p.read_text() for p in (got.dirs.workspace / ".ci-serve").glob("*.json"))
        assert head.token not in shown


def test_wrong_token_is_exit_2_and_masked(head: TemporaryHead, tmp_path: Path):
    wrong = "wrong-token-0000-1111"
    got = run_action(tmp_path, {"command": "status", "address": head.dashboard_url, "ray-auth-token": wrong})
    assert got.code == 2, got.log[-3000:]
    assert got.outputs["result"] == "error"
    assert wrong not in "\n".join(ln for ln in got.log.splitlines() if not ln.startswith("::add-mask"))
    assert "**What to do:**" in got.summary


def test_secrets_are_masked_before_anything_else_and_never_shown(head: TemporaryHead, tmp_path: Path):
    """A whole deploy (its own application, so it really writes, gates and sends requests) with the
    cluster token and a secret request header: both are masked first, and neither appears anywhere after."""
    requests_file = ("requests:\n  - name: with key\n    path: /\n    headers: {X-Api-Key: " + HEADER_SECRET + "}\n"
                     "    expect: {json: {version: v1, greeting: hi}}\n")
    inputs = {"command": "deploy", "config": "serve.yaml", "address": head.dashboard_url,
              "ray-auth-token": head.token, "working-dir": "app", "app-dir": "app", "requests": "requests.yaml",
              "timeout": "300"}
    got = run_action(tmp_path, inputs, files={**_files(head, "vault"), "requests.yaml": requests_file}, timeout=600)
    first = got.log.splitlines()[:2]
    assert [ln.split("::")[1].strip() for ln in first] == ["add-mask", "add-mask"], got.log[:2000]
    assert {ln.split("::", 2)[2] for ln in first} == {head.token, HEADER_SECRET}
    # the run went all the way: deployed, the request with the secret header sent and answered
    assert got.code == 0, got.log[-4000:]
    assert got.outputs["result"] == "deployed"
    report = json.loads((got.dirs.workspace / ".ci-serve" / "deploy.json").read_text())
    assert [(r["name"], r["passed"]) for r in report["requests"]] == [("with key", True)], report["requests"]
    assert requests.get(head.serve_url + "/vault", timeout=10).json()["version"] == "v1"
    rest = "\n".join(got.log.splitlines()[2:]) + got.summary + str(got.outputs)
    for path in (got.dirs.workspace / ".ci-serve").glob("*"):
        rest += path.read_text(encoding="utf-8")
    assert "with key" in rest  # the searched text covers the run's steps and requests
    assert head.token not in rest and HEADER_SECRET not in rest


def test_hold_then_abort_leaves_live_as_it_was(head: TemporaryHead, tmp_path: Path):
    """`hold: true` after a live v1: `held`, the preview answers v2 while v1 keeps its route, the
    summary shows the promote and abort commands; then `command: abort` with the hold's `release`:
    `aborted`, the candidate gone, v1's application exactly as before."""
    live = _deploy(tmp_path / "v1", head)
    assert live.code == 0 and live.outputs["result"] in ("deployed", "unchanged"), live.log[-4000:]
    before = requests.get(head.dashboard_url + "/api/serve/applications/", headers=head.auth_headers(),
                          timeout=30).json()["applications"]
    files = _files(head)
    files["app/deploy_app.py"] = (REPO / "tests" / "apps" / "deploy_v2" / "deploy_app.py").read_text(encoding="utf-8")
    release = "v2.0.0-rc1"
    inputs = {"command": "deploy", "hold": "true", "release": release, "config": "serve.yaml",
              "address": head.dashboard_url, "ray-auth-token": head.token, "working-dir": "app", "app-dir": "app",
              "strategy": "blue-green", "timeout": "300"}
    held = run_action(tmp_path / "hold", inputs, files=files, timeout=600)
    assert held.code == 0, held.log[-4000:]
    out = held.outputs
    assert (out["result"], out["release"], out["live-app"]) == ("held", release, live.outputs["live-app"])
    assert out["url"] == head.serve_url + "/shop" and out["preview-url"] not in ("", out["url"])
    assert requests.get(out["preview-url"], timeout=10).json()["version"] == "v2"
    assert requests.get(out["url"], timeout=10).json()["version"] == "v1"
    assert f"ci-serve promote serve.yaml --address {head.dashboard_url} --version {release}" in held.summary
    assert "command: abort" in held.summary and head.token not in held.summary
    assert f"::notice title=release held::Release {release} is held for review" in held.log

    status = run_action(tmp_path / "status", {"command": "status", "address": head.dashboard_url,
                                              "ray-auth-token": head.token})
    assert status.code == 0 and "**Held releases:** 1" in status.summary, status.log[-3000:]
    assert f"| shop | {release} |" in status.summary and out["preview-url"] in status.summary

    aborted = run_action(tmp_path / "abort", {"command": "abort", "release": out["release"], "config": "serve.yaml",
                                              "address": head.dashboard_url, "ray-auth-token": head.token},
                         files=files, timeout=600)
    assert aborted.code == 0, aborted.log[-4000:]
    assert (aborted.outputs["result"], aborted.outputs["release"]) == ("aborted", release)
    assert aborted.outputs["url"] == out["url"] and aborted.outputs["preview-url"] == ""
    assert f"release `{release}` aborted" in aborted.summary
    after = requests.get(head.dashboard_url + "/api/serve/applications/", headers=head.auth_headers(),
                         timeout=30).json()["applications"]
    assert {n: a.get("deployed_app_config") for n, a in after.items()} == \
        {n: a.get("deployed_app_config") for n, a in before.items()}
    assert requests.get(out["url"], timeout=10).json()["version"] == "v1"
