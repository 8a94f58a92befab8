# The image the GitHub Action runs: ci-serve and Ray Serve in a virtual environment, tini as init.
#
# Published prebuilt by .github/workflows/release.yml (action.yml points at it), so users never
# install Ray on a run. BASE_IMAGE lets machines that reach no image registry build it on a Debian
# base made with debootstrap (scripts/docker-env); any Debian-based image with python3 and venv works.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

LABEL org.opencontainers.image.title="serve-deploy-action" \
      org.opencontainers.image.description="ci-serve: Ray Serve smoke tests, config checks and gated deploys"

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# tini reaps Ray's child processes and passes the runner's SIGINT/SIGTERM on to ci-serve (the
# runner starts container actions without --init). socat and curl (with the CA certificates) are for
# the user's traffic and switch commands, which run in this container: a balancer's runtime API over
# TCP (HAProxy: `socat`), an HTTP admin or cloud API (`curl`); docs/progressive.md. Unpinned: the
# versions come with the base's suite. apt's package caches (/var/cache/apt/*.bin, ~75 MiB) are
# removed in the same layer.
# hadolint ignore=DL3008
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends tini socat curl ca-certificates \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log

ENV VIRTUAL_ENV=/opt/ci-serve \
    PATH=/opt/ci-serve/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    UV_NATIVE_TLS=1 \
    UV_PYTHON_DOWNLOADS=never \
    RAY_USAGE_STATS_ENABLED=0

# Ray first, in a layer of its own: it changes far less often than ci-serve. uv installs it in seconds
# (pip: about a minute) and also builds the pinned-Ray environments of `smoke --requirements` at run
# time. Bytecode is compiled here: with PYTHONDONTWRITEBYTECODE every Ray worker would otherwise
# recompile Ray's modules on each start. Left out (docs/benchmarks.md has the sizes): Ray's Java jars
# (no Java workers here), the dashboard's web UI (no dashboard runs in this image) and test folders.
RUN python3 -m venv "$VIRTUAL_ENV" \
    && pip install "uv>=0.4" \
    && uv pip install --no-cache --compile-bytecode "ray[serve]==2.60.0" \
    && site="$("$VIRTUAL_ENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
    && rm -rf "$site/ray/jars" "$site/ray/dashboard/client/build" \
    && find "$site" -type d -name tests -not -path "*/ray/*" -prune -exec rm -rf {} +

# One COPY (.dockerignore keeps it to the package, its metadata and the entrypoint) and one RUN: on
# a vfs storage driver every layer is a full copy of the image.
COPY . /src/
RUN uv pip install --no-cache --compile-bytecode /src \
    && install -m 0755 /src/entrypoint/entrypoint.sh /usr/local/bin/entrypoint.sh \
    && rm -rf /src

ENTRYPOINT ["/usr/bin/tini", "-g", "--", "/usr/local/bin/entrypoint.sh"]
