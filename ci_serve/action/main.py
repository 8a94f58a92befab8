"""The action's edge: mask secrets first, check inputs, run the ``ci-serve`` commands in this process,
then write the outputs, the job summary and the annotations from their reports.

Exit codes are the commands' own (0 done, 1 failed with the previous version serving, 2 bad input,
3 not restored); an input the action itself refuses is exit 2 with an ``::error``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import github_action_utils as gha
import yaml

from ci_serve import cli, console, secrets
from ci_serve.action import notes, summary
from ci_serve.action.files import share_written_files
from ci_serve.action.inputs import Inputs, inside_workspace, is_pem, raw_input, read_inputs, workspace_from
from ci_serve.action.steps import Invocation, Outcome, needs_requirements, outputs, pipeline
from ci_serve.cancel import install_signal_handlers
from ci_serve.errors import EXIT_BAD_INPUT, CiServeError, InputError, Unexpected

_MIN_MASK_LEN = 3  # as ci_serve.secrets: masking one-letter values would make the log unreadable


def mask(value: str | None) -> None:
    """``::add-mask::`` for the runner and the registry our own printing uses."""
    if value and len(value) >= _MIN_MASK_LEN:
        for line in value.splitlines():  # the runner masks line by line
            if len(line.strip()) >= _MIN_MASK_LEN:
                gha.add_mask(line)
        secrets.register(value)


def header_values(requests_file: Path) -> list[str]:
    """Every header value in a smoke requests file, to mask them; nothing if it cannot be read.

    Read quietly and leniently: the smoke command reports what is wrong with the file.
    """
    try:
        if requests_file.stat().st_size > 10 * 1024 * 1024:
            return []
        data = yaml.safe_load(requests_file.read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError, RecursionError):
        return []
    found: list[str] = []
    reqs = data.get("requests") if isinstance(data, dict) else data
    for req in reqs if isinstance(reqs, list) else []:
        headers = req.get("headers") if isinstance(req, dict) else None
        if isinstance(headers, dict):
            found += [str(v) for v in headers.values() if v is not None and not isinstance(v, (dict, list))]
    return found


def mask_secrets(environ: Mapping[str, str], workspace: Path) -> None:
    """Before anything is printed: the token, and the header values of the requests file."""
    mask(raw_input(environ, "ray-auth-token"))
    mask(environ.get("RAY_AUTH_TOKEN"))
    token_path = raw_input(environ, "ray-auth-token-path")
    if token_path:
        try:
            mask((workspace / token_path).read_text("utf-8").strip())  # an absolute path stays absolute
        except (OSError, UnicodeDecodeError, ValueError):
            pass  # refused later, with a message
    for line in raw_input(environ, "prometheus-header").splitlines():  # one `Name: value` per line
        name, sep, value = line.partition(":")
        mask(value.strip() if sep else line.strip())  # a line without a name may be a bare token
    for value in secrets.url_credentials(raw_input(environ, "prometheus-url")):  # https://user:password@prometheus
        mask(value)
    requirements_input = raw_input(environ, "requirements")  # index URLs may carry credentials
    if requirements_input:
        try:
            text = (workspace / inside_workspace(requirements_input, workspace, "requirements")).read_text("utf-8")
        except (InputError, OSError, UnicodeDecodeError):
            text = ""  # refused later, with a message
        for value in secrets.url_credentials(text):
            mask(value)
    requests_input = raw_input(environ, "requests")
    if requests_input:
        try:
            rel = inside_workspace(requests_input, workspace, "requests")
        except InputError:
            return  # refused later, with a message
        for value in header_values(workspace / rel):
            mask(value)


@contextmanager
def group(title: str) -> Iterator[None]:
    sys.stderr.flush()
    gha.start_group(secrets.mask(title))
    try:
        yield
    finally:
        sys.stderr.flush()
        gha.end_group()


def uv_cache_dir() -> Path:
    """Where uv keeps downloaded and built packages: ``UV_CACHE_DIR``, else ``$HOME/.cache/uv``. In a
    container action ``$HOME`` is ``/github/home``, which the runner mounts from its temp folder, so
    ``actions/cache`` can keep it between runs (keyed by the requirements file's hash: docs/action.md)."""
    return Path(os.environ.get("UV_CACHE_DIR") or Path.home() / ".cache" / "uv")


def install_requirements(path: str) -> None:
    """The app's packages into the action's own Python, for the commands that import the app here
    (validate, build, plan, deploy). Its Ray pin is left out: this Python keeps the Ray ci-serve runs
    on; ``smoke`` tests on the pinned Ray in an environment of its own. With uv (in the image) and its
    cache under ``$HOME``: a second run with the cache restored downloads and builds nothing; pip when
    there is no uv."""
    from ci_serve.cluster.versions import mentions_ray, read_requirements

    text = read_requirements(path)
    kept = [line for line in text.splitlines() if not mentions_ray(line)]
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    tool = "uv pip" if uv else "pip"
    with group(f"{tool} install -r {path}"):
        if len(kept) != len(text.splitlines()):
            console.say("NOTE  the Ray pin is left out here (smoke tests on it in an environment of its own)")
        with tempfile.NamedTemporaryFile("w", suffix=".txt", dir=Path(path).resolve().parent,
                                         prefix=".ci-serve-req-") as fh:
            fh.write("\n".join(kept) + "\n")
            fh.flush()
            if uv:
                cache = uv_cache_dir()
                console.say(f"uv cache: {cache}")
                argv = [uv, "pip", "install", "--python", sys.executable, "--cache-dir", str(cache), "-r", fh.name]
            else:
                argv = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
                        "-r", fh.name]
            proc = subprocess.run(argv, stdin=subprocess.DEVNULL, check=False)
    if proc.returncode != 0:
        raise InputError(f"installing the requirements file {path} failed ({tool} exit {proc.returncode})",
                         "see the pip output above; check the package names and versions in that file")


