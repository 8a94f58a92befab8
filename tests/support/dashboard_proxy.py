"""A reverse proxy in front of a real dashboard: it records every request, and misbehaves on purpose.

The benchmarks put it between ci-serve and the dashboard to count writes (a no-op deploy must send no
PUT) and to measure a gate's request rate. A real dashboard will not answer 503 or drop a connection
on demand; with ``fail_ratio`` above 0 this proxy does, for that share of requests. Everything else is
forwarded untouched (headers included, so token auth still applies end to end). Faults are drawn from
a seeded random generator so a failing run can be replayed.
"""

from __future__ import annotations

import random
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests


class DashboardProxy:
    """``with DashboardProxy(upstream, fail_ratio=0.3) as proxy: use proxy.url``; ``proxy.entries("PUT")``.

    ``modes`` picks what a fault is: ``"503"`` answers Service Unavailable without forwarding;
    ``"drop"`` closes the connection without an answer (before forwarding, so a dropped write never
    reached the cluster); ``"drop-after"`` forwards the request and then drops the answer, the
    "unclear write" case a client must resolve by re-reading.

    ``hold(method, prefix)`` makes the next matching request wait before it is forwarded until
    ``release()``: a test can then change the cluster at a known point of a run, not after a guessed
    sleep. ``held`` is set when that request has arrived.
    """

    def __init__(self, upstream: str, *, fail_ratio: float = 0.0, modes: tuple[str, ...] = ("503", "drop"),
                 seed: int = 1234, paths: tuple[str, ...] = ("/api/",)):
        self.upstream = upstream.rstrip("/")
        self.fail_ratio = fail_ratio
        self.modes = modes
        self.paths = paths
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.counts = {"forwarded": 0, "503": 0, "drop": 0, "drop-after": 0}
        self.enabled = True
        #: every request received: (monotonic time, method, path)
        self.log: list[tuple[float, str, str]] = []
        #: every fault injected: (method, path, mode), so a test can count e.g. the PUTs that were faulted
        self.faults: list[tuple[str, str, str]] = []
        self._hold: tuple[str, str] | None = None
        self.held = threading.Event()
        self._released = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def clear(self) -> None:
        with self.lock:
            self.log.clear()

    def entries(self, method: str | None = None, since: float = 0.0, until: float = float("inf"),
                prefix: str = "/api/") -> list[tuple[float, str, str]]:
        with self.lock:
            return [e for e in self.log if since <= e[0] <= until and e[2].startswith(prefix)
                    and (method is None or e[1] == method)]

    def hold(self, method: str, prefix: str) -> None:
        """Hold the next ``method`` request whose path starts with ``prefix`` until :meth:`release`."""
        self.held.clear()
        self._released.clear()
        self._hold = (method, prefix)

    def release(self) -> None:
        self._hold = None
        self._released.set()

    def _wait_if_held(self, method: str, path: str) -> None:
        rule = self._hold
        if rule is not None and method == rule[0] and path.startswith(rule[1]):
            self.held.set()
            self._released.wait(timeout=600)

    def _fault(self, path: str) -> str | None:
        if not self.enabled or not path.startswith(self.paths):
            return None
        with self.lock:
            if self.rng.random() < self.fail_ratio:
                return self.rng.choice(self.modes)
        return None

    def _count(self, key: str, method: str = "", path: str = "") -> None:
        with self.lock:
            self.counts[key] += 1
            if key != "forwarded":
                self.faults.append((method, path, key))

    def faulted(self, method: str, prefix: str = "/api/") -> list[tuple[str, str, str]]:
        """The faults injected into ``method`` requests whose path starts with ``prefix``."""
        with self.lock:
            return [f for f in self.faults if f[0] == method and f[1].startswith(prefix)]

    def _handler(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # keep test output quiet
                pass

            def _drop(self) -> None:
                drop_connection(self)

            def _proxy(self) -> None:
                with proxy.lock:
                    proxy.log.append((time.monotonic(), self.command, self.path))
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                proxy._wait_if_held(self.command, self.path)
                fault = proxy._fault(self.path)
                if fault == "503":
                    proxy._count("503", self.command, self.path)
                    payload = b"injected 503"
                    self.send_response(503)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                if fault == "drop":
                    proxy._count("drop", self.command, self.path)
                    self._drop()
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                try:
                    resp = requests.request(self.command, proxy.upstream + self.path, headers=headers, data=body,
                                            timeout=120, allow_redirects=False)
                except requests.RequestException:
                    self.send_response(502)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if fault == "drop-after":
                    proxy._count("drop-after", self.command, self.path)
                    self._drop()
                    return
                proxy._count("forwarded")
                try:
                    self.send_response(resp.status_code)
                    for key, value in resp.headers.items():
                        if key.lower() not in ("content-length", "transfer-encoding", "connection",
                                               "content-encoding"):
                            self.send_header(key, value)
                    self.send_header("Content-Length", str(len(resp.content)))
                    self.end_headers()
                    self.wfile.write(resp.content)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting (a held request): the write was forwarded all the same

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _proxy

        return Handler

    def __enter__(self) -> DashboardProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()


def drop_connection(handler: BaseHTTPRequestHandler) -> None:
    """Close the client's connection without an answer (the client sees the connection reset)."""
    try:
        handler.connection.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    handler.close_connection = True


def dead_address() -> str:
    """An http address on loopback where nothing listens (the port was free a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
