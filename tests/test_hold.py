"""Hold, promote and abort, pure: the hold marker, held candidates in the view, and the planner's modes.

On real heads (2.9.3 and the .venv's Ray): tests/test_hold_ray.py; under every fault: tests/test_fault_matrix.py.
"""

from __future__ import annotations

import copy

import pytest

from ci_serve.deploy.cluster_config import build_body
from ci_serve.deploy.guard import check_effect, effect_of
from ci_serve.deploy.ownership import HOLD_VAR, config_digest, hold_of, markers_of, with_hold
from ci_serve.deploy.planner import Effect, PlanOptions, plan_release
from ci_serve.deploy.view import parse
from ci_serve.errors import InputError
from tests.test_deploy_units import CODE_A as CODE_A_
from tests.test_deploy_units import CODE_B, cfg, snap, want

HOLD = PlanOptions(version="r2", mode="hold", now=1000.0)
PROMOTE = PlanOptions(version="r2", mode="promote")
ABORT = PlanOptions(version="r2", mode="abort")


def held_cluster(**changes):
    """shop-blue (v1) live on /shop, and release r2 held as shop-green on /shop--green (as a hold writes it)."""
    live = cfg("shop-blue")
    plan = plan_release(parse(snap(live)), want(code=CODE_B), HOLD)
    candidate = {**plan.first.put["shop-green"], "name": "shop-green"}
    for key, value in changes.items():
        if key == "live":
            live = value
        else:
            candidate[key] = value
    return snap(live, candidate)


def test_the_hold_marker_round_trips_and_records_the_live_app_and_the_candidate():
    live = cfg("shop-blue")
    candidate = with_hold(cfg("shop-green", "/shop--green", code=CODE_B), at=5.0, route="/shop", live=live,
                          live_name="shop-blue")
    hold = hold_of(candidate)
    assert hold is not None and (hold.at, hold.route, hold.live) == (5.0, "/shop", "shop-blue")
    assert hold.live_digest == config_digest(live) and hold.digest == config_digest(candidate)
    assert hold_of(cfg("shop-blue")) is None
    garbled = copy.deepcopy(candidate)
    garbled["runtime_env"]["env_vars"][HOLD_VAR] = "{not json"
    assert hold_of(garbled) is None  # never trusted when unreadable


def test_a_hold_is_blue_green_whose_candidate_carries_the_marker_and_stops_after_its_checks():
    plan = plan_release(parse(snap(cfg("shop-blue"))), want(code=CODE_B), HOLD)
    assert (plan.mode, plan.release, plan.strategy) == ("hold", "r2", "blue-green")
    assert [w.step for w in plan.writes()] == ["write candidate"]
    candidate = plan.first.put["shop-green"]
    assert candidate["route_prefix"] == "/shop--green"
    hold = hold_of(candidate)
    assert hold is not None and (hold.route, hold.live, hold.at) == ("/shop", "shop-blue", 1000.0)
    assert plan.checks_before_switch() == {"shop": "/shop--green"}
    # the switch (run by a promote) would move it without touching the marker: no restart
    assert markers_of(plan.switch.put["shop-green"]) == markers_of(candidate)


def test_a_lightweight_change_is_held_beside_live_too():
    plan = plan_release(parse(snap(cfg("shop-blue"))), want(greeting="yo"), HOLD)
    assert plan.strategy == "blue-green" and "shop-green" in plan.first.put


@pytest.mark.parametrize("config, options, words", [
    (want(prefix=None, code=CODE_B), HOLD, "cannot be held"),
    (want(code=CODE_B), PlanOptions(version="r2", mode="hold", strategy="in-place"), "--strategy in-place"),
    (want(code=CODE_B), PlanOptions(mode="hold"), "needs a release version"),
])
def test_what_cannot_be_held_is_refused(config, options, words):
    live = cfg("shop-blue", None) if config["applications"][0].get("route_prefix") is None else cfg("shop-blue")
    with pytest.raises(InputError, match=words):
        plan_release(parse(snap(live)), config, options)


def test_the_view_knows_held_candidates_and_a_promoted_one_is_not_held():
    view = parse(held_cluster(), {"/shop": "shop-blue", "/shop--green": "shop-green"})
    assert [h.name for h in view.held("shop", "/shop")] == ["shop-green"]
    assert view.managed()["shop"]["held"][0]["release"] == "r2"
    promoted = held_cluster()
    promoted["applications"]["shop-green"]["deployed_app_config"]["route_prefix"] = "/shop"
    promoted["applications"]["shop-blue"]["deployed_app_config"]["route_prefix"] = "/shop--blue"
    view = parse(promoted, {"/shop": "shop-green", "/shop--blue": "shop-blue"})
    assert view.held("shop", "/shop") == [] and view.live_of("shop", "/shop").name == "shop-green"


