"""How the GitHub Actions runner starts a container action, for tests that run the action the same way.

The runner (actions/runner, ContainerActionHandler) sets one ``INPUT_<NAME>`` per input declared in
action.yml, the name upper-cased with hyphens kept, the value given or else the declared default; it
enforces neither ``required`` nor formats. It mounts the workspace, ``/github/home``,
``/github/workflow`` and ``/github/file_commands``, sets ``GITHUB_*`` pointing into them, and runs
``docker run --rm --workdir /github/workspace`` with no ``--init`` and a 64 MiB ``/dev/shm``.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def declared_inputs(action_yml: Path = REPO / "action.yml") -> dict[str, str]:
    data = yaml.safe_load(action_yml.read_text(encoding="utf-8"))
    return {name: str(spec.get("default", "")) for name, spec in data["inputs"].items()}


def input_env(given: dict[str, str], action_yml: Path = REPO / "action.yml") -> dict[str, str]:
    """Every declared input, as the runner sets it: the given value, else the default."""
    declared = declared_inputs(action_yml)
    unknown = set(given) - set(declared)
    assert not unknown, f"not inputs of action.yml: {unknown}"
    return {"INPUT_" + name.upper(): given.get(name, default) for name, default in declared.items()}


@dataclass
class RunnerDirs:
    """The folders the runner mounts, on this side of the container boundary."""

    root: Path

    def __post_init__(self) -> None:
        for sub in ("workspace", "home", "workflow", "file_commands"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        step = uuid.uuid4().hex
        self.output_name = f"set_output_{step}"
        self.summary_name = f"step_summary_{step}"
        for name in (self.output_name, self.summary_name):
            (self.root / "file_commands" / name).touch()

    @property
    def workspace(self) -> Path:
        return self.root / "workspace"

    @property
    def output_file(self) -> Path:
        return self.root / "file_commands" / self.output_name

    @property
    def summary_file(self) -> Path:
        return self.root / "file_commands" / self.summary_name

    def github_env(self, container: bool) -> dict[str, str]:
        """``GITHUB_*`` as the runner sets them; paths inside the container when ``container``."""
        if container:
            workspace, files, home = "/github/workspace", "/github/file_commands", "/github/home"
        else:
            workspace, files, home = str(self.workspace), str(self.root / "file_commands"), str(self.root / "home")
        return {
            "GITHUB_ACTIONS": "true", "CI": "true", "HOME": home,
            "GITHUB_WORKSPACE": workspace, "GITHUB_OUTPUT": f"{files}/{self.output_name}",
            "GITHUB_STEP_SUMMARY": f"{files}/{self.summary_name}",
            "GITHUB_REPOSITORY": "octo/fruit-service", "GITHUB_SHA": "0123456789abcdef0123456789abcdef01234567",
            "GITHUB_REF": "refs/pull/1/merge", "GITHUB_EVENT_NAME": "pull_request", "GITHUB_RUN_ID": "1",
            "GITHUB_ACTION": "__self", "RUNNER_OS": "Linux", "RUNNER_TEMP": "/home/runner/work/_temp",
        }

    def mounts(self) -> list[str]:
        return ["-v", f"{self.workspace}:/github/workspace", "-v", f"{self.root / 'home'}:/github/home",
                "-v", f"{self.root / 'workflow'}:/github/workflow",
                "-v", f"{self.root / 'file_commands'}:/github/file_commands"]

    def outputs(self) -> dict[str, str]:
        return parse_file_command(self.output_file.read_text(encoding="utf-8"))


_HEREDOC = re.compile(r"^([^=<\n]+)<<(.+)$")


def parse_file_command(text: str) -> dict[str, str]:
    """Parse GITHUB_OUTPUT as the runner does (``name=value`` and ``name<<DELIM`` blocks), strictly."""
    values: dict[str, str] = {}
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line:
            continue
        m = _HEREDOC.match(line)
        if m:
            name, delim = m.groups()
            body: list[str] = []
            while lines[i] != delim:  # IndexError: unterminated block, as the runner would fail
                body.append(lines[i])
                i += 1
            i += 1
            values[name] = "\n".join(body)
        else:
            name, _, value = line.partition("=")
            assert name and _, f"malformed output line: {line!r}"
            values[name] = value
    return values


def docker_run_args(dirs: RunnerDirs, image: str, inputs: dict[str, str]) -> list[str]:
    """``docker run`` as the runner builds it (env passed by name, values in the environment)."""
    env = {**dirs.github_env(container=True), **input_env(inputs)}
    args = ["docker", "run", "--rm", "--network", "host", "--shm-size", "64m", "--workdir", "/github/workspace"]
    for name, value in env.items():
        args += ["-e", f"{name}={value}"]
    return [*args, *dirs.mounts(), image]
