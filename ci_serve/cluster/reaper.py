"""A watchdog beside each temporary head: when the process that owns the head dies without cleaning
up (SIGKILL, an OOM kill, a crashed interpreter), it kills the head's whole session and removes its
temp folder, so no Ray process outlives its owner by more than a moment.

Started as ``python -m ci_serve.cluster.reaper OWNER_PID SESSION_ID TEMP_DIR``; stdlib only, so it starts
in a few tens of milliseconds. It leaves by itself once the head is gone.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import sys
import time
from collections.abc import Callable


def session_pids(sid: int) -> list[int]:
    """Every live (non-zombie) process of session ``sid``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            if os.getsid(pid) == sid and not is_zombie(pid):
                found.append(pid)
        except OSError:
            continue
    return found


def is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
        return stat[stat.rindex(b")") + 2:stat.rindex(b")") + 3] == b"Z"
    except (OSError, ValueError):
        return True


def kill_session(sid: int, timeout: float = 10.0, reap: Callable[[], object] | None = None) -> None:
    """SIGKILL every process of session ``sid`` until none is left (or ``timeout``).

    Ray's workers get process groups of their own but stay in the session of ``ray start``, so the
    session, not the process group, is what holds all of a head. ``reap`` is called between rounds
    (the owner waits for its direct child there, so it does not linger as a zombie)."""
    deadline = time.monotonic() + timeout
    while True:
        pids = session_pids(sid)
        if not pids or time.monotonic() > deadline:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        if reap is not None:
            reap()
        time.sleep(0.05)


def watch(owner: int, sid: int, temp_dir: str, interval: float = 0.5) -> None:
    try:
        owner_fd = os.pidfd_open(owner)
    except OSError:  # the owner is already gone
        owner_fd = None
    while True:
        if owner_fd is None:
            owner_gone = True
        else:
            ready, _, _ = select.select([owner_fd], [], [], interval)
            owner_gone = bool(ready)
        if owner_gone:
            kill_session(sid)
            shutil.rmtree(temp_dir, ignore_errors=True)
            return
        if not session_pids(sid):  # the owner stopped the head itself
            return


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is the owner's to handle, not ours
    owner, sid, temp_dir = int(argv[0]), int(argv[1]), argv[2]
    watch(owner, sid, temp_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
