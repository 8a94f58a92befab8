"""`ci-serve smoke` against the manual way, measured fairly: `serve run` + curl, to its last checked answer.

    .venv/bin/python -m benchmarks.bench_smoke [--pairs 3]

Both sides deploy the same fruit-stand config, sized to fit a 2-CPU runner (1 replica of 0.25 CPU
per deployment, so the CI profile changes nothing and neither side gets a smaller app), with the
HTTP proxy on a free port. The runs alternate (smoke first, then manual, then manual first, ...)
so machine noise hits both alike.

- manual: `serve run CONFIG` in its own session (fresh HOME and Ray temp folder), POST the first
  request of examples/fruit/requests.yaml every 0.2 s (the smoke's own poll interval) until the
  right answer, then check all four. **Its time ends at the last checked answer**: a user's CI step
  ends there and the runner reaps what is left. The clean stop that follows (SIGTERM to the
  session, a background `serve run` ignores SIGINT, until no process is left) is timed and shown
  beside, not in the ratio.
- smoke: `ci-serve smoke CONFIG --requests examples/fruit/requests.yaml --report R`, until it exits
  (its own clean-up included: it has removed its head by then); the report's step timings show
  where the time goes.

Prints the medians and the ratio smoke / manual-to-last-answer (issue 15: at most 0.6).
`--pairs 0` only prints the plan (a syntax check for the test suite).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
import yaml

from benchmarks.common import REPO, ci_serve, machine, median, table

FRUIT = REPO / "examples" / "fruit"
POLL_S = 0.2  # as ci_serve.smoke.runner.POLL_S: both sides poll alike
CHECKS = [(["PEAR", 2], 8), (["MANGO", 3], 9), (["ORANGE", 1], 2), (["KIWI", 1], -1)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fitted_config(port: int) -> dict:
    small = {"num_replicas": 1, "ray_actor_options": {"num_cpus": 0.25}}
    return {"http_options": {"host": "127.0.0.1", "port": port},
            "applications": [{"name": "fruit", "route_prefix": "/", "import_path": "fruit:deployment_graph",
                              "deployments": [
                                  {"name": "FruitMarket", **small},
                                  {"name": "MangoStand", **small, "user_config": {"price": 3}},
                                  {"name": "OrangeStand", **small, "user_config": {"price": 2}},
                                  {"name": "PearStand", **small, "user_config": {"price": 4}}]}]}


def clean_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "GITHUB_", "INPUT_"))}
    env.update(HOME=str(home), PYTHONUNBUFFERED="1", RAY_USAGE_STATS_ENABLED="0")
    return env


def session_pids(sid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.getsid(int(entry)) != sid:
                continue
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z":
            pids.append(int(entry))
    return pids


def run_manual(workdir: Path, serve: str | None = None) -> dict:
    """``serve``: the `serve` command to run (default: this environment's)."""
    port = free_port()
    config = workdir / "manual_config.yaml"
    config.write_text(yaml.safe_dump(fitted_config(port), sort_keys=False))
    home = workdir / "home-manual"
    home.mkdir(exist_ok=True)
    env = clean_env(home)
    env["RAY_TMPDIR"] = str(Path(tempfile.mkdtemp(prefix="rb-", dir="/tmp")))
    t0 = time.perf_counter()
    # run from the app's folder, as the guide does: a config's import path is resolved there
    proc = subprocess.Popen([serve or str(Path(sys.executable).parent / "serve"), "run", str(config)],
                            cwd=FRUIT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    first = None
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:  # what people do with `sleep` + curl in a loop
            if proc.poll() is not None:
                raise SystemExit(f"serve run exited with {proc.returncode}")
            try:
                if requests.post(url, json=CHECKS[0][0], timeout=5).json() == CHECKS[0][1]:
                    first = time.perf_counter() - t0
                    break
            except (requests.RequestException, ValueError):
                pass
            time.sleep(POLL_S)
        if first is None:
            raise SystemExit("serve run: no right answer within 300 s")
        ok = all(requests.post(url, json=body, timeout=10).json() == want for body, want in CHECKS)
        last_answer = time.perf_counter() - t0
    finally:
        stop_at = time.perf_counter()
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except OSError:
            pass
        deadline = time.monotonic() + 120
        while session_pids(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = session_pids(proc.pid)
        for pid in left:  # do not leave anything behind, but report it
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        proc.wait()
        shutil.rmtree(env["RAY_TMPDIR"], ignore_errors=True)
    return {"total_s": last_answer, "first_answer_s": first, "stop_s": time.perf_counter() - stop_at, "ok": ok,
            "with_stop_s": time.perf_counter() - t0, "left_after_120s": len(left)}


def run_smoke(workdir: Path) -> dict:
    config = workdir / "smoke_config.yaml"
    config.write_text(yaml.safe_dump(fitted_config(8000), sort_keys=False))
    report = workdir / "smoke_report.json"
    home = workdir / "home-smoke"
    home.mkdir(exist_ok=True)
    t0 = time.perf_counter()
    proc = subprocess.run(ci_serve("smoke", str(config), "--app-dir", str(FRUIT), "--requests",
                                   str(FRUIT / "requests.yaml"), "--report", str(report)),
                          cwd=workdir, env=clean_env(home), capture_output=True, text=True, timeout=600)
    total = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"ci-serve smoke failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    data = json.loads(report.read_text())
    return {"total_s": total, "timings": data["timings"], "ok": data["result"] == "passed"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3, help="smoke/manual pairs, alternating (default 3)")
    args = parser.parse_args(argv)
    print(f"machine: {machine()}")
    print(f"plan: {args.pairs} pair(s) of `ci-serve smoke` and `serve run` + 4 checks (to the last answer; "
          "the clean stop beside), alternating")
    if args.pairs <= 0:
        return 0
    smoke_runs, manual_runs = [], []
    with tempfile.TemporaryDirectory(prefix="bench-smoke-") as tmp:
        workdir = Path(tmp)
        for i in range(args.pairs):
            order = [("smoke", run_smoke), ("manual", run_manual)]
            if i % 2:
                order.reverse()
            for name, fn in order:
                result = fn(workdir)
                (smoke_runs if name == "smoke" else manual_runs).append(result)
                extra = (f"first answer {result['first_answer_s']:.1f}s, stop {result['stop_s']:.1f}s"
                         if name == "manual" else ", ".join(f"{k} {v:.1f}s" for k, v in result["timings"].items()))
                print(f"pair {i + 1} {name:6s} {result['total_s']:6.1f}s ok={result['ok']}  ({extra})", flush=True)
    smoke_med = median([r["total_s"] for r in smoke_runs])
    manual_med = median([r["total_s"] for r in manual_runs])
    steps = sorted({k for r in smoke_runs for k in r["timings"]}, key=lambda k: list(smoke_runs[0]["timings"]).index(k)
                   if k in smoke_runs[0]["timings"] else 99)
    print()
    print(table(["", "median s", "runs"], [
        ["ci-serve smoke", f"{smoke_med:.1f}", " ".join(f"{r['total_s']:.1f}" for r in smoke_runs)],
        ["serve run + curl, to the last checked answer", f"{manual_med:.1f}",
         " ".join(f"{r['total_s']:.1f}" for r in manual_runs)],
        ["  of which: first right answer", f"{median([r['first_answer_s'] for r in manual_runs]):.1f}", ""],
        ["(beside: the same, then a clean stop until no process)",
         f"{median([r['with_stop_s'] for r in manual_runs]):.1f}", " ".join(f"{r['with_stop_s']:.1f}"
                                                                          for r in manual_runs)],
    ]))
    print()
    print("where smoke's time goes (median per step):")
    print(table(["step", "median s"], [[k, f"{median([r['timings'].get(k, 0.0) for r in smoke_runs]):.2f}"]
                                       for k in steps]))
    ratio = smoke_med / manual_med if manual_med else float("nan")
    print(f"\nratio smoke / manual to its last answer: {ratio:.2f} (issue 15: <= 0.6)")
    return 0 if ratio < 1 else 1


if __name__ == "__main__":
    raise SystemExit(main())