def read_report(path: str) -> dict[str, Any] | None:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def run_one(inv: Invocation) -> Outcome:
    """``ci-serve <argv>`` in this process, as the CLI runs it; its report read back."""
    try:
        os.unlink(inv.report)  # a stale report from an earlier step must not be read as this one's
    except OSError:
        pass
    with group(inv.title):
        try:
            code = cli.main(inv.argv)
        except SystemExit as exc:  # argparse refused the command line
            code = exc.code if isinstance(exc.code, int) else EXIT_BAD_INPUT
        except Exception as exc:  # a bug outside the command (cli.main catches its own): the same verdict
            err = cli.unexpected(exc)
            console.say(f"ERROR {err.message}")
            console.say(secrets.scrub(err.traceback))
            code = err.exit_code
    return Outcome(inv, code, read_report(inv.report))


def emit_annotations(notes: list[summary.Annotation]) -> None:
    for note in notes[:50]:  # GitHub shows at most 10 per step anyway; the rest are in the summary
        annotate = {"warning": gha.warning, "notice": gha.notice}.get(note.level, gha.error)
        annotate(note.message, title=note.title, file=note.file, line=note.line, col=note.col)


def write_outputs(values: dict[str, str]) -> None:
    if os.environ.get("GITHUB_OUTPUT"):
        try:
            for name, value in values.items():
                gha.set_output(name, secrets.mask(value))
        except OSError as exc:
            console.say(f"WARN  could not write the step outputs: {exc}")
    else:
        for name, value in values.items():
            console.say(f"output {name}={secrets.mask(value)}")


def write_summary(markdown: str) -> None:
    if os.environ.get("GITHUB_STEP_SUMMARY"):
        try:
            gha.append_job_summary(secrets.mask(markdown))
        except OSError as exc:
            console.say(f"WARN  could not write the job summary: {exc}")


def main(environ: Mapping[str, str] | None = None) -> int:
    environ = os.environ if environ is None else environ
    started = time.time()
    heard = notes.Warnings().listen()  # every WARN line from here on: annotations and the summary
    install_signal_handlers()  # SIGINT/SIGTERM from the runner: Cancelled, cleanup, outputs written
    workspace = workspace_from(environ)
    mask_secrets(environ, workspace)  # before anything else is printed
    outcomes: list[Outcome] = []
    failure: dict[str, Any] | None = None
    code = 0
    inputs: Inputs | None = None
    try:
        inputs = read_inputs(environ, workspace)
        try:
            os.chdir(workspace)
        except OSError as exc:
            raise InputError(f"cannot enter the workspace {workspace}: {exc.strerror}",
                             "GITHUB_WORKSPACE must be the repository checkout (run actions/checkout first)") from None
        code, outcomes = run_pipeline(inputs)
    except Exception as exc:  # a CiServeError, or a bug: never a traceback with exit 1
        err = exc if isinstance(exc, CiServeError) else cli.unexpected(exc)
        if isinstance(err, Unexpected):
            console.say(f"ERROR {err.message}")
            console.say(secrets.scrub(err.traceback))
        else:
            console.render_error(err)
        gha.error(secrets.mask(err.message + (f" (fix: {err.hint})" if err.hint else "")), title="ci-serve action")
        failure, code = err.as_dict(), err.exit_code
    values = outputs(outcomes, exists=lambda p: (workspace / p).is_file(), inputs=inputs)
    if failure is not None and not outcomes:
        values["result"] = "error" if code == EXIT_BAD_INPUT else "failed"
    emit_annotations(summary.annotations(outcomes, workspace) + notes.warning_annotations(heard.texts, workspace))
    write_outputs(values)
    write_summary(summary.render(outcomes, values, failure, warnings=heard.texts, inputs=inputs))
    share_written_files(workspace, started)  # the job's later steps run as another user
    console.say(f"ci-serve action: {values['result']} (exit {code})")
    return code


def ca_cert_file(inputs: Inputs) -> Inputs:
    """``ca-cert`` given as PEM content: written to a file outside the workspace (never shipped, never
    committed), whose path the commands get."""
    if not inputs.ca_cert or not is_pem(inputs.ca_cert):
        return inputs
    fd, path = tempfile.mkstemp(prefix="ci-serve-ca-", suffix=".pem")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(inputs.ca_cert.strip() + "\n")
    return replace(inputs, ca_cert=path)


def run_pipeline(inputs: Inputs) -> tuple[int, list[Outcome]]:
    if inputs.token:  # through the environment: never on a command line, where `ps` would show it
        os.environ["RAY_AUTH_TOKEN"] = inputs.token
    if inputs.token_path:  # ci-serve reads it as Ray's own clients do
        os.environ["RAY_AUTH_TOKEN_PATH"] = str(Path(inputs.token_path).resolve())
    inputs = ca_cert_file(inputs)
    invocations = pipeline(inputs)
    if inputs.requirements and needs_requirements(invocations):
        install_requirements(inputs.requirements)
    outcomes: list[Outcome] = []
    for inv in invocations:
        outcome = run_one(inv)
        outcomes.append(outcome)
        if outcome.exit_code != 0:
            return outcome.exit_code, outcomes
    return 0, outcomes
