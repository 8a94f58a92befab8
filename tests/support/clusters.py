"""Multi-node Ray clusters on one machine, for the tests: a worker node joined to a
:class:`~ci_serve.cluster.head.TemporaryHead`, and a head run by Ray's real autoscaler with its fake
node provider.

Both are started and stopped by their own process sessions (never ``ray stop``, which kills every
Ray process on the machine, other tests' heads included).

- :class:`WorkerNode`: ``ray start --address=<head gcs> --block`` in a session of its own, with its
  own free ports, the head's token, and a custom resource so replicas can be pinned to it.
- :class:`AutoscalingHead`: ``RAY_FAKE_CLUSTER=1 ray start --head --autoscaling-config=FILE``; the
  config is written here (Ray's wheel lacks the ``example.yaml`` its ``AutoscalingCluster`` helper
  reads). Ray's monitor process launches each worker node in-process (``ray._private.node.Node``),
  so every node the autoscaler starts stays in the head's session and goes when the head is stopped.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

from ci_serve.cluster.head import HeadStartError, TemporaryHead, free_port, ray_executable
from ci_serve.cluster.reaper import kill_session

FAKE_HEAD_NODE_ID = "fffffffffffffffffffffffffffffffffffffffffffffffffff00000"


class WorkerNode:
    """``with WorkerNode(head, resources={"edge": 1}) as node: ...``: one more node of ``head``."""

    def __init__(self, head: TemporaryHead, *, num_cpus: int = 1, resources: dict[str, float] | None = None,
                 object_store_memory: int = 80 * 1024 * 1024):
        self.head = head
        self.num_cpus = num_cpus
        self.resources = dict(resources or {})
        self.object_store_memory = object_store_memory
        self.log_path = Path(tempfile.mkstemp(prefix="cis-worker-", suffix=".log", dir="/tmp")[1])
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        cmd = [self.head.ray or ray_executable(), "start", "--block", "--disable-usage-stats",
               "--address", self.head.gcs_address, "--node-ip-address", "127.0.0.1",
               "--num-cpus", str(self.num_cpus), "--object-store-memory", str(self.object_store_memory),
               "--node-manager-port", str(free_port()), "--object-manager-port", str(free_port()),
               "--dashboard-agent-listen-port", str(free_port()),
               "--dashboard-agent-grpc-port", str(free_port()),
               "--runtime-env-agent-port", str(free_port()), "--metrics-export-port", str(free_port())]
        if self.resources:
            cmd += ["--resources", json.dumps(self.resources)]
        return cmd

    def start(self, timeout: float = 120.0) -> WorkerNode:
        env = self.head.env()  # the head's token and RAY_AUTH_MODE=token
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, cwd=self.head.temp_dir, env=env,
                                         start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise HeadStartError(f"the worker node exited with code {self.proc.returncode}",
                                     details=self.log_path.read_text(errors="replace")[-3000:])
            if self.alive_in(self.head):
                return self
            time.sleep(0.2)
        raise HeadStartError("the worker node did not join the head in time",
                             details=self.log_path.read_text(errors="replace")[-3000:])

    def alive_in(self, head: TemporaryHead) -> bool:
        """The head's dashboard lists a live node holding our custom resource."""
        return any(all(node.get("resourcesTotal", {}).get(k) == v for k, v in self.resources.items())
                   and not node.get("isHeadNode") for node in alive_nodes(head))

    def stop(self) -> None:
        if self.proc is not None:
            kill_session(self.proc.pid, 10.0, reap=lambda: self.proc.poll() if self.proc else None)
            try:
                self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass
        self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> WorkerNode:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()


def alive_nodes(head: TemporaryHead) -> list[dict[str, Any]]:
    """The ``raylet`` part of each live node, from the dashboard's node summary."""
    try:
        resp = requests.get(f"{head.dashboard_url}/nodes?view=summary", headers=head.auth_headers(), timeout=5)
        summary = resp.json()["data"]["summary"]
    except (requests.RequestException, ValueError, KeyError, TypeError):
        return []
    return [n.get("raylet") or {} for n in summary if (n.get("raylet") or {}).get("state") == "ALIVE"]


def autoscaling_config(head_cpus: int, worker_types: dict[str, dict[str, Any]], gcs_address: str) -> dict[str, Any]:
    """An autoscaler config for the fake node provider (the shape of Ray's ``fake_multi_node/example.yaml``).

    ``worker_types``: node type name -> ``{"resources": {...}, "min_workers": 0, "max_workers": 1}``.
    """
    types = {"ray.head.default": {"resources": {"CPU": head_cpus}, "node_config": {}, "max_workers": 0}}
    for name, spec in worker_types.items():
        types[name] = {"node_config": {}, "min_workers": 0, "max_workers": 1, **spec}
    return {
        "cluster_name": "cis-fake", "max_workers": sum(t.get("max_workers", 0) for t in types.values()),
        # gcs_address: without it the provider's nodes join <machine ip>:6379, not our head
        "provider": {"type": "fake_multinode", "use_node_id_as_ip": True, "disable_node_updaters": True,
                     "disable_launch_config_check": True, "gcs_address": gcs_address},
        "available_node_types": types, "head_node_type": "ray.head.default",
        "auth": {}, "upscaling_speed": 1.0, "idle_timeout_minutes": 5, "docker": {},
        "initialization_commands": [], "setup_commands": [], "head_setup_commands": [],
        "worker_setup_commands": [], "head_start_ray_commands": [], "worker_start_ray_commands": [],
        "file_mounts": {}, "cluster_synced_files": [], "file_mounts_sync_continuously": False,
        "rsync_exclude": [], "rsync_filter": [],
    }


class AutoscalingHead(TemporaryHead):
    """A :class:`TemporaryHead` whose monitor runs Ray's autoscaler over the fake node provider."""

    def __init__(self, *, worker_types: dict[str, dict[str, Any]], num_cpus: int = 1, **kwargs: Any):
        extra_env = {"RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1",
                     "RAY_OVERRIDE_NODE_ID_FOR_TESTING": FAKE_HEAD_NODE_ID,
                     "RAY_CLOUD_INSTANCE_ID": FAKE_HEAD_NODE_ID, **kwargs.pop("extra_env", {})}
        super().__init__(num_cpus=num_cpus, extra_env=extra_env, dashboard=True, lean=False, **kwargs)
        self.worker_types = worker_types
        self.config_path = self.temp_dir / "autoscaling.json"
        self.config_path.write_text(json.dumps(autoscaling_config(num_cpus, worker_types, self.gcs_address)))

    def command(self) -> list[str]:
        return [*super().command(), "--autoscaling-config", str(self.config_path)]


