"""Files the job's other steps can read.

A container action runs as root; the job's later steps (``actions/upload-artifact``, test reporters)
run as the runner user (uid 1001 on GitHub-hosted runners). Everything the action wrote into the
workspace gets read permission for all (and search permission for folders), so those steps can read
it. Only what changed during this run is touched; nothing else of the checkout.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


def share_written_files(workspace: Path, since: float) -> int:
    """Add ``a+r`` (``a+rx`` for folders) to what under ``workspace`` changed at or after ``since``
    (a ``time.time()``); ``.git`` is left alone. Returns how many entries were changed."""
    changed = 0
    for root, dirs, files in os.walk(workspace):
        if ".git" in dirs:
            dirs.remove(".git")
        for name, wanted in [(d, 0o555) for d in dirs] + [(f, 0o444) for f in files]:
            path = os.path.join(root, name)
            try:
                st = os.lstat(path)
                if stat.S_ISLNK(st.st_mode) or max(st.st_mtime, st.st_ctime) < since - 1:
                    continue
                if st.st_mode & wanted != wanted:
                    os.chmod(path, stat.S_IMODE(st.st_mode) | wanted)
                    changed += 1
            except OSError:
                continue  # vanished, or not ours to change: nothing to share
    return changed
