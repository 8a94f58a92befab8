"""TLS to the dashboard (issue 6): certificate verification is on by default for https addresses;
``--ca-cert FILE`` adds a CA, ``--insecure`` turns verification off with a warning, and an untrusted
certificate without either is exit 2 with a message that says what to pass.

Ray's dashboard does not serve TLS itself (clusters put it behind a TLS proxy), so the test does the
same: a small TLS-terminating proxy with a certificate made here by ``openssl`` in front of a real head.
"""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ci_serve_cmd
from tests.support.dashboard_proxy import DashboardProxy

pytestmark = pytest.mark.ray


def make_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A private CA and a server certificate for 127.0.0.1 signed by it: ``(ca, cert, key)``."""
    ca_key, ca, key, csr, cert = (folder / n for n in ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem"))
    ext = folder / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca),
            "-days", "2", "-subj", "/CN=ci-serve test CA")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1")
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
            "-out", str(cert), "-days", "2", "-extfile", str(ext))
    return ca, cert, key


@pytest.fixture(scope="module")
def tls_dashboard(ray_head, tmp_path_factory):
    """``(https address, CA file, head)``: a TLS proxy to the module's head."""
    folder = tmp_path_factory.mktemp("tls")
    ca, cert, key = make_certificates(folder)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    proxy = DashboardProxy(ray_head.dashboard_url, fail_ratio=0.0)
    proxy.server.socket = context.wrap_socket(proxy.server.socket, server_side=True)
    with proxy:
        yield proxy.url.replace("http://", "https://"), ca, ray_head


def status(address: str, head, cli_env: dict, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(ci_serve_cmd("status", "--address", address, *extra),
                          env=dict(cli_env, RAY_AUTH_TOKEN=head.token), capture_output=True, text=True, timeout=180)


def test_untrusted_certificate_is_exit_2_saying_what_to_pass(tls_dashboard, cli_env):
    address, _, head = tls_dashboard
    proc = status(address, head, cli_env)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"TLS verification of {address} failed" in proc.stderr
    assert "--ca-cert FILE" in proc.stderr and "--insecure" in proc.stderr
    assert head.token not in proc.stderr + proc.stdout


def test_ca_cert_makes_it_work(tls_dashboard, cli_env):
    address, ca, head = tls_dashboard
    proc = status(address, head, cli_env, "--ca-cert", str(ca))
    assert proc.returncode == 0, proc.stderr
    assert "NOT verified" not in proc.stderr


def test_ca_bundle_from_the_environment_is_not_trusted_silently(tls_dashboard, cli_env):
    """The session ignores REQUESTS_CA_BUNDLE/proxies (trust_env off): the CA is given explicitly or not at all."""
    address, ca, head = tls_dashboard
    proc = status(address, head, dict(cli_env, REQUESTS_CA_BUNDLE=str(ca), CURL_CA_BUNDLE=str(ca)))
    assert proc.returncode == 2, proc.stderr


def test_insecure_works_with_a_warning(tls_dashboard, cli_env):
    address, _, head = tls_dashboard
    proc = status(address, head, cli_env, "--insecure")
    assert proc.returncode == 0, proc.stderr
    assert f"TLS certificate of {address} is NOT verified (--insecure)" in proc.stderr
    assert head.token not in proc.stderr + proc.stdout


@pytest.mark.parametrize("content", [None, "not a certificate\n"], ids=["missing", "junk"])
def test_a_bad_ca_file_is_exit_2(tls_dashboard, cli_env, tmp_path, content):
    address, _, head = tls_dashboard
    ca = tmp_path / "ca.pem"
    if content is not None:
        ca.write_text(content)
    proc = status(address, head, cli_env, "--ca-cert", str(ca))
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and f"--ca-cert {ca}" in proc.stderr
