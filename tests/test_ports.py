"""The ports a temporary head is given: free, never handed out twice, and out of the kernel's ephemeral range.

Serve binds its HTTP port at the first deploy, long after the port was picked. A port from the ephemeral
range can meanwhile go to any process that binds port 0: Ray 2.9's dashboard gRPC server did, in CI, and
Serve's proxy then could not start (HTTP 500 on the first PUT; the Serve port answered in HTTP/2)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from ci_serve.cluster import head
from ci_serve.cluster.head import free_port


def test_ports_are_free_distinct_and_out_of_the_ephemeral_range():
    quiet = head._quiet_ports()
    if quiet is None:
        pytest.skip("no port range outside the kernel's ephemeral one on this machine")
    low, high = (int(x) for x in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[:2])
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    assert all(p in quiet and not low <= p <= high for p in ports)
    assert not any(p < 20000 or 23000 <= p < 24000 for p in ports)  # nor Ray's worker or Ray Client server ports
    for port in ports[:20]:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))  # free when handed out


def test_a_taken_port_is_never_handed_out(monkeypatch):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        monkeypatch.setattr(head, "_quiet_ports", lambda: range(port, port + 1))
        other = free_port()  # the only quiet port is taken: one from the kernel instead
    assert other != port


def test_without_a_quiet_range_the_kernel_picks(monkeypatch, tmp_path):
    narrow = tmp_path / "ip_local_port_range"
    narrow.write_text("1024\t65535\n")  # every port is ephemeral: nothing to stay out of
    monkeypatch.setattr(head, "_EPHEMERAL", narrow)
    assert head._quiet_ports() is None
    assert 0 < free_port() < 65536
