"""The dashboard client: against a real head for what Ray does, a fake server for what it will not do."""

from __future__ import annotations

import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ci_serve import console
from ci_serve.cluster.address import Target
from ci_serve.cluster.dashboard import (
    AnswerLost,
    DashboardClient,
    DashboardUnavailable,
    NotSent,
    package_path,
    parse_version,
)
from ci_serve.errors import CredentialsError, DashboardError
from tests.support.dashboard_proxy import DashboardProxy, dead_address


@pytest.mark.parametrize("text, expected", [
    ("2.60.0", (2, 60, 0)), ("2.9.3", (2, 9, 3)), ("3.0.0rc1", (3, 0, 0)), ("2.10.0.dev0", (2, 10, 0)),
    ("nightly", ()), ("", ()),
])
def test_parse_version(text, expected):
    assert parse_version(text) == expected


def test_package_path():
    assert package_path("gcs://_ray_pkg_ab12.zip") == "/api/packages/gcs/_ray_pkg_ab12.zip"


class _Fake(BaseHTTPRequestHandler):
    answers: dict[str, tuple[int, str]] = {}

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        status, body = self.answers.get(self.path, (404, "nope"))
        payload = body.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture
def fake_server():
    servers = []

    def start(answers: dict[str, tuple[int, str]]) -> str:
        handler = type("H", (_Fake,), {"answers": answers})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_not_a_ray_dashboard(fake_server):
    url = fake_server({"/api/version": (200, "<html>hello</html>")})
    with pytest.raises(DashboardError, match="not a Ray dashboard"):
        DashboardClient(Target(url, None)).get_version()


def test_old_ray_refused(fake_server):
    url = fake_server({"/api/version": (200, json.dumps({"ray_version": "2.8.1"}))})
    with pytest.raises(DashboardError, match="Ray 2.8.1.*2.9 or newer") as info:
        DashboardClient(Target(url, None)).get_version()
    assert info.value.exit_code == 2


def test_503_retried_then_reported(fake_server):
    url = fake_server({"/api/version": (503, "busy")})
    client = DashboardClient(Target(url, None), retry_budget=2.0)
    with pytest.raises(DashboardUnavailable, match="HTTP 503"):
        client.get_version()
    assert client.counts["GET /api/version"] >= 3


def test_dead_address_reported_in_time_naming_it():
    address = dead_address()
    t0 = time.monotonic()
    with pytest.raises(DashboardUnavailable) as info:
        DashboardClient(Target(address, None), retry_budget=3.0).get_applications()
    print(f"a dead address was reported after {time.monotonic() - t0:.1f} s (retry budget 3 s)")
    assert address in info.value.message and "connection refused" in info.value.message
    assert info.value.exit_code == 2


