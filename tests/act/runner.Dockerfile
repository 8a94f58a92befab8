# The job container act runs `runs-on: ubuntu-latest` in (act -P ubuntu-latest=<this image>): the
# debootstrap base scripts/docker-env makes (no image registry here), plus the runner user with
# GitHub-hosted runners' uid 1001.
ARG BASE_IMAGE=ci-serve/debian-base:bookworm
FROM ${BASE_IMAGE}
RUN useradd --uid 1001 --create-home runner
