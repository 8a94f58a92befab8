"""A real Prometheus (Debian's ``prometheus`` package) on loopback, scraping Ray heads as a team's would.

Each Ray head writes ``prom_metrics_service_discovery.json`` (Prometheus's file_sd format) into its temp
folder; the config lists those files under ``file_sd_configs``, so Prometheus follows each cluster's metrics
agents as Ray names them. The scrape interval is 1 s (the heads report every second too,
``RAY_metrics_report_interval_ms=1000``), so a step of a few seconds has numbers. The metrics agents need
no token (seen on 2.9.3 and 2.60 with token auth on: ``/metrics`` answers 200 without one).

With ``basic_auth`` the web API asks for a user and password (``--web.config.file``), so
``--prometheus-header 'Authorization: Basic ...'`` is tested against the real check.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import time
from pathlib import Path

import requests

from ci_serve.cluster.head import free_port
from tests.support.processes import stop_group

CONFIG = """\
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: ray
    file_sd_configs:
      - files: [{files}]
        refresh_interval: 1s
"""
#: Prometheus's web config stores bcrypt hashes only: this one is PASSWORD's (made once with Python's crypt)
USER, PASSWORD = "ci", "prom-secret-7f3a"
PASSWORD_HASH = "$2b$04$so1Ykl9oRfJK2nVxm.yef.ZWRFb2UBU2C4wdifAbCOfz43XzMiEf2"
WEB_CONFIG = """\
basic_auth_users:
  ci: {hash}
"""


def prometheus_binary() -> str | None:
    return shutil.which("prometheus") or (os.path.exists("/usr/bin/prometheus") and "/usr/bin/prometheus") or None


class Prometheus:
    """``with Prometheus(dir, [sd_file, ...]) as prom: prom.url``."""

    def __init__(self, workdir: Path, sd_files: list[Path], *, basic_auth: bool = False):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.config = self.workdir / "prometheus.yml"
        self.config.write_text(CONFIG.format(files=", ".join(f'"{p}"' for p in sd_files)))
        self.basic_auth = basic_auth
        self.web_config = self.workdir / "web.yml"
        if basic_auth:
            self.web_config.write_text(WEB_CONFIG.format(hash=PASSWORD_HASH))
        self.log = self.workdir / "prometheus.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def auth_header(self) -> str:
        """The ``--prometheus-header`` value a user would pass for basic auth."""
        return "Authorization: Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()

    def headers(self) -> dict[str, str]:
        name, _, value = self.auth_header.partition(": ")
        return {name: value} if self.basic_auth else {}

    def start(self, timeout: float = 60.0) -> Prometheus:
        binary = prometheus_binary()
        if not binary:
            raise RuntimeError("prometheus is not installed (apt-get install prometheus)")
        cmd = [binary, f"--config.file={self.config}", f"--storage.tsdb.path={self.workdir / 'data'}",
               f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=1h"]
        if self.basic_auth:
            cmd.append(f"--web.config.file={self.web_config}")
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("prometheus exited: " + self.log.read_text()[-3000:])
            try:
                if requests.get(self.url + "/-/ready", headers=self.headers(), timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("prometheus did not become ready: " + self.log.read_text()[-3000:])

    def query(self, query: str) -> list[dict]:
        resp = requests.get(self.url + "/api/v1/query", params={"query": query}, headers=self.headers(), timeout=10)
        resp.raise_for_status()
        return resp.json()["data"]["result"]

    def targets_up(self) -> dict[str, float]:
        """Each scraped target's ``up``, by instance."""
        return {r["metric"]["instance"]: float(r["value"][1]) for r in self.query("up")}

    def stop(self) -> None:
        stop_group(self.proc)

    def __enter__(self) -> Prometheus:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

