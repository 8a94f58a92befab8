"""A private, throwaway Ray head on loopback: the one ``smoke`` deploys to and the tests run against.

Private means: its own temp folder, free ports for everything Ray would otherwise put on a fixed
port (so two heads on one machine never collide), token auth on with a fresh random token, usage
stats off. ``ray start --head --block`` runs in a session of its own; Ray's workers get process
groups of their own but stay in that session, so :meth:`TemporaryHead.stop` kills by session id and
waits until no process of it is left. No graceful shutdown: the head is thrown away.
"""

from __future__ import annotations

import os
import random
import secrets as pysecrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from ci_serve import secrets
from ci_serve.cluster.reaper import kill_session, session_pids
from ci_serve.errors import CiServeError

READY_LINE = "Ray runtime started"


class HeadStartError(CiServeError):
    """The temporary head did not start (not the user's fault, nothing of theirs was touched)."""

    result = "error"


def masked_tail(log_path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a log a process of ours writes, secrets masked ("" while it has none):
    what an error about that process shows of it."""
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return ""
    return secrets.mask("\n".join(text.splitlines()[-lines:]))


#: every port this process handed out: the kernel may hand the same free port out twice in a row, and a head
#: whose components are given one port twice does not start (seen: gcs_server and dashboard_agent_http)
_HANDED_OUT: set[int] = set()

#: Ray's worker processes take ports from 10002 to 19999 (``ray start`` --min/--max-worker-port defaults)
_RAY_WORKER_PORTS_END = 20000
#: the Ray Client proxier's servers take ports from 23000 to 23999 (``ray.util.client.server.proxier``)
_RAY_CLIENT_SERVER_PORTS = range(23000, 24000)
_EPHEMERAL = Path("/proc/sys/net/ipv4/ip_local_port_range")


def _quiet_ports() -> range | None:
    """Ports no other program is handed by the kernel: below its ephemeral range (where every bind to port 0
    lands) and above Ray's worker ports. A port we pick is free when picked, but Serve binds the HTTP port
    only at the first deploy, long after: a process of the head that binds port 0 meanwhile (Ray 2.9's
    dashboard gRPC server does) may get it, and Serve then fails to start (seen: HTTP 500 on the first PUT,
    and a gRPC server answering the Serve port). None: no such range on this machine."""
    try:
        low, high = (int(x) for x in _EPHEMERAL.read_text().split()[:2])
    except (OSError, ValueError):
        return None
    if low - _RAY_WORKER_PORTS_END >= 2000:
        return range(_RAY_WORKER_PORTS_END, low)
    if 65536 - (high + 1) >= 2000:
        return range(high + 1, 65536)
    return None


def free_port() -> int:
    """A free port on loopback, never one this process handed out before, outside the kernel's ephemeral
    range when the machine has room for that (:func:`_quiet_ports`)."""
    quiet = _quiet_ports() or range(0)
    for _ in range(200 if quiet else 0):
        port = random.choice(quiet)
        if port in _HANDED_OUT or port in _RAY_CLIENT_SERVER_PORTS:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def ray_executable() -> str:
    beside = Path(sys.executable).parent / "ray"
    if beside.exists():
        return str(beside)
    found = shutil.which("ray")
    if not found:
        raise HeadStartError("the `ray` command was not found", "pip install 'ray[serve]' into this environment")
    return found


def ray_start_has(ray: str, flag: str) -> bool:
    """Whether the ``ray start`` of the environment holding ``ray`` knows ``flag`` (older releases lack
    some). Read from its source, not ``ray start --help``, which would cost a second of Python start-up."""
    bin_dir = Path(ray).resolve().parent if os.sep in ray else Path(shutil.which(ray) or ray).resolve().parent
    for scripts in (bin_dir.parent / "lib").glob("python*/site-packages/ray/scripts/scripts.py"):
        try:
            return f'"{flag}"' in scripts.read_text(errors="replace")
        except OSError:
            break
    return True  # not found where a venv keeps it: assume a current Ray


class TemporaryHead:
    """``with TemporaryHead() as head: ...`` starts a head and always removes it."""

    def __init__(self, *, dashboard: bool = True, num_cpus: int | None = None,
                 extra_env: dict[str, str] | None = None, cwd: str | os.PathLike[str] | None = None,
                 object_store_memory: int | None = 100 * 1024 * 1024, keep_temp: bool = False,
                 lean: bool = False, ray: str | os.PathLike[str] | None = None):
        self.dashboard = dashboard
        #: the ``ray`` command to start (another environment's, for a head of another Ray release)
        self.ray = str(ray) if ray else None
        #: skip the autoscaler monitor and the log monitor (a fixed single node whose drivers do not
        #: want worker logs forwarded): two Python processes less to boot on a 2-CPU runner
        self.lean = lean
        self.num_cpus = num_cpus
        self.extra_env = dict(extra_env or {})
        self.object_store_memory = object_store_memory
        self.keep_temp = keep_temp
        # A short path: Ray puts unix sockets under it (108-byte limit).
        self.temp_dir = Path(tempfile.mkdtemp(prefix="cis-", dir="/tmp"))
        # Never a folder holding the app: its copy would shadow the uploaded working_dir.
        self.cwd = Path(cwd) if cwd else self.temp_dir
        self.token = pysecrets.token_hex(16)
        secrets.register(self.token)
        self.gcs_port = free_port()
        self.dashboard_port = free_port()
        self.serve_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.reaper: subprocess.Popen[bytes] | None = None
        self.sid: int | None = None
        self.log_path = self.temp_dir / "ray-start.log"

    # -- addresses ---------------------------------------------------------------------------
    @property
    def gcs_address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    @property
    def serve_url(self) -> str:
        return f"http://127.0.0.1:{self.serve_port}"

    @property
    def session_dir(self) -> Path:
        return self.temp_dir / "session_latest"

    @property
    def logs_dir(self) -> Path:
        return self.session_dir / "logs"

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def driver_env(self) -> dict[str, str]:
        """Variables a process needs to connect to this head as a driver (``ray.init(address=...)``)."""
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token, "RAY_USAGE_STATS_ENABLED": "0",
                "RAY_ADDRESS": self.gcs_address}

    # -- lifecycle ---------------------------------------------------------------------------
    def command(self) -> list[str]:
        cmd = [
            self.ray or ray_executable(), "start", "--head", "--block", "--disable-usage-stats",
            "--temp-dir", str(self.temp_dir),
            "--node-ip-address", "127.0.0.1",
            "--port", str(self.gcs_port),
            "--ray-client-server-port", str(free_port()),
            "--dashboard-agent-listen-port", str(free_port()),
            "--dashboard-agent-grpc-port", str(free_port()),
            "--runtime-env-agent-port", str(free_port()),
            "--metrics-export-port", str(free_port()),
            "--node-manager-port", str(free_port()),
            "--object-manager-port", str(free_port()),
        ]
        if self.dashboard:
            cmd += ["--include-dashboard", "true", "--dashboard-host", "127.0.0.1",
                    "--dashboard-port", str(self.dashboard_port)]
        else:
            cmd += ["--include-dashboard", "false"]
        if self.lean:
            cmd += ["--no-monitor"]
            if ray_start_has(cmd[0], "--include-log-monitor"):  # not in Ray 2.40 and older
                cmd += ["--include-log-monitor", "false"]
        if self.num_cpus is not None:
            cmd += ["--num-cpus", str(self.num_cpus)]
        if self.object_store_memory:
            cmd += ["--object-store-memory", str(self.object_store_memory)]
        return cmd

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        env.update({
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": self.token,
            "RAY_USAGE_STATS_ENABLED": "0",
            "PYTHONUNBUFFERED": "1",
        })
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 120.0) -> TemporaryHead:
        self.launch()
        return self.wait_ready(timeout)

    def launch(self) -> None:
        """Start ``ray start`` and return at once; :meth:`wait_ready` waits for it. Split from
        :meth:`start` so a caller can do other work (import the app) while the head boots."""
        log = open(self.log_path, "wb")  # noqa: SIM115 - the child owns it until stop()
        try:
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, cwd=self.cwd, env=self.env(),
                                         start_new_session=True)
        finally:
            log.close()
        self.sid = self.proc.pid  # start_new_session: the child leads a new session
        # If this process is SIGKILLed, its `finally` never runs: the reaper then removes the head.
        self.reaper = subprocess.Popen(
            [sys.executable, "-m", "ci_serve.cluster.reaper", str(os.getpid()), str(self.sid), str(self.temp_dir)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, env={**os.environ, "PYTHONPATH": _package_root()})

    def wait_ready(self, timeout: float = 120.0) -> TemporaryHead:
        assert self.proc is not None, "launch() first"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise HeadStartError(f"the temporary Ray head exited with code {self.proc.returncode} while starting",
                                     "see the log below; is another Ray using this temp folder?",
                                     details=self.log_tail())
            if self._ready():
                return self
            time.sleep(0.1)
        self.stop()
        raise HeadStartError(f"the temporary Ray head did not start within {timeout:.0f}s",
                             "the machine may be overloaded; see the log below", details=self.log_tail())

    def _ready(self) -> bool:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return False
        if READY_LINE not in text:
            return False
        if not self.dashboard:
            return True
        try:
            resp = requests.get(f"{self.dashboard_url}/api/version", headers=self.auth_headers(), timeout=2)
            return resp.status_code == 200
        except requests.RequestException:
            return False

    def pids(self) -> list[int]:
        """Every live process of this head (same session as ``ray start``)."""
        return session_pids(self.sid) if self.sid is not None else []

    def stop(self, timeout: float = 10.0) -> None:
        """SIGKILL every process of the head, wait until they are gone, remove the temp folder."""
        if self.sid is not None:
            kill_session(self.sid, timeout, reap=self._reap)
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass
        if self.reaper is not None and self.reaper.poll() is None:
            self.reaper.kill()
            self.reaper.wait()
        if not self.keep_temp:
            shutil.rmtree(self.temp_dir, ignore_errors=True)

    def _reap(self) -> None:
        if self.proc is not None:
            try:
                self.proc.wait(timeout=0.05)
            except subprocess.TimeoutExpired:
                pass

    def log_tail(self, lines: int = 30) -> str:
        return masked_tail(self.log_path, lines)

    def __enter__(self) -> TemporaryHead:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _package_root() -> str:
    """The folder holding ``ci_serve``, so the reaper imports this same code from any working folder."""
    return str(Path(__file__).resolve().parent.parent.parent)
