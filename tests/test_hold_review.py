"""Hold, promote, abort: regressions from the review of issue 22, pure. Each failed on ba79919.

Each was seen first on real 2.60 heads with the CLI; here as the planner's and the guard's pure decisions.
"""

from __future__ import annotations

import copy

import pytest

from ci_serve.deploy.ownership import with_hold
from ci_serve.deploy.planner import PlanOptions, plan_release
from ci_serve.deploy.view import parse
from ci_serve.errors import InputError
from tests.test_deploy_units import CODE_A, CODE_B, cfg, snap, want

PROMOTE = PlanOptions(version="r2", mode="promote")


def promoted_then_switched():
    """r1 was held and promoted (shop-blue keeps its hold marker, as designed); r2 was then switched in
    (held and promoted, or plainly deployed) and the run was cancelled before ``remove old``: shop-blue
    waits aside on /shop--blue, still carrying r1's hold marker."""
    old = with_hold(cfg("shop-blue", "/shop--blue", version="r1"), at=1.0, route="/shop", live=None, live_name=None)
    new = with_hold(cfg("shop-green", "/shop", code=CODE_B, version="r2"), at=2.0, route="/shop",
                    live=cfg("shop-blue", version="r1"), live_name="shop-blue")
    return snap(old, new), {"/shop": "shop-green", "/shop--blue": "shop-blue"}


def test_an_old_version_waiting_aside_after_a_switch_is_not_a_held_release():
    cluster, routes = promoted_then_switched()
    view = parse(cluster, routes)
    assert view.held("shop", "/shop") == []  # observed: [shop-blue], shown by `status` as "held: release r1"


def test_the_next_deploy_removes_the_old_version_left_aside_as_its_tip_says():
    cluster, routes = promoted_then_switched()
    # observed: InputError "release r1 of shop is held for review" (exit 2), for every deploy from then on
    plan = plan_release(parse(cluster, routes), want(code=CODE_A), PlanOptions(version="r3"))
    assert "shop-blue" in plan.apps[0].leftovers  # removed, or replaced by the new candidate


def test_the_re_run_of_a_promote_past_its_switch_retires_an_old_version_that_carries_a_hold_marker():
    cluster, routes = promoted_then_switched()
    plan = plan_release(parse(cluster, routes), want(code=CODE_B), PROMOTE)  # observed: exit 2, "held: r1 of shop"
    assert plan.tidy is not None and plan.tidy.remove == frozenset({"shop-blue"})


def two_apps(shop_code=CODE_B, cart_code=CODE_A):
    config = want(code=shop_code)
    config["applications"].append({"name": "cart", "route_prefix": "/cart", "import_path": "m:app",
                                   "runtime_env": dict(cart_code),
                                   "deployments": [{"name": "Echo", "user_config": {"greeting": "hi"}}]})
    return config


def test_the_re_run_of_a_promote_past_its_switch_works_when_the_config_has_an_unchanged_app():
    """A two-app config, only shop changed: the hold held shop only, cart stayed as it was (version r1)."""
    shop_old = cfg("shop-blue", "/shop--blue", version="r1")
    shop_new = with_hold(cfg("shop-green", "/shop", code=CODE_B, version="r2"), at=2.0, route="/shop",
                         live=shop_old, live_name="shop-blue")
    cart = cfg("cart-blue", "/cart", owner="cart", version="r1")
    view = parse(snap(shop_old, shop_new, cart), {"/shop": "shop-green", "/shop--blue": "shop-blue",
                                                  "/cart": "cart-blue"})
    # observed: InputError "no release r2 of shop, cart is held on this cluster; nothing is held" (exit 2)
    plan = plan_release(view, two_apps(), PROMOTE)
    assert plan.tidy is not None and plan.tidy.remove == frozenset({"shop-blue"})


