"""The action end to end as a user feels it: `docker run` of the image against the job one would write.

    .venv/bin/python -m benchmarks.bench_action [--image ci-serve-action:test] [--runs 2]

- image: `docker run` of the built image (tests/container builds it) exactly as the Actions runner
  starts a container action (tests/container/runner.py), `command: smoke` on examples/fruit with its
  requests file, until the container exits (its own clean-up included). The pull is not included:
  `docker save` | `docker load` of the image is timed beside it as a stand-in.
- manual: what a workflow step does without the action: a fresh venv, `pip install "ray[serve]==2.60.0"`
  with an empty pip cache (a runner has none unless set up), then `serve run` + the checked requests
  of benchmarks/bench_smoke.py, to the last checked answer (the clean stop beside, not in the total).

Prints both, the ratio manual / image (issue 15: at least 2x), the image size and the save/load time.
Needs Docker (scripts/docker-env); run under the machine's shared lock.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.bench_smoke import FRUIT, run_manual
from benchmarks.common import REPO, machine, median

IMAGE = "ci-serve-action:test"
MIB = 1024 * 1024


def run_image(image: str, workdir: Path) -> dict:
    sys.path.insert(0, str(REPO))
    from tests.container.runner import RunnerDirs, docker_run_args

    dirs = RunnerDirs(Path(tempfile.mkdtemp(prefix="runner-", dir=workdir)))
    shutil.copytree(FRUIT, dirs.workspace / "examples" / "fruit", ignore=shutil.ignore_patterns("__pycache__"))
    inputs = {"command": "smoke", "config": "examples/fruit/serve_config.yaml",
              "requests": "examples/fruit/requests.yaml", "app-dir": "examples/fruit"}
    t0 = time.perf_counter()
    proc = subprocess.run(docker_run_args(dirs, image, inputs), capture_output=True, text=True, timeout=900,
                          stdin=subprocess.DEVNULL)
    total = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"docker run exited {proc.returncode}:\n{proc.stdout[-3000:]}{proc.stderr[-2000:]}")
    report = json.loads((dirs.workspace / ".ci-serve" / "smoke.json").read_text())
    return {"total_s": total, "timings": report["timings"], "ok": report["result"] == "passed"}


def run_pip_job(workdir: Path) -> dict:
    venv = workdir / f"venv-{time.monotonic_ns()}"
    cache = workdir / f"pip-cache-{time.monotonic_ns()}"
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check", "--cache-dir",
                    str(cache), "ray[serve]==2.60.0"], check=True, timeout=900)
    install = time.perf_counter() - t0
    manual = run_manual(workdir, serve=str(venv / "bin" / "serve"))
    shutil.rmtree(venv, ignore_errors=True)
    shutil.rmtree(cache, ignore_errors=True)
    return {"total_s": install + manual["total_s"], "install_s": install, "serve_run_s": manual["total_s"],
            "stop_s": manual["stop_s"], "ok": manual["ok"]}


def save_load(image: str, workdir: Path) -> dict:
    tar = workdir / "image.tar"
    t0 = time.perf_counter()
    subprocess.run(["docker", "save", "-o", str(tar), image], check=True, timeout=900)
    saved = time.perf_counter() - t0
    size = tar.stat().st_size
    # removed first: `docker load` of layers the engine already has skips them (1.4 s, not a pull)
    subprocess.run(["docker", "image", "rm", image], check=True, capture_output=True, timeout=300)
    t0 = time.perf_counter()
    subprocess.run(["docker", "load", "-q", "-i", str(tar)], check=True, capture_output=True, timeout=900)
    loaded = time.perf_counter() - t0
    tar.unlink()
    return {"save_s": round(saved, 1), "load_s": round(loaded, 1), "tar_mib": round(size / MIB, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default=IMAGE)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args(argv)
    print(f"machine: {machine()}")
    if args.runs <= 0:
        return 0
    size = subprocess.run(["docker", "image", "inspect", "-f", "{{.Size}}", args.image], capture_output=True,
                          text=True, check=True).stdout.strip()
    images, jobs = [], []
    with tempfile.TemporaryDirectory(prefix="bench-action-") as tmp:
        workdir = Path(tmp)
        for i in range(args.runs):
            order = [("image", lambda: run_image(args.image, workdir)), ("pip job", lambda: run_pip_job(workdir))]
            for name, fn in order if i % 2 == 0 else list(reversed(order)):
                result = fn()
                (images if name == "image" else jobs).append(result)
                print(f"run {i + 1} {name:8s} {result['total_s']:6.1f}s ok={result['ok']} "
                      + json.dumps({k: round(v, 2) for k, v in result.items() if isinstance(v, float)}), flush=True)
        transfer = save_load(args.image, workdir)
    image_med, job_med = median([r["total_s"] for r in images]), median([r["total_s"] for r in jobs])
    print(json.dumps({"image_size_mib": round(int(size) / MIB, 1), **transfer,
                      "docker_run_median_s": round(image_med, 1), "pip_job_median_s": round(job_med, 1),
                      "pip_install_median_s": round(median([r["install_s"] for r in jobs]), 1),
                      "ratio_job_over_image": round(job_med / image_med, 2)}, indent=2))
    return 0 if job_med >= 2 * image_med else 1


if __name__ == "__main__":
    raise SystemExit(main())
