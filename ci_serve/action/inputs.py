"""The action's inputs, read from ``INPUT_<NAME>`` variables as the runner sets them, and checked.

The runner upper-cases input names and keeps hyphens (``INPUT_RAY-AUTH-TOKEN``), sets every input
declared in ``action.yml`` (empty string when not given) and enforces neither ``required`` nor any
format: all of that is checked here, before anything runs. Paths from inputs must stay inside the
workspace; they never reach a shell.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ci_serve.cluster.pyenv import is_ray_release
from ci_serve.config.importpath import is_import_path, looks_like_config_file
from ci_serve.deploy.planner import STRATEGIES
from ci_serve.errors import InputError

COMMANDS = ("auto", "smoke", "validate", "build", "plan", "deploy", "promote", "abort", "status")
#: commands that talk to a cluster and so need ``address``
NEEDS_ADDRESS = ("plan", "deploy", "promote", "abort", "status")
#: commands that act on one release (``release``, else ``$GITHUB_SHA``, passed as ``--version``)
RELEASE_COMMANDS = ("promote", "abort")
STANDBY_INPUTS = ("standby-address", "standby-url", "switch-command")
#: a progressive release's inputs (``traffic-command`` replaces ``switch-command``); all of them need the
#: two-cluster inputs, and all but ``traffic-command`` need ``traffic-command``
TRAFFIC_INPUTS = ("traffic-command", "traffic-steps", "step-interval", "prometheus-url", "prometheus-header",
                  "max-error-rate", "max-p99-ms", "min-requests", "metrics-lag")
#: commands that walk the traffic steps: a deploy, and the promote of a release held across two clusters
TRAFFIC_COMMANDS = ("deploy", "auto", "promote")


def env_name(name: str) -> str:
    """``ray-auth-token`` -> ``INPUT_RAY-AUTH-TOKEN``, as the runner names it."""
    return "INPUT_" + name.replace(" ", "_").upper()


def raw_input(environ: Mapping[str, str], name: str, default: str = "") -> str:
    return environ.get(env_name(name), default).strip()


@dataclass(frozen=True)
class Inputs:
    """Checked inputs. Paths are relative to the workspace (``"."`` style), never outside it."""

    command: str = "auto"
    target: list[str] = field(default_factory=list)  # import path(s) or a config file, plus key=value args
    config: str = "serve_config.yaml"
    requests: str | None = None
    app_dir: str | None = None  # None: each command's own default (the CLI's rule)
    address: str | None = None
    token: str | None = None
    token_path: str | None = None  # a file with the token: workspace-relative, or absolute under $HOME
    serve_url: str | None = None
    ca_cert: str | None = None  # a PEM bundle's path, or its content (``-----BEGIN``): see is_pem
    insecure: bool = False
    #: ``extra-args``: more flags per command, ``(command, words)`` in the order given
    extra_args: tuple[tuple[str, tuple[str, ...]], ...] = ()
    strategy: str = "auto"
    working_dir: str | None = None
    timeout: str | None = None
    requirements: str | None = None
    ray_version: str | None = None
    standby_address: str | None = None
    standby_url: str | None = None
    switch_command: str | None = None
    verify_url: str | None = None
    #: a progressive release (``traffic-*`` and the thresholds): None when ``traffic-command`` is not given
    traffic: Traffic | None = None
    #: ``hold``: the deploy stops before the switch, its candidate held for review (``--hold``)
    hold: bool = False
    #: ``release``, else ``$GITHUB_SHA``: the release a deploy writes, holds, or promote/abort act on
    release: str | None = None


@dataclass(frozen=True)
class Traffic:
    """The traffic steps of a progressive release, as the CLI flags want them (checked strings: the CLI
    parses them again, by the same functions). ``prometheus_headers`` are secrets, masked already."""

    command: str
    steps: str | None = None  # None: each the CLI's default
    interval: str | None = None
    prometheus_url: str | None = None
    prometheus_headers: tuple[str, ...] = ()
    max_error_rate: str | None = None
    max_p99_ms: str | None = None
    min_requests: str | None = None
    metrics_lag: str | None = None

    def argv(self) -> list[str]:
        """The CLI's flags for these steps (the header values are on this command line only in this
        process: ``cli.main`` runs in the action's own Python, no ``ps`` shows them)."""
        words = ["--traffic-command", self.command]
        for flag, value in (("--traffic-steps", self.steps), ("--step-interval", self.interval),
                            ("--prometheus-url", self.prometheus_url), ("--max-error-rate", self.max_error_rate),
                            ("--max-p99-ms", self.max_p99_ms), ("--min-requests", self.min_requests),
                            ("--metrics-lag", self.metrics_lag)):
            if value is not None:
                words += [flag, value]
        for header in self.prometheus_headers:
            words += ["--prometheus-header", header]
        return words


