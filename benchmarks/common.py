"""Helpers shared by the benchmark scripts: timing, medians, the machine description, tables."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def ci_serve(*args: str) -> list[str]:
    return [PYTHON, "-m", "ci_serve", *args]


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def run_cmd(cmd: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None,
            timeout: float = 600) -> tuple[float, subprocess.CompletedProcess[str]]:
    return timed(lambda: subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout))


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    ray = "not installed"
    try:
        from importlib.metadata import version

        ray = version("ray")
    except Exception:
        pass
    return (f"{os.cpu_count()} CPUs ({cpu}){mem}, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, Ray {ray}")


def table(header: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
