"""The entrypoint as the runner starts it: every declared input as INPUT_<NAME> (hyphens kept),
GITHUB_OUTPUT / GITHUB_STEP_SUMMARY files, GITHUB_WORKSPACE; outputs, summary, annotations, masking.

These run entrypoint/entrypoint.sh on this machine (the venv's python first on PATH); the container
test runs the same through `docker run`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.container.runner import REPO, RunnerDirs, input_env

ENTRYPOINT = REPO / "entrypoint" / "entrypoint.sh"
TOKEN = "tok-8f2e-very-secret-value"
HEADER_SECRET = "hdr-api-key-5150"


@dataclass
class ActionRun:
    code: int
    log: str  # stdout and stderr in one stream, in the order written, as the runner shows them
    outputs: dict[str, str]
    summary: str
    dirs: RunnerDirs


def run_action(tmp_path: Path, inputs: dict[str, str], *, cwd: Path | None = None,
               files: dict[str, str] | None = None, timeout: float = 300,
               env_overrides: dict[str, str] | None = None, root: Path | None = None) -> ActionRun:
    dirs = RunnerDirs(root or tmp_path / "runner")
    for name, text in (files or {}).items():
        path = dirs.workspace / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "GITHUB_", "INPUT_"))}
    env.update(dirs.github_env(container=False))
    env.update(input_env(inputs))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(env_overrides or {})
    proc = subprocess.run([str(ENTRYPOINT)], cwd=cwd or dirs.workspace, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    return ActionRun(proc.returncode, proc.stdout, dirs.outputs(),
                     dirs.summary_file.read_text(encoding="utf-8"), dirs)


def test_entrypoint_is_executable_and_short():
    assert os.access(ENTRYPOINT, os.X_OK)
    lines = [ln for ln in ENTRYPOINT.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    assert len(lines) <= 5 and lines[-1].startswith("exec ")


def test_unknown_command_is_exit_2_with_an_error_annotation(tmp_path: Path):
    got = run_action(tmp_path, {"command": "explode"})
    assert got.code == 2
    assert "::error title=ci-serve action::unknown command 'explode'" in got.log
    assert got.outputs["result"] == "error"
    assert set(got.outputs) == set(action_outputs())
    assert "unknown command" in got.summary and "**What to do:**" in got.summary
    assert "Traceback" not in got.log


def test_required_address_is_checked_by_the_action(tmp_path: Path):
    got = run_action(tmp_path, {"command": "deploy"})
    assert got.code == 2 and "needs the input `address`" in got.log
    assert got.outputs["result"] == "error"


def test_paths_outside_the_workspace_are_refused(tmp_path: Path):
    got = run_action(tmp_path, {"command": "validate", "config": "../../../etc/passwd"})
    assert got.code == 2 and "outside the workspace" in got.log
    assert "root:" not in got.log


def test_a_missing_workspace_is_exit_2(tmp_path: Path):
    got = run_action(tmp_path, {"command": "validate"}, env_overrides={"GITHUB_WORKSPACE": str(tmp_path / "gone")})
    assert got.code == 2 and "cannot enter the workspace" in got.log and "Traceback" not in got.log


def test_runs_from_any_working_folder(tmp_path: Path):
    got = run_action(tmp_path, {"command": "nope"}, cwd=Path("/"))
    assert got.code == 2 and "unknown command" in got.log


def action_outputs() -> list[str]:
    import yaml

    return list(yaml.safe_load((REPO / "action.yml").read_text(encoding="utf-8"))["outputs"])


def _with_example(tmp_path: Path) -> dict[str, str]:
    """The example app and the test fixtures, as files of the runner's workspace."""
    files = {}
    for base in (REPO / "examples" / "fruit", REPO / "tests" / "container" / "fixtures"):
        for path in base.glob("*.*"):
            if path.suffix in (".py", ".yaml"):
                files[str(path.relative_to(REPO))] = path.read_text(encoding="utf-8")
    return files


def test_config_problems_become_annotations_at_the_line(tmp_path: Path):
    got = run_action(tmp_path, {"command": "validate", "config": "tests/container/fixtures/broken_config.yaml",
                                "app-dir": "examples/fruit"}, files=_with_example(tmp_path))
    assert got.code == 2 and got.outputs["result"] == "error"
    assert got.outputs["report"] == ".ci-serve/validate.json"
    assert "::error title=Serve config problem,file=tests/container/fixtures/broken_config.yaml," in got.log
    assert "line=8::applications[0].deployments[0].num_replicas" in got.log
    assert "broken_config.yaml:9:" in got.summary and "user_confg" in got.summary
    assert "**What to do:**" in got.summary
    assert got.log.index("::group ::ci-serve validate") < got.log.index("::endgroup::")


# The auto pipeline on the example app (validate then smoke; passing, and failing on a wrong answer,
# with the summary's tables and the annotation) is run under a real runner by
# tests/container/test_act.py, from the image, as users run it.


