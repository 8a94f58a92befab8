"""The one planner across two clusters (issue 23): pure table cases of ``plan_two_clusters`` over cluster
snapshots as Ray answers them. Every write names its cluster; a traffic step is a write of its own kind
(declared effect: nothing) that the executor follows with a gate."""

from __future__ import annotations

from typing import Any

import pytest

from ci_serve.deploy import view
from ci_serve.deploy.ownership import with_hold, with_marker
from ci_serve.deploy.planner import Effect, TwoClusterPlanOptions, plan_two_clusters
from ci_serve.errors import InputError

PAYMENTS = {"route_prefix": "/payments", "import_path": "pay:app"}


def app(version: str, greeting: str = "hi") -> dict[str, Any]:
    return with_marker({"route_prefix": "/shop", "import_path": "app:app",
                        "deployments": [{"name": "Echo", "user_config": {"greeting": greeting}}]}, "shop", version)


def held(version: str, live: dict[str, Any] | None) -> dict[str, Any]:
    return with_hold(app(version), at=1.0, route="/shop", live=live, live_name="shop" if live else None)


def snapshot(**apps: dict[str, Any]) -> view.ClusterView:
    return view.parse({"applications": {n: {"status": "RUNNING", "route_prefix": c["route_prefix"],
                                            "deployed_app_config": {**c, "name": n}} for n, c in apps.items()}})


def config(greeting: str = "hi") -> dict[str, Any]:
    return {"applications": [{"name": "shop", "route_prefix": "/shop", "import_path": "app:app",
                              "deployments": [{"name": "Echo", "user_config": {"greeting": greeting}}]}]}


V1 = app("v1")


def steps(plan: Any) -> list[tuple[str, str, int | None]]:
    return [(w.step, w.cluster, w.weight) for w in plan.writes()]


TRAFFIC = {
    # (switch, weights) -> the writes of a deploy, in order: (step, cluster, weight)
    "one switch": (True, (10, 50, 100), [("write standby", "standby", None), ("switch", "standby", 100),
                                         ("retire old cluster", "live", None)]),
    "three steps": (False, (10, 50, 100), [("write standby", "standby", None), ("traffic 10%", "standby", 10),
                                           ("traffic 50%", "standby", 50), ("traffic 100%", "standby", 100),
                                           ("retire old cluster", "live", None)]),
    "one step at 100": (False, (100,), [("write standby", "standby", None), ("traffic 100%", "standby", 100),
                                        ("retire old cluster", "live", None)]),
}


@pytest.mark.parametrize("switch, weights, expected", TRAFFIC.values(), ids=TRAFFIC.keys())
def test_writes_name_their_cluster_and_traffic_steps_are_writes(switch, weights, expected):
    plan = plan_two_clusters(snapshot(shop=V1), snapshot(payments=PAYMENTS), config(),
                             TwoClusterPlanOptions(version="v2", weights=weights, switch=switch))
    assert plan.topology == "two" and steps(plan) == expected
    for w in plan.traffic:  # declared effect: no Serve application changes, on either cluster
        assert w.traffic and w.effect == Effect() and not w.put and not w.remove
    assert plan.traffic_back is not None and plan.traffic_back.weight == 0 and plan.traffic_back.cleanup
    assert plan.traffic_back.step == ("switch back" if switch else "traffic back to 0%")
    assert plan.retire is not None and plan.retire.remove == {"shop"} and plan.retire.cleanup


