"""Running ``ci-serve`` as a user does (a subprocess) with a report, for the tests that deploy."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

from ci_serve.cluster.head import TemporaryHead
from tests.conftest import ci_serve_cmd


def run_cli(cli_env: dict[str, str], token: str | None, cwd: Path, *args: str, timeout: float = 600,
            report_dir: Path | None = None) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """``ci-serve ARGS --report FILE`` run in ``cwd``; the process and the report (``{}`` if none was written).
    The report goes to ``report_dir`` (default ``cwd``), a new file each run."""
    report = (report_dir or cwd) / f"report-{time.monotonic_ns()}.json"
    env = dict(cli_env, RAY_AUTH_TOKEN=token) if token else dict(cli_env)
    proc = subprocess.run(ci_serve_cmd(*args, "--report", str(report)), env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)
    return proc, (json.loads(report.read_text()) if report.exists() else {})


def deploy_cli(head: TemporaryHead, cli_env: dict[str, str], cwd: Path, config: Path, *extra: str,
               token: str | None = None, timeout: float = 500, report_dir: Path | None = None
               ) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """``ci-serve deploy CONFIG --address <head's dashboard> EXTRA`` with the head's token (or ``token``)."""
    return run_cli(cli_env, token or head.token, cwd, "deploy", str(config), "--address", head.dashboard_url,
                   *extra, timeout=timeout, report_dir=report_dir)
