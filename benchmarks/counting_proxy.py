"""A reverse proxy in front of a real dashboard that records every request (time, method, path).

The benchmarks put it between ci-serve and the dashboard to count writes (a no-op deploy must send
no PUT) and to measure the request rate of a gate. It forwards everything untouched, headers
included, so token auth applies end to end.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding", "host"}


class CountingProxy:
    """``with CountingProxy(upstream) as proxy: ...proxy.url...; proxy.log`` -> [(monotonic, method, path)]."""

    def __init__(self, upstream: str):
        self.upstream = upstream.rstrip("/")
        self.log: list[tuple[float, str, str]] = []
        self.lock = threading.Lock()
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

    def _handler(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _forward(self) -> None:
                with proxy.lock:
                    proxy.log.append((time.monotonic(), self.command, self.path))
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
                try:
                    resp = requests.request(self.command, proxy.upstream + self.path, data=body, headers=headers,
                                            allow_redirects=False, timeout=120)
                except requests.RequestException:
                    self.send_response(502)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                content = resp.content
                self.send_response(resp.status_code)
                for k, v in resp.headers.items():
                    if k.lower() not in HOP:
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

        return Handler

    def __enter__(self) -> CountingProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
