"""One registry of secret values (token, header values), masked wherever text leaves the tool.

Every printer, the report writer and the job summary pass text through :func:`mask`. Values under
``runtime_env.env_vars`` are redacted structurally by :func:`redact_config` wherever a config,
plan or status is shown.
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


def registered() -> frozenset[str]:
    return frozenset(_secrets)


def clear() -> None:
    """For tests."""
    _secrets.clear()


def mask(text: str) -> str:
    """Replace every registered secret in ``text`` (longest first, so overlaps mask fully)."""
    if not _secrets or not text:
        return text
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


_ENV_VARS_KEYS = ("env_vars",)


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
