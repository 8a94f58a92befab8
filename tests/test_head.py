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


OWNER = """
import sys, time
from ci_serve.cluster.head import TemporaryHead
head = TemporaryHead(dashboard=False).start()
print(head.sid, head.temp_dir, flush=True)
time.sleep(600)
"""


def test_head_is_removed_when_its_owner_is_sigkilled(tmp_path):
    """A SIGKILLed owner runs no `finally`: the reaper must remove the head instead."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from ci_serve.cluster.reaper import session_pids
    from tests.conftest import REPO

    owner = subprocess.Popen([sys.executable, "-c", OWNER], stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        sid_text, temp_dir = owner.stdout.readline().split()
        sid = int(sid_text)
        assert session_pids(sid)
        os.kill(owner.pid, signal.SIGKILL)
        owner.wait()
        deadline = time.monotonic() + 30
        while session_pids(sid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert session_pids(sid) == [], "the head outlived its SIGKILLed owner"
        while Path(temp_dir).exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not Path(temp_dir).exists()
    finally:
        if owner.poll() is None:
            owner.kill()
