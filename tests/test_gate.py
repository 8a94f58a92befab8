"""Table tests for the gate's pure verdicts, and its loop over scripted snapshots."""

from __future__ import annotations

import pytest

from ci_serve.deploy.gate import GateFailed, Goal, config_matches, exception_line, judge, wait_ready

SENT = {"name": "a", "import_path": "m:app", "route_prefix": "/a"}
IMPORT_TRACE = ("Deploying app 'a' failed with exception:\nTraceback (most recent call last):\n"
                "  File \"x.py\", line 1, in <module>\n"
                "ModuleNotFoundError: No module named 'nope'\n")
UNSCHED = ("Deployment 'Echo' in application 'a' has 2 replicas that have taken more than 30s to be scheduled. "
           "Resources required for each replica: {\"CPU\": 1.0}, total resources available: {\"CPU\": 0.9}.")


def app(status="RUNNING", t=200.0, deps=None, message="", config=None):
    return {"status": status, "message": message, "last_deployed_time_s": t,
            "deployed_app_config": config if config is not None else dict(SENT),
            "deployments": deps if deps is not None else {"Echo": {"status": "HEALTHY", "message": ""}}}


CASES = [
    # name, goal, applications, expected state, reason contains
    ("new app running", Goal("a", SENT, None), {"a": app()}, "ready", "RUNNING"),
    ("new app not there yet", Goal("a", SENT, None), {}, "missing", "not on the cluster"),
    ("old goal still shown", Goal("a", SENT, 200.0), {"a": app(config={"name": "a", "import_path": "old:app"})},
     "stale", "not picked up"),
    ("time advanced", Goal("a", SENT, 100.0), {"a": app(config={"import_path": "m:app", "x": 1})}, "ready", ""),
    ("same time but config equal", Goal("a", SENT, 200.0), {"a": app()}, "ready", ""),
    ("deploying", Goal("a", SENT, None), {"a": app("DEPLOYING", deps={"Echo": {"status": "UPDATING"}})},
     "waiting", "Echo UPDATING"),
    ("running but a deployment updating", Goal("a", SENT, None),
     {"a": app(deps={"Echo": {"status": "UPDATING"}})}, "waiting", "RUNNING"),
    ("running without deployments", Goal("a", SENT, None), {"a": app(deps={})}, "waiting", "RUNNING"),
    ("import error", Goal("a", SENT, None), {"a": app("DEPLOY_FAILED", deps={}, message=IMPORT_TRACE)},
     "failed", "ModuleNotFoundError: No module named 'nope'"),
    ("unhealthy deployment", Goal("a", SENT, None),
     {"a": app("DEPLOYING", deps={"Echo": {"status": "UNHEALTHY", "message": "boom\nValueError: bad"}})},
     "failed", "ValueError: bad"),
    ("app unhealthy", Goal("a", SENT, None), {"a": app("UNHEALTHY", message="health check failed")},
     "failed", "health check failed"),
    ("unschedulable", Goal("a", SENT, None),
     {"a": app("DEPLOYING", deps={"Echo": {"status": "UPDATING", "message": UNSCHED}})},
     "unschedulable", "cannot be scheduled"),
    ("removal done", Goal("a", None, 1.0), {}, "gone", "removed"),
    ("removal pending", Goal("a", None, 1.0), {"a": app("DELETING")}, "waiting", "DELETING"),
]


@pytest.mark.parametrize("name, goal, apps, state, reason", CASES, ids=[c[0] for c in CASES])
def test_judge(name, goal, apps, state, reason):
    verdict = judge(goal, apps)
    assert verdict.state == state
    assert reason in verdict.reason


def test_unschedulable_cause_names_resources():
    verdict = judge(Goal("a", SENT), {"a": app("DEPLOYING", deps={"Echo": {"status": "UPDATING", "message": UNSCHED}})})
    assert 'total resources available: {"CPU": 0.9}' in verdict.cause


