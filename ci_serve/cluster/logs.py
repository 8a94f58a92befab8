"""Why replicas failed, from the cluster itself: the log tails of failing replicas, read through the
dashboard's log API (``/api/v0/logs``), masked. The smoke test shows its own head's log tail; a deploy
to a real cluster shows these.

A failing deployment's message names its replicas' actors (``actor_id=...`` in Ray's traceback); each
one's stdout and stderr are ``GET /api/v0/logs/file?actor_id=X&suffix=out|err&lines=N``. Without an
actor id (a replica that is unhealthy rather than crashed), the Serve replica log files
``serve/replica_<app>_<deployment>_*.log`` of each node are listed (``/api/v0/logs?node_id=N&glob=...``)
and their tails read. Measured on Ray 2.60 (see tests/test_replica_logs.py for the versions checked);
a dashboard without the API answers 404, and the tail then says so instead. A dashboard whose log API
fails (Ray 2.52.1 with token auth answers 500 "UNAUTHENTICATED" to every file read: its dashboard does not
pass the token on to the node's agent; seen here) is said so, with the start of its answer.
"""

from __future__ import annotations

import re
from typing import Any, Protocol

from ci_serve import secrets

_ACTOR = re.compile(r"actor_id=([0-9a-f]{16,})")
_MARKER = re.compile(r"^:(job_id|actor_name|task_name):")
_BAD = ("DEPLOY_FAILED", "UNHEALTHY")


class LogSource(Protocol):
    def request(self, method: str, path: str, *, ok: tuple[int, ...] = (200,), json_body: Any = None,
                data: bytes | None = None, timeout: float | None = None) -> Any: ...


def failing_deployments(applications: dict[str, Any], names: list[str]) -> list[tuple[str, str, str]]:
    """``(app, deployment, message)`` of each deployment of ``names`` that is not healthy."""
    found = []
    for app_name in names:
        app = applications.get(app_name) or {}
        for dep_name, dep in (app.get("deployments") or {}).items():
            if isinstance(dep, dict) and dep.get("status") != "HEALTHY":
                found.append((app_name, str(dep_name), str(dep.get("message") or "")))
    return found


def _clean(text: str, lines: int) -> str:
    kept = [line for line in text.splitlines() if not _MARKER.match(line)]
    return secrets.scrub(secrets.mask("\n".join(kept[-lines:]).rstrip()))


def _get(client: LogSource, path: str, failures: list[str] | None = None) -> tuple[int, str]:
    resp = client.request("GET", path, ok=(200, 400, 404, 500), timeout=10.0)
    status, text = int(resp.status_code), str(resp.text)
    if failures is not None and status not in (200, 404):
        said = " ".join(text.split())[:200]  # a gRPC error spans lines: its status is on the second
        failures.append(f"HTTP {status}" + (f": {secrets.mask(said)}" if said else ""))
    return status, text


def replica_log_tails(client: LogSource, applications: dict[str, Any], names: list[str], *, lines: int = 40,
                      max_replicas: int = 3) -> str:
    """A text block with the log tails of the failing replicas of ``names``, or a sentence saying why
    there is none. Never raises for what the log API answers; a dashboard that stops answering raises
    as any dashboard call does (the caller keeps its own error then)."""
    failing = failing_deployments(applications, names)
    if not failing:
        return ""
    parts: list[str] = []
    failures: list[str] = []
    for app, deployment, message in failing:
        for actor in list(dict.fromkeys(_ACTOR.findall(message)))[:max_replicas]:
            for suffix in ("out", "err"):
                status, text = _get(client, f"/api/v0/logs/file?actor_id={actor}&suffix={suffix}&lines={lines}",
                                    failures)
                if status == 404:
                    return "replica logs: this cluster's dashboard has no log API (/api/v0/logs answered 404)"
                if status == 200 and _clean(text, lines):
                    parts.append(f"--- {app}/{deployment} replica (actor {actor[:12]}) std{suffix} ---\n"
                                 f"{_clean(text, lines)}")
    if not parts:
        from_files = _serve_log_files(client, failing, lines, max_replicas, failures)
        if from_files is None:
            return "replica logs: this cluster's dashboard has no log API (/api/v0/logs answered 404)"
        parts = from_files
    if not parts and failures:
        return f"replica logs: the dashboard's log API failed to read them ({failures[0]})"
    if not parts:
        return "replica logs: the dashboard's log API has none for the failing replicas"
    return "replica logs (last lines, from the dashboard's log API):\n" + "\n".join(parts)


def _get_json(client: LogSource, path: str) -> tuple[int, Any]:
    resp = client.request("GET", path, ok=(200, 400, 404, 500), timeout=10.0)
    if resp.status_code != 200:
        return int(resp.status_code), None
    try:
        return 200, resp.json()
    except ValueError:
        return 200, None


def _result(data: Any) -> Any:
    """``{"data": {"result": X}}`` -> X (the state API's envelope)."""
    inner = data.get("data") if isinstance(data, dict) else None
    return inner.get("result") if isinstance(inner, dict) else None


def _serve_log_files(client: LogSource, failing: list[tuple[str, str, str]], lines: int,
                     max_replicas: int, failures: list[str]) -> list[str] | None:
    """The tails of ``serve/replica_<app>_<deployment>_*.log`` on each alive node; None: no log API."""
    status, data = _get_json(client, "/api/v0/nodes?limit=100")
    if status == 404:
        return None
    found = _result(data)
    nodes = found.get("result") if isinstance(found, dict) else None
    parts: list[str] = []
    for node in (nodes if isinstance(nodes, list) else [])[:20]:
        node_id = node.get("node_id") if isinstance(node, dict) else None
        if not node_id or node.get("state") not in (None, "ALIVE"):
            continue
        for app, deployment, _ in failing:
            status, data = _get_json(client, f"/api/v0/logs?node_id={node_id}&glob=serve/replica_{app}_{deployment}_*")
            if status == 404:
                return None
            listed = _result(data)
            groups = listed.values() if isinstance(listed, dict) else []
            files = [str(f) for group in groups if isinstance(group, list) for f in group][:max_replicas]
            for name in files:
                status, text = _get(client, f"/api/v0/logs/file?node_id={node_id}&filename={name}&lines={lines}",
                                    failures)
                if status == 200 and _clean(text, lines):
                    parts.append(f"--- {app}/{deployment}: {name} ---\n{_clean(text, lines)}")
    return parts


def attach_replica_logs(client: LogSource, err: Any, names: list[str]) -> None:
    """Add the failing replicas' log tails to a gate failure's ``details`` (so the log, the report and
    the job summary show them). ``err`` is a ``GateFailed`` carrying the last applications snapshot.
    Best effort: a log API that cannot be read leaves the error as it was, with a sentence why."""
    from ci_serve.errors import CiServeError

    snapshot = getattr(err, "snapshot", None) or {}
    applications = snapshot.get("applications") if isinstance(snapshot, dict) else None
    if not isinstance(applications, dict):
        return
    try:
        block = replica_log_tails(client, applications, names)
    except CiServeError as exc:
        block = f"replica logs: could not be read ({exc.message})"
    if block:
        err.details = f"{err.details.rstrip()}\n\n{block}" if err.details else block
