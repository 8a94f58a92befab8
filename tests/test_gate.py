"""Table tests for the gate's pure verdicts, and its loop over scripted snapshots."""

from __future__ import annotations

import pytest

from ci_serve.deploy.gate import GateFailed, Goal, config_matches, judge_gate, wait_ready

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
    verdict = judge_gate(goal, apps)
    assert verdict.state == state
    assert reason in verdict.reason


def test_unschedulable_cause_names_resources():
    apps = {"a": app("DEPLOYING", deps={"Echo": {"status": "UPDATING", "message": UNSCHED}})}
    verdict = judge_gate(Goal("a", SENT), apps)
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
    assert judge_gate(goal, {"a": seen}).state == state


def test_loop_superseded_raises_its_own_error():
    from ci_serve.deploy.gate import Superseded
    clock = Clock()
    with pytest.raises(Superseded, match="someone else wrote"):
        wait_ready(scripted([{"applications": {"a": app(t=200.0, config=dict(OTHER_CODE))}}]),
                   [Goal("a", OURS, 100.0)], clock=clock, sleep=clock.sleep, heartbeat_every=999)


# -- placement: judged from the cluster's resource demands (issue 12) --------------------------------
from ci_serve.deploy.capacity import Capacity, read_capacity  # noqa: E402

HEAD_NODE = {"node:192.0.2.2": 1.0, "node:__internal_head__": 1.0, "memory": 2.4e10, "CPU": 1.0,
             "object_store_memory": 1e8}
ONDEMAND_NODE = {"node:192.0.2.2": 1.0, "ondemand": 1.0, "memory": 1.6e10, "CPU": 1.0, "object_store_memory": 7e9}
NO_NODE_TYPE = ("Error: No available node types can fulfill resource request {'nosuch': 1.0}. Add suitable node "
                "types to this cluster to resolve this issue.")


UNSCHED_240 = ("Deployment 'Echo' in application 'x' has 1 replicas that have taken more than 30s to be scheduled.\n"
               "This may be due to waiting for the cluster to auto-scale or for a runtime environment to be "
               "installed.\nResources required for each replica:\n{\"gpu_xl\": 1}\nTotal resources available:\n"
               "{}\nUse `ray status` for more details.")  # as Ray 2.40 words it
GPU_XL_EVENT = ("Error: No available node types can fulfill resource request {'gpu_xl': 1.0}. Add suitable node types "
                "to this cluster to resolve this issue.")


def cluster_status(demand=(), nodes=(HEAD_NODE,), autoscaler=True, launches=None, pending_nodes=()):
    """The shape Ray 2.60's dashboard serves at /api/cluster_status (clusterStatus), as seen on a fake
    autoscaling cluster."""
    status = {"monitorPid": 1, "loadMetricsReport": {
        "usage": {"CPU": [0.0, 1.0]}, "resourceDemand": [[dict(b), n] for b, n in demand], "pgDemand": [],
        "requestDemand": [], "nodeTypes": [[dict(n), 1] for n in nodes]}}
    if autoscaler:
        status["autoscalerReport"] = {"activeNodes": {"ray.head.default": 1}, "pendingNodes": list(pending_nodes),
                                      "pendingLaunches": launches or {}, "failedNodes": [], "legacy": True}
    return status


def waiting_on(required, message=""):
    dep = {"status": "UPDATING", "message": message}
    if required is not None:
        dep["required_resources"] = required
    return {"a": app("DEPLOYING", deps={"Echo": dep})}


PLACEMENT = [
    # name, apps, capacity, state, reason contains
    ("autoscaler launching a node for us", waiting_on({"CPU": 0, "ondemand": 0.5}),
     read_capacity(cluster_status([({"ondemand": 0.5}, 1)], launches={"ondemand": 1})),
     "waiting", "wait for the autoscaler (ondemand (launching))"),
    ("node starting, Serve already says 'to be scheduled'", waiting_on({"ondemand": 0.5}, UNSCHED),
     read_capacity(cluster_status([({"ondemand": 0.5}, 1)],
                                  pending_nodes=[["fff01", "ondemand", "setting-up"]])),
     "waiting", "ondemand (setting-up)"),
    ("no node type can fulfil it (autoscaler event)", waiting_on({"nosuch": 1.0}),
     read_capacity(cluster_status([({"nosuch": 1.0}, 1)]), [NO_NODE_TYPE]),
     "infeasible", "asks for {nosuch: 1}; the autoscaler reports that no node type"),
    ("infeasible event for another bundle is not ours", waiting_on({"ondemand": 0.5}),
     read_capacity(cluster_status([({"ondemand": 0.5}, 1), ({"nosuch": 1.0}, 1)]), [NO_NODE_TYPE]),
     "waiting", "wait for the autoscaler (no node launching yet)"),
    ("runtime_env being built: no demand left, Serve message ignored", waiting_on({"CPU": 1.0}, UNSCHED),
     read_capacity(cluster_status([])), "waiting", "DEPLOYING (Echo UPDATING)"),
    ("fixed cluster, no node big enough", waiting_on({"CPU": 64.0}),
     read_capacity(cluster_status([({"CPU": 64.0}, 2)], autoscaler=False)),
     "infeasible", "no node of this cluster (which has no autoscaler)"),
    ("fixed cluster, full for now", waiting_on({"CPU": 1.0}),
     read_capacity(cluster_status([({"CPU": 1.0}, 1)], autoscaler=False)), "unschedulable", "full cluster"),
    ("old Ray: the bundle from Serve's message", waiting_on(None, UNSCHED),
     read_capacity(cluster_status([({"CPU": 1.0}, 2)], nodes=[{"CPU": 0.5}], autoscaler=False)),
     "infeasible", "{CPU: 1}"),
    ("Ray 2.40: the bundle from its message (on a line of its own)", waiting_on(None, UNSCHED_240),
     read_capacity(cluster_status([({"gpu_xl": 1.0}, 1)]), [GPU_XL_EVENT]), "infeasible", "{gpu_xl: 1}"),
    ("no cluster status: Serve's message decides", waiting_on({"CPU": 1.0}, UNSCHED), None,
     "unschedulable", "cannot be scheduled"),
    ("upscaling under traffic is ready", {"a": app(deps={"Echo": {"status": "UPSCALING"}})},
     read_capacity(cluster_status([({"CPU": 1.0}, 3)])), "ready", "serving"),
    ("downscaling is ready", {"a": app(deps={"Echo": {"status": "DOWNSCALING"}, "B": {"status": "HEALTHY"}})},
     None, "ready", "serving"),
    ("upscaling while the app is still DEPLOYING is not",
     {"a": app("DEPLOYING", deps={"Echo": {"status": "UPSCALING"}})}, None, "waiting", "DEPLOYING"),
]