@pytest.mark.parametrize("options", [PlanOptions(version="r3"), PlanOptions(version="r3", mode="hold")])
def test_any_other_write_is_refused_while_a_release_is_held(options):
    with pytest.raises(InputError, match="release r2 of shop is held for review") as err:
        plan_release(parse(held_cluster()), want(greeting="yo"), options)
    assert "ci-serve promote CONFIG --version r2" in err.value.hint


def test_holding_the_same_release_again_replaces_its_candidate():
    """The re-run of a hold that was killed (its candidate carries the marker, maybe unchecked)."""
    plan = plan_release(parse(held_cluster()), want(code=CODE_B), PlanOptions(version="r2", mode="hold", now=2000.0))
    assert plan.first.effect == Effect(changed=frozenset({"shop-green"}))
    assert hold_of(plan.first.put["shop-green"]).at == 2000.0


def test_promote_starts_from_the_held_view_and_never_writes_the_candidate_again():
    view = parse(held_cluster(), {"/shop": "shop-blue", "/shop--green": "shop-green"})
    plan = plan_release(view, want(code=CODE_B), PROMOTE)
    assert plan.first is None and [w.step for w in plan.writes()] == ["switch", "remove old"]
    assert plan.checks_before_switch() == {"shop": "/shop--green"}
    held = view.apps["shop-green"].config
    assert plan.switch.put["shop-green"] == {**{k: v for k, v in held.items() if k != "name"}, "route_prefix": "/shop"}
    assert plan.undo_first.effect == Effect(removed=frozenset({"shop-green"}))
    assert plan.undo_switch.effect.removed == frozenset({"shop-green"})
    body = build_body(view.snapshot, put=dict(plan.switch.put))
    check_effect(view, body, plan.switch, {"shop"})  # the guard accepts it: only ours, as declared


def test_promote_does_not_need_the_code_again():
    """The promote job may run days later on another runner: the config's working_dir is not uploaded again,
    and a config whose code differs from the held candidate's still promotes what was reviewed."""
    plan = plan_release(parse(held_cluster()), want(code={"working_dir": "."}), PROMOTE)
    assert plan.switch.put["shop-green"]["runtime_env"]["working_dir"] == CODE_B["working_dir"]


@pytest.mark.parametrize("cluster, config, words", [
    (snap(cfg("shop-blue")), want(code=CODE_B), "no release r2 of shop is held on this cluster; nothing is held"),
    (held_cluster(live=cfg("shop-blue", greeting="changed by hand")), want(code=CODE_B),
     "the live version of shop changed since release r2 was held"),
    (held_cluster(live=cfg("shop-blue", version="other")), want(code=CODE_B), "changed since release r2"),
    (held_cluster(deployments=[{"name": "Echo", "num_replicas": 5}]), want(code=CODE_B),
     "held candidate shop-green of shop changed"),
    (held_cluster(), want("/elsewhere", code=CODE_B), "was held for route /shop, but the config gives /elsewhere"),
])
def test_promote_is_refused_when_the_cluster_is_not_as_the_hold_left_it(cluster, config, words):
    with pytest.raises(InputError, match=words):
        plan_release(parse(cluster), config, PROMOTE)


def test_promote_of_another_release_names_what_is_held():
    with pytest.raises(InputError, match=r"no release r9 .* held: r2 of shop \(shop-green\)"):
        plan_release(parse(held_cluster()), want(code=CODE_B), PlanOptions(version="r9", mode="promote"))


def test_the_re_run_of_a_promote_past_its_switch_only_retires_what_it_left():
    promoted = held_cluster()
    promoted["applications"]["shop-green"]["deployed_app_config"]["route_prefix"] = "/shop"
    promoted["applications"]["shop-blue"]["deployed_app_config"]["route_prefix"] = "/shop--blue"
    view = parse(promoted, {"/shop": "shop-green", "/shop--blue": "shop-blue"})
    plan = plan_release(view, want(code={"working_dir": "."}), PROMOTE)
    assert plan.strategy == "none" and plan.tidy.effect == Effect(removed=frozenset({"shop-blue"}))
    assert "already live" in plan.warnings[0]


