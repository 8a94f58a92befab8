"""`ci-serve deploy` end to end against a real head: the no-op redeploy and the blue-green switch.

    .venv/bin/python -m benchmarks.bench_deploy [--rounds 3]

Targets (issue 7):

- a deploy whose config and code are unchanged is done in under 2 s (the whole `ci-serve deploy`
  process, Python start-up included) with no write to the cluster: every request goes through a
  counting proxy (no PUT may pass) and the application's ``last_deployed_time_s`` must not move;
- blue-green: from the candidate passing its checks to the live prefix answering from it, under 1 s.
  Measured from outside: the deploy's log line closing "check candidate" is timestamped as it is
  read, and a client polling the live prefix every 20 ms records the first answer from the new
  version. The deploy's whole time is split by the steps of its --report.

One head (2 CPUs) runs a one-deployment app (tests/apps/deploy_v1, deploy_v2) on /shop; releases
alternate between the two code versions, so each is a heavyweight change that goes blue-green.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import requests

from benchmarks.common import REPO, ci_serve, median, run_cmd
from tests.support.dashboard_proxy import DashboardProxy

APPS = REPO / "tests" / "apps"
#: report steps of a blue-green deploy, grouped as the issue names them
SPLIT = {"upload": ["ship code"], "write": ["write candidate"], "gate": ["gate candidate"],
         "checks": ["check candidate", "check switch"], "switch": ["switch", "gate switch"],
         "cleanup": ["remove old", "gate removal"]}


def children_cpu() -> float:
    """CPU seconds (user + system) of finished child processes: on a loaded machine wall time grows
    with the load, CPU time hardly does, so it tells what an idle runner would take (plus waiting)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def clean_env(token: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "GITHUB_", "INPUT_"))}
    env.update(RAY_AUTH_TOKEN=token, PYTHONUNBUFFERED="1")
    return env


def write_files(tmp: Path, serve_port: int) -> tuple[Path, dict[str, Path]]:
    config = {"http_options": {"host": "127.0.0.1", "port": serve_port},
              "applications": [{"name": "shop", "route_prefix": "/shop", "import_path": "deploy_app:app",
                                "deployments": [{"name": "Echo", "user_config": {"greeting": "hi"}}]}]}
    path = tmp / "serve.yaml"
    path.write_text(json.dumps(config))
    reqs = {}
    for version in ("v1", "v2"):
        reqs[version] = tmp / f"requests-{version}.yaml"
        reqs[version].write_text(f"requests:\n  - name: {version} answers\n"
                                 f"    expect: {{json: {{version: {version}, greeting: hi}}}}\n")
    return path, reqs


class LivePoller:
    """GETs the live prefix every 20 ms; ``answers`` holds (monotonic time of the answer, version)."""

    def __init__(self, url: str):
        self.url = url
        self.answers: list[tuple[float, str]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)

    def loop(self) -> None:
        session = requests.Session()
        while not self.stop.is_set():
            try:
                resp = session.get(self.url, timeout=10)
                version = resp.json().get("version", "?") if resp.status_code == 200 else f"HTTP {resp.status_code}"
            except (requests.RequestException, ValueError, AttributeError) as exc:
                version = type(exc).__name__
            self.answers.append((time.monotonic(), version))
            self.stop.wait(0.02)

    def __enter__(self) -> LivePoller:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)


def deploy_with_log(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, int, list[tuple[float, str]]]:
    """Run a deploy; return (wall seconds, exit code, [(monotonic time read, log line)])."""
    lines: list[tuple[float, str]] = []
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            bufsize=1)
    assert proc.stderr is not None
    for line in proc.stderr:
        lines.append((time.monotonic(), line.rstrip("\n")))
    code = proc.wait(timeout=600)
    return time.monotonic() - t0, code, lines


def line_time(lines: list[tuple[float, str]], step: str) -> float | None:
    """When the log line closing ``step`` ("[  3.1s] ok   check candidate ...") was read."""
    for t, text in lines:
        rest = text.split("]", 1)[-1].split()
        if len(rest) >= 2 and rest[0] == "ok" and " ".join(rest[1:]).startswith(step):
            return t
    return None


