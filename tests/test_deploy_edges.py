"""The deploy core at its edges, pure: the one verdict, writes whose answer was lost, reads that
contradict what was seen, deletions in progress, plans that would lose the live version.

What Ray does in these states was measured on real heads (tests/test_deploy_edges_ray.py, and
docs/deploy.md); here the decisions are checked one by one, in milliseconds.
"""

from __future__ import annotations

import pytest

from ci_serve.cluster.dashboard import AnswerLost
from ci_serve.deploy.cluster_config import build_body
from ci_serve.deploy.guard import after_write, classify, drifted, expected_from, unexplained
from ci_serve.deploy.planner import PlanOptions, plan_release
from ci_serve.deploy.release import Options, Release
from ci_serve.deploy.verdict import Final, Seen, exit_code
from ci_serve.deploy.view import parse
from ci_serve.errors import InputError
from tests.test_deploy_units import app, cfg, snap, want

GOOD = Seen("shop", "shop-blue", True, True)
DOWN = Seen("shop", None, False, True)  # nobody serves /shop
FAILING = Seen("shop", "shop-blue", True, False)  # serves, but fails its checks


@pytest.mark.parametrize(("final", "code"), [
    (Final(failed=False), 3),  # nothing seen (the final read failed): 0 would claim what nobody saw
    (Final(failed=False, seen=(GOOD,)), 0),
    (Final(failed=False, seen=(FAILING,)), 3),
    (Final(failed=True, refused=True), 2),
    (Final(failed=True, wrote=True, refused=True), 3),  # a bug after a write: what serves is not known
    (Final(failed=True, seen=(GOOD,)), 1),
    (Final(failed=True, wrote=True, seen=(GOOD,)), 1),
    (Final(failed=True, wrote=True, seen=(GOOD,), half_done=True), 3),  # a cancel after the switch
    (Final(failed=True, seen=(DOWN,)), 3),  # a cancel early while live is UNHEALTHY answering 500
    (Final(failed=True, seen=(FAILING,)), 3),  # unchanged, and the requests fail against live
    (Final(failed=True, wrote=True), 3),
    (Final(failed=True), 2),  # nothing written, nothing seen
])
def test_one_verdict_for_every_ending(final, code):
    assert exit_code(final) == code


# -- writes whose answer was lost -------------------------------------------------------------------
def test_a_write_whose_answer_was_lost_is_classified_from_what_the_cluster_holds():
    before = parse(snap(cfg("shop-blue"), cfg("payments", "/pay", owner=None)))
    expected = expected_from(before)
    body = build_body(before.snapshot, put={"shop-green": cfg("shop-green", "/shop--green", code={"x": 1})})
    applied = parse(snap(cfg("shop-blue"), cfg("payments", "/pay", owner=None),
                         cfg("shop-green", "/shop--green", code={"x": 1})))
    assert classify(expected, body, applied) == "applied"
    assert classify(expected, body, before) == "not applied"
    other = parse(snap(cfg("shop-blue"), cfg("payments", "/pay", owner=None), cfg("orders", "/o", owner=None)))
    assert classify(expected, body, other) == "not applied"  # orders is the drift check's, on the next read
    overtaken = parse(snap(cfg("shop-blue"), cfg("payments", "/pay", owner=None), cfg("shop-green", "/x")))
    assert classify(expected, body, overtaken) == "overtaken"


class _Cluster:
    """A cluster as Ray 2.60 behaves for these calls: a PUT is declarative and applied before it is
    answered. ``lose`` answers lost (after applying when ``apply_lost``); ``between`` runs after it."""

    address = "http://127.0.0.1:1"

    def __init__(self, *configs, lose=0, apply_lost=False, between=None):
        self.apps = {c["name"]: c for c in configs}
        self.lose, self.apply_lost, self.between = lose, apply_lost, between
        self.puts: list[list[str]] = []
        self.retry_budget = 30.0
        self.empty_reads = 0

    def get_applications(self):
        if self.empty_reads:
            self.empty_reads -= 1
            return snap()
        return snap(*self.apps.values())

    def put_applications(self, body):
        self.puts.append(sorted(a["name"] for a in body["applications"]))
        if self.lose:
            self.lose -= 1
            if self.apply_lost:
                self.apps = {a["name"]: a for a in body["applications"]}
            if self.between:
                self.between(self)
            raise AnswerLost("the answer to PUT never came back (connection reset); the write may have been applied")
        self.apps = {a["name"]: a for a in body["applications"]}


