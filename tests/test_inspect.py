"""inspect_app imports a graph in a child process; merge_deployment_options applies config over code."""

from __future__ import annotations

import pytest

from ci_serve.config.inspect import AppImportError, inspect_app, merge_deployment_options
from ci_serve.errors import EXIT_BAD_INPUT

from .conftest import REPO

APPS = REPO / "tests" / "apps"


def test_graph_with_options_set_in_code() -> None:
    graph = inspect_app("graph_app:app", APPS)
    assert graph.ingress == "Ingress"
    assert graph.deployment_names == ["Greeter", "Ingress"]
    assert graph.deployments["Greeter"] == {
        "num_replicas": 2, "max_ongoing_requests": 7, "user_config": {"greeting": "hi", "punct": "!"},
        "ray_actor_options": {"num_cpus": 0.5, "memory": 104857600}}
    assert graph.deployments["Ingress"]["autoscaling_config"] == {
        "min_replicas": 1, "max_replicas": 3, "target_ongoing_requests": 4}


def test_dotted_import_path_and_builder_with_args() -> None:
    graph = inspect_app("tests.apps.graph_app:builder", REPO, args={"greeting": "hey"})
    assert graph.deployments["Greeter"]["user_config"] == {"greeting": "hey"}
    assert inspect_app("plain_app.app", APPS).deployments == {"Plain": {}}


@pytest.mark.parametrize("import_path, in_message, in_hint", [
    ("no_such_module:app", "No module named 'no_such_module'", "--app-dir"),
    ("graph_app:nope", "has no attribute 'nope'", "builder function"),
    ("graph_app:not_an_app", "not_an_app", "application"),
    ("broken_app:app", "RuntimeError: this module is broken on purpose", "raised"),
])
def test_import_failures_are_typed_errors(import_path: str, in_message: str, in_hint: str) -> None:
    with pytest.raises(AppImportError) as info:
        inspect_app(import_path, APPS)
    err = info.value
    assert err.exit_code == EXIT_BAD_INPUT
    assert in_message in err.message
    assert in_hint in err.hint
    assert err.import_path == import_path


def test_args_for_an_application_are_refused() -> None:
    with pytest.raises(AppImportError, match="builder"):
        inspect_app("graph_app:app", APPS, args={"x": "1"})


def test_timeout_and_hard_exit(tmp_path) -> None:
    (tmp_path / "hangs.py").write_text("import time\ntime.sleep(600)\n")
    (tmp_path / "exits.py").write_text("import os, sys\nsys.stderr.write('bye now\\n')\nos._exit(3)\n")
    with pytest.raises(AppImportError, match="did not finish within 3s"):
        inspect_app("hangs:app", tmp_path, timeout=3)
    with pytest.raises(AppImportError, match="killed") as info:
        inspect_app("exits:app", tmp_path)
    assert "bye now" in info.value.details


MERGE_CASES = {
    "config field wins, others from code": (
        {"num_replicas": 2, "max_ongoing_requests": 7}, {"num_replicas": 1},
        {"num_replicas": 1, "max_ongoing_requests": 7}),
    "user_config replaced whole, not merged": (
        {"user_config": {"greeting": "hi", "punct": "!"}}, {"user_config": {"greeting": "yo"}},
        {"user_config": {"greeting": "yo"}}),
    "ray_actor_options replaced whole": (
        {"ray_actor_options": {"num_cpus": 0.5, "memory": 1}}, {"ray_actor_options": {"num_cpus": 0}},
        {"ray_actor_options": {"num_cpus": 0}}),
    "unset in config keeps code": ({"user_config": {"a": 1}}, {"name": "A"}, {"user_config": {"a": 1}, "name": "A"}),
    "num_replicas in config keeps code autoscaling (as Serve does)": (
        {"autoscaling_config": {"max_replicas": 3}}, {"num_replicas": 2},
        {"autoscaling_config": {"max_replicas": 3}, "num_replicas": 2}),
}


@pytest.mark.parametrize("code, config, expected", MERGE_CASES.values(), ids=MERGE_CASES.keys())
def test_merge_deployment_options(code: dict, config: dict, expected: dict) -> None:
    merged = merge_deployment_options(code, config)
    assert merged == expected
    if "user_config" in merged:
        assert merged["user_config"] is not config.get("user_config", code.get("user_config"))
