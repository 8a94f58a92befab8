"""The dashboard proxy itself: it must fault about as often as asked and forward the rest untouched."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

from tests.support.dashboard_proxy import DashboardProxy


class _Echo(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        body = self.headers.get("Authorization", "").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_proxy_faults_and_forwards():
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    try:
        with DashboardProxy(f"http://127.0.0.1:{upstream.server_address[1]}", fail_ratio=0.3) as proxy:
            ok = faults = 0
            for _ in range(200):
                try:
                    resp = requests.get(proxy.url + "/api/version", headers={"Authorization": "Bearer t"}, timeout=5)
                except requests.ConnectionError:
                    faults += 1
                    continue
                if resp.status_code == 503:
                    faults += 1
                else:
                    assert resp.status_code == 200 and resp.text == "Bearer t"
                    ok += 1
            assert 30 <= faults <= 90, faults
            assert ok == proxy.counts["forwarded"]
    finally:
        upstream.shutdown()
        upstream.server_close()


def test_proxy_records_each_fault_with_its_method():
    """Each faulted request is recorded (method, path, mode): a test can count the PUTs that were faulted."""
    with DashboardProxy("http://127.0.0.1:9", fail_ratio=1.0, modes=("503",)) as proxy:
        for _ in range(3):
            assert requests.put(proxy.url + "/api/serve/applications/", json={}, timeout=5).status_code == 503
        assert requests.get(proxy.url + "/api/version", timeout=5).status_code == 503
    assert proxy.faulted("PUT") == [("PUT", "/api/serve/applications/", "503")] * 3
    assert proxy.faulted("GET") == [("GET", "/api/version", "503")]
    assert proxy.counts["503"] == 4
