"""`ci-serve validate --no-import` of a 200-application config, end to end (Python start-up included).

Target (issue 7): under 1 s. Prints one table row; `run_all.py` collects it.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import yaml

from benchmarks.common import ci_serve, median, run_cmd


def make_config(apps: int) -> dict:
    return {"applications": [
        {"name": f"app{i}", "route_prefix": f"/app{i}", "import_path": f"pkg{i}.module:app",
         "runtime_env": {"env_vars": {"MODE": "prod"}},
         "deployments": [{"name": "Ingress", "num_replicas": 2, "max_ongoing_requests": 10},
                         {"name": "Model", "user_config": {"threshold": 0.5},
                          "autoscaling_config": {"min_replicas": 1, "max_replicas": 4}}]}
        for i in range(apps)]}


def bench(apps: int = 200, runs: int = 5) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "serve_config.yaml"
        path.write_text(yaml.safe_dump(make_config(apps), sort_keys=False))
        times = []
        for _ in range(runs):
            seconds, proc = run_cmd(ci_serve("validate", str(path), "--no-import"))
            if proc.returncode != 0:
                raise SystemExit(f"validate failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
            times.append(seconds)
    return {"name": f"validate --no-import, {apps} applications", "median_s": round(median(times), 3),
            "runs": [round(t, 3) for t in times], "target": "< 1 s", "met": median(times) < 1.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--apps", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(json.dumps(bench(args.apps, args.runs), indent=2))


if __name__ == "__main__":
    main()
