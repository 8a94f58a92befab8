"""A real HAProxy (Debian's package) in front of Ray Serve, with a switch command that moves traffic.

The proxy runs in master-worker mode; the switch script rewrites the backend address and sends
SIGUSR2 to the master, which starts new workers on the new config and lets the old ones finish the
requests they hold: the hot reload a load balancer in production would do.

:class:`WeightedHAProxy` is the progressive release's balancer: both clusters in one backend, their shares
set through HAProxy's runtime API (``set server serve/NAME weight N`` over the admin stats socket, with
socat) by a traffic command as a user would write it (:data:`TRAFFIC_SCRIPT`). No reload: a weight takes
effect on the next request.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

from tests.support.processes import stop_group

CONFIG_TEMPLATE = """\
global
    master-worker
    pidfile {pidfile}
{global_extra}defaults
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
{backend}
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


#: The traffic command of a progressive release (`--traffic-command`): the new cluster's server gets
#: $CI_SERVE_TRAFFIC_WEIGHT, the old one the rest, through the runtime API. Every weight it set is logged.
TRAFFIC_SCRIPT = """\
#!/bin/sh
set -eu
new="$1" old="$2" w="$CI_SERVE_TRAFFIC_WEIGHT"
echo "set server serve/$new weight $w" | socat stdio "UNIX-CONNECT:{socket}"
echo "set server serve/$old weight $((100 - w))" | socat stdio "UNIX-CONNECT:{socket}"
echo "$w" >> "{weights_log}"
echo "serve/$new weight $w, serve/$old weight $((100 - w))"
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
        self.config.write_text(CONFIG_TEMPLATE.format(pidfile=self.pidfile, port=port, global_extra="",
                                                      backend=f"    server live {_hostport(backend_url)}"))
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
            try:  # listening is enough: a backend that is not up yet makes HTTP wait out HAProxy's retries
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.1)
        self.stop()  # a proxy that never listened is not left running
        raise RuntimeError("haproxy did not start: " + (self.workdir / "haproxy.log").read_text()[-2000:])

    def stop(self) -> None:
        stop_group(self.proc)

    def __enter__(self) -> HAProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class WeightedHAProxy(HAProxy):
    """``WeightedHAProxy(dir, {"blue": url, "green": url}, port, live="blue")``: all traffic to ``live`` at
    first; :meth:`traffic_command` moves shares between two of them."""

    def __init__(self, workdir: Path, servers: dict[str, str], port: int, live: str, *, api_port: int | None = None):
        super().__init__(workdir, next(iter(servers.values())), port)
        self.socket = self.workdir / "admin.sock"
        self.weights_log = self.workdir / "weights.log"
        #: the runtime API on TCP too (``stats socket ipv4@127.0.0.1:PORT``), for a traffic command that runs
        #: where the socket file is not (the action's container under act)
        self.api_port = api_port
        lines = [f"    server {name} {_hostport(url)} weight {100 if name == live else 0}"
                 for name, url in servers.items()]
        sockets = f"    stats socket {self.socket} mode 600 level admin\n"
        if api_port:
            sockets += f"    stats socket ipv4@127.0.0.1:{api_port} level admin\n"
        self.config.write_text(CONFIG_TEMPLATE.format(
            pidfile=self.pidfile, port=port, global_extra=sockets,
            backend="\n".join(["    balance roundrobin", *lines])))
        self.traffic_script = self.workdir / "traffic.sh"
        self.traffic_script.write_text(TRAFFIC_SCRIPT.format(socket=self.socket, weights_log=self.weights_log))
        self.traffic_script.chmod(0o755)

    def traffic_command(self, new: str, old: str) -> str:
        return f"{self.traffic_script} {new} {old}"

    def weights_set(self) -> list[int]:
        """Every weight the traffic command gave a new cluster, in order."""
        return [int(w) for w in self.weights_log.read_text().split()] if self.weights_log.exists() else []

    def weights(self) -> dict[str, int]:
        """The current weight of each server, as the runtime API says (``show servers state``)."""
        out = subprocess.run(["socat", "stdio", f"UNIX-CONNECT:{self.socket}"], input="show servers state serve\n",
                             capture_output=True, text=True, timeout=10, check=True).stdout
        found = {}
        for line in out.splitlines():
            fields = line.split()
            if len(fields) > 8 and fields[1] == "serve":  # be_id be_name srv_id srv_name srv_addr ... srv_uweight
                found[fields[3]] = int(fields[7])
        return found


def _hostport(url: str) -> str:
    parts = urlsplit(url if "://" in url else "http://" + url)
    return f"{parts.hostname}:{parts.port or 80}"
