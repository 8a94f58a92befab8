"""Building the smoke test's pinned-Ray environment (``smoke --requirements``), with uv and with pip.

    .venv/bin/python -m benchmarks.bench_env [--requirements TEXT] [--skip-pip]

Each case builds into a fresh environment folder through :func:`ci_serve.cluster.pyenv.ensure_env`
(the code ``smoke`` runs), forcing the installer:

- cold: an empty download cache of its own (``UV_CACHE_DIR`` / ``PIP_CACHE_DIR`` in a temp folder),
  so every wheel is downloaded: a CI runner with no cache restored;
- warm: a second environment with the cache the cold build filled: a runner whose ``actions/cache``
  restored the download cache but not the environment;
- reused: ``ensure_env`` again for the same text: the environment folder itself was restored
  (the cache step docs/action.md recommends), nothing is installed.

pip here reads this machine's pip.conf (local find-links and extra indexes, when it has them), uv
does not; the report prints both so the comparison can be judged. No Ray process is started.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from benchmarks.common import machine
from ci_serve.cluster.pyenv import ensure_env

DEFAULT = "ray[serve]==2.40.0\nfastapi==0.115.6\n"


def _build(requirements: str, root: Path, installer: str, cache_var: str, cache: Path) -> dict:
    saved = os.environ.get(cache_var)
    os.environ[cache_var] = str(cache)
    try:
        t0 = time.perf_counter()
        env = ensure_env(requirements, root=root, installer=installer)
        return {"s": round(time.perf_counter() - t0, 2), "built": env.built, "ray": env.ray_version}
    finally:
        if saved is None:
            os.environ.pop(cache_var, None)
        else:
            os.environ[cache_var] = saved


def bench(requirements: str = DEFAULT, pip: bool = True) -> dict:
    result: dict = {"requirements": requirements.strip().splitlines(), "machine": machine()}
    with tempfile.TemporaryDirectory(prefix="bench-env-") as tmp:
        base = Path(tmp)
        installers = [("uv", "UV_CACHE_DIR")] + ([("pip", "PIP_CACHE_DIR")] if pip else [])
        for installer, cache_var in installers:
            cache = base / f"{installer}-cache"
            cold = _build(requirements, base / f"{installer}-cold", installer, cache_var, cache)
            warm = _build(requirements, base / f"{installer}-warm", installer, cache_var, cache)
            reused = _build(requirements, base / f"{installer}-warm", installer, cache_var, cache)
            assert cold["built"] and warm["built"] and not reused["built"]
            result[installer] = {"cold_s": cold["s"], "warm_s": warm["s"], "reused_s": reused["s"],
                                 "ray_version": cold["ray"]}
            print(f"{installer}: cold {cold['s']} s, warm {warm['s']} s, reused {reused['s']} s", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requirements", default=DEFAULT, help="requirements text (default: Ray 2.40 + FastAPI)")
    parser.add_argument("--skip-pip", action="store_true", help="uv only (pip takes about half a minute)")
    args = parser.parse_args()
    print(json.dumps(bench(args.requirements, pip=not args.skip_pip), indent=2))


if __name__ == "__main__":
    main()
