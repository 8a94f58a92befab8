"""Hostile and broken input: whatever a user or an attacker hands us ends in exit 0 or exit 2 with a
message, never a traceback or a hang (issue 6). Property-based over the config loader and the
command line; the requests file and the action's inputs have their own properties in their tests."""

from __future__ import annotations

import io
from contextlib import redirect_stderr
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ci_serve import console
from ci_serve.cli import main
from tests.support.yaml_bombs import alias_bomb

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def run_validate(path: Path) -> tuple[int, str]:
    err = io.StringIO()
    console._stream = err
    try:
        with redirect_stderr(err):
            try:
                code = main(["validate", str(path), "--no-import"])
            except SystemExit as exc:  # argparse
                code = exc.code
    finally:
        console._stream = None
    return code, err.getvalue()


def assert_clean_outcome(code: int, output: str) -> None:
    assert code in (0, 2), output
    assert "Traceback" not in output, output
    if code == 2:
        assert "ERROR" in output or "error" in output, output


@SETTINGS
@given(data=st.binary(max_size=2048))
def test_any_bytes_end_in_exit_0_or_2(tmp_path, data):
    path = tmp_path / "config.yaml"
    path.write_bytes(data)
    assert_clean_outcome(*run_validate(path))


yaml_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20))
yaml_values = st.recursive(yaml_scalars, lambda children: st.one_of(
    st.lists(children, max_size=4), st.dictionaries(st.text(max_size=12), children, max_size=4)), max_leaves=20)
config_keys = st.sampled_from(["applications", "import_path", "name", "route_prefix", "deployments", "runtime_env",
                               "num_replicas", "user_config", "http_options", "autoscaling_config", "args"])


@SETTINGS
@given(doc=st.dictionaries(config_keys, yaml_values, max_size=5))
def test_config_shaped_documents_end_in_exit_0_or_2(tmp_path, doc):
    import yaml

    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert_clean_outcome(*run_validate(path))


@SETTINGS
@given(apps=st.lists(st.dictionaries(config_keys, yaml_values, max_size=6), max_size=4))
def test_application_lists_end_in_exit_0_or_2(tmp_path, apps):
    import yaml

    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"applications": apps}))
    assert_clean_outcome(*run_validate(path))


ALIAS_BOMB = alias_bomb('applications:\n  - name: bomb\n    import_path: m:app\n    args: {x: *i}\n')


@pytest.mark.parametrize("name,content", [
    ("alias bomb", ALIAS_BOMB.encode()),
    ("deep list nesting", b"applications: " + b"[" * 20000 + b"]" * 20000 + b"\n"),
    ("deep map nesting", ("applications:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 3000))).encode()),
    ("huge file", b"# " + b"x" * (11 * 1024 * 1024) + b"\n"),
    ("non-UTF-8", "applications: [{name: caf\u00e9}]".encode("latin-1")),
    ("binary", bytes(range(256)) * 8),
    ("empty", b""),
    ("only a comment", b"# nothing here\n"),
    ("a scalar", b"42\n"),
    ("a list", b"- a\n- b\n"),
    ("tab indentation", b"applications:\n\t- name: a\n"),
    ("python tag", b"!!python/object/apply:os.system ['echo pwned']\n"),
    ("duplicate keys", b"applications: []\napplications: []\n"),
])
def test_hostile_files_end_in_exit_0_or_2(tmp_path, name, content):
    path = tmp_path / "config.yaml"
    path.write_bytes(content)
    code, output = run_validate(path)
    assert_clean_outcome(code, output)
    assert "pwned" not in output


def test_a_folder_or_missing_file_is_exit_2(tmp_path):
    assert_clean_outcome(*run_validate(tmp_path))
    code, output = run_validate(tmp_path / "missing.yaml")
    assert code == 2 and "does not exist" in output