def test_the_standby_write_replaces_only_ours_and_its_undo_puts_back_what_it_touched():
    old_shop = app("v0")
    standby = snapshot(payments=PAYMENTS, shop=old_shop, **{"shop-blue": {**app("v0"), "route_prefix": "/x"}})
    plan = plan_two_clusters(snapshot(shop=V1), standby, config(), TwoClusterPlanOptions(version="v2"))
    first, undo = plan.first, plan.undo_first
    assert first is not None and undo is not None
    assert first.cluster == undo.cluster == "standby"
    assert set(first.put) == {"shop"} and first.remove == {"shop-blue"}
    assert first.effect == Effect(changed=frozenset({"shop"}), removed=frozenset({"shop-blue"}))
    assert first.put["shop"]["runtime_env"]["env_vars"]["CI_SERVE_VERSION"] == "v2"
    # back: shop's previous config, shop-blue re-created; payments never named
    assert set(undo.put) == {"shop", "shop-blue"} and not undo.remove and undo.cleanup
    assert undo.effect == Effect(created=frozenset({"shop-blue"}), changed=frozenset({"shop"}))
    assert plan.checks_before_switch() == {"shop": "/shop"}


def test_a_first_deploy_to_an_empty_standby_creates_and_its_undo_removes():
    plan = plan_two_clusters(snapshot(), snapshot(), config(), TwoClusterPlanOptions(version="v1", keep_standby=True))
    assert plan.first is not None and plan.first.effect == Effect(created=frozenset({"shop"}))
    assert plan.undo_first is not None and plan.undo_first.remove == {"shop"} and not plan.undo_first.put
    assert plan.retire is None  # --keep-standby (and nothing of ours on the old cluster anyway)
    assert plan.apps[0].live is None and plan.apps[0].kind == "new"


def test_a_hold_marks_the_standby_write_and_stops_there():
    plan = plan_two_clusters(snapshot(shop=V1), snapshot(), config(),
                             TwoClusterPlanOptions(version="v2", mode="hold", now=5.0))
    assert plan.first is not None and steps(plan) == [("write standby", "standby", None)]
    marked = view.parse({"applications": {"shop": {"status": "RUNNING", "route_prefix": "/shop",
                                                   "deployed_app_config": {**plan.first.put["shop"], "name": "shop"}}}})
    hold = marked.apps["shop"].hold
    assert hold is not None and hold.live == "shop" and hold.route == "/shop"


HELD_CASES = {
    # live shop, standby shop, mode -> refused (a fragment of the message) or the writes
    "deploy while held": (V1, held("v2", V1), "deploy", "is held for review on the standby"),
    "another hold while held": (V1, held("v2", V1), "hold", None),  # the same release again: replaced
    "promote as held": (V1, held("v2", V1), "promote", ["switch", "retire old cluster"]),
    "promote after live changed": (app("v1", "hey"), held("v2", V1), "promote", "changed since release v2"),
    "promote with nothing held": (V1, app("v2"), "promote", "no release v2 of shop is held"),
    "promote finishing a retired one": (None, held("v2", V1), "promote", ["switch"]),
    "abort as held": (V1, held("v2", V1), "abort", ["remove held release"]),
    "abort a stale hold": (app("v5"), held("v2", V1), "abort", ["remove held release"]),
    "abort a promoted one": (None, held("v2", V1), "abort", "it was probably promoted"),
    "abort with nothing held": (V1, app("v2"), "abort", []),
    "deploy over a stale hold": (app("v5"), held("v2", V1), "deploy", ["write standby", "switch",
                                                                        "retire old cluster"]),
    "deploy over a superseded one": (held("v3", held("v2", V1)), held("v2", V1), "deploy",
                                     ["write standby", "switch", "retire old cluster"]),
}


@pytest.mark.parametrize("live, standby, mode, expected", HELD_CASES.values(), ids=HELD_CASES.keys())
def test_held_superseded_stale_and_the_compare_and_swap(live, standby, mode, expected):
    live_view = snapshot(shop=live) if live else snapshot()
    options = TwoClusterPlanOptions(version="v2", mode=mode)
    if isinstance(expected, str):
        with pytest.raises(InputError, match=expected):
            plan_two_clusters(live_view, snapshot(shop=standby), config(), options)
        return
    plan = plan_two_clusters(live_view, snapshot(shop=standby), config(), options)
    if expected is not None:
        assert [w.step for w in plan.writes()] == expected
    assert all(w.cluster == "standby" for w in plan.writes() if not w.traffic and w.step != "retire old cluster")