def _release(cluster, config):
    release = Release(cluster, None, Options())  # type: ignore[arg-type]
    release.config = type("C", (), {"data": config})()  # type: ignore[assignment]
    view = parse(cluster.get_applications())
    release.expected = expected_from(view)
    plan = plan_release(view, config, PlanOptions())
    release.logicals = {a.logical for a in plan.apps}
    return release, plan


def test_a_lost_write_that_was_not_applied_is_written_again_from_a_fresh_read_keeping_another_teams_app():
    """The dropped-connection case: another team deploys payments before our retry. The retry is a new
    write from a fresh read, so payments stays; the old body is never resent."""
    def deploy_payments(cluster):
        cluster.apps["payments"] = cfg("payments", "/pay", owner=None)

    cluster = _Cluster(cfg("shop-blue"), lose=1, between=deploy_payments)
    release, plan = _release(cluster, want(greeting="new"))
    assert plan.first is not None
    from ci_serve.deploy.guard import ClusterChanged

    # not applied: a new write from a fresh read, which sees payments appear: the guard stops, nothing resent
    with pytest.raises(ClusterChanged, match="payments"):
        release.write(plan.first)
    assert release.fates == {"write config": "not applied"}
    assert cluster.puts == [["shop-blue"]] and "payments" in cluster.apps


def test_a_lost_write_that_was_not_applied_is_retried_once_as_a_new_write():
    cluster = _Cluster(cfg("shop-blue"), lose=1)
    release, plan = _release(cluster, want(code={"working_dir": "gcs://_ray_pkg_new.zip"}))
    assert plan.first is not None and plan.strategy == "blue-green"
    release.write(plan.first)
    assert release.fates == {"write candidate": "applied"}  # the second write, sent from a fresh read
    assert cluster.puts == [["shop-blue", "shop-green"], ["shop-blue", "shop-green"]]


def test_a_lost_write_that_was_applied_is_not_sent_again():
    cluster = _Cluster(cfg("shop-blue"), lose=1, apply_lost=True)
    release, plan = _release(cluster, want(code={"working_dir": "gcs://_ray_pkg_new.zip"}))
    assert plan.first is not None
    release.write(plan.first)
    assert release.fates == {"write candidate": "applied"} and len(cluster.puts) == 1
    assert "shop-green" in release.expected


# -- reads that contradict what we saw ---------------------------------------------------------------
def test_one_empty_read_is_read_again_and_never_written_from(monkeypatch):
    """A recovering controller answers an empty list once: a clean-up write built from it would remove
    everything. It is read again; a write is built only from a read that explains what we saw."""
    monkeypatch.setattr("ci_serve.deploy.release.READ_PAUSE_S", 0.0)
    cluster = _Cluster(cfg("shop-blue"), cfg("shop-green", "/shop--green"), cfg("payments", "/pay", owner=None))
    release, plan = _release(cluster, want())
    assert plan.tidy is not None
    cluster.empty_reads = 1
    release.write(plan.tidy)
    assert cluster.puts == [["payments", "shop-blue"]]


def test_one_empty_read_before_a_clean_up_write_never_removes_another_teams_app(monkeypatch):
    """Clean-up writes (undo, remove old) skip the drift check: built from an empty read, "remove shop-green"
    would have removed every application."""
    monkeypatch.setattr("ci_serve.deploy.release.READ_PAUSE_S", 0.0)
    cluster = _Cluster(cfg("shop-blue"), cfg("payments", "/pay", owner=None))
    release, plan = _release(cluster, want(code={"working_dir": "gcs://_ray_pkg_new.zip"}))
    assert plan.first is not None and plan.undo_first is not None and plan.undo_first.cleanup
    release.write(plan.first)
    cluster.empty_reads = 1
    release.write(plan.undo_first)
    assert cluster.puts[-1] == ["payments", "shop-blue"]


def test_a_contradiction_that_persists_stops_without_writing(monkeypatch):
    monkeypatch.setattr("ci_serve.deploy.release.READ_PAUSE_S", 0.0)
    cluster = _Cluster(cfg("shop-blue"), cfg("shop-green", "/shop--green"), cfg("payments", "/pay", owner=None))
    release, plan = _release(cluster, want())
    assert plan.tidy is not None
    cluster.empty_reads = 100
    from ci_serve.deploy.guard import ClusterChanged

    with pytest.raises(ClusterChanged, match="payments, shop-blue"):
        release.write(plan.tidy)
    assert cluster.puts == []


