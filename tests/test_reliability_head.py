"""The temporary smoke head (issue 6): loopback only as far as Ray allows, token auth always on, and
gone when ``ci-serve smoke`` exits on the runner's SIGINT, before any SIGTERM is needed.

Measured on Ray 2.60 (see docs/guarantees.md): the dashboard and the Serve HTTP proxy bind 127.0.0.1
as we ask; Ray's gRPC servers (GCS, raylet, agents, actors' core workers) bind all interfaces or the
host's address and have no flag or variable to change that, but with token auth they refuse a
client without the token.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
import requests
from ray.core.generated import ray_client_pb2, ray_client_pb2_grpc

from ci_serve.cluster.head import TemporaryHead
from tests.conftest import EXAMPLES, ci_serve_cmd
from tests.support.processes import Background, interrupt, wait_until
from tests.test_smoke_ray import TEMP_RE, head_processes

pytestmark = pytest.mark.ray
LOOPBACK = ("127.0.0.1", "[::ffff:127.0.0.1]", "[::1]")


def listeners(pids: set[int]) -> list[tuple[str, int, str]]:
    """``(address, port, process name)`` of every TCP listener owned by ``pids`` (from ``ss``)."""
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, timeout=30).stdout
    found = []
    for line in out.splitlines():
        owners = {int(p) for p in re.findall(r"pid=(\d+)", line)}
        if owners & pids:
            address, _, port = line.split()[3].rpartition(":")
            name = re.search(r'users:\(\("([^"]+)"', line)
            found.append((address, int(port), _program(min(owners & pids), name.group(1) if name else "?")))
    return found


def _program(pid: int, name: str) -> str:
    """``ss``'s process name, or the module a Python process runs (``python -m X``)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return name
    if b"-m" in argv and argv.index(b"-m") + 1 < len(argv):
        return argv[argv.index(b"-m") + 1].decode(errors="replace")
    return name


@pytest.fixture(scope="module")
def smoke_head():
    """A head made as ``ci-serve smoke`` makes it, with Serve started by smoke's own code."""
    head = TemporaryHead(dashboard=False, num_cpus=1, lean=True)
    with head:
        code = ("import ray\nfrom ci_serve.cluster.driver import _start_serve\n"
                f"ray.init(address={head.gcs_address!r})\n"
                f"_start_serve({{'host': '127.0.0.1', 'port': {head.serve_port}}})\n"
                "from ray import serve\nimport time\n"
                "for _ in range(120):\n"
                "    if serve.status().proxies: break\n"
                "    time.sleep(0.5)\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        subprocess.run([sys.executable, "-c", code], env=dict(env, **head.driver_env()), check=True,
                       capture_output=True, timeout=240)
        yield head


def test_serve_proxy_listens_on_loopback_only(smoke_head):
    deadline = time.monotonic() + 60
    while not any(port == smoke_head.serve_port for _, port, _ in listeners(set(smoke_head.pids()))):
        assert time.monotonic() < deadline, "the Serve proxy never listened"
        time.sleep(0.5)
    found = listeners(set(smoke_head.pids()))
    print("\n".join(f"{a}:{p} {n}" for a, p, n in sorted(found)))
    serve = [a for a, p, _ in found if p == smoke_head.serve_port]
    assert serve and all(a in LOOPBACK for a in serve), serve
    # Ray's own gRPC listeners (GCS, raylet, agents, workers, Ray Client) bind wider; no flag changes
    # that in 2.60. They are Ray processes of this head's session and refuse clients without the token
    # (the tests below); recorded here, not asserted.
    print("bound beyond loopback (Ray's gRPC, token-protected):",
          sorted((a, p, n) for a, p, n in found if a not in LOOPBACK))