def test_promote_accepts_the_candidate_as_ray_records_it():
    """Ray's schema coerces numbers (graceful_shutdown_timeout_s: 5 comes back as 5.0, measured on 2.60): the
    hold's digest of what it sent must still match what the cluster reports."""
    live = cfg("shop-blue")
    config = want(code=CODE_B)
    config["applications"][0]["deployments"][0]["graceful_shutdown_timeout_s"] = 5
    hold = plan_release(parse(snap(live)), config, PlanOptions(version="r2", mode="hold", now=1.0))
    echoed = copy.deepcopy({**hold.first.put["shop-green"], "name": "shop-green"})
    echoed["deployments"][0]["graceful_shutdown_timeout_s"] = 5.0  # as GET /api/serve/applications/ answers
    view = parse(snap(live, echoed), {"/shop": "shop-blue", "/shop--green": "shop-green"})
    plan = plan_release(view, config, PROMOTE)  # observed: "the held candidate shop-green of shop changed"
    assert plan.switch is not None


def test_promote_is_refused_when_an_app_of_the_release_that_was_not_held_changed_since_the_hold():
    """A two-app release whose cart was unchanged at the hold: cart changes meanwhile (another deploy of cart
    alone is allowed while shop is held). Observed: promote exits 0 'deployed' for release r2 while cart runs
    something the release never had. The issue: refuse when 'the live app ... changed since the hold'."""
    live = cfg("shop-blue")
    cart = cfg("cart-blue", "/cart", owner="cart", version="r1")
    hold = plan_release(parse(snap(live, cart)), two_apps(), PlanOptions(version="r2", mode="hold", now=1.0))
    candidate = {**hold.first.put["shop-green"], "name": "shop-green"}
    cart_now = cfg("cart-green", "/cart", owner="cart", version="c5", code={"working_dir": "gcs://_ray_pkg_c.zip"})
    view = parse(snap(live, candidate, cart_now), {"/shop": "shop-blue", "/shop--green": "shop-green",
                                                   "/cart": "cart-green"})
    with pytest.raises(InputError, match="changed since release r2 was held"):
        plan_release(view, two_apps(), PROMOTE)


def test_abort_never_removes_a_candidate_that_took_the_route_after_the_abort_planned():
    """abort planned from a read where shop-green was held; a promote then switched it live (and was cancelled
    before retiring shop-blue, or is still running). The re-read right before the abort's PUT must stop it:
    observed on a real 2.60 head, the abort removed the live shop-green and /shop was served by nothing (exit 3)."""
    from ci_serve.deploy.cluster_config import build_body
    from ci_serve.deploy.guard import WriteRefused, check_effect

    live = cfg("shop-blue")
    hold = plan_release(parse(snap(live)), want(code=CODE_B), PlanOptions(version="r2", mode="hold", now=1.0))
    candidate = {**hold.first.put["shop-green"], "name": "shop-green"}
    planned = parse(snap(live, candidate), {"/shop": "shop-blue", "/shop--green": "shop-green"})
    w = plan_release(planned, want(code=CODE_B), PlanOptions(version="r2", mode="abort")).remove_held
    assert w is not None
    switched = parse(snap({**live, "route_prefix": "/shop--blue"}, {**candidate, "route_prefix": "/shop"}),
                     {"/shop--blue": "shop-blue", "/shop": "shop-green"})
    body = build_body(switched.snapshot, remove=set(w.remove))
    with pytest.raises(WriteRefused):  # observed: accepted (a clean-up write is not checked for drift)
        check_effect(switched, body, w, {"shop"})


def test_promote_is_refused_when_a_held_candidate_of_the_release_is_gone():
    """Release r2 held shop and cart; shop's candidate was removed since (an abort with a config of shop alone,
    or by hand). Promoting what is left would take half a release live and report it 'deployed' (exit 0)."""
    live_shop, live_cart = cfg("shop-blue"), cfg("cart-blue", "/cart", owner="cart")
    both = two_apps(cart_code=CODE_B)
    hold = plan_release(parse(snap(live_shop, live_cart)), both, PlanOptions(version="r2", mode="hold", now=1.0))
    assert {"shop-green", "cart-green"} <= set(hold.first.put)  # both changed
    cart_candidate = {**hold.first.put["cart-green"], "name": "cart-green"}
    view = parse(snap(live_shop, live_cart, cart_candidate), {"/shop": "shop-blue", "/cart": "cart-blue",
                                                              "/cart--green": "cart-green"})
    with pytest.raises(InputError):
        plan_release(view, both, PROMOTE)  # observed: a plan promoting cart alone
