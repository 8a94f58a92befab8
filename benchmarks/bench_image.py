"""Size of the action's container image, as built by the container test (tests/container/).

    .venv/bin/python -m benchmarks.bench_image [--image ci-serve-action:test]

Target (issue 7): report the size; aim under 700 MiB. The image is not built here (the container
test builds it, ~10 min on 2 cores); when Docker is not running or the image is absent the result
says "not measured" instead of failing. The layer table shows where the bytes are.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess

IMAGE = "ci-serve-action:test"  # the tag tests/container/test_container.py builds
MIB = 1024 * 1024
TARGET_MIB = 700


def _docker(*args: str) -> subprocess.CompletedProcess[str] | None:
    if not shutil.which("docker"):
        return None
    try:
        return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None


def layers(image: str) -> list[dict]:
    """Layers with a size, biggest first: ``{"size_mib", "created_by"}``."""
    proc = _docker("history", "--no-trunc", "--human=false", "--format", "{{.Size}}\t{{.CreatedBy}}", image)
    if proc is None or proc.returncode != 0:
        return []
    out = []
    for line in proc.stdout.splitlines():
        size, _, created = line.partition("\t")
        try:
            nbytes = int(size)
        except ValueError:
            continue
        if nbytes:
            created = " ".join(created.replace("/bin/bash -o pipefail -c", "").replace("#(nop)", "").split())
            out.append({"size_mib": round(nbytes / MIB, 1), "created_by": created[:90] or "(base image)"})
    return sorted(out, key=lambda x: -x["size_mib"])


#: large parts of the image, measured inside it (MiB); the Dockerfile drops the jars, the dashboard's web
#: UI and the test folders (they read 0 here once dropped)
PARTS = {
    "ray (whole package)": "ray",
    "ray: raylet, gcs_server and other binaries (ray/core)": "ray/core",
    "ray: Java jars (ray/jars)": "ray/jars",
    "ray: dashboard web UI (ray/dashboard/client/build)": "ray/dashboard/client/build",
    "numpy (numpy + numpy.libs)": "numpy numpy.libs",
    "uv (the installer smoke --requirements uses)": "../../../bin/uv",
    "pip": "pip",
    "test folders outside ray": "-tests",
}


def parts(image: str = IMAGE) -> dict[str, float]:
    script = ('site=$(python -c "import sysconfig; print(sysconfig.get_paths()[\'purelib\'])"); cd "$site"; '
              'for p in "$@"; do if [ "$p" = -tests ]; then '
              'n=$(find . -type d -name tests -not -path "./ray/*" -prune -exec du -sk {} + | '
              'awk \'{s+=$1} END {print s+0}\'); else n=0; for q in $p; do [ -e "$q" ] && '
              'n=$((n + $(du -sk "$q" | cut -f1))); done; fi; echo "$n"; done')
    proc = _docker("run", "--rm", "--entrypoint", "/bin/sh", image, "-c", script, "sh", *PARTS.values())
    if proc is None or proc.returncode != 0:
        return {}
    sizes = [int(x) for x in proc.stdout.split()]
    return {name: round(kib / 1024, 1) for name, kib in zip(PARTS, sizes, strict=True)}


def bench(image: str = IMAGE) -> dict:
    result = {"name": f"action image {image}", "target": f"< {TARGET_MIB} MiB", "size_mib": None, "met": None,
              "layers": [], "note": ""}
    info = _docker("info", "--format", "{{.ServerVersion}}")
    if info is None or info.returncode != 0:
        result["note"] = "not measured: Docker is not running here"
        return result
    proc = _docker("image", "inspect", "-f", "{{.Size}}", image)
    if proc is None or proc.returncode != 0:
        result["note"] = f"not measured: no image {image} (the container test, tests/container, builds it)"
        return result
    size = int(proc.stdout.strip())
    result.update(size_mib=round(size / MIB, 1), size_bytes=size, met=size / MIB < TARGET_MIB, layers=layers(image),
                  parts=parts(image))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default=IMAGE)
    args = parser.parse_args()
    print(json.dumps(bench(args.image), indent=2))


if __name__ == "__main__":
    main()
