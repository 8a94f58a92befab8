"""plan_changes: pure diff of a desired config against the live applications answer (table tests)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from ci_serve.config.plan import FROM_CODE, UNSET, plan_changes
from ci_serve.deploy.ownership import MARKER_VARS

BASE_APP = {"name": "shop", "route_prefix": "/shop", "import_path": "shop.main:app",
            "runtime_env": {"working_dir": "gcs://_ray_pkg_aaa.zip", "env_vars": {"API_KEY": "k1"}},
            "deployments": [{"name": "Ingress", "num_replicas": 2, "user_config": {"threshold": 0.5}}]}
EFFECTIVE = {"Ingress": {"name": "Ingress", "num_replicas": 2, "max_ongoing_requests": 5,
                         "user_config": {"threshold": 0.5},
                         "autoscaling_config": None, "ray_actor_options": {"num_cpus": 1.0}},
             "Model": {"name": "Model", "num_replicas": 1, "max_ongoing_requests": 5,
                       "autoscaling_config": {"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 2.0,
                                              "upscale_delay_s": 30.0}}}


def live_answer(app: dict[str, Any] | None = None, *, name: str = "shop", effective: dict | None = None,
                extra_apps: dict | None = None) -> dict[str, Any]:
    app = copy.deepcopy(BASE_APP if app is None else app)
    deployed = {**app, "name": name}
    apps = {name: {"status": "RUNNING", "route_prefix": app.get("route_prefix", "/"), "deployed_app_config": deployed,
                   "deployments": {n: {"status": "HEALTHY", "deployment_config": c}
                                   for n, c in (EFFECTIVE if effective is None else effective).items()}}}
    apps.update(extra_apps or {})
    return {"applications": apps, "proxies": {}, "controller_info": {}}


def desired(**changes: Any) -> dict[str, Any]:
    app = copy.deepcopy(BASE_APP)
    for key, value in changes.items():
        if value is None:
            app.pop(key, None)
        else:
            app[key] = value
    return {"applications": [app]}


def deployments(**ingress: Any) -> list[dict[str, Any]]:
    dep = {"name": "Ingress", "num_replicas": 2, "user_config": {"threshold": 0.5}}
    for key, value in ingress.items():
        if value is None:
            dep.pop(key, None)
        else:
            dep[key] = value
    return [dep]


# name: (desired config, live answer, code or None, verdict, [(app/deployment, field, old, new, class)])
CASES: dict[str, tuple] = {
    "nothing changed": (desired(), live_answer(), None, "none", []),
    "user_config only: lightweight": (
        desired(deployments=deployments(user_config={"threshold": 0.7})), live_answer(), None, "lightweight",
        [("Ingress", "user_config", {"threshold": 0.5}, {"threshold": 0.7}, "lightweight")]),
    "num_replicas: lightweight": (
        desired(deployments=deployments(num_replicas=3)), live_answer(), None, "lightweight",
        [("Ingress", "num_replicas", 2, 3, "lightweight")]),
    "autoscaling set in config, partial and already running: none": (
        desired(deployments=[*deployments(), {"name": "Model", "autoscaling_config": {"max_replicas": 4}}]),
        live_answer(), None, "none", []),
    "autoscaling bound changed: lightweight": (
        desired(deployments=[*deployments(), {"name": "Model", "autoscaling_config": {"max_replicas": 6}}]),
        live_answer(), None, "lightweight",
        [("Model", "autoscaling_config", EFFECTIVE["Model"]["autoscaling_config"], {"max_replicas": 6},
          "lightweight")]),
    "request limit and logging: lightweight": (
        desired(deployments=deployments(max_ongoing_requests=9, logging_config={"log_level": "DEBUG"})),
        live_answer(), None, "lightweight",
        [("Ingress", "logging_config", UNSET, {"log_level": "DEBUG"}, "lightweight"),
         ("Ingress", "max_ongoing_requests", 5, 9, "lightweight")]),
    "default set explicitly equals what runs: none": (
        desired(deployments=deployments(max_ongoing_requests=5)), live_answer(), None, "none", []),
    "import_path: heavyweight": (
        desired(import_path="shop.v2:app"), live_answer(), None, "heavyweight",
        [("shop", "import_path", "shop.main:app", "shop.v2:app", "heavyweight")]),
    "code (working_dir URI): heavyweight": (
        desired(runtime_env={"working_dir": "gcs://_ray_pkg_bbb.zip", "env_vars": {"API_KEY": "k1"}}),
        live_answer(), None, "heavyweight",
        [("shop", "runtime_env.working_dir", "gcs://_ray_pkg_aaa.zip", "gcs://_ray_pkg_bbb.zip", "heavyweight")]),
    "env var value changed: heavyweight, values masked": (
        desired(runtime_env={"working_dir": "gcs://_ray_pkg_aaa.zip", "env_vars": {"API_KEY": "k2"}}),
        live_answer(), None, "heavyweight",
        [("shop", "runtime_env.env_vars.API_KEY", "***", "***", "heavyweight")]),
    "release marker ignored": (
        desired(runtime_env={"working_dir": "gcs://_ray_pkg_aaa.zip",
                             "env_vars": {"API_KEY": "k1", "CI_SERVE_VERSION": "abc123"}}),
        live_answer(), None, "none", []),
    "ray_actor_options: heavyweight": (
        desired(deployments=deployments(ray_actor_options={"num_cpus": 2})), live_answer(), None, "heavyweight",
        [("Ingress", "ray_actor_options", {"num_cpus": 1.0}, {"num_cpus": 2}, "heavyweight")]),
    "args: heavyweight": (
        desired(args={"model": "big"}), live_answer(), None, "heavyweight",
        [("shop", "args", {}, {"model": "big"}, "heavyweight")]),
    "route prefix: lightweight": (
        desired(route_prefix="/store"), live_answer(), None, "lightweight",
        [("shop", "route_prefix", "/shop", "/store", "lightweight")]),
    "override dropped, code unknown": (
        desired(deployments=deployments(user_config=None)), live_answer(), None, "lightweight",
        [("Ingress", "user_config", {"threshold": 0.5}, FROM_CODE, "lightweight")]),
    "override dropped, code value equal: none": (
        desired(deployments=deployments(user_config=None)), live_answer(),
        {"shop": {"Ingress": {"user_config": {"threshold": 0.5}}, "Model": {}}}, "none", []),
    "deployment added in code: heavyweight": (
        desired(), live_answer(), {"shop": {"Ingress": {}, "Model": {}, "Cache": {}}}, "heavyweight",
        [("Cache", "(added)", None, None, "heavyweight")]),
    "deployment removed from code: heavyweight": (
        desired(), live_answer(), {"shop": {"Ingress": {}}}, "heavyweight",
        [("Model", "(removed)", None, None, "heavyweight")]),
}


def flatten(plan) -> list[tuple]:
    rows = []
    for app in plan.applications:
        rows += [(app.name, c.field, c.old, c.new, c.kind) for c in app.changes]
        for dep in app.deployments:
            if dep.action in ("added", "removed"):
                rows.append((dep.name, f"({dep.action})", None, None, dep.verdict))
            rows += [(dep.name, c.field, c.old, c.new, c.kind) for c in dep.changes]
    return rows


@pytest.mark.parametrize("want, live, code, verdict, rows", CASES.values(), ids=CASES.keys())
def test_plan_changes(want: dict, live: dict, code: dict | None, verdict: str, rows: list[tuple]) -> None:
    plan = plan_changes(want, live, code, ignore_env=MARKER_VARS)
    assert flatten(plan) == rows
    assert plan.verdict == verdict
    assert plan.as_dict()["verdict"] == verdict
    assert plan.applications[0].action == ("unchanged" if verdict == "none" else "changed")


def test_new_application_and_others_left_alone() -> None:
    other = {"status": "RUNNING", "deployed_app_config": {"name": "other", "import_path": "o:app"}, "deployments": {}}
    plan = plan_changes({"applications": [{"name": "fresh", "import_path": "f:app",
                                           "deployments": [{"name": "F"}]}]},
                        live_answer(extra_apps={"other": other}))
    assert [(a.name, a.action, a.verdict) for a in plan.applications] == [("fresh", "added", "heavyweight")]
    assert [d.name for d in plan.applications[0].deployments] == ["F"]
    assert plan.left_alone == ["other", "shop"]
    assert plan.verdict == "heavyweight"


def test_empty_cluster_and_nothing_desired() -> None:
    assert plan_changes({"applications": []}, {"applications": {}}).verdict == "none"
    assert plan_changes({"applications": [BASE_APP]}, {}).applications[0].action == "added"


def test_the_caller_names_the_live_application() -> None:
    """Which incarnation is live is the deploy view's answer (ClusterView.live_of), not the diff's."""
    live = live_answer(name="shop-green")
    live["applications"]["shop-blue"] = {**live["applications"]["shop-green"], "route_prefix": "/shop-candidate"}
    assert plan_changes(desired(), live).applications[0].action == "added"  # no name match, no guess
    plan = plan_changes(desired(), live, live_names={"shop": "shop-green"})
    assert plan.applications[0].live_name == "shop-green"
    assert plan.verdict == "none"
    assert plan.left_alone == ["shop-blue"]


def test_secrets_never_in_the_plan() -> None:
    import json

    want = desired(runtime_env={"working_dir": "gcs://_ray_pkg_aaa.zip", "env_vars": {"API_KEY": "s3cret-new"}},
                   deployments=deployments(ray_actor_options={"runtime_env": {"env_vars": {"TOKEN": "tok-123"}}}))
    text = json.dumps(plan_changes(want, live_answer()).as_dict())
    assert "s3cret-new" not in text and "k1" not in text and "tok-123" not in text


# -- properties ----------------------------------------------------------------------------------
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from ci_serve.config.plan import LIGHT_DEPLOYMENT_FIELDS  # noqa: E402

small = st.one_of(st.integers(1, 5), st.sampled_from(["a", "b"]), st.booleans())
dep_options = st.fixed_dictionaries({}, optional={
    "num_replicas": st.integers(1, 4), "max_ongoing_requests": st.integers(1, 20),
    "user_config": st.dictionaries(st.sampled_from(["x", "y"]), small, max_size=2),
    "ray_actor_options": st.fixed_dictionaries({"num_cpus": st.sampled_from([0, 0.5, 1])}),
    "health_check_period_s": st.integers(1, 10)})
apps = st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.lists(dep_options, max_size=3)),
                max_size=3, unique_by=lambda t: t[0])


def config_of(spec) -> dict:
    return {"applications": [{"name": name, "route_prefix": f"/{name}", "import_path": f"{name}.main:app",
                              "deployments": [{"name": f"D{i}", **o} for i, o in enumerate(deps)]}
                             for name, deps in spec]}


def live_of(config: dict) -> dict:
    return {"applications": {a["name"]: {"deployed_app_config": copy.deepcopy(a), "route_prefix": a["route_prefix"],
                                         "deployments": {d["name"]: {"deployment_config": copy.deepcopy(d)}
                                                         for d in a["deployments"]}}
                             for a in config["applications"]}}


@settings(max_examples=80, deadline=None)
@given(spec=apps)
def test_a_config_compared_with_itself_changes_nothing(spec) -> None:
    config = config_of(spec)
    plan = plan_changes(config, live_of(config))
    assert plan.verdict == "none" and plan.left_alone == []


@settings(max_examples=80, deadline=None)
@given(spec=apps.filter(lambda s: any(deps for _, deps in s)), field=st.sampled_from(
    ["num_replicas", "max_ongoing_requests", "user_config", "health_check_period_s", "ray_actor_options"]))
def test_one_field_changed_gives_its_class(spec, field: str) -> None:
    config = config_of(spec)
    live = live_of(config)
    target = next(d for a in config["applications"] for d in a["deployments"])
    target[field] = {"changed": True} if field in ("user_config", "ray_actor_options") else 99
    plan = plan_changes(config, live)
    assert plan.verdict == ("lightweight" if field in LIGHT_DEPLOYMENT_FIELDS else "heavyweight")