def test_a_serve_put_whose_answer_is_lost_is_sent_once_and_never_resent(tmp_path):
    """Ray applies a PUT before it answers it: a dropped answer is AnswerLost (exit 3 if nobody re-reads),
    never a blind resend of a body built from an old read; nor is a refused connection (never sent): it is
    NotSent, and the caller writes again from a fresh read (it used to resend the same body for 40 s)."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    received: list[bytes] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            received.append(conn.recv(65536))
            conn.close()  # the request arrived; its answer never leaves

    threading.Thread(target=serve, daemon=True).start()
    client = DashboardClient(Target(f"http://127.0.0.1:{listener.getsockname()[1]}", None), retry_budget=5.0)
    try:
        with pytest.raises(AnswerLost, match="may have been applied") as info:
            client.put_applications({"applications": []})
    finally:
        listener.close()
    assert info.value.exit_code == 3
    assert client.counts["PUT /api/serve/applications/"] == 1 and len(received) == 1
    dead = DashboardClient(Target(dead_address(), None), retry_budget=1.5)
    with pytest.raises(NotSent, match="never reached the dashboard"):
        dead.put_applications({"applications": []})
    assert dead.counts["PUT /api/serve/applications/"] == 1
    with pytest.raises(DashboardUnavailable):  # a read is retried, as before
        dead.get_applications()


@pytest.fixture
def cancelled(monkeypatch):
    """A cancel was asked for, with ``cleanup`` seconds to clean up (the runner's SIGKILL comes 10 s after)."""
    from ci_serve import cancel
    from ci_serve.errors import Cancelled

    def ask(cleanup: float) -> None:
        monkeypatch.setattr(cancel, "CLEANUP_S", cleanup)
        cancel.request(Cancelled("cancelled by SIGINT"))

    yield ask
    cancel.clear()


def test_after_a_cancel_whose_cleanup_time_is_spent_nothing_is_sent(fake_server, cancelled):
    """Once the cleanup's time is spent, a write is not sent (NotSent: not applied, for certain) and a read
    fails at once: the run ends with its report written rather than being killed mid-request."""
    from ci_serve import cancel

    url = fake_server({"/api/version": (200, json.dumps({"ray_version": "2.60.0"}))})
    client = DashboardClient(Target(url, None))
    assert cancel.time_left(40.0) == 40.0  # no cancel: every wait as asked
    cancelled(0.0)
    assert cancel.time_left(40.0) == 0.0
    with pytest.raises(NotSent, match="clean up is spent") as info:
        client.put_applications({"applications": []})
    assert "10 s after SIGINT" in (info.value.hint or "")
    with pytest.raises(DashboardUnavailable, match="was not sent"):
        client.get_version()
    assert client.counts == {}


def test_after_a_cancel_a_dashboard_that_never_answers_is_given_up_on_at_the_cleanups_end(cancelled):
    """A request that would wait its full timeout (40 s) ends when the cleanup's time does."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # accepts (the kernel does), never answers
    client = DashboardClient(Target(f"http://127.0.0.1:{listener.getsockname()[1]}", None), retry_budget=60.0)
    cancelled(1.0)
    try:
        with pytest.raises(DashboardUnavailable):
            client.get_applications()
    finally:
        listener.close()
    assert client.counts["GET /api/serve/applications/"] == 1  # the timeout was the cleanup's, not a retry's


def test_token_over_plain_http_to_remote_warns():
    out = io.StringIO()
    console._stream = out
    try:
        DashboardClient(Target("http://10.1.2.3:8265", "s3cret-token"))
        DashboardClient(Target("http://127.0.0.1:8265", "s3cret-token"))
    finally:
        console._stream = None
    text = out.getvalue()
    assert text.count("plain http") == 1 and "s3cret-token" not in text


@pytest.mark.ray
class TestRealHead:
    def test_version_and_empty_applications(self, ray_head):
        client = DashboardClient(Target(ray_head.dashboard_url, ray_head.token))
        assert parse_version(client.get_version()) >= (2, 9)
        apps = client.get_applications()
        assert isinstance(apps["applications"], dict)

    def test_missing_token_is_401_credentials_error(self, ray_head):
        with pytest.raises(CredentialsError, match="requires a token and none was found") as info:
            DashboardClient(Target(ray_head.dashboard_url, None)).get_version()
        assert info.value.exit_code == 2 and "RAY_AUTH_TOKEN" in info.value.hint

    def test_wrong_token_is_403_credentials_error(self, ray_head):
        with pytest.raises(CredentialsError, match="refused the token from RAY_AUTH_TOKEN") as info:
            DashboardClient(Target(ray_head.dashboard_url, "wrong-token", "RAY_AUTH_TOKEN")).get_version()
        assert "wrong-token" not in info.value.message + (info.value.hint or "")

    def test_package_round_trip(self, ray_head):
        client = DashboardClient(Target(ray_head.dashboard_url, ray_head.token))
        uri = "gcs://_ray_pkg_0123456789abcdef0123456789abcdef.zip"
        assert not client.package_exists(uri)
        import zipfile
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("hello.txt", "hi")
        client.upload_package(uri, buf.getvalue())
        assert client.package_exists(uri)

    def test_flaky_proxy_reads_survive(self, ray_head):
        with DashboardProxy(ray_head.dashboard_url, fail_ratio=0.3) as proxy:
            client = DashboardClient(Target(proxy.url, ray_head.token), min_interval=0.0)
            for _ in range(10):
                assert client.get_version()
            assert proxy.counts["503"] + proxy.counts["drop"] > 0


@pytest.fixture
def https_server(tmp_path):
    """An https server with a self-signed certificate for 127.0.0.1, answering /api/version like Ray."""
    import ssl
    import subprocess
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    handler = type("H", (_Fake,), {"answers": {"/api/version": (200, json.dumps({"ray_version": "2.60.0"}))}})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"https://127.0.0.1:{server.server_address[1]}", str(cert)
    server.shutdown()
    server.server_close()


def test_tls_verified_by_default_ca_cert_and_insecure(https_server):
    url, cert = https_server
    with pytest.raises(DashboardError, match="TLS verification") as info:
        DashboardClient(Target(url, "tok-secret")).get_version()
    assert "--ca-cert" in info.value.hint and "tok-secret" not in info.value.message
    assert DashboardClient(Target(url, None), ca_cert=cert).get_version() == "2.60.0"
    out = io.StringIO()
    console._stream = out
    try:
        assert DashboardClient(Target(url, None), insecure=True).get_version() == "2.60.0"
    finally:
        console._stream = None
    assert "NOT verified" in out.getvalue()
