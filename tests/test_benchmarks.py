"""The benchmarks are not run in the suite (their numbers are never asserted); these check that they
load, that run_all renders its table from results, and that the counting proxy counts."""

from __future__ import annotations

import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from benchmarks import run_all
from tests.conftest import REPO
from tests.support.dashboard_proxy import DashboardProxy


@pytest.mark.parametrize("module", ["run_all", "bench_deploy", "bench_gate", "bench_image", "bench_env",
                                    "bench_action", "bench_requirements"])
def test_help(module, cli_env):
    proc = subprocess.run([sys.executable, "-m", f"benchmarks.{module}", "--help"], env=cli_env, cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "usage" in proc.stdout


RESULTS = {
    "errors": {"smoke": "serve run exited with 1"},
    "validate": {"name": "validate --no-import, 200 applications", "median_s": 0.61, "runs": [0.6, 0.61, 0.7],
                 "target": "< 1 s", "met": True},
    "deploy": {"first_deploy_s": 12.0, "noop": [{"total_s": 2.5, "in_process_s": 1.8, "result": "unchanged", "puts": 0,
                                                 "gets": 3, "last_deployed_time_moved": False}],
               "noop_median_s": 2.5, "noop_writes": 0, "noop_met": False,
               "blue_green": [{"total_s": 12.8, "switch_latency_s": 0.34, "live_polls": 200, "live_poll_errors": 0}],
               "switch_latency_median_s": 0.34, "switch_latency_max_s": 0.34, "switch_met": True,
               "blue_green_split_s": {"upload": 1.3, "gate": 6.2, "total": 12.8}},
    "image": {"name": "action image x:test", "size_mib": None, "met": None, "note": "not measured: no Docker"},
}
META = {"quick": True, "date": "2026-01-01 00:00 UTC", "minutes": 1.0, "machine": "2 CPUs", "load_start": "9.0",
        "load_end": "9.5", "loaded": True}


def test_render_table_marks_each_target():
    text = run_all.render(RESULTS, META)
    rows = {line.split(" | ")[0].strip("| "): line for line in text.splitlines() if line.startswith("| ")}
    assert rows["unchanged deploy < 2 s, no write"].endswith("| **no** |")
    assert rows["validate --no-import, 200 apps < 1 s"].endswith("| yes |")
    assert rows["action image < 700 MiB"].endswith("| not measured |")
    assert rows["smoke <= 0.6x `serve run` + curl, to its last checked answer"].endswith("| not measured |")
    assert "serve run exited with 1" in text and "was loaded" in text and "--quick" in text


def test_dashboard_proxy_forwards_and_records_every_request():
    class Echo(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_PUT(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_PUT

    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with DashboardProxy(f"http://127.0.0.1:{server.server_address[1]}") as proxy:
            assert requests.put(proxy.url + "/api/x", data=b"abc", timeout=10).content == b"abc"
            requests.get(proxy.url + "/api/y", data=b"", timeout=10)
            assert [e[1:] for e in proxy.entries()] == [("PUT", "/api/x"), ("GET", "/api/y")]
            assert len(proxy.entries("PUT")) == 1
    finally:
        server.shutdown()
