"""Where the dashboard is and which token to send, by the rules Ray's own clients follow.

Address: ``--address/-a``, else ``RAY_DASHBOARD_ADDRESS``, else ``RAY_ADDRESS`` when it is an http(s)
URL, else ``http://127.0.0.1:8265``.
Token: ``RAY_AUTH_TOKEN``, then the file named by ``RAY_AUTH_TOKEN_PATH``, then ``~/.ray/auth_token``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ci_serve import secrets
from ci_serve.errors import CredentialsError, InputError

DEFAULT_ADDRESS = "http://127.0.0.1:8265"


@dataclass(frozen=True)
class Target:
    """A dashboard to talk to. ``token`` is never printed (its repr hides it)."""

    address: str
    token: str | None
    token_source: str | None = None

    def __repr__(self) -> str:
        return f"Target(address={self.address!r}, token={'***' if self.token else None})"


def resolve_address(flag: str | None, env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    for candidate in (flag, env.get("RAY_DASHBOARD_ADDRESS")):
        if candidate and candidate.strip():
            secrets.register_url(candidate.strip())  # user:password@ in an address is a credential
            return normalize_address(candidate.strip())
    ray_address = (env.get("RAY_ADDRESS") or "").strip()
    if ray_address.startswith(("http://", "https://")):
        secrets.register_url(ray_address)
        return normalize_address(ray_address)
    return DEFAULT_ADDRESS


def normalize_address(address: str) -> str:
    """``host:port`` gets ``http://``; a trailing slash goes. Anything else that is not a URL is an error."""
    if "://" not in address:
        address = "http://" + address
    parts = urlsplit(address)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(
            f"dashboard address {address!r} is not an http(s) URL",
            "pass the Ray dashboard address, e.g. --address http://head-node:8265",
        )
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise InputError(f"dashboard address {address!r} has an invalid port",
                         "use a number between 1 and 65535, e.g. :8265") from exc
    return address.rstrip("/")


def resolve_token(env: Mapping[str, str] | None = None, home: Path | None = None) -> tuple[str | None, str | None]:
    """Return ``(token, where it came from)``; registers the token as a secret."""
    env = os.environ if env is None else env
    token = (env.get("RAY_AUTH_TOKEN") or "").strip()
    if token:
        secrets.register(token)
        return token, "RAY_AUTH_TOKEN"
    path_value = (env.get("RAY_AUTH_TOKEN_PATH") or "").strip()
    if path_value:
        path = Path(path_value).expanduser()
        try:
            token = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise CredentialsError(
                f"RAY_AUTH_TOKEN_PATH names {path}, which cannot be read ({exc.strerror})",
                "point RAY_AUTH_TOKEN_PATH at the cluster's token file, or set RAY_AUTH_TOKEN",
            ) from None
        secrets.register(token)
        return (token or None), "RAY_AUTH_TOKEN_PATH"
    default = (home or Path.home()) / ".ray" / "auth_token"
    try:
        token = default.read_text(encoding="utf-8").strip()
    except OSError:
        return None, None
    secrets.register(token)
    return (token or None), str(default)


def resolve_target(address_flag: str | None, env: Mapping[str, str] | None = None) -> Target:
    token, source = resolve_token(env)
    return Target(address=resolve_address(address_flag, env), token=token, token_source=source)


def is_loopback(address: str) -> bool:
    host = urlsplit(address).hostname or ""
    return host in ("localhost", "::1") or host.startswith("127.")