def inside_workspace(value: str, workspace: Path, name: str) -> str:
    """``value`` as a path relative to ``workspace``; :class:`InputError` if it leads outside it.

    Symlinks are followed: a link in the repository pointing at ``/etc`` is outside.
    """
    if "\0" in value:
        raise InputError(f"input `{name}` is not a usable path", "remove the NUL character")
    root = workspace.resolve()
    path = (root / value).resolve()
    if path != root and root not in path.parents:
        raise InputError(
            f"input `{name}` points outside the workspace: {value}",
            f"give a path inside the repository checkout ({root}), relative to its root",
        )
    rel = path.relative_to(root)
    return str(rel) if str(rel) != "." else "."


def is_pem(value: str) -> bool:
    """A PEM bundle's content rather than a path: it has a ``-----BEGIN`` line."""
    return "-----BEGIN" in value


def inside_workspace_or_home(value: str, workspace: Path, home: Path | None, name: str) -> str:
    """A file input that may also live under the runner's home (``/github/home`` in the container:
    ``${{ runner.temp }}/_github_home`` outside, where an earlier step can write a secret file that
    is not in the checkout). Relative paths are the workspace's; the file must exist."""
    if home is not None and Path(value).is_absolute():
        root, path = home.resolve(), Path(value).resolve()
        if path == root or root in path.parents:
            if not path.is_file():
                raise InputError(f"input `{name}`: no such file {value}", "check the path, or the step that writes it")
            return str(path)
    rel = inside_workspace(value, workspace, name)
    if not (workspace / rel).is_file():
        raise InputError(f"input `{name}`: no such file {value}",
                         "give a file of the checkout, or one under the runner's home ($HOME)")
    return rel


#: flags the action sets itself; ``extra-args`` may not give them
_OWNED_FLAGS = ("--report", "--junit")


