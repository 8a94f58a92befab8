"""No secret leaves the tool (issues 6 and 12): a full run (smoke, deploy that passes, deploy that fails
and rolls back, a wrong token, plan, status, config) with a cluster token, a secret request header,
secret ``runtime_env.env_vars`` values, and credentials inside URLs (an ``--address`` with
``user:password@``, a remote ``working_dir``, ``py_modules`` and a pip index URL with tokens); then
EVERY output (stdout, stderr, report JSON, JUnit) is searched for the secrets. None may appear, in any
encoding a log would use."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from ci_serve.cluster.head import free_port
from tests.conftest import ci_serve_cmd

pytestmark = pytest.mark.ray

HEADER_VALUE = "s3cret-header-value"
ENV_VALUES = {"API_SECRET": "s3cret-env-value", "API_KEY_EXPECTED": HEADER_VALUE}
EXTRA_ENV = {"API_ROTATED": "s3cret-rotated-value"}  # the failing release changes an env var value
WRONG_TOKEN = "wr0ng-token-value-0123456789abcdef"
URL_SECRETS = {"address password": "addr-pa55word", "working_dir password": "wd-pa55word",
               "py_modules token": "pym-t0ken-value", "pip index token": "pip-t0ken-value"}

APP = '''
import os
from ray import serve
from starlette.requests import Request


@serve.deployment(ray_actor_options={"num_cpus": 0.1})
class Guard:
    async def __call__(self, request: Request) -> dict:
        if request.url.path.endswith("/echo"):  # an app that echoes what it was sent
            return {"you_sent": dict(request.headers), "env": dict(os.environ)}
        ok = request.headers.get("x-api-key") == os.environ.get("API_KEY_EXPECTED")
        return {"authorized": ok, "env_set": bool(os.environ.get("API_SECRET"))}


app = Guard.bind()
'''


def files(tmp_path: Path, serve_port: int) -> dict[str, Path]:
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    (app_dir / "guard.py").write_text(APP)
    config = {"http_options": {"host": "127.0.0.1", "port": serve_port},
              "applications": [{"name": "guard", "route_prefix": "/guard", "import_path": "guard:app",
                                "runtime_env": {"env_vars": ENV_VALUES}}]}
    (tmp_path / "serve.yaml").write_text(json.dumps(config))
    config["applications"][0]["runtime_env"]["env_vars"] = {**ENV_VALUES, **EXTRA_ENV}
    (tmp_path / "serve2.yaml").write_text(json.dumps(config))
    # a release whose code comes from URLs holding credentials (unreachable: the deploy must fail)
    config["applications"][0]["runtime_env"].update({
        "working_dir": f"https://deploy:{URL_SECRETS['working_dir password']}@code.invalid/guard.zip",
        "py_modules": [f"https://{URL_SECRETS['py_modules token']}@code.invalid/lib.zip"],
        "pip": {"packages": ["requests"], "pip_install_options": [
            "--index-url", f"https://__token__:{URL_SECRETS['pip index token']}@pypi.invalid/simple"]}})
    (tmp_path / "serve-urls.yaml").write_text(json.dumps(config))
    request = {"name": "authorized", "method": "GET", "path": "/",
               "headers": {"X-Api-Key": HEADER_VALUE, "Accept": "application/json"}}
    (tmp_path / "requests.yaml").write_text(json.dumps(
        {"requests": [{**request, "expect": {"json": {"authorized": True, "env_set": True}}}]}))
    echo = {**request, "name": "echo", "path": "/echo"}
    (tmp_path / "failing.yaml").write_text(json.dumps(  # the deploy's checks fail and show the answers
        {"requests": [{**request, "expect": {"json": {"authorized": False}, "contains": "nope"}},
                      {**echo, "expect": {"json": {"you_sent": {}}}}]}))
    return {"app": app_dir, "config": tmp_path / "serve.yaml", "config2": tmp_path / "serve2.yaml",
            "requests": tmp_path / "requests.yaml", "failing": tmp_path / "failing.yaml",
            "config-urls": tmp_path / "serve-urls.yaml"}


def forms(secret: str) -> set[str]:
    """The secret and the ways a log could carry it."""
    return {secret, json.dumps(secret)[1:-1], secret.encode().hex(), repr(secret)[1:-1],
            secret.replace("-", "%2D")}


def test_a_full_run_never_shows_a_secret(make_head, cli_env, tmp_path):
    head = make_head(num_cpus=2, lean=True)
    paths = files(tmp_path, head.serve_port)
    env = dict(cli_env, RAY_AUTH_TOKEN=head.token)
    nobody = f"http://ci:{URL_SECRETS['address password']}@127.0.0.1:{free_port()}"  # nothing listens there
    out = tmp_path / "out"
    out.mkdir()
    runs: list[tuple[str, list[str], dict, int]] = [
        ("smoke", ["smoke", str(paths["config"]), "--app-dir", str(paths["app"]), "--requests",
                   str(paths["requests"]), "--report", str(out / "smoke.json"), "--junit", str(out / "junit.xml")],
         cli_env, 0),
        ("plan", ["plan", str(paths["config"]), "--address", head.dashboard_url, "--app-dir", str(paths["app"]),
                  "--report", str(out / "plan.json")], env, 0),
        ("deploy", ["deploy", str(paths["config"]), "--address", head.dashboard_url, "--working-dir",
                    str(paths["app"]), "--requests", str(paths["requests"]), "--serve-url", head.serve_url,
                    "--report", str(out / "deploy.json")], env, 0),
        ("status", ["status", "--address", head.dashboard_url], env, 0),
        ("status-json", ["status", "--address", head.dashboard_url, "--json"], env, 0),
        ("config", ["config", "--address", head.dashboard_url], env, 0),
        ("plan-changed", ["plan", str(paths["config2"]), "--address", head.dashboard_url, "--app-dir",
                          str(paths["app"]), "--report", str(out / "plan-changed.json")], env, 0),
        ("deploy-failing", ["deploy", str(paths["config2"]), "--address", head.dashboard_url, "--working-dir",
                            str(paths["app"]), "--requests", str(paths["failing"]), "--serve-url", head.serve_url,
                            "--report", str(out / "deploy-failing.json")], env, 1),
        ("wrong-token", ["deploy", str(paths["config"]), "--address", head.dashboard_url, "--working-dir",
                         str(paths["app"]), "--report", str(out / "wrong-token.json")],
         dict(cli_env, RAY_AUTH_TOKEN=WRONG_TOKEN), 2),
        ("plan-urls", ["plan", str(paths["config-urls"]), "--address", head.dashboard_url,
                       "--report", str(out / "plan-urls.json")], env, 0),
        ("deploy-urls", ["deploy", str(paths["config-urls"]), "--address", head.dashboard_url, "--timeout", "120",
                         "--report", str(out / "deploy-urls.json")], env, 1),
        ("address-credentials", ["status", "--address", nobody], dict(env, CI_SERVE_RETRY_BUDGET_S="1"), 2),
        ("address-credentials-deploy", ["deploy", str(paths["config"]), "--address", nobody, "--working-dir",
                                        str(paths["app"]), "--report", str(out / "address-credentials.json")],
         dict(env, CI_SERVE_RETRY_BUDGET_S="1"), 2),
    ]
    texts: dict[str, str] = {}
    for name, args, run_env, want in runs:
        proc = subprocess.run(ci_serve_cmd(*args), env=run_env, capture_output=True, text=True, timeout=500)
        texts[f"{name} stdout"] = proc.stdout
        texts[f"{name} stderr"] = proc.stderr
        assert proc.returncode == want, f"{name}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    for path in sorted(out.iterdir()):
        texts[path.name] = path.read_text()
    assert "deploy-failing.json" in texts and "junit.xml" in texts and "wrong-token.json" in texts
    secrets = {"token": head.token, "wrong token": WRONG_TOKEN, "header": HEADER_VALUE, **ENV_VALUES, **EXTRA_ENV,
               **URL_SECRETS}
    leaks = [f"{what} in {where}" for where, text in texts.items() for what, secret in secrets.items()
             if any(form in text for form in forms(secret))]
    assert leaks == [], leaks
    # and the runs did show what they were about (the masking did not blank everything)
    assert "API_SECRET" in texts["config stdout"] and "authorized" in texts["deploy stderr"]
    assert "https://***@code.invalid/guard.zip" in texts["plan-urls stdout"] + texts["plan-urls stderr"]
    assert "http://***@127.0.0.1:" in texts["address-credentials stderr"]
