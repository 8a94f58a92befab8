"""The gate against a real head: how soon it notices RUNNING, and how hard it polls the dashboard.

    .venv/bin/python -m benchmarks.bench_gate [--apps 1 10] [--rounds 3]

Target (issue 7): the gate notices RUNNING within 0.5 s of the cluster reaching it, sending at most
4 requests per second to the dashboard, however many applications the cluster runs.

For each application count N the cluster runs N-1 steady applications, then one new application is
written beside them and the product's gate (``wait_ready`` over a default ``DashboardClient``, as
``ci-serve deploy`` uses it) waits for it, through a counting proxy. A separate poller reads the
dashboard directly every 50 ms and records when it first saw the new application RUNNING with every
deployment HEALTHY. Measured:

- notice latency: the gate's return minus the poller's first sighting (the gate wants two ready
  polls in a row, so this includes the confirming poll); also the gate's own first ready poll;
- request rate: the gate's requests over its duration, and the most in any 1 s window.
"""

from __future__ import annotations

import argparse
import json
import threading
import time

from benchmarks.common import REPO, median
from tests.support.dashboard_proxy import DashboardProxy

APP_DIR = REPO / "tests" / "apps" / "deploy_v1"
FAST_POLL_S = 0.05


def _app(name: str, uri: str) -> dict:
    return {"name": name, "route_prefix": f"/{name}", "import_path": "deploy_app:app",
            "runtime_env": {"working_dir": uri},
            "deployments": [{"name": "Echo", "ray_actor_options": {"num_cpus": 0.05}}]}


class FastPoller:
    """Reads the dashboard every 50 ms; ``first_ready`` is when ``name`` was first RUNNING + HEALTHY."""

    def __init__(self, client, goal):
        self.client, self.goal = client, goal
        self.first_ready: float | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)

    def loop(self) -> None:
        from ci_serve.deploy.gate import judge_gate

        while not self.stop.is_set() and self.first_ready is None:
            try:
                apps = self.client.get_applications()["applications"]
            except Exception:
                apps = {}
            seen = time.monotonic()  # the answer describes the cluster at most one round trip ago
            if judge_gate(self.goal, apps).state == "ready":
                self.first_ready = seen
            self.stop.wait(FAST_POLL_S)

    def __enter__(self) -> FastPoller:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)


def wait_steady(client, names: list[str], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        apps = client.get_applications()["applications"]
        if all((apps.get(n) or {}).get("status") == "RUNNING" for n in names):
            return
        time.sleep(0.5)
    raise SystemExit(f"applications {names} did not reach RUNNING within {timeout:.0f}s")


def one_gate(head, direct, proxy: DashboardProxy, uri: str, steady: list[str], name: str) -> dict:
    from ci_serve.cluster.address import Target
    from ci_serve.cluster.dashboard import DashboardClient
    from ci_serve.deploy.gate import Goal, judge_gate, wait_ready

    config = {"http_options": {"host": "127.0.0.1", "port": head.serve_port},
              "applications": [_app(n, uri) for n in [*steady, name]]}
    goal = Goal(name, {k: v for k, v in config["applications"][-1].items() if k != "name"}, None)
    gate_client = DashboardClient(Target(proxy.url, head.token))  # the product's defaults
    polls: list[tuple[float, str]] = []

    def read() -> dict:
        snap = gate_client.get_applications()
        polls.append((time.monotonic(), judge_gate(goal, snap["applications"]).state))
        return snap

    with FastPoller(direct, goal) as fast:
        direct.put_applications(config)
        proxy.clear()
        t0 = time.monotonic()
        wait_ready(read, [goal], timeout=300, heartbeat_every=3600)
        t1 = time.monotonic()
        fast.thread.join(timeout=10)
    gets = [t for t, _, _ in proxy.entries(since=t0, until=t1 + 0.01)]
    window = max((sum(1 for u in gets if t <= u < t + 1.0) for t in gets), default=0)
    first_gate_ready = next((t for t, state in polls if state == "ready"), None)
    ref = fast.first_ready
    return {"apps_on_cluster": len(steady) + 1, "gate_s": round(t1 - t0, 2), "requests": len(gets),
            "rate_per_s": round(len(gets) / max(t1 - t0, 1e-9), 2), "max_in_1s": window,
            "notice_s": round(t1 - ref, 3) if ref else None,
            "first_ready_poll_s": round(first_gate_ready - ref, 3) if ref and first_gate_ready else None}


def bench(app_counts: tuple[int, ...] = (1, 10), rounds: int = 3) -> dict:
    from ci_serve.cluster.address import Target
    from ci_serve.cluster.dashboard import DashboardClient
    from ci_serve.cluster.head import TemporaryHead
    from ci_serve.cluster.packages import upload_directory

    runs: list[dict] = []
    with TemporaryHead(dashboard=True, num_cpus=4) as head, DashboardProxy(head.dashboard_url) as proxy:
        direct = DashboardClient(Target(head.dashboard_url, head.token), min_interval=0.0)
        uri, _ = upload_directory(direct, APP_DIR)
        for n in app_counts:
            steady = [f"steady{i}" for i in range(n - 1)]
            if steady:
                direct.put_applications({"http_options": {"host": "127.0.0.1", "port": head.serve_port},
                                         "applications": [_app(s, uri) for s in steady]})
                wait_steady(direct, steady)
            for r in range(rounds):
                result = one_gate(head, direct, proxy, uri, steady, f"gated{n}x{r}")
                print(f"  {n:3d} app(s) round {r + 1}: {result}", flush=True)
                runs.append(result)
    notices = [r["notice_s"] for r in runs if r["notice_s"] is not None]
    firsts = [r["first_ready_poll_s"] for r in runs if r["first_ready_poll_s"] is not None]
    worst_window = max(r["max_in_1s"] for r in runs)
    return {"name": "gate: notice latency and dashboard request rate", "runs": runs,
            "median_first_poll_s": round(median(firsts), 3), "max_first_poll_s": max(firsts, default=None),
            "median_notice_s": round(median(notices), 3), "max_notice_s": max(notices, default=None),
            "max_requests_in_1s": worst_window, "max_rate_per_s": max(r["rate_per_s"] for r in runs),
            "target": "notices RUNNING < 0.5 s, <= 4 requests/s",
            "notice_met": len(firsts) == len(runs) and max(firsts) < 0.5, "rate_met": worst_window <= 4}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps(bench(tuple(args.apps), args.rounds), indent=2))


if __name__ == "__main__":
    main()