def test_unexplained_names_only_what_vanished_without_a_write_of_ours():
    expected = expected_from(parse(snap(cfg("shop-blue"), cfg("payments", "/pay", owner=None))))
    assert unexplained(expected, parse(snap()), ()) == ["payments", "shop-blue"]
    assert unexplained(expected, parse(snap(cfg("payments", "/pay", owner=None))), {"shop-blue"}) == []
    deleting = parse(snap(cfg("shop-blue"), payments=app(None, status="DELETING")))
    assert unexplained(expected, deleting, ()) == []  # listed: a change someone made, for the drift check


# -- deletions in progress ---------------------------------------------------------------------------
def test_an_app_being_deleted_neither_blocks_nor_counts_as_a_change_nor_comes_back():
    """Measured on Ray 2.60: an app a PUT left out reports deployed_app_config null while DELETING, and a
    PUT naming it again is accepted (it is created anew)."""
    deleting = app(None, status="DELETING")
    view = parse(snap(cfg("shop-blue"), shop=deleting, **{"shop-green": app(None, status="DELETING")}))
    plan = plan_release(view, want(code={"working_dir": "gcs://_ray_pkg_new.zip"}), PlanOptions())
    assert plan.first is not None and plan.first.effect.created == {"shop-green"}
    body = build_body(view.snapshot)
    assert [a["name"] for a in body["applications"]] == ["shop-blue"]
    expected = expected_from(view)
    assert drifted(expected, parse(snap(cfg("shop-blue")))) == []  # its deletion finished: no change
    # the plain name, being deleted, is not a foreign app in the way of a route-less deploy
    plan = plan_release(parse(snap(shop=deleting)), want(prefix=None), PlanOptions())
    assert plan.first is not None and plan.first.effect.created == {"shop"}


def test_an_app_of_ours_deleted_with_its_config_shown_is_not_sent_back():
    view = parse(snap(cfg("shop-blue"), **{"shop-green": app(cfg("shop-green", "/shop--green"), status="DELETING")}))
    assert [a["name"] for a in build_body(view.snapshot)["applications"]] == ["shop-blue"]
    assert "shop-green" not in expected_from(view)
    assert [m.name for m in view.members("shop", "/shop")] == ["shop-blue"]


# -- plans that would lose the live version ----------------------------------------------------------
def test_a_routed_app_becoming_route_less_keeps_the_old_one_serving_until_the_new_one_is_checked():
    view = parse(snap(cfg("shop-blue")))
    plan = plan_release(view, want(prefix=None, code={"working_dir": "gcs://_ray_pkg_new.zip"}), PlanOptions())
    (d,) = plan.apps
    assert d.target == "shop" and d.replaces is not None and d.replaces.name == "shop-blue"
    assert d.previous is d.replaces and d.live_route == "/shop"
    assert plan.first is not None and plan.first.effect.removed == frozenset()  # shop-blue is not a leftover
    assert plan.undo_first is not None and plan.undo_first.effect.removed == {"shop"}
    assert plan.retire is not None and plan.retire.effect.removed == {"shop-blue"}


def test_an_imperative_app_under_the_plain_name_is_refused_before_any_write_with_the_fix():
    imperative = app(None)
    imperative["route_prefix"] = "/shop"
    for prefix in ("/shop", None):
        with pytest.raises(InputError, match=r"deployed imperatively") as refused:
            plan_release(parse(snap(shop=imperative)), want(prefix=prefix), PlanOptions(strategy="auto"))
        assert refused.value.exit_code == 2 and 'serve.delete("shop")' in (refused.value.hint or "")


def test_a_moved_prefix_is_checked_where_the_previous_version_serves():
    view = parse(snap(cfg("shop-blue")))
    plan = plan_release(view, want(prefix="/new", code={"working_dir": "gcs://_ray_pkg_new.zip"}), PlanOptions())
    (d,) = plan.apps
    assert d.live is not None and d.live.name == "shop-blue" and d.live_route == "/shop"


def test_after_write_keeps_what_we_sent():
    expected = after_write({}, {"applications": [cfg("shop-blue")]})
    assert set(expected) == {"shop-blue"}


