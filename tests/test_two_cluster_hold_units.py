"""Which hold-marked application on the standby is still held (issue 22, two clusters): table cases of the
pure decision in ci_serve/deploy/two_cluster_hold.py, over cluster snapshots as Ray answers them."""

from __future__ import annotations

from typing import Any

import pytest

from ci_serve.deploy import view
from ci_serve.deploy.ownership import with_hold, with_marker
from ci_serve.deploy.two_cluster_hold import cas_failure, probably_promoted, standby_holds


def app(version: str, greeting: str = "hi") -> dict[str, Any]:
    return with_marker({"route_prefix": "/shop", "import_path": "app:app",
                        "deployments": [{"name": "Echo", "user_config": {"greeting": greeting}}]}, "shop", version)


def held(version: str, live: dict[str, Any] | None, live_name: str | None = "shop") -> dict[str, Any]:
    return with_hold(app(version), at=1.0, route="/shop", live=live, live_name=live_name if live else None)


def snapshot(**apps: dict[str, Any]) -> dict[str, Any]:
    return {"applications": {n: {"status": "RUNNING", "route_prefix": c["route_prefix"],
                                 "deployed_app_config": {**c, "name": n}} for n, c in apps.items()}}


V1 = app("v1")
CASES = {
    # live cluster's shop, standby's shop -> state
    "held beside the live version it recorded": (V1, held("v2", V1), "held"),
    "held beside nothing, nothing live": (None, held("v2", None), "held"),
    "live changed since (in place)": (app("v1", "hey"), held("v2", V1), "stale"),
    "live replaced since": (app("v5"), held("v2", V1), "stale"),
    "live retired (promoted, roles of before)": (None, held("v2", V1), "stale"),
    "the previous live version, kept after a promote": (held("v3", held("v2", V1)), held("v2", V1), "superseded"),
}


@pytest.mark.parametrize("live, standby, state", CASES.values(), ids=CASES.keys())
def test_hold_state(live, standby, state):
    live_view = view.parse(snapshot(shop=live) if live else snapshot())
    holds = standby_holds(view.parse(snapshot(shop=standby)), live_view, "shop", "/shop")
    assert [h.state for h in holds] == [state]
    assert (cas_failure(holds[0], "/shop") is None) == (state == "held")


def test_a_plain_standby_app_holds_nothing():
    assert standby_holds(view.parse(snapshot(shop=app("v2"))), view.parse(snapshot(shop=V1)), "shop", "/shop") == []


def test_promote_refused_for_another_route_or_a_changed_candidate():
    standby = held("v2", V1)
    h = standby_holds(view.parse(snapshot(shop=standby)), view.parse(snapshot(shop=V1)), "shop", "/shop")[0]
    assert "held for route /shop, but the config gives /store" in (cas_failure(h, "/store") or "")
    edited = {**standby, "deployments": [{"name": "Echo", "num_replicas": 2}]}
    h = standby_holds(view.parse(snapshot(shop=edited)), view.parse(snapshot(shop=V1)), "shop", "/shop")[0]
    assert "changed since release v2 was held" in (cas_failure(h, "/shop") or "")


def test_retired_live_looks_promoted():
    h = standby_holds(view.parse(snapshot(shop=held("v2", V1))), view.parse(snapshot()), "shop", "/shop")[0]
    assert probably_promoted(h)
    h = standby_holds(view.parse(snapshot(shop=held("v2", None))), view.parse(snapshot()), "shop", "/shop")[0]
    assert not probably_promoted(h)


def flags(**given: Any) -> Any:
    import argparse
    base = {"standby_address": None, "standby_url": None, "switch_command": None, "verify_url": None,
            "verify_timeout": 60.0, "keep_standby": False}
    return argparse.Namespace(**{**base, **given})


def test_abort_across_two_clusters_needs_only_the_standby_address():
    from ci_serve.commands.deploy import standby
    from ci_serve.errors import InputError

    got = standby(flags(standby_address="http://s:8265"), "abort")
    assert got is not None and got.address == "http://s:8265" and got.switch_command == ""
    with pytest.raises(InputError, match="an abort across two clusters needs --standby-address"):
        standby(flags(standby_url="http://s:8000"), "abort")
    with pytest.raises(InputError, match="a promote across two clusters needs --standby-url, --switch-command"):
        standby(flags(standby_address="http://s:8265"), "promote")
    assert standby(flags(), "abort") is None
