"""The conventions every command shares: where the dashboard is, where the token comes from, and
that the report is written atomically."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ci_serve import secrets
from ci_serve.cluster.address import DEFAULT_ADDRESS, resolve_address, resolve_target, resolve_token
from ci_serve.errors import CredentialsError, InputError
from ci_serve.report import Run, write_text_atomic


@pytest.mark.parametrize(("flag", "env", "expected"), [
    pytest.param("http://flag:1", {"RAY_DASHBOARD_ADDRESS": "http://dash:2", "RAY_ADDRESS": "http://ray:3"},
                 "http://flag:1", id="flag-first"),
    pytest.param(None, {"RAY_DASHBOARD_ADDRESS": "http://dash:2", "RAY_ADDRESS": "http://ray:3"},
                 "http://dash:2", id="dashboard-variable-second"),
    pytest.param(None, {"RAY_ADDRESS": "https://ray:3/"}, "https://ray:3", id="ray-address-when-http"),
    pytest.param(None, {"RAY_ADDRESS": "ray://head:10001"}, DEFAULT_ADDRESS, id="ray-client-address-ignored"),
    pytest.param(None, {"RAY_ADDRESS": "10.0.0.1:6379"}, DEFAULT_ADDRESS, id="gcs-address-ignored"),
    pytest.param(None, {"RAY_ADDRESS": "auto"}, DEFAULT_ADDRESS, id="auto-ignored"),
    pytest.param(None, {}, DEFAULT_ADDRESS, id="default"),
    pytest.param("  ", {"RAY_DASHBOARD_ADDRESS": "dash:8265"}, "http://dash:8265", id="blank-flag-skipped"),
    pytest.param("head:8265", {}, "http://head:8265", id="scheme-added"),
])
def test_dashboard_address_is_resolved_in_the_documented_order(flag, env, expected):
    assert resolve_address(flag, env) == expected


@pytest.mark.parametrize("bad", ["ftp://head:8265", "http://head:99999", "http://:8265"])
def test_an_address_that_is_not_an_http_url_is_bad_input(bad):
    with pytest.raises(InputError) as caught:
        resolve_address(bad, {})
    assert caught.value.exit_code == 2


def test_token_from_the_variable_comes_first(tmp_path: Path):
    path = tmp_path / "file-token"
    path.write_text("from-path-file\n")
    home = _home_with_token(tmp_path, "from-home-file")
    env = {"RAY_AUTH_TOKEN": "from-variable", "RAY_AUTH_TOKEN_PATH": str(path)}
    assert resolve_token(env, home) == ("from-variable", "RAY_AUTH_TOKEN")


def test_token_path_variable_comes_before_the_home_file(tmp_path: Path):
    path = tmp_path / "file-token"
    path.write_text("from-path-file\n")
    home = _home_with_token(tmp_path, "from-home-file")
    assert resolve_token({"RAY_AUTH_TOKEN_PATH": str(path)}, home) == ("from-path-file", "RAY_AUTH_TOKEN_PATH")


def test_token_from_the_home_file_last(tmp_path: Path):
    home = _home_with_token(tmp_path, "from-home-file")
    token, source = resolve_token({}, home)
    assert token == "from-home-file"
    assert source == str(home / ".ray" / "auth_token")


def test_no_token_anywhere_is_none(tmp_path: Path):
    assert resolve_token({}, tmp_path) == (None, None)


def test_an_unreadable_token_path_is_a_credentials_error_naming_the_variable(tmp_path: Path):
    with pytest.raises(CredentialsError) as caught:
        resolve_token({"RAY_AUTH_TOKEN_PATH": str(tmp_path / "missing")}, tmp_path)
    assert caught.value.exit_code == 2
    assert "RAY_AUTH_TOKEN_PATH" in caught.value.message


def test_a_found_token_is_registered_as_a_secret_and_hidden_from_repr(tmp_path: Path):
    target = resolve_target("http://head:8265", {"RAY_AUTH_TOKEN": "s3cr3t-token-value"})
    assert "s3cr3t-token-value" not in repr(target)
    assert secrets.mask("sent s3cr3t-token-value") == "sent ***"


def test_report_is_written_whole(tmp_path: Path):
    run = Run(command="status", result="passed", exit_code=0)
    target = tmp_path / "deep" / "report.json"
    run.write(target)
    assert json.loads(target.read_text())["result"] == "passed"
    assert os.listdir(target.parent) == ["report.json"]


def test_a_write_that_fails_midway_leaves_the_old_report_and_no_temp_file(tmp_path: Path, monkeypatch):
    target = tmp_path / "report.json"
    target.write_text('{"result": "old"}\n')

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        write_text_atomic(target, '{"result": "new"}\n')
    assert target.read_text() == '{"result": "old"}\n'
    assert os.listdir(tmp_path) == ["report.json"]


def _home_with_token(tmp_path: Path, token: str) -> Path:
    home = tmp_path / "home"
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text(token + "\n")
    return home


PACKAGE = Path(__file__).resolve().parent.parent / "ci_serve"
EDGES = ("cli.py", "report.py", "action")


def _code_names(path: Path) -> set[str]:
    """The names used in a module's code (docstrings and comments left out)."""
    import tokenize

    with path.open("rb") as fh:
        return {tok.string for tok in tokenize.tokenize(fh.readline) if tok.type == tokenize.NAME}


def test_only_the_edges_know_the_report() -> None:
    """Stages return typed results; the CLI and the action alone build the report (`Run`) from them."""
    below = [p for p in PACKAGE.rglob("*.py") if p.relative_to(PACKAGE).parts[0] not in EDGES]
    assert below and not [str(p.relative_to(PACKAGE)) for p in below if "Run" in _code_names(p)]


def test_commands_never_import_the_cli() -> None:
    """`cli` imports the commands; a command importing `cli` back would make a cycle."""
    import ast

    offenders = []
    for path in sorted((PACKAGE / "commands").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [f"{node.module}.{a.name}" for a in node.names] if isinstance(node, ast.ImportFrom) else [])
            if any(n == "ci_serve.cli" or n.startswith("ci_serve.cli.") for n in names):
                offenders.append(path.name)
    assert not offenders


def test_every_command_has_add_arguments_and_execute() -> None:
    import importlib

    from ci_serve.cli import COMMANDS

    for name in COMMANDS:
        module = importlib.import_module(f"ci_serve.commands.{name}")
        assert callable(module.add_arguments) and callable(module.execute), name
        assert not hasattr(module, "run"), name


def test_one_prefix_for_warnings_and_one_for_notes():
    """A message the tool prints starts ``WARN  `` or ``NOTE  `` (aligned with ``ERROR `` and ``TIP   ``),
    never ``WARNING`` or ``note:``."""
    import re

    import ci_serve

    other = re.compile(r"""say\(f?["'](WARNING|Warning|warning:|NOTE:|Note:|note:)""")
    package = Path(ci_serve.__file__).parent
    found = [f"{path.relative_to(package)}:{number}: {line.strip()}" for path in sorted(package.rglob("*.py"))
             for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if other.search(line)]
    assert found == []