# -- two clusters ----------------------------------------------------------------------------------------
def test_an_old_cluster_that_cannot_be_asked_proves_nothing_and_is_kept(tmp_path):
    """The only proof that traffic moved is the public entry answering from the new version where the old
    cluster, reached at its own proxy, answers differently. A request to the old cluster that never got an
    answer (a wrong or unreachable Serve address) used to count as that proof, and the old cluster's apps
    were removed while the public entry still pointed at it."""
    from ci_serve.deploy.release import Release
    from ci_serve.deploy.two_cluster import TwoClusterOptions
    from tests.test_dashboard import dead_address

    config = type("C", (), {"data": want()})()
    opts = TwoClusterOptions(standby_url="http://127.0.0.1:1", switch_command="true",
                             verify_url="http://127.0.0.1:2", live_url=dead_address())
    release = Release.two_clusters(None, None, config, opts)  # type: ignore[arg-type]
    proven, why = release.proof_of_switch()
    assert not proven and "could not be asked" in why
    release.two = TwoClusterOptions(standby_url="http://127.0.0.1:1", switch_command="true", live_url=dead_address())
    assert release.proof_of_switch() == (False, "no --verify-url, so nothing proves the traffic moved")


# -- a cancel before anything was written ------------------------------------------------------------
@pytest.fixture
def serve_proxy():
    """A Serve proxy stand-in: its route table routes /shop to shop-blue, which answers ``status``."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    state = {"status": 200}

    class Proxy(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            code, body = (200, json.dumps({"/shop": "shop-blue"})) if self.path == "/-/routes" else \
                (state["status"], "{}")
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())

    server = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", state
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(("status", "http", "code"), [("RUNNING", 200, 1), ("UNHEALTHY", 500, 3)])
def test_a_cancel_before_any_write_is_exit_1_only_when_live_is_seen_serving(serve_proxy, status, http, code):
    """A cancel early in a run, while the live version is UNHEALTHY and answers 500, used to be exit 1."""
    from ci_serve.errors import Cancelled, CiServeError

    url, state = serve_proxy
    state["status"] = http
    cluster = _Cluster()
    cluster.apps = {}
    release, _ = _release(cluster, want())
    release.opts = Options(serve_url=url)
    blue = cfg("shop-blue")
    cluster.get_applications = lambda: snap(**{"shop-blue": app(blue, status=status)})  # type: ignore[method-assign]
    with pytest.raises(CiServeError) as stopped:
        release.cancelled_early(Cancelled("cancelled by SIGINT"))
    assert stopped.value.exit_code == code
    assert "nothing was written" in stopped.value.message


# -- against the fake dashboard: faults at one precise moment of a whole deploy ----------------------
def _shop_config(directory, folder, greeting="hi"):
    import json

    path = directory / f"serve-{folder}-{greeting}.json"
    path.write_text(json.dumps({"applications": [{
        "name": "shop", "route_prefix": "/shop", "import_path": "deploy_app:app",
        "runtime_env": {"working_dir": f"gcs://_ray_pkg_{folder}.zip"},
        "deployments": [{"name": "Echo", "user_config": {"greeting": greeting}}]}]}))
    return path


@pytest.fixture
def fake_shop(tmp_path, monkeypatch):
    """The fake dashboard holding another team's ``payments`` and our ``shop`` (deploy_v1) on /shop."""
    import os

    from ci_serve import cli
    from tests.support.fake_serve import FakeServe
    from tests.test_fault_matrix import BYSTANDER, stored_packages

    monkeypatch.setenv("HOME", str(tmp_path))
    for key in [k for k in os.environ if k.startswith("RAY_")]:
        monkeypatch.delenv(key)
    with FakeServe() as fake:
        fake.state.packages.update(stored_packages())
        fake.put({"applications": [BYSTANDER]})
        fake.settle()
        assert cli.main(["deploy", str(_shop_config(tmp_path, "deploy_v1")), "--address", fake.dashboard_url]) == 0
        fake.settle()
        yield fake


def test_a_cancel_right_after_the_switch_returned_keeps_the_new_version_on_its_route(fake_shop, tmp_path,
                                                                                   monkeypatch):
    """A cancel landing after the switch PUT returned, before the release noted it as sent, used to take
    the switch for not applied: the first undo removed shop-green, which held /shop by then."""
    import json

    from ci_serve import cancel, cli
    from ci_serve.deploy import release as rel
    from ci_serve.errors import Cancelled

    write = rel.Release.write

    def cancelled_once_written(self, w):
        out = write(self, w)
        if w.step == "switch":
            raise Cancelled("cancelled by SIGINT")  # as the signal handler would, right after the PUT returned
        return out

    monkeypatch.setattr(rel.Release, "write", cancelled_once_written)
    cancel.clear()
    report = tmp_path / "report.json"
    code = cli.main(["deploy", str(_shop_config(tmp_path, "deploy_v2")), "--address", fake_shop.dashboard_url,
                     "--report", str(report)])
    fake_shop.settle()
    assert fake_shop.routes().get("/shop") == "shop-green"
    assert fake_shop.routes().get("/payments") == "payments"
    assert code == 3  # a cancel after the switch: the new version serves, unchecked
    assert json.loads(report.read_text())["errors"][0]["exit_code"] == 3


