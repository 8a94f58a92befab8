"""The temporary head: private, token-protected, and gone without a trace after stop()."""

from __future__ import annotations

import pytest
import requests

from ci_serve.cluster.head import TemporaryHead

pytestmark = pytest.mark.ray


def test_head_is_private_token_protected_and_leaves_nothing(make_head):
    first = make_head()
    second = make_head()  # two heads on one machine must not collide
    for head in (first, second):
        assert requests.get(f"{head.dashboard_url}/api/version", timeout=5).status_code == 401
        wrong = {"Authorization": "Bearer not-the-token"}
        assert requests.get(f"{head.dashboard_url}/api/version", headers=wrong, timeout=5).status_code == 403
        resp = requests.get(f"{head.dashboard_url}/api/version", headers=head.auth_headers(), timeout=5)
        assert resp.status_code == 200 and resp.json()["ray_version"]
    assert first.dashboard_port != second.dashboard_port and first.token != second.token
    assert first.pids()
    first.stop()
    assert first.pids() == []
    assert not first.temp_dir.exists()
    assert second.pids(), "stopping one head must not touch the other"


def test_head_without_dashboard_starts():
    with TemporaryHead(dashboard=False) as head:
        assert head.pids()
    assert head.pids() == []