def test_promote_writes_nothing_before_the_traffic_and_its_undo_removes_the_held_release():
    plan = plan_two_clusters(snapshot(shop=V1), snapshot(shop=held("v2", V1), payments=PAYMENTS), config(),
                             TwoClusterPlanOptions(version="v2", mode="promote", switch=False, weights=(10, 100)))
    assert plan.first is None and [w.step for w in plan.traffic] == ["traffic 10%", "traffic 100%"]
    assert plan.undo_first is not None and plan.undo_first.remove == {"shop"} and plan.undo_first.cluster == "standby"
    assert plan.apps[0].target == "shop" and plan.apps[0].live is not None and plan.apps[0].live.name == "shop"


def test_a_stale_hold_replaced_by_a_deploy_is_said():
    plan = plan_two_clusters(snapshot(shop=app("v5")), snapshot(shop=held("v2", V1)), config(),
                             TwoClusterPlanOptions(version="v6"))
    assert any("once held) is replaced" in w for w in plan.warnings)


# -- the one executor carries a two-cluster plan out: a traffic write is held to its declared effect ----------
def test_a_switch_command_that_changes_a_serve_application_is_caught_and_switched_back(two_fakes, tmp_path):
    """A traffic write declares that no Serve application changes. A switch command that redeploys an
    application on the live cluster breaks that: the guard's read after it sees the change, the traffic goes
    back, the candidate leaves the standby, and the run exits 1 (the old version serves)."""
    import json
    import sys

    from ci_serve import cli
    from tests.test_fault_matrix import BYSTANDER

    live, standby, entry = two_fakes
    config = tmp_path / "serve.json"
    config.write_text(json.dumps({"applications": [shop_app("deploy_v2")]}))
    changed = {**BYSTANDER, "route_prefix": "/pay"}
    script = tmp_path / "meddle.py"
    script.write_text(f"import requests\nrequests.put({live.dashboard_url + '/api/serve/applications/'!r}, "
                      f"json={{'applications': [{changed!r}, {shop_app('deploy_v1')!r}]}}, timeout=10)\n")
    meddle = f"{sys.executable} {script}"
    switch = f'{entry.switch_command()}; [ "$CI_SERVE_NEW_URL" = "{live.serve_url}" ] || {meddle}'
    report = tmp_path / "report.json"
    code = cli.main(["deploy", str(config), "--address", live.dashboard_url, "--standby-address",
                     standby.dashboard_url, "--standby-url", standby.serve_url, "--switch-command", switch,
                     "--verify-url", entry.url, "--report", str(report)])
    standby.settle()
    live.settle()
    data = json.loads(report.read_text())
    assert code == 1, data
    assert "changed across the traffic write 'switch'" in json.dumps(data)
    assert entry.target_file.read_text() == live.serve_url  # switched back
    assert "shop" not in standby.configs()  # the candidate left the standby
    steps = [s["name"] for s in data["steps"]]
    assert steps.index("switch") < steps.index("switch back") < steps.index("remove candidate")


@pytest.fixture
def two_fakes(tmp_path, monkeypatch):
    """Two fake dashboards (our v1 live on the first, beside the bystander) and the public entry before them."""
    import os

    from tests.support.fake_serve import FakeServe
    from tests.test_fault_matrix import BYSTANDER, PublicEntry, stored_packages

    monkeypatch.setenv("HOME", str(tmp_path))
    for key in [k for k in os.environ if k.startswith("RAY_")]:
        monkeypatch.delenv(key)
    with FakeServe() as live, FakeServe() as standby, PublicEntry(tmp_path / "entry", live.serve_url) as entry:
        for fake in (live, standby):
            fake.state.packages.update(stored_packages())
        live.put({"applications": [BYSTANDER, shop_app("deploy_v1")]})
        live.settle()
        yield live, standby, entry


def shop_app(folder: str) -> dict[str, Any]:
    return {"name": "shop", "route_prefix": "/shop", "import_path": "deploy_app:app",
            "runtime_env": {"working_dir": f"gcs://_ray_pkg_{folder}.zip"}}