def bench(rounds: int = 3) -> dict:
    from ci_serve.cluster.address import Target
    from ci_serve.cluster.dashboard import DashboardClient
    from ci_serve.cluster.head import TemporaryHead

    out: dict = {"name": "deploy", "noop": [], "blue_green": []}
    with tempfile.TemporaryDirectory(prefix="bench-deploy-") as tmp_name, \
            TemporaryHead(dashboard=True, num_cpus=2) as head, DashboardProxy(head.dashboard_url) as proxy:
        tmp = Path(tmp_name)
        direct = DashboardClient(Target(head.dashboard_url, head.token), min_interval=0.0)
        config, reqs = write_files(tmp, head.serve_port)
        env = clean_env(head.token)

        def cmd(version: str, report: Path) -> list[str]:
            return ci_serve("deploy", str(config), "--address", proxy.url,
                            "--working-dir", str(APPS / f"deploy_{version}"), "--requests", str(reqs[version]),
                            "--version", f"{version}-sha", "--report", str(report))

        def shop_time() -> float | None:
            apps = direct.get_applications()["applications"]
            return next((a.get("last_deployed_time_s") for n, a in apps.items() if n.startswith("shop")), None)

        first = tmp / "first.json"
        seconds, proc = run_cmd(cmd("v1", first), env=env, cwd=tmp)
        if proc.returncode != 0:
            raise SystemExit(f"first deploy failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        out["first_deploy_s"] = round(seconds, 2)
        print(f"  first deploy (blue-green, nothing live): {seconds:.1f}s", flush=True)
        live = "v1"
        for i in range(rounds * 2):
            if i % 2 == 0:  # an unchanged redeploy of what is live
                report = tmp / f"noop{i}.json"
                before = shop_time()
                proxy.clear()
                cpu0 = children_cpu()
                seconds, proc = run_cmd(cmd(live, report), env=env, cwd=tmp)
                data = json.loads(report.read_text())
                entry = {"total_s": round(seconds, 3), "cpu_s": round(children_cpu() - cpu0, 3),
                         "in_process_s": data.get("elapsed_s"),
                         "steps": data.get("timings"),
                         "result": data.get("result"), "exit_code": proc.returncode,
                         "puts": len(proxy.entries("PUT")), "gets": len(proxy.entries("GET")),
                         "last_deployed_time_moved": shop_time() != before}
                out["noop"].append(entry)
                print(f"  unchanged redeploy: {entry}", flush=True)
                continue
            new = "v2" if live == "v1" else "v1"
            report = tmp / f"bg{i}.json"
            with LivePoller(head.serve_url + "/shop") as poller:
                time.sleep(0.2)
                seconds, code, lines = deploy_with_log(cmd(new, report), env, tmp)
                time.sleep(0.5)
            if code != 0:
                raise SystemExit(f"blue-green deploy failed ({code}):\n" + "\n".join(t for _, t in lines[-40:]))
            data = json.loads(report.read_text())
            checked = line_time(lines, "check candidate")
            flip = next((t for t, v in poller.answers if v == new), None)
            errors = [v for _, v in poller.answers if v not in ("v1", "v2")]
            entry = {"total_s": round(seconds, 2), "in_process_s": data.get("elapsed_s"),
                     "strategy": data.get("strategy"), "timings": data.get("timings"),
                     "switch_latency_s": round(flip - checked, 3) if flip and checked else None,
                     "live_polls": len(poller.answers), "live_poll_errors": len(errors)}
            out["blue_green"].append(entry)
            live = new
            print(f"  blue-green to {new}: total {seconds:.1f}s, switch latency {entry['switch_latency_s']}s, "
                  f"{len(errors)} failed live polls, steps {entry['timings']}", flush=True)
    noop_med = median([e["total_s"] for e in out["noop"]])
    writes = sum(e["puts"] for e in out["noop"]) + sum(e["last_deployed_time_moved"] for e in out["noop"])
    out["noop_median_s"] = round(noop_med, 3)
    out["noop_cpu_median_s"] = round(median([e["cpu_s"] for e in out["noop"]]), 3)
    out["noop_writes"] = writes
    out["noop_met"] = noop_med < 2.0 and writes == 0 and all(e["result"] == "unchanged" for e in out["noop"])
    latencies = [e["switch_latency_s"] for e in out["blue_green"] if e["switch_latency_s"] is not None]
    out["switch_latency_median_s"] = round(median(latencies), 3)
    out["switch_latency_max_s"] = max(latencies) if latencies else None
    out["switch_met"] = bool(latencies) and max(latencies) < 1.0
    split = {}
    for group, steps in SPLIT.items():
        split[group] = round(median([sum(e["timings"].get(s, 0.0) for s in steps) for e in out["blue_green"]]), 2)
    named = {s for steps in SPLIT.values() for s in steps}
    split["connect + read cluster"] = round(median([sum(v for k, v in e["timings"].items() if k not in named)
                                                    for e in out["blue_green"]]), 2)
    split["Python start-up, imports, plan"] = round(median([e["total_s"] - sum(e["timings"].values())
                                                            for e in out["blue_green"]]), 2)
    split["total"] = round(median([e["total_s"] for e in out["blue_green"]]), 2)
    out["blue_green_split_s"] = split
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="unchanged redeploys and blue-green releases each")
    args = parser.parse_args()
    print(json.dumps(bench(args.rounds), indent=2))


if __name__ == "__main__":
    main()