@pytest.mark.parametrize("name, apps, capacity, state, reason", PLACEMENT, ids=[c[0] for c in PLACEMENT])
def test_placement(name, apps, capacity, state, reason):
    verdict = judge_gate(Goal("a", SENT, None), apps, capacity)
    assert verdict.state == state, verdict
    assert reason in verdict.reason


def test_infeasible_names_the_node_types_seen():
    status = cluster_status([({"nosuch": 1.0}, 1)], nodes=[HEAD_NODE, ONDEMAND_NODE])
    status["autoscalerReport"]["activeNodes"] = {"ray.head.default": 1, "ondemand": 1}
    verdict = judge_gate(Goal("a", SENT), waiting_on({"nosuch": 1.0}), read_capacity(status, [NO_NODE_TYPE]))
    assert verdict.state == "infeasible"
    assert verdict.cause == "node types ondemand, ray.head.default; nodes {CPU: 1}, {CPU: 1, ondemand: 1}"


def test_the_read_only_autoscaler_of_a_plain_head_is_no_autoscaler():
    # Ray 2.9-2.60: `ray start --head` without an autoscaling config reports one node type per node
    status = cluster_status([({"CPU": 64.0}, 1)], nodes=[{"CPU": 2.0}])
    status["autoscalerReport"]["activeNodes"] = {"nodeD286Cfbb44Ea15Abd4E346911C2Bd6029Ff41E3369Fc19E9Dcde63D7": 1}
    capacity = read_capacity(status, [])
    assert not capacity.autoscaler and capacity.node_types == ()
    verdict = judge_gate(Goal("a", SENT), waiting_on({"CPU": 64.0}), capacity)
    assert verdict.state == "infeasible" and verdict.cause == "nodes {CPU: 2}"


def test_read_capacity_without_a_monitor_is_none():
    assert read_capacity(None) is None and read_capacity({"autoscalerReport": None}) is None
    assert read_capacity({"loadMetricsReport": {"resourceDemand": "junk", "nodeTypes": [["x", 1]]}}) == Capacity()


def test_loop_waits_for_the_autoscaler_past_the_grace_then_passes():
    clock = Clock()
    pending = waiting_on({"ondemand": 0.5}, UNSCHED)
    snaps = [{"applications": pending}] * 40 + [{"applications": {"a": app()}}] * 2
    launching = read_capacity(cluster_status([({"ondemand": 0.5}, 1)], launches={"ondemand": 1}))
    reads = []
    result = wait_ready(scripted(snaps), [Goal("a", SENT)], unschedulable_grace=1, timeout=60, clock=clock,
                        sleep=clock.sleep, heartbeat_every=999, capacity=lambda: reads.append(1) or launching)
    assert result.verdicts["a"].state == "ready" and clock.t > 1
    assert 3 <= len(reads) <= 8  # every 2 s while waiting, not every poll


def test_loop_fails_at_once_on_infeasible_naming_resources_and_nodes():
    clock = Clock()
    snaps = [{"applications": waiting_on({"nosuch": 1.0})}]
    never = read_capacity(cluster_status([({"nosuch": 1.0}, 1)]), [NO_NODE_TYPE])
    with pytest.raises(GateFailed) as info:
        wait_ready(scripted(snaps), [Goal("a", SENT)], clock=clock, sleep=clock.sleep, heartbeat_every=999,
                   capacity=lambda: never)
    assert clock.t == 0.0 and info.value.exit_code == 1
    assert "{nosuch: 1}" in info.value.message and "node types ray.head.default; nodes {CPU: 1}" in info.value.message
    assert "add a node type" in info.value.hint


def test_loop_times_out_while_the_autoscaler_never_delivers():
    clock = Clock()
    pending = read_capacity(cluster_status([({"ondemand": 0.5}, 1)]))
    with pytest.raises(GateFailed, match="30s timeout") as info:
        wait_ready(scripted([{"applications": waiting_on({"ondemand": 0.5}, UNSCHED)}]), [Goal("a", SENT)],
                   timeout=30, unschedulable_grace=0, clock=clock, sleep=clock.sleep, heartbeat_every=999,
                   capacity=lambda: pending)
    assert "wait for the autoscaler" in info.value.details
