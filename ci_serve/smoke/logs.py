"""The log lines that explain a failed application, from the temporary head's session folder.

Serve writes one file per replica (``logs/serve/replica_<app>_<deployment>_<id>.log``) and one for
the controller (``logs/serve/controller_<pid>.log``). For a failed deployment the newest replica log
of that deployment says why (the constructor's traceback); for an application that failed before any
replica started (import error, bad arguments) the controller's log does. Only the tail is shown, from
the last traceback when there is one, with secrets masked.
"""

from __future__ import annotations

from pathlib import Path

from ci_serve import secrets

TAIL_LINES = 25


def _newest(paths: list[Path]) -> Path | None:
    live = []
    for path in paths:
        try:
            live.append((path.stat().st_mtime, path))
        except OSError:
            continue
    return max(live)[1] if live else None


def find_log(logs_dir: Path, app: str | None, deployment: str | None) -> Path | None:
    serve_dir = Path(logs_dir) / "serve"
    if not serve_dir.is_dir():
        return None
    if app and deployment:
        found = _newest(list(serve_dir.glob(f"replica_{app}_{deployment}_*.log")))
        if found and _has_error(found):
            return found
    return _newest(list(serve_dir.glob("controller_*.log")))


def tail(path: Path, lines: int = TAIL_LINES) -> str:
    """The last ``lines`` lines, starting at the last traceback if it is within reach."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    all_lines = text.rstrip().splitlines()
    start = max(0, len(all_lines) - lines)
    for i in range(len(all_lines) - 1, max(-1, len(all_lines) - 4 * lines), -1):
        if "Traceback (most recent call last)" in all_lines[i]:
            start = i
            break
    chosen = all_lines[start:start + 2 * lines] if start < len(all_lines) - lines else all_lines[start:]
    if len(chosen) > lines:
        chosen = chosen[:3] + ["..."] + chosen[-(lines - 4):]
    return secrets.mask("\n".join(chosen))


def failure_log(logs_dir: Path, app: str | None, deployment: str | None) -> str | None:
    """``"<file>:\\n<tail>"`` for the most relevant log, or None when there is none yet."""
    path = find_log(logs_dir, app, deployment)
    if path is None:
        return None
    text = tail(path)
    return f"--- {path.name} (last lines) ---\n{text}" if text else None


def _has_error(path: Path) -> bool:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return False
    return "Traceback" in text or " ERROR " in text
