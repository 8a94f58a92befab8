"""One registry of secret values (token, header values), masked wherever text leaves the tool.

Every printer, the report writer and the job summary pass text through :func:`mask`. Values under
``runtime_env.env_vars`` are redacted structurally by :func:`redact_config` wherever a config,
plan or status is shown. Credentials written into a URL (``https://user:password@host/...`` in
``--address``, a ``working_dir``, ``py_modules``, pip options, an index URL) need no registration:
:func:`mask` replaces the userinfo of every URL it sees, whatever the field the URL came in.
"""

from __future__ import annotations

import copy
import re
from typing import Any

MASK = "***"
_secrets: set[str] = set()
_MIN_LEN = 3  # masking "a" everywhere would make logs unreadable and protects nothing


def register(value: str | None) -> None:
    """Remember a secret so that :func:`mask` hides it from now on."""
    if value and len(value) >= _MIN_LEN:
        _secrets.add(value)


def clear() -> None:
    """For tests."""
    _secrets.clear()


#: ``scheme://userinfo@``: the userinfo runs to the last ``@`` before the host part ends (a password
#: may hold a raw ``@``); ``git+https``, ``s3`` and the like are schemes too
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s/?#'\"<>\\]+@")


def mask_urls(text: str) -> str:
    """``https://user:pw@host/x`` -> ``https://***@host/x``, for every URL in ``text``."""
    return _URL_USERINFO.sub(r"\1" + MASK + "@", text) if "@" in text else text


def register_url(url: str | None) -> None:
    """Register the userinfo of ``url`` (whole, the password alone, and percent-decoded), so that it is
    masked even where it shows up outside a URL (a decoded password in an error message)."""
    for value in url_credentials(url or ""):
        register(value)


def url_credentials(text: str) -> list[str]:
    """The secrets in the URLs of ``text`` (any number of them, e.g. a requirements file's
    ``--extra-index-url https://user:pw@host``): the userinfo, the password alone, percent-decoded, and
    a user name that stands alone (a token as user name)."""
    from urllib.parse import unquote, urlsplit

    found: list[str] = []
    for word in text.split():
        url = word.split("=", 1)[-1] if word.startswith("-") else word
        if "@" not in url or "://" not in url:
            continue
        try:
            userinfo = urlsplit(url.strip()).netloc.rpartition("@")[0]
        except ValueError:
            continue
        if not userinfo:
            continue
        user, _, password = userinfo.partition(":")
        found += [userinfo, password, unquote(password), unquote(userinfo)]
        if not password:  # a token as user name (https://TOKEN@host/)
            found.append(unquote(user))
    return [value for value in found if value]


def register_urls_in(data: Any) -> None:
    """:func:`register_url` for every string in a JSON-like structure (a Serve config, a runtime_env)."""
    if isinstance(data, str):  # pip options too: "--index-url https://u:p@host/simple"
        for value in url_credentials(data):
            register(value)
    elif isinstance(data, dict):
        for value in data.values():
            register_urls_in(value)
    elif isinstance(data, (list, tuple)):
        for value in data:
            register_urls_in(value)


def mask(text: str) -> str:
    """Replace every registered secret in ``text`` (longest first, so overlaps mask fully), and the
    userinfo of every URL."""
    if not text:
        return text
    text = mask_urls(text)
    for value in sorted(_secrets, key=len, reverse=True):
        if value in text:
            text = text.replace(value, MASK)
    return text


def mask_data(data: Any) -> Any:
    """:func:`mask` applied to every string inside a JSON-like structure."""
    if isinstance(data, str):
        return mask(data)
    if isinstance(data, dict):
        return {mask_data(k): mask_data(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [mask_data(v) for v in data]
    return data


def redact_config(config: Any) -> Any:
    """A deep copy of a Serve config (or any part of one) with ``runtime_env.env_vars`` values hidden."""
    data = copy.deepcopy(config)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "runtime_env" and isinstance(value, dict):
                    env_vars = value.get("env_vars")
                    if isinstance(env_vars, dict):
                        value["env_vars"] = {k: MASK for k in env_vars}
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(data)
    return data


_BEARER = re.compile(r"(?i)(bearer\s+)[^\s'\"]+")


def scrub(text: str) -> str:
    """:func:`mask`, plus any ``Bearer <token>`` even if the token was never registered."""
    return _BEARER.sub(r"\1" + MASK, mask(text))