def test_one_empty_read_of_the_standby_never_removes_another_teams_app_there(tmp_path, monkeypatch):
    """Removing the candidate from the standby built its body from a single read: one empty read (a
    recovering controller) and the restore PUT removed another team's payments on the standby."""
    from ci_serve.cluster.address import resolve_target
    from ci_serve.cluster.dashboard import DashboardClient
    from ci_serve.deploy.release import Release
    from ci_serve.deploy.two_cluster import TwoClusterOptions
    from ci_serve.errors import CheckFailed, CiServeError
    from tests.support.fake_serve import FakeServe

    monkeypatch.setattr("ci_serve.deploy.release.READ_PAUSE_S", 0.0)
    monkeypatch.setenv("HOME", str(tmp_path))
    payments = {"name": "payments", "route_prefix": "/payments", "import_path": "deploy_app:app"}
    shop = {"name": "shop", "route_prefix": "/shop", "import_path": "deploy_app:app",
            "runtime_env": {"env_vars": {"CI_SERVE_APP": "shop"}}}
    with FakeServe() as standby_fake, FakeServe() as live_fake:
        standby_fake.put({"applications": [payments]})
        standby = DashboardClient(resolve_target(standby_fake.dashboard_url), retry_budget=2)
        live = DashboardClient(resolve_target(live_fake.dashboard_url), retry_budget=2)
        config = type("C", (), {"data": {"applications": [{"name": "shop", "route_prefix": "/shop"}]}})()
        release = Release.two_clusters(live, standby, config,  # type: ignore[arg-type]
                                       TwoClusterOptions(standby_url="x", switch_command="true"))
        release.snapshots = {"standby": standby.get_applications(), "live": live.get_applications()}
        release.read_two()
        release.logicals = {"shop"}
        plan = release.plan_two()
        standby_fake.put({"applications": [payments, shop]})  # our write to the standby
        release.standby_written = True
        read, empty_once = standby.get_applications, [True]

        def recovering():
            data = read()
            if empty_once:
                empty_once.pop()
                data["applications"] = {}
            return data

        standby.get_applications = recovering  # type: ignore[method-assign]
        with pytest.raises(CiServeError):
            release.restore_standby(plan, CheckFailed("check standby failed"))
        standby_fake.settle()
        assert sorted(standby_fake.configs()) == ["payments"]  # the candidate gone, payments kept


def test_a_write_that_never_reached_the_dashboard_is_written_again_from_a_fresh_read_never_resent():
    """A PUT whose connection was refused used to be resent with the same body for up to 40 s: another
    team's payments, deployed meanwhile, was removed. Now it is NotSent (not applied), and the next write
    is built from a fresh read and guarded again: it sees payments appear and stops without writing."""
    from ci_serve.cluster.dashboard import NotSent
    from ci_serve.deploy.guard import ClusterChanged

    cluster = _Cluster(cfg("shop-blue"))
    release, plan = _release(cluster, want(greeting="new"))
    assert plan.first is not None
    put = cluster.put_applications

    def refused_once(body):
        cluster.put_applications = put  # type: ignore[method-assign]
        cluster.puts.append(sorted(a["name"] for a in body["applications"]))
        cluster.apps["payments"] = cfg("payments", "/pay", owner=None)  # the dashboard is back; payments meanwhile
        raise NotSent("PUT /api/serve/applications/ never reached the dashboard (connection refused)")

    cluster.put_applications = refused_once  # type: ignore[method-assign]
    with pytest.raises(ClusterChanged, match="payments"):
        release.write(plan.first)
    assert release.fates == {"write config": "not applied"}
    assert cluster.puts == [["shop-blue"]] and "payments" in cluster.apps


