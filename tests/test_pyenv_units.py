"""The resolver's message, as uv and pip print it (captured from real runs), cut to the sentence that
names the package."""

from __future__ import annotations

import pytest

from ci_serve.cluster.pyenv import _summary, ray_requirements
from ci_serve.errors import InputError

UV_MISSING = """error: No solution found when resolving dependencies
  cause: Because ci-serve-no-such-package-4711 was not found in the package registry and you require \
ci-serve-no-such-package-4711==1.0, we can conclude that your requirements are unsatisfiable.
"""
UV_CONFLICT = """error: No solution found when resolving dependencies
  cause: Because fastapi==0.115.6 depends on starlette>=0.40.0,<0.42.0 and you require fastapi==0.115.6, we can \
conclude that you require starlette>=0.40.0,<0.42.0.
         And because you require starlette==0.10, we can conclude that your requirements are unsatisfiable.
"""
UV_TTY = """  × No solution found when resolving dependencies:
  ╰─▶ Because there is no version of ray[serve]==0.0.1 and you require ray[serve]==0.0.1, we can conclude that \
your requirements are unsatisfiable.
"""
PIP_MISSING = """ERROR: Could not find a version that satisfies the requirement nope-4711==1.0 (from versions: none)
ERROR: No matching distribution found for nope-4711==1.0
"""


@pytest.mark.parametrize("output,names", [
    (UV_MISSING, ["ci-serve-no-such-package-4711", "not found"]),
    (UV_CONFLICT, ["starlette==0.10", "fastapi==0.115.6", "unsatisfiable"]),
    (UV_TTY, ["no version of ray[serve]==0.0.1"]),
    (PIP_MISSING, ["nope-4711==1.0"]),
    ("", ["installing ray[serve], six failed"]),
], ids=["uv-missing", "uv-conflict", "uv-tty", "pip-missing", "silent"])
def test_summary_names_the_package(output: str, names: list[str]) -> None:
    text = _summary(output, "ray[serve]==2.40.0\nsix==1\n")
    for name in names:
        assert name in text


def test_ray_version_must_look_like_a_release() -> None:
    assert ray_requirements("2.40.0") == "ray[serve]==2.40.0\n"
    with pytest.raises(InputError):
        ray_requirements("2.40; rm -rf /")



def test_free_ports_are_never_handed_out_twice():
    """The kernel may return one free port twice in a row; a head given one port for two components does not
    start (seen in CI: gcs_server and dashboard_agent_http both 56983)."""
    from ci_serve.cluster.head import free_port

    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
