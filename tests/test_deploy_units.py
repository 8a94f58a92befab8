"""Table tests for the deploy's pure parts, without Ray: ownership, the cluster view, the release planner
(named cases, as KubeRay tests ``shouldPrepareNewCluster``), the write guard, the body builder."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import pytest

from ci_serve.cluster.packages import ship_working_dirs
from ci_serve.deploy.cluster_config import build_body
from ci_serve.deploy.guard import (
    ClusterChanged,
    Expected,
    WriteRefused,
    after_write,
    check_drift,
    check_effect,
    effect_of,
    expected_from,
)
from ci_serve.deploy.ownership import owner_of, version_of, with_marker, without_marker
from ci_serve.deploy.planner import Effect, PlanOptions, Write, plan_release
from ci_serve.deploy.view import parse, preview_prefix
from ci_serve.errors import InputError

CODE_A = {"working_dir": "gcs://_ray_pkg_a.zip"}
CODE_B = {"working_dir": "gcs://_ray_pkg_b.zip"}


def cfg(name, prefix="/shop", *, code=CODE_A, greeting="hi", owner="shop", version="v1", **extra):
    runtime_env = dict(code)
    if owner:
        runtime_env["env_vars"] = {"CI_SERVE_APP": owner, **({"CI_SERVE_VERSION": version} if version else {})}
    out = {"name": name, "route_prefix": prefix, "import_path": "m:app", "runtime_env": runtime_env,
           "deployments": [{"name": "Echo", "user_config": {"greeting": greeting}}], **extra}
    if prefix is ...:
        del out["route_prefix"]
    return out


def app(config, *, status="RUNNING", reported=None, t=1.0):
    """One entry of GET /api/serve/applications/ (``reported``: the top-level route_prefix, if it differs)."""
    prefix = reported if reported is not None else (config or {}).get("route_prefix", "/")
    return {"status": status, "message": "", "route_prefix": prefix, "last_deployed_time_s": t,
            "deployed_app_config": config, "deployments": {"Echo": {"status": "HEALTHY", "replicas": [{}]}}}


def legacy(name, prefix="/shop", **kw):
    """An application of ci-serve before the marker: only CI_SERVE_VERSION (which anyone may set)."""
    out = cfg(name, prefix, owner=None, **kw)
    out["runtime_env"]["env_vars"] = {"CI_SERVE_VERSION": "0.9"}
    return out


def snap(*configs, grpc=False, **raw):
    apps = {c["name"]: app(c) for c in configs}
    apps.update(raw)
    out = {"controller_info": {"node_id": "x"}, "http_options": {"host": "127.0.0.1", "port": 8123},
           "proxy_location": "EveryNode", "target_capacity": None, "applications": apps}
    if grpc:
        out["grpc_options"] = {"port": 9000, "grpc_servicer_functions": ["m:add_servicer"]}
    return out


def want(prefix="/shop", *, code=CODE_A, greeting="hi", name="shop"):
    app_config = {"name": name, "import_path": "m:app", "runtime_env": dict(code),
                  "deployments": [{"name": "Echo", "user_config": {"greeting": greeting}}]}
    if prefix is not ...:
        app_config["route_prefix"] = prefix
    return {"applications": [app_config]}


# -- ownership -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name, config, owner", [
    ("marked", cfg("x-green", owner="shop"), "shop"),
    ("look-alike of another team, no marker", cfg("api-green", owner=None), None),
    ("legacy: coloured name and only the version variable", {"runtime_env": {"env_vars": {"CI_SERVE_VERSION": "1"}}},
     "shop"),
    ("legacy var on a plain name", {"runtime_env": {"env_vars": {"CI_SERVE_VERSION": "1"}}}, None),
])
def test_owner_of(name, config, owner):
    physical = {"marked": "x-green", "look-alike of another team, no marker": "api-green",
                "legacy: coloured name and only the version variable": "shop-blue"}.get(name, "shop")
    assert owner_of(physical, config) == owner


def test_marker_round_trip():
    marked = with_marker({"import_path": "m:app"}, "shop", "sha1")
    assert version_of(marked) == "sha1" and owner_of("anything", marked) == "shop"
    assert without_marker(marked) == {"import_path": "m:app"}


# -- the view ------------------------------------------------------------------------------------
@dataclass
class LiveCase:
    snapshot: dict
    routes: dict | None
    route_prefix: object
    live: str | None


LIVE = {
    "the one holding the route": LiveCase(snap(cfg("shop-blue"), cfg("shop-green", "/shop--green")), None,
                                          "/shop", "shop-blue"),
    "Ray <= 2.46 reports a stale top-level prefix; the config's counts": LiveCase(
        snap(**{"shop-blue": app(cfg("shop-blue"), reported="/shop--blue")}), None, "/shop", "shop-blue"),
    "the proxy's table decides when it disagrees": LiveCase(
        snap(cfg("shop-blue"), cfg("shop-green")), {"/shop": "shop-green"}, "/shop", "shop-green"),
    "only a candidate on its preview prefix: nothing live": LiveCase(snap(cfg("shop-green", "/shop--green")), {},
                                                                      "/shop", None),
    "a look-alike without marker is not ours": LiveCase(snap(cfg("shop-blue", owner=None)), {"/shop": "shop-blue"},
                                                        "/shop", None),
    "a plain-named app is adopted": LiveCase(snap(cfg("shop", owner=None)), {"/shop": "shop"}, "/shop", "shop"),
    "moved prefix: the only member not on a preview": LiveCase(snap(cfg("shop-blue", "/old")), {"/old": "shop-blue"},
                                                               "/new", "shop-blue"),
    "route-less: the plain name": LiveCase(snap(cfg("model", None, owner="model")), {}, None, "model"),
    "status without a config prefix": LiveCase(snap(cfg("shop-blue"), cfg("shop-green", "/shop--green")),
                                               {"/shop": "shop-blue", "/shop--green": "shop-green"}, ..., "shop-blue"),
}


@pytest.mark.parametrize("case", LIVE.values(), ids=LIVE.keys())
def test_live_of(case):
    view = parse(case.snapshot, case.routes)
    logical = "model" if case.route_prefix is None else "shop"
    live = view.live_of(logical, case.route_prefix)
    assert (live.name if live else None) == case.live


def test_view_for_status_and_config_redacts():
    s = snap(cfg("shop-green"), cfg("shop-blue", "/shop--blue"), cfg("other", "/o", owner=None))
    s["applications"]["shop-green"]["deployed_app_config"]["runtime_env"]["env_vars"]["PASSWORD"] = "hunter2"
    view = parse(s, {"/shop": "shop-green", "/shop--blue": "shop-blue", "/o": "other"})
    assert view.managed() == {"shop": {"live": "shop-green", "version": "v1", "status": "RUNNING",
                                       "route_prefix": "/shop", "candidates": ["shop-blue"], "held": []}}
    shown = view.configs("shop")
    assert [c["name"] for c in shown] == ["shop-green"] and "hunter2" not in str(shown)


def test_disagreements_are_named():
    view = parse(snap(**{"shop-blue": app(cfg("shop-blue"), reported="/shop--blue")}), {"/shop": "shop-blue"})
    assert any("stale" in line for line in view.disagreements())


# -- the planner ---------------------------------------------------------------------------------
@dataclass
class PlanCase:
    snapshot: dict
    desired: dict
    strategy: str = "auto"
    routes: dict | None = None
    expect_strategy: str | None = None
    target: str | None = None
    first: Effect | None = None
    switch: Effect | None = None
    retire: frozenset = frozenset()
    tidy: frozenset = frozenset()
    refused: str | None = None
    checks: dict = field(default_factory=dict)


def E(created=(), changed=(), removed=()):  # noqa: N802 - reads like a constructor in the table
    return Effect(frozenset(created), frozenset(changed), frozenset(removed))


PLANS = {
    "first deploy: a candidate on its preview, then moved to the route": PlanCase(
        snap(), want(), expect_strategy="blue-green", target="shop-blue", first=E(created=["shop-blue"]),
        switch=E(changed=["shop-blue"]), checks={"shop": "/shop--blue"}),
    "heavyweight: candidate of the other colour, switch, retire the old": PlanCase(
        snap(cfg("shop-blue")), want(code=CODE_B), expect_strategy="blue-green", target="shop-green",
        first=E(created=["shop-green"]), switch=E(changed=["shop-green", "shop-blue"]),
        retire=frozenset({"shop-blue"})),
    "lightweight: in place on the live app": PlanCase(
        snap(cfg("shop-blue")), want(greeting="yo"), expect_strategy="in-place", target="shop-blue",
        first=E(changed=["shop-blue"]), checks={"shop": "/shop"}),
    "unchanged: no write": PlanCase(snap(cfg("shop-blue")), want(), expect_strategy="none"),
    "unchanged but a leftover of a killed run: removed": PlanCase(
        snap(cfg("shop-blue"), cfg("shop-green", "/shop--green", code=CODE_B)), want(), expect_strategy="none",
        tidy=frozenset({"shop-green"})),
    "Ray 2.40's stale prefix never makes us write over the live app": PlanCase(
        snap(**{"shop-blue": app(cfg("shop-blue"), reported="/shop--blue")}), want(code=CODE_B),
        expect_strategy="blue-green", target="shop-green", first=E(created=["shop-green"]),
        switch=E(changed=["shop-green", "shop-blue"]), retire=frozenset({"shop-blue"})),
    "a code change beside a leftover candidate is still blue-green (not lightweight)": PlanCase(
        snap(cfg("shop-green"), cfg("shop-blue", "/shop--blue", code=CODE_B, greeting="yo")),
        want(code=CODE_B, greeting="yo"), expect_strategy="blue-green", target="shop-blue",
        first=E(changed=["shop-blue"]), switch=E(changed=["shop-blue", "shop-green"]),
        retire=frozenset({"shop-green"})),
    "a plain-named app is adopted, replaced by a marked candidate": PlanCase(
        snap(cfg("shop", owner=None)), want(code=CODE_B), expect_strategy="blue-green", target="shop-blue",
        first=E(created=["shop-blue"]), switch=E(changed=["shop-blue", "shop"]), retire=frozenset({"shop"})),
    "look-alike foreign app at another prefix is left alone": PlanCase(
        snap(cfg("api-green", "/payments", owner=None)), want("/api", name="api"), expect_strategy="blue-green",
        target="api-blue", first=E(created=["api-blue"]), switch=E(changed=["api-blue"])),
    "foreign app under the candidate's name: exit 2": PlanCase(
        snap(cfg("api-blue", "/api", owner="api"), cfg("api-green", "/payments", owner=None)),
        want("/api", code=CODE_B, name="api"), refused="api-green"),
    "an app of another team that sets CI_SERVE_VERSION, under the candidate's name elsewhere: exit 2": PlanCase(
        snap(cfg("api-blue", "/api", owner="api"), legacy("api-green", "/payments")),
        want("/api", code=CODE_B, name="api"), refused="api-green"),
    "the old tool's live app (only CI_SERVE_VERSION) on the route is ours: blue-green, then retired": PlanCase(
        snap(legacy("shop-blue", "/shop")), want(code=CODE_B), expect_strategy="blue-green", target="shop-green",
        first=E(created=["shop-green"]), switch=E(changed=["shop-green", "shop-blue"]),
        retire=frozenset({"shop-blue"})),
    "the old tool's candidate on its preview prefix is a leftover of ours": PlanCase(
        snap(cfg("shop-blue"), legacy("shop-green", "/shop--green", code=CODE_B)), want(), expect_strategy="none",
        tidy=frozenset({"shop-green"})),
    "foreign app on our route prefix: exit 2": PlanCase(
        snap(cfg("legacy", "/shop", owner=None)), want(), refused="/shop"),
    "foreign app on our prefix per the proxy's table: exit 2": PlanCase(
        snap(cfg("legacy", "/x", owner=None)), want(), routes={"/shop": "legacy"}, refused="/shop"),
    "route-less first deploy: in place under its own name, never exposed": PlanCase(
        snap(), want(None, name="model"), expect_strategy="in-place", target="model", first=E(created=["model"])),
    "route-less code change: in place (clients use its name)": PlanCase(
        snap(cfg("model", None, owner="model")), want(None, code=CODE_B, name="model"), expect_strategy="in-place",
        target="model", first=E(changed=["model"])),
    "route-less with --strategy blue-green: exit 2": PlanCase(
        snap(cfg("model", None, owner="model")), want(None, code=CODE_B, name="model"), strategy="blue-green",
        refused="route_prefix: null"),
    "gRPC cluster: heavyweight change in place": PlanCase(
        snap(cfg("shop", owner="shop"), grpc=True), want(code=CODE_B), expect_strategy="in-place", target="shop",
        first=E(changed=["shop"])),
    "a new release version alone changes nothing": PlanCase(snap(cfg("shop-blue", version="old")), want(),
                                                            expect_strategy="none"),
}


@pytest.mark.parametrize("case", PLANS.values(), ids=PLANS.keys())
def test_plan_release(case):
    view = parse(case.snapshot, case.routes)
    options = PlanOptions(strategy=case.strategy, version="v2")
    if case.refused:
        with pytest.raises(InputError, match=case.refused.replace("(", r"\(")) as info:
            plan_release(view, case.desired, options)
        assert info.value.exit_code == 2
        return
    plan = plan_release(view, case.desired, options)
    assert plan.strategy == case.expect_strategy
    if case.expect_strategy == "none":
        assert plan.first is None and plan.switch is None
        assert (plan.tidy.effect.removed if plan.tidy else frozenset()) == case.tidy
        return
    assert plan.changed[0].target == case.target
    assert plan.first.effect == case.first
    assert (plan.switch.effect if plan.switch else None) == case.switch
    assert (plan.retire.effect.removed if plan.retire else frozenset()) == case.retire
    for name, prefix in case.checks.items():
        assert plan.checks_before_switch()[name] == prefix
    for write in plan.writes():  # every write puts only marked applications (or the adopted one, aside)
        for name, body in write.put.items():
            assert owner_of(name, body) is not None or name == plan.apps[0].logical


def test_in_place_keeps_the_running_version_marker():
    plan = plan_release(parse(snap(cfg("shop-blue", version="old"))), want(greeting="yo"), PlanOptions(version="new"))
    assert version_of(plan.first.put["shop-blue"]) == "old"


# -- the guard -----------------------------------------------------------------------------------
def test_guard_refuses_a_create_over_an_existing_app():
    """The Ray 2.40 loss, by construction: "add candidate X" cannot replace a running X."""
    fresh = parse(snap(cfg("shop-blue")))
    w = Write("write candidate", {"shop-blue": cfg("shop-blue", "/shop--blue", code=CODE_B)}, frozenset(),
              E(created=["shop-blue"]), ("add candidate shop-blue",))
    body = build_body(fresh.snapshot, put=dict(w.put))
    assert effect_of(fresh, body) == E(changed=["shop-blue"])
    with pytest.raises(WriteRefused, match="declared to create shop-blue"):
        check_effect(fresh, body, w, {"shop"})


def test_guard_refuses_to_touch_a_foreign_app_even_when_declared():
    fresh = parse(snap(cfg("api-green", "/payments", owner=None)))
    w = Write("remove old", {}, frozenset({"api-green"}), E(removed=["api-green"]), (), cleanup=True)
    with pytest.raises(WriteRefused, match="api-green is not ours"):
        check_effect(fresh, build_body(fresh.snapshot, remove={"api-green"}), w, {"api"})


def test_guard_cleanup_may_find_its_work_done():
    fresh = parse(snap(cfg("shop-blue")))
    w = Write("remove candidate", {}, frozenset({"shop-green"}), E(removed=["shop-green"]), (), cleanup=True)
    assert check_effect(fresh, build_body(fresh.snapshot, remove={"shop-green"}), w, {"shop"}) == E()


def test_drift_any_change_since_our_read_or_write():
    before = parse(snap(cfg("shop-blue"), cfg("other", "/o", owner=None)))
    expected = expected_from(before)
    check_drift(expected, before)
    changed = copy.deepcopy(before.snapshot)
    changed["applications"]["other"]["deployed_app_config"]["import_path"] = "m:v2"
    with pytest.raises(ClusterChanged, match="applications: other") as info:
        check_drift(expected, parse(changed))
    assert info.value.exit_code == 1
    added = snap(cfg("shop-blue"), cfg("other", "/o", owner=None), cfg("new", "/n", owner=None))
    with pytest.raises(ClusterChanged, match="new"):
        check_drift(expected, parse(added))
    # after our write, what we sent is expected; Ray may add fields to it, never change ours
    body = build_body(before.snapshot, put={"shop-green": {"import_path": "m:app", "route_prefix": "/g"}})
    mine = after_write(expected, body)
    assert mine["shop-green"] == Expected({"import_path": "m:app", "route_prefix": "/g", "name": "shop-green"}, False)
    written = snap(cfg("shop-blue"), cfg("other", "/o", owner=None),
                   {"name": "shop-green", "import_path": "m:app", "route_prefix": "/g", "args": {}})
    check_drift(mine, parse(written))


# -- the body ------------------------------------------------------------------------------------
def test_build_body_keeps_others_and_leaves_imperative_apps_out():
    s = snap(cfg("other", "/o"), cfg("shop-blue", "/s"), mine=app(None))
    body = build_body(s, put={"shop-green": {"import_path": "m:v2", "route_prefix": "/s"}}, remove={"shop-blue"})
    assert [a["name"] for a in body["applications"]] == ["other", "shop-green"]
    assert body["http_options"] == {"host": "127.0.0.1", "port": 8123}
    assert "controller_info" not in body


def test_build_body_first_start_uses_the_files_options():
    empty = {"controller_info": {}, "proxies": {}, "applications": {}}
    body = build_body(empty, put={"a-blue": {"import_path": "m:app"}},
                      first_start={"http_options": {"port": 9999}, "applications": []})
    assert body == {"http_options": {"port": 9999}, "applications": [{"import_path": "m:app", "name": "a-blue"}]}


def test_preview_prefix():
    assert preview_prefix("/shop", "shop", "green") == "/shop--green"
    assert preview_prefix("/", "shop", "blue") == "/--shop-blue"


def test_ship_working_dirs_passes_remote_uris_through(tmp_path):
    config = {"applications": [{"name": "a", "runtime_env": {"working_dir": "s3://bucket/code.zip"}},
                               {"name": "b", "import_path": "m:app"}]}
    out, shipped = ship_working_dirs(None, config, base_dir=tmp_path)  # no client needed: nothing to upload
    assert out == config and shipped == [{"app": "a", "source": "s3://bucket/code.zip",
                                          "uri": "s3://bucket/code.zip", "uploaded": False}]


def test_deploy_validates_first_exit_2_no_traceback(tmp_path, cli_env):
    """`runtime_env: [oops]`: the validator's exit 2 before any cluster is contacted (the address is dead)."""
    import subprocess

    from tests.conftest import ci_serve_cmd

    bad = tmp_path / "serve.yaml"
    bad.write_text("applications:\n  - name: shop\n    import_path: m:app\n    runtime_env: [oops]\n")
    proc = subprocess.run(ci_serve_cmd("deploy", str(bad), "--address", "http://127.0.0.1:9"), env=cli_env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "runtime_env" in proc.stderr and "nothing was written" in proc.stderr


@pytest.mark.parametrize(("serving", "exit_code"), [(True, 1), (False, 3)])
def test_a_failed_tidy_write_exits_1_only_when_live_is_seen_serving(monkeypatch, serving, exit_code):
    """An unchanged deploy whose leftover removal is stopped (the cluster changed meanwhile): exit 1 only
    after the live version is seen serving, else 3; never the guard's bare exit 1."""
    from ci_serve.deploy.guard import ClusterChanged
    from ci_serve.deploy.release import Options, Release
    from ci_serve.errors import CiServeError

    plan = plan_release(parse(snap(cfg("shop-blue"), cfg("shop-green", preview_prefix("/shop", "shop", "green")))),
                        want(), PlanOptions())
    assert plan.strategy == "none" and plan.tidy is not None
    release = Release(None, None, Options())  # type: ignore[arg-type]
    asked = []

    def write(w):
        raise ClusterChanged("the cluster changed while this deploy ran (applications: other)")

    def where(plan, *, budget, previous=True, every_app=False):
        asked.append(every_app)
        from ci_serve.deploy.verdict import Seen

        return (Seen("shop", "shop-blue", serving, True),), [
            "shop: shop-blue holds /shop" if serving else "shop: shop-blue is UNHEALTHY"]

    monkeypatch.setattr(release, "write", write)
    monkeypatch.setattr(release, "where", where)
    with pytest.raises(CiServeError) as stopped:
        release.unchanged(plan)
    assert stopped.value.exit_code == exit_code and asked == [True]
    assert "the cluster changed" in stopped.value.message