def unreadable_by_runner_user(root: Path, uid: int = 1001) -> list[str]:
    """Every file under ``root`` that the runner user cannot read, tried by reading it as that user."""
    script = ("import os,sys\nbad=[]\nfor d,_,fs in os.walk(sys.argv[1]):\n for f in fs:\n  p=os.path.join(d,f)\n"
              "  try: open(p,'rb').read()\n  except OSError: bad.append(p)\nprint('\\n'.join(bad))\n")
    proc = subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", sys.executable,
                           "-I", "-c", script, str(root)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return [line for line in proc.stdout.splitlines() if line]


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv")
def test_what_the_action_writes_is_readable_by_the_runner_user(tmp_path: Path):
    """As on GitHub's runners: the action runs as root, the next step as uid 1001 reads every file."""
    root = Path(tempfile.mkdtemp(prefix="ci-serve-runner-", dir="/tmp"))
    try:
        root.chmod(0o755)
        got = run_action(tmp_path, {"command": "validate", "config": "examples/fruit/serve_config.yaml",
                                    "app-dir": "examples/fruit"}, files=_with_example(tmp_path), root=root,
                         env_overrides={"PYTHONDONTWRITEBYTECODE": ""})
        assert got.code == 0, got.log[-3000:]
        written = [p for p in (root / "workspace").rglob("*") if p.is_file()]
        assert any(p.name == "validate.json" for p in written)
        assert unreadable_by_runner_user(root / "workspace") == []
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_requirements_are_installed_before_the_app_is_imported(tmp_path: Path):
    files = {**_with_example(tmp_path), "requirements.txt": "PyYAML>=5\n"}  # already here: no download
    got = run_action(tmp_path, {"command": "validate", "config": "examples/fruit/serve_config.yaml",
                                "app-dir": "examples/fruit", "requirements": "requirements.txt"}, files=files)
    assert got.code == 0, got.log[-3000:]
    assert got.outputs["result"] == "passed"
    assert got.log.index("::group ::uv pip install -r requirements.txt") < got.log.index("::group ::ci-serve validate")


def test_a_broken_requirements_file_is_exit_2_before_anything_runs(tmp_path: Path):
    got = run_action(tmp_path, {"command": "validate", "requirements": "requirements.txt"},
                     files={"requirements.txt": "this is not a requirement !!\n"})
    assert got.code == 2 and got.outputs["result"] == "error"
    assert "installing the requirements file requirements.txt failed" in got.log
    assert "ci-serve validate" not in got.log


def test_index_url_credentials_in_requirements_are_masked_and_never_shown(tmp_path: Path):
    password, token = "idx-pass-7d1c9e", "idx-token-as-user-55aa"
    requirements = (f"--extra-index-url https://bob:{password}@127.0.0.1:9/simple\n"
                    f"--extra-index-url https://{token}@127.0.0.1:9/other\n"
                    "ray[serve]==2.40.0\nci-serve-no-such-package-4711==1.0\n")
    got = run_action(tmp_path, {"command": "smoke", "target": "app:app", "requirements": "requirements.txt"},
                     files={"requirements.txt": requirements, "app.py": "app = None\n"},
                     env_overrides={"UV_HTTP_RETRIES": "0", "CI_SERVE_ENV_CACHE": str(tmp_path / "envs")})
    assert got.code == 2, got.log
    masks = [ln for ln in got.log.splitlines() if ln.split("::")[1:2] == ["add-mask "]]
    assert {password, token} <= {ln.split("::", 2)[2] for ln in masks}
    rest = "\n".join(ln for ln in got.log.splitlines() if ln not in masks)
    rest += got.summary + str(got.outputs)
    for path in (got.dirs.workspace / ".ci-serve").glob("*"):
        rest += path.read_text(encoding="utf-8")
    assert password not in rest and token not in rest
    assert "could not be installed: error: Failed to fetch" in rest  # the index, not "check the pins"


def test_warnings_become_annotations_at_their_line_and_are_listed_in_the_summary(tmp_path: Path):
    files = _with_example(tmp_path)
    config = files["examples/fruit/serve_config.yaml"].replace("  - name: fruit\n",
                                                               "  - name: fruit\n    colour: red\n")
    files["examples/fruit/serve_config.yaml"] = config
    line = config.splitlines().index("    colour: red") + 1
    got = run_action(tmp_path, {"command": "validate", "config": "examples/fruit/serve_config.yaml",
                                "app-dir": "examples/fruit"}, files=files)
    assert got.code == 0, got.log[-3000:]
    annotation = next(x for x in got.log.splitlines() if x.startswith("::warning "))
    where, _, message = annotation[len("::warning "):].partition("::")
    assert set(where.split(",")) == {"title=ci-serve warning", "file=examples/fruit/serve_config.yaml",
                                     f"line={line}", "col=5"}
    assert re.match(r"applications\[0\]\.colour: unknown key 'colour' is ignored by Ray [\d.]+ \(fix: Ray deploys",
                    message), message
    assert "**Warnings:** 1" in got.summary and "unknown key 'colour' is ignored by Ray" in got.summary
    assert "**Changed on the cluster:** nothing (no deploy ran" in got.summary


def test_a_token_over_plain_http_is_a_warning_annotation(tmp_path: Path):
    """Warnings with no file (here: the dashboard's own) are annotations too; the token is never shown."""
    got = run_action(tmp_path, {"command": "status", "address": "http://ray-head.invalid:8265",
                                "ray-auth-token": TOKEN}, timeout=120, env_overrides={"CI_SERVE_RETRY_BUDGET_S": "1"})
    assert got.code != 0
    assert "::warning title=ci-serve warning::the token is sent over plain http" in got.log
    assert "the token is sent over plain http" in got.summary
    assert TOKEN not in "\n".join(got.log.splitlines()[1:]) + got.summary