@pytest.mark.parametrize("sent, seen, ok", [
    ({"a": 1}, {"a": 1, "b": 2}, True),
    ({"a": 1}, {"a": 1.0}, True),
    ({"a": {"x": [1, 2]}}, {"a": {"x": [1, 2], "y": 0}}, True),
    ({"a": [1, 2]}, {"a": [1]}, False),
    ({"a": 1}, {}, False),
    ({"a": True}, {"a": 1}, False),
])
def test_config_matches(sent, seen, ok):
    assert config_matches(sent, seen) is ok


def test_exception_line_none_for_plain_text():
    assert exception_line("nothing to see") is None


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t

    def sleep(self, s):
        self.t += s


def scripted(snapshots):
    it = iter(snapshots)
    last = {}

    def read():
        nonlocal last
        last = next(it, last)
        return last
    return read


def test_loop_needs_two_ready_polls():
    clock = Clock()
    snaps = [{"applications": {}}, {"applications": {"a": app()}}, {"applications": {"a": app()}}]
    result = wait_ready(scripted(snaps), [Goal("a", SENT)], clock=clock, sleep=clock.sleep, heartbeat_every=999)
    assert result.polls == 3


def test_loop_fails_at_once_on_deploy_failed():
    clock = Clock()
    snaps = [{"applications": {"a": app("DEPLOY_FAILED", deps={}, message=IMPORT_TRACE)}}]
    with pytest.raises(GateFailed, match="ModuleNotFoundError") as info:
        wait_ready(scripted(snaps), [Goal("a", SENT)], clock=clock, sleep=clock.sleep, heartbeat_every=999)
    assert clock.t == 0.0 and info.value.exit_code == 1


def test_loop_unschedulable_after_grace():
    clock = Clock()
    snaps = [{"applications": {"a": app("DEPLOYING", deps={"Echo": {"status": "UPDATING", "message": UNSCHED}})}}]
    with pytest.raises(GateFailed, match="could not be scheduled") as info:
        wait_ready(scripted(snaps), [Goal("a", SENT)], unschedulable_grace=10, clock=clock, sleep=clock.sleep,
                   heartbeat_every=999)
    assert clock.t >= 10 and "num_replicas" in info.value.hint


def test_loop_timeout_lists_not_ready_deployments():
    clock = Clock()
    snaps = [{"applications": {"a": app("DEPLOYING", deps={"Echo": {"status": "UPDATING", "message": "slow"}})}}]
    with pytest.raises(GateFailed, match="30s timeout") as info:
        wait_ready(scripted(snaps), [Goal("a", SENT)], timeout=30, clock=clock, sleep=clock.sleep,
                   heartbeat_every=999)
    assert "a/Echo: UPDATING slow" in info.value.details


OTHER_CODE = {**SENT, "runtime_env": {"working_dir": "gcs://_ray_pkg_other.zip"}}
OURS = {**SENT, "runtime_env": {"working_dir": "gcs://_ray_pkg_ours.zip"}}


@pytest.mark.parametrize("name, goal, seen, state", [
    ("our code, newer", Goal("a", OURS, 100.0), app(t=200.0, config=dict(OURS)), "ready"),
    ("other code, newer", Goal("a", OURS, 100.0), app(t=200.0, config=dict(OTHER_CODE)), "superseded"),
    ("other code, new app", Goal("a", OURS, None), app(config=dict(OTHER_CODE)), "superseded"),
    ("other code, not newer: old goal", Goal("a", OURS, 200.0), app(t=200.0, config=dict(OTHER_CODE)), "stale"),
    ("same code, other options (Ray may normalize)", Goal("a", {**OURS, "x": 1}, 100.0),
     app(t=200.0, config=dict(OURS)), "ready"),
])
def test_superseded(name, goal, seen, state):
    assert judge(goal, {"a": seen}).state == state


def test_loop_superseded_raises_its_own_error():
    from ci_serve.deploy.gate import Superseded
    clock = Clock()
    with pytest.raises(Superseded, match="someone else wrote"):
        wait_ready(scripted([{"applications": {"a": app(t=200.0, config=dict(OTHER_CODE))}}]),
                   [Goal("a", OURS, 100.0)], clock=clock, sleep=clock.sleep, heartbeat_every=999)
