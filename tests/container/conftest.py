"""The action's image, built once per content for every container test (test_container, test_act).

The build context is what .dockerignore lets through (pyproject.toml, README.md, ci_serve/,
entrypoint/entrypoint.sh) plus the Dockerfile and the base image's id; the image is tagged
``ci-serve-action:<hash of those>``, so a later session on the same engine, or the second module of
one session, reuses it without a build (on a vfs engine even a cached build copies the image). It is
also tagged with the ``image:`` of action.yml, so a runner (act) resolving ``uses:`` to this checkout
runs this commit's image and pulls nothing.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.container.runner import REPO

BASE_IMAGE = os.environ.get("CI_SERVE_BASE_IMAGE", "ci-serve/debian-base:bookworm")
IMAGE = "ci-serve-action:test"


def docker_ready() -> bool:
    if not shutil.which("docker"):
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=60).returncode == 0


def require_docker() -> None:
    if not docker_ready():
        if os.environ.get("CI"):
            pytest.fail("no Docker engine under CI: scripts/docker-env should have started one")
        pytest.skip("no Docker engine (run scripts/docker-env as root)")


def _context_files() -> Iterator[Path]:
    yield REPO / "Dockerfile"
    yield REPO / "pyproject.toml"
    yield REPO / "README.md"
    yield REPO / "entrypoint" / "entrypoint.sh"
    for path in sorted((REPO / "ci_serve").rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            yield path


def content_key(base_id: str) -> str:
    digest = hashlib.sha256(base_id.encode())
    for path in _context_files():
        digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def action_image_name() -> str:
    """action.yml's ``image:`` without the ``docker://`` scheme."""
    runs = yaml.safe_load((REPO / "action.yml").read_text(encoding="utf-8"))["runs"]
    return str(runs["image"]).removeprefix("docker://")


def _image_id(name: str) -> str | None:
    proc = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", name], capture_output=True, text=True,
                          timeout=60)
    return proc.stdout.strip() if proc.returncode == 0 else None


@pytest.fixture(scope="session")
def image() -> str:
    require_docker()
    base_id = _image_id(BASE_IMAGE)
    assert base_id, f"no base image {BASE_IMAGE}: run scripts/docker-env"
    keyed = f"ci-serve-action:{content_key(base_id)}"
    t0 = time.monotonic()
    if _image_id(keyed):
        print(f"\nimage {keyed}: reused (same content)")
    else:
        proc = subprocess.run(["docker", "build", "--network", "host", "--build-arg", f"BASE_IMAGE={BASE_IMAGE}",
                               "-t", keyed, str(REPO)], capture_output=True, text=True, timeout=1800)
        assert proc.returncode == 0, f"docker build failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        print(f"\nimage {keyed} on {BASE_IMAGE}: built in {time.monotonic() - t0:.0f} s")
    for name in (IMAGE, action_image_name()):
        subprocess.run(["docker", "tag", keyed, name], check=True, capture_output=True, timeout=60)
    # Earlier builds of this image, now untagged: on a vfs engine each is a full copy on disk.
    subprocess.run(["docker", "image", "prune", "-f", "--filter", "dangling=true",
                    "--filter", "label=org.opencontainers.image.title=serve-deploy-action"],
                   capture_output=True, timeout=300)
    return IMAGE