def test_the_smoke_head_refuses_a_driver_without_the_token(smoke_head):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["HOME"] = str(smoke_head.temp_dir / "nohome")  # no ~/.ray/auth_token either
    proc = subprocess.run([sys.executable, "-c", f"import ray; ray.init(address={smoke_head.gcs_address!r}); "
                           "print('CONNECTED')"], env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode != 0 and "CONNECTED" not in proc.stdout
    assert "token" in proc.stderr.lower()


def ping_ray_client(port: int, metadata: tuple[tuple[str, str], ...] = ()) -> str:
    """One ``ClusterInfo(PING)`` call to a Ray Client server: ``"ANSWERED"`` or the gRPC status's name."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = ray_client_pb2_grpc.RayletDriverStub(channel)
        try:
            stub.ClusterInfo(ray_client_pb2.ClusterInfoRequest(type=ray_client_pb2.ClusterInfoType.PING),
                             metadata=metadata, timeout=60, wait_for_ready=True)
        except grpc.RpcError as exc:
            return f"{exc.code().name}: {exc.details()}"
    return "ANSWERED"


def test_the_ray_client_server_refuses_a_client_without_the_token(smoke_head):
    ports = [p for a, p, n in listeners(set(smoke_head.pids())) if n == "ray.util.client.server"]
    assert ports, "no Ray Client server found"
    code = (f"import ray; ray.init('ray://127.0.0.1:{ports[0]}'); "
            "print(ray.get(ray.put('CONNECTED')))")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["HOME"] = str(smoke_head.temp_dir / "nohome")
    # The control: the same client with the head's token connects, so the refusal below is the token's.
    # Ray Client gives up after about 35 s by default; a loaded 2-core machine can need longer.
    patient = {**env, **smoke_head.driver_env(), "RAY_CLIENT_INITIAL_CONNECTION_TIMEOUT_S": "30"}
    with_token = subprocess.run([sys.executable, "-c", code], env=patient,
                                capture_output=True, text=True, timeout=180)
    assert "CONNECTED" in with_token.stdout, with_token.stderr[-1500:]
    without = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=180)
    print(without.returncode, without.stderr[-600:])
    assert without.returncode != 0 and "CONNECTED" not in without.stdout
    # Ray Client retries a refused call quietly until it gives up, so its error does not say why; one
    # call of its protocol does: refused for the missing token, answered with it.
    assert ping_ray_client(ports[0]).startswith("UNAUTHENTICATED"), ping_ray_client(ports[0])
    bearer = (("authorization", f"Bearer {smoke_head.token}"),)
    assert ping_ray_client(ports[0], bearer) == "ANSWERED"


def test_token_auth_is_forced_on_whatever_the_environment_says(monkeypatch, make_head):
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.setenv("RAY_AUTH_TOKEN", "someone-elses-token")
    head = make_head(num_cpus=1, lean=True)
    url = head.dashboard_url + "/api/serve/applications/"
    assert requests.get(url, timeout=30).status_code == 401
    stale = {"Authorization": "Bearer someone-elses-token"}
    assert requests.get(url, headers=stale, timeout=30).status_code == 403
    assert requests.get(url, headers=head.auth_headers(), timeout=30).status_code == 200
    other = TemporaryHead(dashboard=False)
    other.stop()  # never started: only its fresh token is compared
    assert len(head.token) >= 32 and head.token != other.token


def test_a_head_with_a_dashboard_binds_it_to_loopback_and_answers_401_without_the_token(make_head):
    head = make_head(num_cpus=1, lean=True)
    found = listeners(set(head.pids()))
    dashboard = [a for a, p, _ in found if p == head.dashboard_port]
    assert dashboard and all(a in LOOPBACK for a in dashboard), dashboard
    url = head.dashboard_url + "/api/serve/applications/"
    assert requests.get(url, timeout=30).status_code == 401
    assert requests.get(url, headers={"Authorization": "Bearer wrong"}, timeout=30).status_code == 403
    assert requests.get(url, headers=head.auth_headers(), timeout=30).status_code == 200


def test_smoke_cancelled_as_the_runner_does_is_gone_without_a_sigterm(cli_env, tmp_path):
    report = tmp_path / "report.json"
    bg = Background(ci_serve_cmd("smoke", str(EXAMPLES / "fruit" / "serve_config.yaml"), "--requests",
                                 str(EXAMPLES / "fruit" / "requests.yaml"), "--report", str(report)), cli_env)
    bg.wait_for("ok   start Serve")  # the head runs and the app is being deployed: the costly state
    match = TEMP_RE.search(bg.log)
    assert match, bg.log
    temp_dir = match.group(1)
    assert head_processes(temp_dir), f"no process of the head in {temp_dir} while smoke runs"
    took = interrupt(bg.proc)  # the runner's cancel: smoke must finish its cleanup before the runner ends it
    bg.finish()
    left = head_processes(temp_dir)
    print(f"smoke exited {took:.1f} s after SIGINT; head processes left at exit: {left}")
    assert bg.proc.returncode == 1 and "cancelled by SIGINT" in bg.log, bg.log
    assert "Traceback" not in bg.log + bg.out
    # smoke SIGKILLs the head before it exits; the kernel may still be tearing the processes down
    wait_until(lambda: head_processes(temp_dir) == [], 60, f"the processes of {temp_dir} gone")
    assert not Path(temp_dir).exists()
    data = json.loads(report.read_text())
    assert data["exit_code"] == 1 and data["errors"][0]["type"] == "Cancelled"
