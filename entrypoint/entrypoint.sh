#!/usr/bin/env bash
# The action's container entrypoint: hand over to the Python adapter (ci_serve.action), which reads
# the INPUT_* variables, masks secrets, runs ci-serve and writes outputs and the job summary.
# -P: never import a ci_serve folder from the workspace (the working folder) instead of ours.
set -Eeuo pipefail
[ -n "${DEBUG:-}${RUNNER_DEBUG:-}" ] && set -x
# umask 022: what is written into the workspace is readable by the job's later steps (another user).
umask 022
exec python3 -P -m ci_serve.action "$@"
