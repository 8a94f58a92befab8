"""The replica log tails a failed gate shows (ci_serve/cluster/logs.py). Real heads: in
tests/test_deploy_ray_versions.py (a crashing replica, on every Ray release CI runs: the log API exists
on 2.9.3 and 2.60, checked). Here only what real dashboards do not produce on demand: a dashboard
without the log API (404), and one whose log API fails."""

from __future__ import annotations

from dataclasses import dataclass

from ci_serve import secrets
from ci_serve.cluster.logs import attach_replica_logs, replica_log_tails
from ci_serve.errors import CiServeError

FAILING = {"shop": {"deployments": {
    "Echo": {"status": "DEPLOY_FAILED",
             "message": "ray::ServeReplica:shop:Echo (pid=1, actor_id=9a8b7c6d5e4f30211234abcd)"},
    "Fine": {"status": "HEALTHY", "message": ""}}}}


@dataclass
class Resp:
    status_code: int
    text: str = ""

    def json(self):
        return {}


class Dashboard:
    def __init__(self, answers):
        self.answers, self.paths = answers, []

    def request(self, method, path, *, ok=(200,), json_body=None, data=None, timeout=None):
        self.paths.append(path)
        for prefix, resp in self.answers.items():
            if path.startswith(prefix):
                if isinstance(resp, Exception):
                    raise resp
                return resp
        return Resp(404)


def test_the_failing_replicas_output_is_read_by_actor_and_masked():
    secrets.register("s3cr3t-token-value")
    dash = Dashboard({"/api/v0/logs/file?actor_id=9a8b7c6d5e4f30211234abcd&suffix=out":
                      Resp(200, ":job_id:01000000\n:actor_name:ServeReplica\nloading\nkey=s3cr3t-token-value\n"),
                      "/api/v0/logs/file?actor_id=9a8b7c6d5e4f30211234abcd&suffix=err": Resp(200, "Traceback\n")})
    text = replica_log_tails(dash, FAILING, ["shop"])
    assert text.startswith("replica logs (last lines, from the dashboard's log API):")
    assert "shop/Echo replica (actor 9a8b7c6d5e4f) stdout ---\nloading" in text and "Traceback" in text
    assert ":job_id:" not in text and "s3cr3t-token-value" not in text
    assert not any("Fine" in p for p in dash.paths)


def test_a_dashboard_without_the_log_api_says_so():
    assert replica_log_tails(Dashboard({}), FAILING, ["shop"]) == (
        "replica logs: this cluster's dashboard has no log API (/api/v0/logs answered 404)")
    assert replica_log_tails(Dashboard({}), {"shop": {"deployments": {"Echo": {"status": "HEALTHY"}}}}, ["shop"]) == ""


def test_a_failing_log_api_leaves_the_gate_error_with_a_sentence():
    class Err(CiServeError):
        pass

    err = Err("application shop failed", details="the cluster's message")
    err.snapshot = {"applications": FAILING}
    attach_replica_logs(Dashboard({"/api/v0/logs": CiServeError("dashboard gone")}), err, ["shop"])
    assert err.details == "the cluster's message\n\nreplica logs: could not be read (dashboard gone)"