def test_an_unchanged_deploy_that_cannot_see_the_cluster_at_the_end_is_not_exit_0():
    """An unchanged re-deploy whose final read failed saw nothing serving, and used to exit 0."""
    from ci_serve.cluster.dashboard import DashboardUnavailable
    from ci_serve.errors import CiServeError

    cluster = _Cluster(cfg("shop-blue"))
    release, plan = _release(cluster, want())
    assert plan.strategy == "none"

    def down():
        raise DashboardUnavailable("the Ray dashboard at x did not answer")

    cluster.get_applications = down  # type: ignore[method-assign]
    with pytest.raises(CiServeError, match="could not be seen serving") as stopped:
        release.unchanged(plan)
    assert stopped.value.exit_code == 3


def test_a_cancel_while_a_lost_or_refused_write_is_read_again_is_never_swallowed():
    """settle and refused_write_changed caught CiServeError, and so a cancel (one too) during their re-read:
    a cancel became "the cluster could not be read" and the run went on."""
    from ci_serve.cluster.dashboard import SchemaRejected
    from ci_serve.errors import Cancelled

    cluster = _Cluster(cfg("shop-blue"))
    release, plan = _release(cluster, want(greeting="new"))

    def cancelled():
        raise Cancelled("cancelled by SIGINT")

    cluster.get_applications = cancelled  # type: ignore[method-assign]
    body = {"applications": [cfg("shop-blue")]}
    with pytest.raises(Cancelled):
        release.settle(release.expected, body, AnswerLost("the answer to PUT never came back"))
    with pytest.raises(Cancelled):
        release.refused_write_changed(SchemaRejected("the Ray dashboard rejected the Serve config (HTTP 400)"))


@pytest.mark.parametrize(("answers", "proven"), [
    ([503, 200], False),  # one busy moment, then the same answer as the new version: no proof
    ([503, 503, 503], False),  # only errors: nothing shows the public entry stopped reaching it
    ([503, 404], True),  # a non-5xx answer that differs: the traffic moved
])
def test_only_an_answer_of_the_old_cluster_that_is_not_a_5xx_proves_the_switch(monkeypatch, answers, proven):
    """One transient 503 of the old cluster used to count as proof that traffic moved: the old cluster,
    still reached by the public entry, was retired."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler

    from ci_serve.deploy.release import Release
    from ci_serve.deploy.two_cluster import TwoClusterOptions
    from ci_serve.smoke.requests_file import SmokeRequest
    from tests.support.fake_serve import QuietServer

    monkeypatch.setattr("ci_serve.deploy.two_cluster.PROOF_PAUSE_S", 0.0)
    hits: list[str] = []

    class Old(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            if self.path == "/-/routes":
                code, body = 200, json.dumps({"/shop": "shop-blue"}).encode()
            else:
                hits.append(self.path)
                code, body = answers[min(len(hits), len(answers)) - 1], b'{"version": "v1"}'
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = QuietServer(("127.0.0.1", 0), Old)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        config = type("C", (), {"data": {"applications": [{"name": "shop", "route_prefix": "/shop"}]}})()
        opts = TwoClusterOptions(standby_url="x", switch_command="true", verify_url="http://public.example",
                                 requests=[SmokeRequest(name="shop is up")],
                                 live_url=f"http://127.0.0.1:{server.server_address[1]}")
        release = Release.two_clusters(None, None, config, opts)  # type: ignore[arg-type]
        assert release.proof_of_switch()[0] is proven
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("empty_reads", [4, 100])
def test_an_empty_application_list_that_the_proxy_contradicts_is_never_planned_from(fake_shop, tmp_path,
                                                                                  monkeypatch, empty_reads):
    """The plan-time read believed an empty list after three reads (a controller recovering for 1.5 s):
    the plan saw no live version and the first PUT removed payments and shop. The Serve proxy, still
    routing /payments and /shop, contradicts such a list: it is read again, else the run stops unwritten."""
    from ci_serve import cli

    monkeypatch.setattr("ci_serve.deploy.release.READ_PAUSE_S", 0.0)
    real = fake_shop.applications
    left = [empty_reads]

    def recovering():
        data = real()
        if left[0] > 0:
            left[0] -= 1
            data["applications"] = {}
        return data

    monkeypatch.setattr(fake_shop, "applications", recovering)
    code = cli.main(["deploy", str(_shop_config(tmp_path, "deploy_v2")), "--address", fake_shop.dashboard_url])
    fake_shop.settle()
    assert "payments" in fake_shop.configs()
    if empty_reads > 10:  # never explained: stopped before any write, nothing changed
        assert code == 2 and fake_shop.routes().get("/shop") == "shop-blue"
    else:
        assert code == 0 and fake_shop.routes().get("/shop") == "shop-green"
