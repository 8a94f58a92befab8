"""What a held release's job summary tells the reader to do next: pure.

A hold stops before the switch; the release then waits for a person or a later job. The summary
shows where each held candidate answers, and the two ways on from there, each written out in full
with the release id: the ``ci-serve`` command line and the workflow step (this action with
``command: promote`` or ``command: abort``), both with the connection inputs this run was given.
The token is never written out: the command line reads it from the environment, the step from the
secret the workflow names.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import replace

from ci_serve.action.inputs import Inputs, Traffic, is_pem
from ci_serve.action.steps import invocation

#: how the summary's workflow step names this action (what the examples and the README use)
ACTION = "serve-deploy-action/serve-deploy-action@v1"
#: the secret the examples keep the dashboard token in
TOKEN_SECRET = "${{ secrets.RAY_AUTH_TOKEN }}"
_PLAIN = re.compile(r"[A-Za-z][A-Za-z0-9_./:@+-]*")
_CA_PLACEHOLDER = "ca.pem"

WHAT = {"promote": "re-checks the candidate, moves the traffic to it and retires the old version",
        "abort": "removes the held candidate; what serves stays exactly as it is"}
WHERE = {"promote": "in a job of a protected environment whose reviewers approve it, as in "
                    "`examples/workflows/release-with-approval.yml`",
         "abort": "in a job that runs when the review fails, or by hand"}


#: the secret the summary's workflow step names for ``prometheus-header``
HEADER_SECRET = "${{ secrets.PROMETHEUS_HEADER }}"


def header_variables(inputs: Inputs) -> list[str]:
    """The environment variables the command line reads the Prometheus headers from (never written out)."""
    count = len(inputs.traffic.prometheus_headers) if inputs.traffic else 0
    return ["PROMETHEUS_HEADER"] if count == 1 else [f"PROMETHEUS_HEADER_{i}" for i in range(1, count + 1)]


def command_line(command: str, inputs: Inputs, release: str) -> str:
    """``ci-serve promote|abort ...`` for ``release``, with this run's cluster flags (no ``--report``).
    A promote walks the same traffic steps; the Prometheus headers are read from the environment."""
    ca = _CA_PLACEHOLDER if inputs.ca_cert and is_pem(inputs.ca_cert) else inputs.ca_cert
    traffic = replace(inputs.traffic, prometheus_headers=()) if inputs.traffic else None
    argv = invocation(command, replace(inputs, hold=False, release=release, ca_cert=ca, traffic=traffic)).argv
    cut = argv.index("--report")
    line = shlex.join(["ci-serve", *argv[:cut], *argv[cut + 2:]])
    if command == "promote":
        line += "".join(f' --prometheus-header "${name}"' for name in header_variables(inputs))
    return line


def _scalar(value: str) -> str:
    """A YAML string: plain when it cannot be read as anything else, else double-quoted (JSON is YAML)."""
    if _PLAIN.fullmatch(value) and value.lower() not in ("true", "false", "yes", "no", "on", "off", "null"):
        return value
    return json.dumps(value)


def workflow_step(command: str, inputs: Inputs, release: str) -> str:
    """This action as a workflow step that promotes or aborts ``release`` on the same cluster."""
    lines = [f"- uses: {ACTION}", "  with:", f"    command: {command}", f"    release: {json.dumps(release)}",
             f"    config: {_scalar(inputs.config)}", f"    address: {_scalar(inputs.address or '')}"]
    checks = inputs.requests if command == "promote" else None  # abort checks nothing
    for name, value in (("serve-url", inputs.serve_url), ("requests", checks),
                        ("timeout", inputs.timeout), ("standby-address", inputs.standby_address),
                        ("standby-url", inputs.standby_url), ("switch-command", inputs.switch_command),
                        ("verify-url", inputs.verify_url)):
        if value:
            lines.append(f"    {name}: {json.dumps(value) if name == 'timeout' else _scalar(value)}")
    if inputs.traffic and command == "promote":  # a promote walks the same steps; an abort moves no traffic
        lines += _traffic_inputs(inputs.traffic)
    if inputs.ca_cert and is_pem(inputs.ca_cert):
        lines.append("    ca-cert: ${{ vars.RAY_CA_CERT }}   # the CA this run was given")
    elif inputs.ca_cert:
        lines.append(f"    ca-cert: {_scalar(inputs.ca_cert)}")
    if inputs.insecure:
        lines.append("    insecure: true")
    if inputs.token_path:
        lines.append(f"    ray-auth-token-path: {_scalar(inputs.token_path)}")
    else:
        lines.append(f"    ray-auth-token: {TOKEN_SECRET}")
    extra = [shlex.join([name, *words]) for name, words in inputs.extra_args if name == command]
    if extra:
        lines += ["    extra-args: |", *(f"      {line}" for line in extra)]
    return "\n".join(lines)


def _traffic_inputs(traffic: Traffic) -> list[str]:
    lines = [f"    traffic-command: {_scalar(traffic.command)}"]
    for name, value in (("traffic-steps", traffic.steps), ("step-interval", traffic.interval),
                        ("prometheus-url", traffic.prometheus_url), ("max-error-rate", traffic.max_error_rate),
                        ("max-p99-ms", traffic.max_p99_ms), ("min-requests", traffic.min_requests),
                        ("metrics-lag", traffic.metrics_lag)):
        if value is not None:
            lines.append(f"    {name}: {json.dumps(value)}")
    if traffic.prometheus_headers:
        lines.append(f"    prometheus-header: {HEADER_SECRET}   # the header(s) this run was given")
    return lines


def next_steps(inputs: Inputs, release: str) -> list[str]:
    """Markdown: how to promote and how to abort ``release``, as a command and as a workflow step."""
    lines: list[str] = []
    for command in ("promote", "abort"):
        headers = header_variables(inputs) if command == "promote" else []
        also = f" and the Prometheus header(s) in {', '.join(f'`{h}`' for h in headers)}" if headers else ""
        lines += [f"**To {command} it** ({WHAT[command]}): on a machine that reaches the dashboard, with the "
                  f"token in `RAY_AUTH_TOKEN`{also},", "", "```sh", command_line(command, inputs, release), "```", "",
                  f"or as a workflow step ({WHERE[command]}):", "", "```yaml",
                  workflow_step(command, inputs, release), "```", ""]
    return lines