def _extra_args(value: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """``extra-args``: one line per command, ``<command> <flags...>`` split as a shell would (no shell
    runs). Lines for a command that does not run are unused."""
    found: list[tuple[str, tuple[str, ...]]] = []
    for number, line in enumerate(value.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            words = shlex.split(line)
        except ValueError as exc:
            raise InputError(f"input `extra-args` line {number} cannot be split into words: {exc}",
                             "quote values the way a shell would") from None
        command, flags = words[0].lower(), words[1:]
        if command not in COMMANDS[1:]:
            raise InputError(f"input `extra-args` line {number} starts with {words[0]!r}, not a command",
                             "start each line with the command it is for, e.g. `deploy --unschedulable-grace 120`")
        owned = [f for f in flags if f.split("=", 1)[0] in _OWNED_FLAGS]
        if owned:
            raise InputError(f"input `extra-args` line {number}: {owned[0].split('=', 1)[0]} is set by the action",
                             "the action writes its reports under .ci-serve/ (the outputs `report` and `junit`)")
        found.append((command, tuple(flags)))
    return tuple(found)


def _boolean(value: str | None, name: str) -> bool:
    if value is None or value.lower() in ("false", "no", "0", "off"):
        return False
    if value.lower() in ("true", "yes", "1", "on"):
        return True
    raise InputError(f"input `{name}` must be `true` or `false`, not {value!r}", f"for example `{name}: true`")


def _target(value: str, workspace: Path) -> list[str]:
    try:
        words = shlex.split(value)
    except ValueError as exc:
        raise InputError(f"input `target` cannot be split into words: {exc}",
                         "quote arguments the way a shell would, e.g. `app:build greeting='hi there'`") from None
    if not words:
        return []
    first = words[0]
    if looks_like_config_file(first):
        if len(words) > 1:
            raise InputError("input `target`: a config file takes no further arguments",
                             "give either a config file or an import path with key=value arguments")
        return [inside_workspace(first, workspace, "target")]
    for word in words:
        if not (is_import_path(word) or ("=" in word and not word.startswith("="))):
            raise InputError(
                f"input `target`: {word!r} is neither an import path `module:attribute`, a key=value "
                "argument, nor a config file (.yaml)",
                "for example `target: fruit:deployment_graph` or `target: serve_config.yaml`",
            )
    return words


def _positive_number(value: str, name: str) -> str:
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not number > 0 or number != number or number == float("inf"):
        raise InputError(f"input `{name}` must be a number of seconds above 0, not {value!r}",
                         f"for example `{name}: 600`, or leave it empty for the default")
    return value


#: a release id as tags and commits name them; it is shown in commands and workflow steps to copy
_RELEASE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/+@:-]{0,199}")


def _number(value: str | None, name: str, example: str, *, low: float = 0.0, above: bool = False,
            high: float | None = None, whole: bool = False) -> str | None:
    """A number input as text (the CLI parses it again): ``low <= value`` (``low < value`` with ``above``),
    at most ``high``, a whole number with ``whole``; :class:`InputError` naming the input otherwise."""
    if value is None:
        return None
    try:
        number = float(int(value)) if whole else float(value)
    except ValueError:
        number = float("nan")
    bounds = f"{'above' if above else 'at least'} {low:g}" + (f" and at most {high:g}" if high is not None else "")
    if number != number or number in (float("inf"), float("-inf")) or number < low or (above and number == low) \
            or (high is not None and number > high):
        raise InputError(f"input `{name}` must be {'a whole number' if whole else 'a number'} {bounds}, "
                         f"not {value!r}", f"for example `{name}: {example}`, or leave it empty for the default")
    return value


def _traffic_steps(value: str | None) -> str | None:
    """``10,50,100``: checked by the CLI's own rule (``traffic.parse_weights``), named as the input."""
    if value is None:
        return None
    from ci_serve.deploy.traffic import parse_weights

    try:
        return ",".join(str(w) for w in parse_weights(value))
    except InputError as err:
        raise InputError(err.message.replace("--traffic-steps", "input `traffic-steps`"),
                         "the new cluster's share at each step in percent, increasing, ending at 100 (the "
                         "switch), e.g. `traffic-steps: 10,50,100`") from None


def _prometheus_url(value: str | None) -> str | None:
    if value is None:
        return None
    from ci_serve.deploy.prometheus import normalize_url

    try:
        return normalize_url(value)
    except InputError as err:
        raise InputError(err.message.replace("--prometheus-url", "input `prometheus-url`"),
                         "Prometheus's base URL as this job reaches it, e.g. `prometheus-url: "
                         "${{ vars.PROMETHEUS_URL }}` (http://prometheus.internal:9090)") from None


def _prometheus_headers(value: str | None) -> tuple[str, ...]:
    """``prometheus-header``: one ``Name: value`` per line. Every value is a secret (masked before this
    runs, by ``main.mask_secrets``); a bad line's error names the line, never its value."""
    if value is None:
        return ()
    from ci_serve.deploy.prometheus import parse_headers

    lines = [line.strip() for line in value.splitlines() if line.strip()]
    for number, line in enumerate(lines, 1):
        try:
            parse_headers([line])
        except InputError as err:
            raise InputError(f"input `prometheus-header` line {number}: "
                             + err.message.removeprefix("--prometheus-header "),
                             "one header per line, `Name: value`, e.g. `prometheus-header: "
                             "${{ secrets.PROMETHEUS_AUTH_HEADER }}` holding `Authorization: Bearer TOKEN` "
                             "(the values are masked)") from None
    return tuple(lines)


def _traffic(get: Callable[[str], str | None], command: str, standby: Mapping[str, str | None]) -> Traffic | None:
    """The progressive release's inputs, checked: they need ``traffic-command``, which needs the two-cluster
    inputs and replaces ``switch-command``; only a deploy and a promote walk steps."""
    given = [name for name in TRAFFIC_INPUTS if get(name)]
    if not given:
        return None
    if command not in TRAFFIC_COMMANDS:
        raise InputError(f"input `{given[0]}` is for a release across two clusters (`command: deploy` or "
                         f"`promote`), not `command: {command}`",
                         "leave the traffic inputs out of this step, or set `command: deploy`")
    if not get("traffic-command"):
        raise InputError(f"input `{given[0]}` needs the input `traffic-command`: the command that gives the new "
                         "cluster its share of the traffic",
                         "e.g. `traffic-command: ./deploy/set-weight.sh` (it gets the share in percent in "
                         "$CI_SERVE_TRAFFIC_WEIGHT); docs/progressive.md")
    if standby.get("switch-command"):
        raise InputError("set either `switch-command` (one switch) or `traffic-command` (traffic steps), not both",
                         "`traffic-command` replaces `switch-command`: its last step, at 100, is the switch")
    missing = [name for name in ("standby-address", "standby-url") if not standby.get(name)]
    if missing:
        raise InputError(f"input `traffic-command` is for a release across two clusters: it needs "
                         f"{' and '.join(f'`{n}`' for n in missing)} too",
                         "set `standby-address` and `standby-url` to the cluster that takes the new version")
    prometheus_only = [name for name in ("prometheus-header", "max-error-rate", "max-p99-ms", "min-requests",
                                         "metrics-lag") if get(name)]
    if prometheus_only and not get("prometheus-url"):
        raise InputError(f"input `{prometheus_only[0]}` judges the steps by Prometheus's numbers: it needs the "
                         "input `prometheus-url`",
                         "set `prometheus-url`, or leave it out: each step then holds its interval and checks "
                         "`requests` through `verify-url`, no metric is analysed")
    return Traffic(
        command=str(get("traffic-command")),
        steps=_traffic_steps(get("traffic-steps")),
        interval=_number(get("step-interval"), "step-interval", "60", low=1.0),
        prometheus_url=_prometheus_url(get("prometheus-url")),
        prometheus_headers=_prometheus_headers(get("prometheus-header")),
        max_error_rate=_number(get("max-error-rate"), "max-error-rate", "1", high=100.0),
        max_p99_ms=_number(get("max-p99-ms"), "max-p99-ms", "500", above=True),
        min_requests=_number(get("min-requests"), "min-requests", "20", low=1.0, whole=True),
        metrics_lag=_number(get("metrics-lag"), "metrics-lag", "25"),
    )


def _release(value: str | None) -> str | None:
    if value is None:
        return None
    if not _RELEASE.fullmatch(value):
        shown = value if len(value) <= 60 else value[:60] + "..."
        raise InputError(f"input `release` must be a tag or a commit SHA (letters, digits and . _ / + @ : -, "
                         f"at most 200), not {shown!r}",
                         "for example `release: ${{ github.sha }}`, or the `release` output of the job that held it")
    return value


def _hold(environ: Mapping[str, str], command: str, address: str | None) -> bool:
    hold = _boolean(raw_input(environ, "hold") or None, "hold")
    if hold and command not in ("deploy", "auto"):
        raise InputError(f"input `hold` is for a deploy, not `command: {command}`",
                         "use `command: deploy` with `hold: true`; then `command: promote` or `abort` with its "
                         "`release`")
    if hold and not address:
        raise InputError("input `hold` needs the input `address`: the cluster to hold the release on",
                         "set `address:` to the Ray dashboard URL, e.g. `${{ vars.RAY_DASHBOARD }}`")
    return hold


def read_inputs(environ: Mapping[str, str], workspace: Path) -> Inputs:
    """Check every input; the first problem is raised as :class:`InputError` (exit 2, nothing changed)."""
    home = Path(environ["HOME"]) if environ.get("HOME") else None
    def get(name: str) -> str | None:
        return raw_input(environ, name) or None

    command = (get("command") or "auto").lower()
    if command not in COMMANDS:
        raise InputError(f"unknown command {command!r}",
                         f"set the input `command` to one of: {', '.join(COMMANDS)}")
    strategy = (get("strategy") or "auto").lower()
    if strategy not in STRATEGIES:
        raise InputError(f"unknown strategy {strategy!r}",
                         f"set the input `strategy` to one of: {', '.join(STRATEGIES)}")

    def path(name: str, default: str | None = None) -> str | None:
        value = get(name) or default
        return inside_workspace(value, workspace, name) if value else None

    address = get("address")
    if command in NEEDS_ADDRESS and not address:
        raise InputError(f"command `{command}` needs the input `address`",
                         "set `address:` to the Ray dashboard URL, e.g. `${{ vars.RAY_DASHBOARD }}`")
    standby = {name: get(name) for name in STANDBY_INPUTS}
    traffic = _traffic(get, command, standby)
    # an abort across two clusters only removes the standby's held applications, a status only reads them:
    # no switch, no checks; a progressive release has its traffic command instead of the switch command
    if command in ("abort", "status") and standby["standby-address"] or traffic is not None:
        pass
    elif any(standby.values()) and not all(standby.values()):
        missing = ", ".join(f"`{n}`" for n, v in standby.items() if not v)
        raise InputError(f"a deploy across two clusters needs {missing} too",
                         f"set all of {', '.join(f'`{n}`' for n in STANDBY_INPUTS)} (or `traffic-command` "
                         "instead of `switch-command`, for traffic steps), or none of them")
    target = _target(raw_input(environ, "target"), workspace)
    if command == "build" and not (target and is_import_path(target[0]) and not looks_like_config_file(target[0])):
        raise InputError("command `build` needs the input `target`: the import path(s) to build from",
                         "for example `target: fruit:deployment_graph`; the config is written to `config`")
    timeout = get("timeout")
    ray_version = get("ray-version")
    if ray_version and not is_ray_release(ray_version):
        raise InputError(f"input `ray-version` {ray_version!r} is not a Ray release number", "for example `2.40.0`")
    if ray_version and raw_input(environ, "requirements"):
        raise InputError("set either `requirements` or `ray-version`, not both",
                         "put the Ray pin (`ray[serve]==X`) into the requirements file")
    hold = _hold(environ, command, address)
    if hold and strategy == "in-place":
        raise InputError("`hold` keeps the live version untouched beside a candidate; `strategy: in-place` would "
                         "change the live version itself", "drop `strategy: in-place` (a hold is blue-green)")
    if traffic is not None and traffic.prometheus_url is None and not get("verify-url") and not hold:
        raise InputError("input `traffic-command` without `prometheus-url`: each step is judged through the public "
                         "entry, and no `verify-url` names it",
                         "set `verify-url` to the address your users reach (through the balancer), and "
                         "`prometheus-url` to judge each step on Serve's metrics")
    release = _release(get("release") or environ.get("GITHUB_SHA", "").strip() or None)
    if release is None and (hold or command in RELEASE_COMMANDS):
        raise InputError(f"{'a hold' if hold else f'command `{command}`'} needs the input `release` "
                         "(no $GITHUB_SHA to default to)",
                         "set `release:` to the release id, e.g. the `release` output of the job that held it")
    token_path, ca_cert = get("ray-auth-token-path"), get("ca-cert")
    insecure = _boolean(get("insecure"), "insecure")
    if token_path and get("ray-auth-token"):
        raise InputError("set either `ray-auth-token` or `ray-auth-token-path`, not both",
                         "pass the token as a secret, or the path of a file an earlier step wrote it to")
    if insecure and ca_cert:
        raise InputError("set either `ca-cert` or `insecure`, not both",
                         "give the cluster's CA with `ca-cert`; `insecure` turns certificate checks off")
    return Inputs(
        command=command,
        target=target,
        config=path("config", "serve_config.yaml") or "serve_config.yaml",
        requests=path("requests"),
        app_dir=path("app-dir"),
        address=address,
        token=get("ray-auth-token"),
        token_path=inside_workspace_or_home(token_path, workspace, home, "ray-auth-token-path") if token_path else None,
        serve_url=get("serve-url"),
        ca_cert=ca_cert if not ca_cert or is_pem(ca_cert) else inside_workspace_or_home(ca_cert, workspace, home,
                                                                                         "ca-cert"),
        insecure=insecure,
        extra_args=_extra_args(environ.get(env_name("extra-args"), "")),
        strategy=strategy,
        working_dir=path("working-dir"),
        timeout=_positive_number(timeout, "timeout") if timeout else None,
        requirements=path("requirements"),
        ray_version=ray_version,
        standby_address=standby["standby-address"],
        standby_url=standby["standby-url"],
        switch_command=standby["switch-command"],
        verify_url=get("verify-url"),
        traffic=traffic,
        hold=hold,
        release=release,
    )


def workspace_from(environ: Mapping[str, str]) -> Path:
    """The folder input paths are relative to: ``GITHUB_WORKSPACE``, else the current folder."""
    return Path(environ.get("GITHUB_WORKSPACE") or os.getcwd())
