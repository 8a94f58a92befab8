"""Ray releases the deploy tests run against, each head from its own cached venv with packages of its time.

The tool's client stays on the .venv's Ray; only the head runs the old release. The pins are the ones
that install and serve on Python 3.11 (uv adds no setuptools: 2.9.3 needs ``setuptools<70`` for
pkg_resources; with protobuf 7 every deploy on 2.46-2.56 fails with "FieldDescriptor object has no
attribute 'label'"). ``CI_SERVE_TEST_RAY_VERSIONS`` (comma-separated, ``current`` for the .venv's Ray)
narrows the set, e.g. to the image's Ray only.
"""

from __future__ import annotations

import os

import pytest

PINS: dict[str, str] = {
    "2.9.3": "fastapi==0.104.1\nsetuptools<70\n",
    "2.20.0": "fastapi==0.110.3\n",
    "2.30.0": "fastapi==0.110.3\n",
    "2.40.0": "fastapi==0.115.6\n",
    "2.46.0": "fastapi==0.115.12\nprotobuf<7\n",
    "2.50.1": "fastapi==0.119.0\nprotobuf<7\n",
    "2.52.1": "fastapi==0.121.2\nprotobuf<7\n",
}
#: what CI runs: the oldest supported, the last with the stale route_prefix field, the first with token
#: auth, and the .venv's own Ray ("current")
CI_VERSIONS = ("2.9.3", "2.46.0", "2.52.1", "current")


def requirements(version: str) -> str:
    return f"ray[serve]=={version}\n" + PINS[version]


def selected() -> list[str]:
    raw = os.environ.get("CI_SERVE_TEST_RAY_VERSIONS")
    return [v.strip() for v in raw.split(",") if v.strip()] if raw else list(CI_VERSIONS)


def params() -> list:
    return [pytest.param(v, id=f"ray-{v}") for v in selected()]


def head_kwargs(version: str) -> dict:
    """Keyword arguments for ``TemporaryHead`` to run ``version`` (empty for the .venv's Ray)."""
    if version == "current":
        return {}
    from ci_serve.cluster.pyenv import ensure_env

    env = ensure_env(requirements(version))
    return {"ray": env.ray}


def has_token_auth(version: str) -> bool:
    if version == "current":
        return True
    major, minor = (int(x) for x in version.split(".")[:2])
    return (major, minor) >= (2, 52)


def has_stale_route_prefix(version: str) -> bool:
    """Ray up to 2.46 keeps reporting an app's old top-level route_prefix after a route-only change."""
    if version == "current":
        return False
    major, minor = (int(x) for x in version.split(".")[:2])
    return (major, minor) < (2, 50)
