"""Table tests for the deploy's pure parts: change kinds, naming, the cluster config edit, the views."""

from __future__ import annotations

import pytest

from ci_serve.cluster.packages import ship_working_dirs
from ci_serve.deploy.changes import classify_all, verdict
from ci_serve.deploy.cluster_config import ClusterChanged, build_body, check_unchanged
from ci_serve.deploy.naming import find_live, preview_prefix, split_name, version_of, with_version, without_version
from ci_serve.deploy.view import cluster_config, managed_view

BASE = {"import_path": "m:app", "route_prefix": "/shop", "runtime_env": {"working_dir": "gcs://_ray_pkg_a.zip"},
        "deployments": [{"name": "Echo", "user_config": {"greeting": "hi"}, "num_replicas": 1}]}


def live_snapshot(config, name="shop-blue", prefix="/shop"):
    return {"applications": {name: {"status": "RUNNING", "route_prefix": prefix,
                                    "deployed_app_config": {**config, "name": name}, "deployments": {}}}}


def desired(**edits):
    import copy
    app = copy.deepcopy(BASE)
    app["deployments"][0].update(edits.pop("deployment", {}))
    app.update(edits)
    return {"applications": [{**app, "name": "shop"}]}


CHANGES = [
    ("same", desired(), True, "none"),
    ("only the version marker", {"applications": [{**with_version(BASE, "new-sha"), "name": "shop"}]}, True, "none"),
    ("user_config", desired(deployment={"user_config": {"greeting": "yo"}}), True, "lightweight"),
    ("num_replicas", desired(deployment={"num_replicas": 2}), True, "lightweight"),
    ("code", desired(runtime_env={"working_dir": "gcs://_ray_pkg_b.zip"}), True, "heavyweight"),
    ("actor options", desired(deployment={"ray_actor_options": {"num_cpus": 2}}), True, "heavyweight"),
    ("same config but nothing live (a leftover candidate)", desired(), False, "new"),
]


@pytest.mark.parametrize("name, wanted, has_live, kind", CHANGES, ids=[c[0] for c in CHANGES])
def test_classify_all(name, wanted, has_live, kind):
    kinds, plan = classify_all(wanted, live_snapshot(with_version(BASE, "old-sha")), {"shop": has_live})
    assert kinds["shop"].kind == kind


def test_verdict():
    assert verdict(["none", "none"]) == "none"
    assert verdict(["none", "lightweight"]) == "lightweight"
    assert verdict(["lightweight", "new"]) == "heavyweight"


@pytest.mark.parametrize("physical, logical, colour", [
    ("shop-blue", "shop", "blue"), ("shop-green", "shop", "green"), ("shop", "shop", "none"),
    ("a-b-green", "a-b", "green"), ("-blue", "-blue", "none"),
])
def test_split_name(physical, logical, colour):
    assert split_name(physical) == (logical, colour)


def test_version_marker_round_trip():
    app = with_version({"import_path": "m:app"}, "sha1")
    assert version_of(app) == "sha1"
    assert without_version(app) == {"import_path": "m:app"}


def snap(**apps):
    return {"controller_info": {"node_id": "x"}, "http_options": {"host": "127.0.0.1", "port": 8123},
            "proxy_location": "EveryNode", "target_capacity": None, "applications": apps}


def app(name, prefix, t=1.0, config=True, status="RUNNING"):
    cfg = {"name": name, "route_prefix": prefix, "import_path": "m:app"} if config else None
    return {"status": status, "route_prefix": prefix, "last_deployed_time_s": t, "deployed_app_config": cfg,
            "deployments": {}}


def test_find_live_prefers_the_live_route_prefix():
    apps = {"shop-blue": app("shop-blue", "/shop"), "shop-green": app("shop-green", "/shop--green")}
    assert find_live(apps, "shop", "/shop").physical == "shop-blue"
    assert find_live({"shop-green": app("shop-green", "/shop--green")}, "shop", "/shop") is None
    assert find_live({"shop": app("shop", "/shop")}, "shop", "/shop").colour == "none"


def test_build_body_keeps_others_and_leaves_imperative_apps_out():
    s = snap(other=app("other", "/o"), mine=app("mine", "/m", config=False), **{"shop-blue": app("shop-blue", "/s")})
    body = build_body(s, put={"shop-green": {"import_path": "m:v2", "route_prefix": "/s"}}, remove={"shop-blue"})
    assert [a["name"] for a in body["applications"]] == ["other", "shop-green"]
    assert body["http_options"] == {"host": "127.0.0.1", "port": 8123}
    assert "controller_info" not in body


def test_build_body_first_start_uses_the_files_options():
    empty = {"controller_info": {}, "proxies": {}, "applications": {}}
    body = build_body(empty, put={"a-blue": {"import_path": "m:app"}},
                      first_start={"http_options": {"port": 9999}, "applications": []})
    assert body == {"http_options": {"port": 9999}, "applications": [{"import_path": "m:app", "name": "a-blue"}]}


def test_check_unchanged_names_what_changed():
    before = snap(other=app("other", "/o", t=1.0), **{"shop-blue": app("shop-blue", "/s")})
    check_unchanged(before, before)
    after = snap(other=app("other", "/o", t=2.0), **{"shop-blue": app("shop-blue", "/s")})
    with pytest.raises(ClusterChanged, match="applications: other") as info:
        check_unchanged(before, after)
    assert info.value.exit_code == 1
    with pytest.raises(ClusterChanged, match="new"):
        check_unchanged(before, snap(new=app("new", "/n"), **before["applications"]))


def test_managed_view_and_config():
    s = snap(other=app("other", "/o"), **{"shop-green": app("shop-green", "/shop"),
                                          "shop-blue": app("shop-blue", "/shop--blue")})
    s["applications"]["shop-green"]["deployed_app_config"]["runtime_env"] = {"env_vars": {
        "CI_SERVE_VERSION": "sha9", "PASSWORD": "hunter2"}}
    view = managed_view(s)
    assert set(view) == {"shop"}
    assert view["shop"]["live"] == "shop-green" and view["shop"]["version"] == "sha9"
    assert view["shop"]["candidates"] == ["shop-blue"]
    shown = cluster_config(s, "shop")
    assert [c["name"] for c in shown] == ["shop-green"] and "hunter2" not in str(shown)


def test_preview_prefix():
    assert preview_prefix("/shop", "shop", "green") == "/shop--green"
    assert preview_prefix("/", "shop", "blue") == "/--shop-blue"


def test_ship_working_dirs_passes_remote_uris_through(tmp_path):
    config = {"applications": [{"name": "a", "runtime_env": {"working_dir": "s3://bucket/code.zip"}},
                               {"name": "b", "import_path": "m:app"}]}
    out, shipped = ship_working_dirs(None, config, base_dir=tmp_path)  # no client needed: nothing to upload
    assert out == config and shipped == [{"app": "a", "source": "s3://bucket/code.zip",
                                          "uri": "s3://bucket/code.zip", "uploaded": False}]
