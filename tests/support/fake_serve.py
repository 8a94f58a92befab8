"""A fake Ray 2.60 dashboard and Serve proxy, for the fault matrix (tests/test_fault_matrix.py).

Only for faults a real head will not produce on demand, run hundreds of times: the matrix runs most
of its cells here and a representative subset against a real head. It behaves as a Ray 2.60 head was
seen to behave (docs/RAY-NOTES, tests against real heads):

- ``PUT /api/serve/applications/`` is declarative: an application missing from the body is deleted.
  It is applied before it is answered. Two applications claiming one route prefix are refused (400).
- A new or changed application is ``DEPLOYING`` for ``startup`` seconds, then ``RUNNING``; while it
  deploys, the version it served before keeps serving (a rolling update). A change of route prefix
  alone moves the route at once. An application whose code cannot be imported (a package that is not
  stored, or a module without ``VERSION``) ends ``DEPLOY_FAILED``.
- A deleted application reports ``DELETING`` with ``deployed_app_config: null`` for ``deleting``
  seconds, then disappears; its route goes at once.
- ``GET <serve>/-/routes`` is the proxy's table; ``GET <serve><prefix>`` answers ``{"version",
  "greeting"}`` from the uploaded package's ``VERSION`` and the deployment's ``user_config``.

Every state the cluster went through is kept in ``history`` (one entry per applied PUT), so a test can
check that a bystander application was never touched, not only that it is there at the end.
"""

from __future__ import annotations

import copy
import io
import json
import re
import sys
import threading
import time
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

APPLICATIONS = "/api/serve/applications/"
VERSION_RE = re.compile(rb"""^VERSION\s*=\s*["']([^"']+)["']""", re.M)