def test_abort_removes_the_held_candidate_and_nothing_else():
    view = parse(held_cluster(), {"/shop": "shop-blue", "/shop--green": "shop-green"})
    plan = plan_release(view, want(code={"working_dir": "."}), ABORT)
    assert [w.step for w in plan.writes()] == ["remove held release"]
    w = plan.remove_held
    assert w.effect == Effect(removed=frozenset({"shop-green"})) and w.cleanup
    body = build_body(view.snapshot, remove=set(w.remove))
    assert effect_of(view, body) == Effect(removed=frozenset({"shop-green"}))
    live = next(a for a in body["applications"] if a["name"] == "shop-blue")
    assert live == view.apps["shop-blue"].config  # sent back exactly as it runs: untouched


def test_abort_with_nothing_held_writes_nothing_and_says_so():
    plan = plan_release(parse(snap(cfg("shop-blue"))), want(), ABORT)
    assert plan.writes() == [] and "nothing to abort" in plan.warnings[0]


def test_an_in_place_update_keeps_every_marker_of_the_running_app():
    """A live app promoted from a hold carries the hold marker: a lightweight update in place must keep it,
    or Ray would see new code and restart the replicas."""
    promoted = held_cluster()
    green = promoted["applications"]["shop-green"]["deployed_app_config"]
    green["route_prefix"] = "/shop"
    del promoted["applications"]["shop-blue"]
    view = parse(promoted, {"/shop": "shop-green"})
    plan = plan_release(view, want(code=CODE_B, greeting="yo"), PlanOptions(version="r3"))
    assert plan.strategy == "in-place"
    assert markers_of(plan.first.put["shop-green"]) == markers_of(green)


def test_a_cancel_of_a_promote_whose_switch_may_have_landed_puts_the_release_back_on_hold():
    view = parse(held_cluster(), {"/shop": "shop-blue", "/shop--green": "shop-green"})
    plan = plan_release(view, want(code=CODE_B), PROMOTE)
    w = plan.rehold
    assert w is not None and w.cleanup and w.effect == Effect(changed=frozenset({"shop-blue", "shop-green"}))
    assert w.put["shop-green"]["route_prefix"] == "/shop--green" and w.put["shop-blue"]["route_prefix"] == "/shop"
    after = snap({**w.put["shop-blue"], "name": "shop-blue"}, {**w.put["shop-green"], "name": "shop-green"})
    assert [h.name for h in parse(after).held("shop", "/shop")] == ["shop-green"]  # held again, promotable


def test_a_promote_of_a_release_whose_hold_changed_nothing_is_unchanged():
    """The hold found the config already running (result unchanged, nothing held): its promote is not an error."""
    cluster = snap(cfg("shop-blue"))
    computed = want()  # the config with its package URIs, computed as plan does
    plan = plan_release(parse(cluster), want(code={"working_dir": "."}),
                        PlanOptions(version="r2", mode="promote", computed=computed))
    assert plan.strategy == "none" and plan.mode == "promote" and "already runs this config" in plan.warnings[0]
    with pytest.raises(InputError, match="no release r2 of shop is held"):  # it differs: not held, refused
        plan_release(parse(cluster), want(code={"working_dir": "."}),
                     PlanOptions(version="r2", mode="promote", computed=want(code=CODE_B)))


def test_refused_while_held_before_anything_is_shipped():
    from ci_serve.deploy.planner import refuse_while_held

    with pytest.raises(InputError, match="release r2 of shop is held"):
        refuse_while_held(parse(held_cluster()), want(code={"working_dir": "."}), PlanOptions(version="r3"))
    refuse_while_held(parse(held_cluster()), want(code={"working_dir": "."}), HOLD)  # the same release again


def test_the_hold_records_the_whole_release():
    two = want(code=CODE_B)
    two["applications"].append({"name": "cart", "route_prefix": "/cart", "import_path": "m:app",
                                "runtime_env": dict(CODE_A_),
                                "deployments": [{"name": "Echo", "user_config": {"greeting": "hi"}}]})
    cart = cfg("cart-blue", "/cart", owner="cart")
    plan = plan_release(parse(snap(cfg("shop-blue"), cart)), two, HOLD)
    hold = hold_of(plan.first.put["shop-green"])
    assert hold.apps == {"shop": {"held": "shop-green"}, "cart": {"live": "cart-blue", "digest": config_digest(cart)}}
