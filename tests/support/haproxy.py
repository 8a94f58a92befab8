"""A real HAProxy (Debian's package) in front of Ray Serve, with a switch command that moves traffic.

The proxy runs in master-worker mode; the switch script rewrites the backend address and sends
SIGUSR2 to the master, which starts new workers on the new config and lets the old ones finish the
requests they hold: the hot reload a load balancer in production would do.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import requests

CONFIG_TEMPLATE = """\
global
    master-worker
    pidfile {pidfile}
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    retries 3
    option redispatch
frontend public
    bind 127.0.0.1:{port}
    default_backend serve
backend serve
    server live {backend}
"""

#: The switch command the tests hand to `ci-serve deploy --switch-command`: point the proxy at
#: $CI_SERVE_NEW_URL and hot-reload it. Written as users would write theirs: a few lines of shell.
SWITCH_SCRIPT = """\
#!/bin/sh
set -eu
new=$(printf '%s' "$CI_SERVE_NEW_URL" | sed -e 's#^[a-z]*://##' -e 's#/.*$##')
sed -i "s#^    server live .*#    server live $new#" "{config}"
kill -USR2 "$(cat "{pidfile}")"
echo "switched proxy to $new"
"""


def haproxy_binary() -> str | None:
    return shutil.which("haproxy") or (os.path.exists("/usr/sbin/haproxy") and "/usr/sbin/haproxy") or None


class HAProxy:
    def __init__(self, workdir: Path, backend_url: str, port: int):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config = self.workdir / "haproxy.cfg"
        self.pidfile = self.workdir / "haproxy.pid"
        self.port = port
        self.switch_script = self.workdir / "switch.sh"
        self.proc: subprocess.Popen[bytes] | None = None
        self.config.write_text(CONFIG_TEMPLATE.format(pidfile=self.pidfile, port=port,
                                                      backend=_hostport(backend_url)))
        self.switch_script.write_text(SWITCH_SCRIPT.format(config=self.config, pidfile=self.pidfile))
        self.switch_script.chmod(0o755)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def backend(self) -> str:
        for line in self.config.read_text().splitlines():
            if line.strip().startswith("server live"):
                return line.split()[-1]
        return ""

    def start(self, timeout: float = 20) -> HAProxy:
        binary = haproxy_binary()
        if not binary:
            raise RuntimeError("haproxy is not installed (apt-get install haproxy)")
        log = open(self.workdir / "haproxy.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen([binary, "-W", "-db", "-f", str(self.config)], stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("haproxy exited: " + (self.workdir / "haproxy.log").read_text())
            try:
                requests.get(self.url, timeout=1)
                return self
            except requests.RequestException:
                time.sleep(0.1)
        raise RuntimeError("haproxy did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass
            self.proc.wait(timeout=10)

    def __enter__(self) -> HAProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _hostport(url: str) -> str:
    parts = urlsplit(url if "://" in url else "http://" + url)
    return f"{parts.hostname}:{parts.port or 80}"
