"""The action's `requirements` install, cold and with a warm uv cache: what `actions/cache` saves.

    .venv/bin/python -m benchmarks.bench_requirements [--requirements "pandas==2.2.3 scikit-learn==1.5.2"]

Runs the install exactly as the action does (ci_serve/action/main.py, install_requirements: `uv pip
install --python <the action's Python> --cache-dir $HOME/.cache/uv -r FILE`) into a fresh virtual
environment each time, twice: first with an empty cache (a runner's first job), then, in another fresh
environment, with the cache the first left (a later job whose `actions/cache` step restored it, keyed
by the requirements file's hash as docs/action.md shows). Prints both times and the cache's size.
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

from benchmarks.common import machine


def _size_mib(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink()) / 2**20


def install(uv: str, workdir: Path, requirements: Path, cache: Path, label: str) -> float:
    venv = workdir / f"venv-{label}"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    t0 = time.perf_counter()
    subprocess.run([uv, "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), "--cache-dir",
                    str(cache), "-r", str(requirements)], check=True, timeout=1800, stdin=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requirements", default="pandas==2.2.3 scikit-learn==1.5.2",
                        help="the packages of the requirements file, space-separated")
    args = parser.parse_args(argv)
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if not uv:
        raise SystemExit("uv is not installed")
    with tempfile.TemporaryDirectory(prefix="bench-req-") as tmp:
        workdir = Path(tmp)
        requirements = workdir / "requirements.txt"
        requirements.write_text("\n".join(args.requirements.split()) + "\n")
        cache = workdir / "home" / ".cache" / "uv"
        cold = install(uv, workdir, requirements, cache, "cold")
        warm = install(uv, workdir, requirements, cache, "warm")
        result = {"name": f"requirements install ({args.requirements})", "cold_s": round(cold, 1),
                  "warm_s": round(warm, 1), "cache_mib": round(_size_mib(cache), 1), "machine": machine()}
    print(json.dumps(result, indent=2))
    print(f"cold cache: {cold:.1f} s, warm cache: {warm:.1f} s ({cold / max(warm, 0.01):.1f}x)")
    return result


if __name__ == "__main__":
    main()