@pytest.mark.parametrize("fail_at, code, weights, entries", [
    (None, 0, ["50", "100"], [(50, "pass"), (100, "pass")]),
    ("100", 1, ["50", "100", "0"], [(50, "pass")]),  # the command fails at 100: back to 0, the old one serves
])
def test_traffic_steps_are_writes_of_the_one_executor(two_fakes, tmp_path, fail_at, code, weights, entries):
    """``--traffic-command`` across two clusters: each step a traffic write followed by its gate (no metrics:
    the public entry's answers), the report's ``traffic_steps`` one entry per step reached; a step that fails
    sets the share back to 0, the candidate leaves the standby, exit 1."""
    import json

    from ci_serve import cli

    live, standby, entry = two_fakes
    config = tmp_path / "serve.json"
    config.write_text(json.dumps({"applications": [shop_app("deploy_v2")]}))
    log = tmp_path / "weights"
    fail = f'[ "$CI_SERVE_TRAFFIC_WEIGHT" = "{fail_at}" ] && exit 7; ' if fail_at else ""
    command = f'echo "$CI_SERVE_TRAFFIC_WEIGHT" >> {log}; {fail}{entry.traffic_command()}'
    report = tmp_path / "report.json"
    got = cli.main(["deploy", str(config), "--address", live.dashboard_url, "--standby-address",
                    standby.dashboard_url, "--standby-url", standby.serve_url, "--traffic-command", command,
                    "--traffic-steps", "50,100", "--step-interval", "1", "--verify-url", entry.url,
                    "--report", str(report)])
    data = json.loads(report.read_text())
    assert got == code, data
    assert log.read_text().split() == weights
    assert [(e["weight"], e["verdict"]) for e in data["traffic_steps"]] == entries
    assert data["traffic_analysed"] is False
    standby.settle()
    assert ("shop" in standby.configs()) is (code == 0)
    assert entry.target_file.read_text() == (standby.serve_url if code == 0 else live.serve_url)


def test_a_release_held_on_the_standby_is_promoted_through_the_same_traffic_steps(two_fakes, tmp_path):
    """``deploy --hold`` then ``promote --traffic-command``: the promote re-gates and re-checks the held
    release, then walks the same traffic writes as a deploy, and retires the old cluster on proof."""
    import json

    from ci_serve import cli

    live, standby, entry = two_fakes
    config = tmp_path / "serve.json"
    config.write_text(json.dumps({"applications": [shop_app("deploy_v2")]}))
    expect = tmp_path / "requests.yaml"
    expect.write_text("requests:\n  - name: version\n    path: /\n    expect:\n"
                      "      json: {version: v2, greeting: hello}\n")
    clusters = ["--address", live.dashboard_url, "--standby-address", standby.dashboard_url]
    common = [*clusters, "--standby-url", standby.serve_url, "--verify-url", entry.url, "--requests", str(expect),
              "--version", "r2"]
    assert cli.main(["deploy", str(config), *common, "--switch-command", "false", "--hold"]) == 0
    log = tmp_path / "weights"
    report = tmp_path / "report.json"
    command = f'echo "$CI_SERVE_TRAFFIC_WEIGHT" >> {log}; {entry.traffic_command()}'
    code = cli.main(["promote", str(config), *common, "--traffic-command", command, "--traffic-steps", "50,100",
                     "--step-interval", "1", "--report", str(report)])
    data = json.loads(report.read_text())
    assert code == 0, data
    assert log.read_text().split() == ["50", "100"]
    assert [(e["weight"], e["verdict"]) for e in data["traffic_steps"]] == [(50, "pass"), (100, "pass")]
    steps = [s["name"] for s in data["steps"]]
    assert steps.index("gate held standby") < steps.index("compare with the hold") < steps.index("traffic 50%")
    assert data["live_address"] == standby.dashboard_url
    live.settle()
    assert "shop" not in live.configs()  # retired on proof: the old cluster answers v1, the entry v2
