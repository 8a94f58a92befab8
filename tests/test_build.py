"""`ci-serve build`: deterministic multi-application configs that Ray's schema accepts, that our
validate passes, and that deploy to a real Ray head and answer."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml

from ci_serve.cluster.address import Target
from ci_serve.cluster.dashboard import DashboardClient
from ci_serve.config.build import AppSpec, app_names, parse_specs
from ci_serve.config.validate import validate_config
from ci_serve.errors import InputError

from .conftest import REPO, ci_serve_cmd

APPS = REPO / "tests" / "apps"


def build(tmp_path: Path, cli_env: dict, *words: str, name: str = "out.yaml") -> tuple[subprocess.CompletedProcess,
                                                                                       Path]:
    out = tmp_path / name
    proc = subprocess.run(ci_serve_cmd("build", *words, "--app-dir", str(APPS), "-o", str(out)),
                          env=cli_env, capture_output=True, text=True, timeout=180, cwd=REPO)
    return proc, out


PARSE_CASES = {
    "one path": (["m:app"], [AppSpec("m:app")]),
    "Ray's rule: a hyphenated module, the dotted form": (["whisperx-deployment:entrypoint", "fruit.graph"],
                                                          [AppSpec("whisperx-deployment:entrypoint"),
                                                           AppSpec("fruit.graph")]),
    "builder args follow their path": (["m:builder", "a=1", "b=x=y", "n:app"],
                                       [AppSpec("m:builder", {"a": "1", "b": "x=y"}), AppSpec("n:app")]),
}


@pytest.mark.parametrize("words, specs", PARSE_CASES.values(), ids=PARSE_CASES.keys())
def test_parse_specs(words: list[str], specs: list[AppSpec]) -> None:
    assert parse_specs(words) == specs


@pytest.mark.parametrize("words", [["a=1", "m:app"], ["m:b", "=1"], ["src/app.py"], ["app"]])
def test_parse_specs_refuses_stray_arguments(words: list[str]) -> None:
    with pytest.raises(InputError):
        parse_specs(words)


def test_names_and_route_prefixes_follow_serve_build() -> None:
    assert app_names(1) == [("app1", "/")]
    assert app_names(3) == [("app1", "/app1"), ("app2", "/app2"), ("app3", "/app3")]


def test_build_is_deterministic_and_accepted_by_ray(tmp_path: Path, cli_env: dict) -> None:
    from ray.serve.schema import ServeDeploySchema

    words = ("graph_app:app", "plain_app:app", "graph_app:builder", "greeting=hey")
    proc, first = build(tmp_path, cli_env, *words, name="a.yaml")
    assert proc.returncode == 0, proc.stderr
    _, second = build(tmp_path, cli_env, *words, name="b.yaml")
    assert first.read_bytes() == second.read_bytes()
    text = first.read_text()
    assert text.startswith("# Written by `ci-serve build`")
    config = yaml.safe_load(text)
    ServeDeploySchema.model_validate(config)
    assert [(a["name"], a["route_prefix"]) for a in config["applications"]] == [
        ("app1", "/app1"), ("app2", "/app2"), ("app3", "/app3")]
    greeter = config["applications"][0]["deployments"][0]
    assert greeter == {"name": "Greeter", "num_replicas": 2, "max_ongoing_requests": 7,
                       "user_config": {"greeting": "hi", "punct": "!"},
                       "ray_actor_options": {"num_cpus": 0.5, "memory": 104857600}}
    assert config["applications"][2]["args"] == {"greeting": "hey"}
    assert config["applications"][2]["deployments"][0]["user_config"] == {"greeting": "hey"}
    result = validate_config(first, APPS, check_imports=True)
    assert result.problems == []

    # the same applications as Ray's own `serve build` writes (it has no builder arguments)
    serve = Path(sys.executable).parent / "serve"
    ray_out = tmp_path / "ray.yaml"
    subprocess.run([str(serve), "build", "graph_app:app", "plain_app:app", "-o", str(ray_out)], cwd=APPS,
                   env=cli_env, check=True, capture_output=True, timeout=180)
    assert yaml.safe_load(ray_out.read_text())["applications"] == config["applications"][:2]


def test_build_of_a_broken_import_is_exit_2_and_writes_nothing(tmp_path: Path, cli_env: dict) -> None:
    proc, out = build(tmp_path, cli_env, "broken_app:app")
    assert proc.returncode == 2
    assert "this module is broken on purpose" in proc.stderr and "Traceback (most recent" not in \
        proc.stderr.split("ERROR", 1)[0]
    assert not out.exists()


@pytest.mark.ray
def test_built_config_deploys_and_answers(tmp_path: Path, cli_env: dict, make_head) -> None:
    proc, out = build(tmp_path, cli_env, "graph_app:app")
    assert proc.returncode == 0, proc.stderr
    config = yaml.safe_load(out.read_text())
    assert config["applications"][0]["route_prefix"] == "/"
    head = make_head(num_cpus=4, cwd=APPS, extra_env={"PYTHONPATH": str(APPS)})
    config["http_options"] = {"host": "127.0.0.1", "port": head.serve_port}
    client = DashboardClient(Target(head.dashboard_url, head.token))
    client.put_applications(config)
    deadline = time.monotonic() + 180
    status = None
    while time.monotonic() < deadline:
        app = client.get_applications()["applications"].get("app1") or {}
        status = app.get("status")
        if status in ("RUNNING", "DEPLOY_FAILED"):
            break
        time.sleep(1)
    assert status == "RUNNING", app
    answer = requests.get(f"{head.serve_url}/?name=ci", timeout=30)
    assert answer.status_code == 200 and answer.text == "hi ci!"