class QuietServer(ThreadingHTTPServer):
    """A threading HTTP server that says nothing when a client hangs up mid-answer (a deploy killed or
    cancelled while its request was in flight: what the fault matrix does on purpose)."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


@dataclass
class FakeApp:
    config: dict[str, Any]
    deployed_at: float
    ready_at: float
    #: what serves while the goal deploys: (version, greeting) of the last goal that became ready
    serving: tuple[str, str] | None = None
    failed: str | None = None
    deleting_until: float | None = None


@dataclass
class FakeCluster:
    """The state of the fake; ``FakeServe.state`` is replaced whole to restore a baseline."""

    apps: dict[str, FakeApp] = field(default_factory=dict)
    packages: dict[str, bytes] = field(default_factory=dict)


def _code_version(packages: dict[str, bytes], config: dict[str, Any]) -> str | None:
    uri = str((config.get("runtime_env") or {}).get("working_dir") or "")
    data = packages.get(uri.replace("gcs://", "/api/packages/gcs/"))
    if data is None:
        return None
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        for name in zf.namelist():
            if name.endswith(".py"):
                found = VERSION_RE.search(zf.read(name))
                if found:
                    return found.group(1).decode()
    return None


def _greeting(config: dict[str, Any]) -> str:
    for d in config.get("deployments") or []:
        if isinstance(d, dict) and isinstance(d.get("user_config"), dict):
            return str(d["user_config"].get("greeting", "hello"))
    return "hello"


class FakeServe:
    """``with FakeServe() as fake: fake.dashboard_url, fake.serve_url``."""

    def __init__(self, *, startup: float = 0.3, deleting: float = 0.4):
        self.startup = startup
        self.deleting = deleting
        self.lock = threading.RLock()
        self.state = FakeCluster()
        #: after each applied PUT: {name: deployed config} of every application not being deleted
        self.history: list[dict[str, dict[str, Any]]] = []
        self.dashboard = QuietServer(("127.0.0.1", 0), self._handler(self._dashboard))
        self.serve = QuietServer(("127.0.0.1", 0), self._handler(self._serve))

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard.server_address[1]}"

    @property
    def serve_url(self) -> str:
        return f"http://127.0.0.1:{self.serve.server_address[1]}"

    # -- state -------------------------------------------------------------------------------
    def _tick(self) -> None:
        now = time.monotonic()
        for name, app in list(self.state.apps.items()):
            if app.deleting_until is not None:
                if now >= app.deleting_until:
                    del self.state.apps[name]
                continue
            if app.failed is None and now >= app.ready_at:
                version = _code_version(self.state.packages, app.config)
                if version is None:
                    app.failed = "ImportError: the application's code could not be imported"
                else:
                    app.serving = (version, _greeting(app.config))

    def snapshot(self) -> FakeCluster:
        with self.lock:
            self._tick()
            return copy.deepcopy(self.state)

    def restore(self, state: FakeCluster) -> None:
        with self.lock:
            self.state = copy.deepcopy(state)
            self.history = [self.configs()]

    def configs(self) -> dict[str, dict[str, Any]]:
        with self.lock:
            return {n: copy.deepcopy(a.config) for n, a in self.state.apps.items() if a.deleting_until is None}

    def settle(self, timeout: float = 10.0) -> None:
        """Wait until no application deploys or is being deleted."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                self._tick()
                if all(a.deleting_until is None and (a.failed or a.serving and time.monotonic() >= a.ready_at)
                       for a in self.state.apps.values()):
                    return
            time.sleep(0.05)

    def routes(self) -> dict[str, str]:
        with self.lock:
            self._tick()
            return {a.config["route_prefix"]: n for n, a in sorted(self.state.apps.items())
                    if a.deleting_until is None and a.serving is not None and a.config.get("route_prefix")}

    def answer(self, path: str) -> tuple[int, dict[str, Any] | str]:
        routes = self.routes()
        match = max((p for p in routes if path == p or path.startswith(p.rstrip("/") + "/")), key=len, default=None)
        if match is None:
            return 404, "Path not found"
        with self.lock:
            app = self.state.apps[routes[match]]
            assert app.serving is not None
            return 200, {"version": app.serving[0], "greeting": app.serving[1]}

    def _status(self, name: str, app: FakeApp) -> dict[str, Any]:
        now = time.monotonic()
        if app.deleting_until is not None:
            status, dstatus, config = "DELETING", "HEALTHY", None
        elif app.failed:
            status, dstatus, config = "DEPLOY_FAILED", "DEPLOY_FAILED", app.config
        elif now < app.ready_at or app.serving is None:
            status, dstatus, config = "DEPLOYING", "UPDATING", app.config
        else:
            status, dstatus, config = "RUNNING", "HEALTHY", app.config
        return {"name": name, "status": status, "message": app.failed or "",
                "route_prefix": app.config.get("route_prefix"), "docs_path": None,
                "last_deployed_time_s": app.deployed_at, "deployed_app_config": copy.deepcopy(config),
                "source": "declarative",
                "deployments": {"Echo": {"name": "Echo", "status": dstatus, "status_trigger": "CONFIG_UPDATE_STARTED",
                                         "message": app.failed or "",
                                         "replicas": [{"replica_id": f"{name}#1", "state": "RUNNING"}]}}}

    def applications(self) -> dict[str, Any]:
        with self.lock:
            self._tick()
            return {"controller_info": {"node_id": "fake"}, "proxy_location": "HeadOnly",
                    "http_options": {"host": "127.0.0.1", "port": self.serve.server_address[1]},
                    "grpc_options": {}, "proxies": {}, "target_capacity": None,
                    "applications": {n: self._status(n, a) for n, a in sorted(self.state.apps.items())}}

    def put(self, body: Any) -> tuple[int, str]:
        if not isinstance(body, dict) or not isinstance(body.get("applications"), list):
            return 400, "applications Field required"
        apps = body["applications"]
        if any(not isinstance(a, dict) or not a.get("name") or not a.get("import_path") for a in apps):
            return 400, "every application needs a name and an import_path"
        prefixes = [a.get("route_prefix", "/") for a in apps if a.get("route_prefix", "/") is not None]
        if len(prefixes) != len(set(prefixes)):
            return 400, "Found duplicate route prefixes"
        with self.lock:
            self._tick()
            now, wall = time.monotonic(), time.time()
            wanted = {a["name"]: copy.deepcopy(a) for a in apps}
            for config in wanted.values():
                config.setdefault("route_prefix", "/")
            for name, app in list(self.state.apps.items()):
                if name not in wanted and app.deleting_until is None:
                    app.deleting_until = now + self.deleting
            for name, config in wanted.items():
                old = self.state.apps.get(name)
                if old is not None and old.deleting_until is None and old.config == config:
                    continue
                if old is not None and old.deleting_until is None:
                    same_but_route = ({k: v for k, v in old.config.items() if k != "route_prefix"}
                                      == {k: v for k, v in config.items() if k != "route_prefix"})
                    old.config, old.deployed_at, old.failed = config, wall, None
                    if not same_but_route:
                        old.ready_at = now + self.startup
                    continue
                self.state.apps[name] = FakeApp(config, wall, now + self.startup)
            self.history.append(self.configs())
        return 200, "OK"

    # -- HTTP --------------------------------------------------------------------------------
    def _dashboard(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        if method == "GET" and path == "/api/version":
            return 200, {"version": "4", "ray_version": "2.60.0", "ray_commit": "fake", "session_name": "fake"}
        if path == APPLICATIONS and method == "GET":
            return 200, self.applications()
        if path == APPLICATIONS and method == "PUT":
            try:
                parsed = json.loads(body or b"null")
            except ValueError:
                return 400, "not JSON"
            return self.put(parsed)
        if path.startswith("/api/packages/"):
            with self.lock:
                if method == "GET":
                    return (200, "found") if path in self.state.packages else (404, "not found")
                if method == "PUT":
                    self.state.packages[path] = body
                    return 200, {"result": True, "msg": "uploaded", "data": {}}
        return 404, "not found"

    def _serve(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        if path == "/-/routes":
            return 200, self.routes()
        return self.answer(path)

    def _handler(self, route: Any) -> type[BaseHTTPRequestHandler]:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, answer = route(self.command, self.path.split("?")[0], body)
                payload = (json.dumps(answer) if not isinstance(answer, str) else answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json" if not isinstance(answer, str) else "text/plain")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_PUT = do_POST = do_DELETE = _any

        return Handler

    def __enter__(self) -> FakeServe:
        for server in (self.dashboard, self.serve):
            threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        for server in (self.dashboard, self.serve):
            server.shutdown()
            server.server_close()
