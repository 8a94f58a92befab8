"""Hostile requests files (issue 6): whatever the file holds, ``load_requests`` ends in a list of
requests or an InputError with a message (exit 2 through the CLI), never another exception or a hang.
Property-based over bytes, YAML-shaped and request-shaped documents; plus alias bombs, huge, binary,
non-UTF-8 and deeply nested files through the CLI, where nothing of Ray may start."""

from __future__ import annotations

import io
import json
import os
import signal
from contextlib import contextmanager, redirect_stderr
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ci_serve import console
from ci_serve.cli import main
from ci_serve.errors import EXIT_BAD_INPUT, InputError
from ci_serve.smoke.requests_file import SmokeRequest, load_requests
from tests.support.yaml_bombs import alias_bomb

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@contextmanager
def time_limit(seconds: int):
    """A hang is a failure: SIGALRM turns one into an exception the property reports."""
    def fire(signum, frame):
        raise TimeoutError(f"load_requests did not finish within {seconds}s")

    previous = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def outcome_of(path: Path) -> list[SmokeRequest] | InputError:
    """The loaded list, or the InputError; any other exception fails the test."""
    with time_limit(20):
        try:
            result = load_requests(path)
        except InputError as err:
            assert err.exit_code == EXIT_BAD_INPUT
            assert err.message.strip(), "an InputError without a message"
            json.dumps(err.as_dict())  # the report can hold it
            return err
    assert isinstance(result, list) and result and all(isinstance(r, SmokeRequest) for r in result)
    return result


@SETTINGS
@given(data=st.binary(max_size=4096))
def test_any_bytes_load_or_fail_with_a_message(tmp_path, data):
    path = tmp_path / "requests.yaml"
    path.write_bytes(data)
    outcome_of(path)


@SETTINGS
@given(text=st.text(alphabet=st.characters(codec="utf-8"), max_size=600))
def test_any_text_loads_or_fails_with_a_message(tmp_path, text):
    path = tmp_path / "requests.yaml"
    path.write_text(text, encoding="utf-8")
    outcome_of(path)


scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                    st.text(max_size=15))
values = st.recursive(scalars, lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                      st.dictionaries(st.text(max_size=8), kids, max_size=4)),
                      max_leaves=15)
request_keys = st.sampled_from(["name", "method", "path", "app", "headers", "json", "body", "expect", "nmae"])
expect_keys = st.sampled_from(["status", "json", "contains", "max_ms", "expcet"])
expect_doc = st.dictionaries(expect_keys, values, max_size=4)
request_doc = st.dictionaries(request_keys, st.one_of(values, expect_doc), max_size=7)


@SETTINGS
@given(doc=st.one_of(st.dictionaries(st.sampled_from(["requests", "request", "x"]), st.lists(request_doc, max_size=4),
                                     max_size=2),
                     st.lists(request_doc, max_size=4), values))
def test_request_shaped_documents_load_or_fail_with_a_message(tmp_path, doc):
    path = tmp_path / "requests.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    outcome = outcome_of(path)
    if isinstance(outcome, list):  # what loaded is what was written
        assert [r.name for r in outcome] == [r["name"] for r in (doc["requests"] if isinstance(doc, dict) else doc)]


ALIAS_BOMB = alias_bomb('requests:\n  - name: bomb\n    json: *i\n    expect: {json: *i}\n')

# a bomb the model accepts: a request body is any JSON, and aliases inside it are legal YAML
BODY_BOMB = "requests:\n  - name: bomb\n    method: POST\n    json:\n" + "".join(
    f"      - &{k} [{','.join([('*' + p) if p else '1'] * 9)}]\n"
    for k, p in zip("abcdefghi", ["", *"abcdefgh"], strict=True))


HOSTILE = [
    ("alias bomb", ALIAS_BOMB.encode()),
    ("deep list nesting", b"requests: " + b"[" * 20000 + b"]" * 20000 + b"\n"),
    ("deep map nesting", ("requests:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 3000))).encode()),
    ("deep json body", b"requests:\n  - name: a\n    json: " + b"[" * 5000 + b"]" * 5000 + b"\n"),
    ("huge file", b"# " + b"x" * (11 * 1024 * 1024) + b"\n"),
    ("body alias bomb", BODY_BOMB.encode()),
    ("huge but allowed", b"requests:\n  - name: big\n    body: '" + b"y" * (2 * 1024 * 1024) + b"'\n"),
    ("non-UTF-8", "requests: [{name: caf\u00e9}]".encode("latin-1")),
    ("binary", bytes(range(256)) * 8),
    ("NUL bytes", b"requests:\n  - name: a\x00b\n"),
    ("empty", b""),
    ("only a comment", b"# nothing here\n"),
    ("a scalar", b"42\n"),
    ("empty list", b"requests: []\n"),
    ("tab indentation", b"requests:\n\t- name: a\n"),
    ("python tag", b"!!python/object/apply:os.system ['echo pwned']\n"),
    ("python tag in a request", b"requests:\n  - name: !!python/object/apply:os.system ['echo pwned']\n"),
    ("duplicate names", b"requests:\n  - name: a\n  - name: a\n"),
    ("a URL as path", b"requests:\n  - {name: a, path: 'http://evil/'}\n"),
    ("merge key loop", b"requests:\n  - &x {name: a, <<: *x}\n"),
    ("headers not strings", b"requests:\n  - {name: a, headers: {X-A: [1, 2]}}\n"),
]


@pytest.mark.parametrize("name,content", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_files_load_or_fail_with_a_message(tmp_path, name, content):
    path = tmp_path / "requests.yaml"
    path.write_bytes(content)
    outcome = outcome_of(path)
    if name == "huge but allowed":
        assert isinstance(outcome, list) and len(outcome[0].body) == 2 * 1024 * 1024
    elif name == "deep json body":
        pass  # a deep (valid) JSON body may load; it must not crash
    else:
        assert isinstance(outcome, InputError), name
        assert "pwned" not in str(outcome.as_dict())


def run_cli(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    console._stream = err
    saved = dict(os.environ)  # smoke exports the head's RAY_* variables into this process
    try:
        with redirect_stderr(err), time_limit(60):
            try:
                code = main(argv)
            except SystemExit as exc:  # argparse
                code = exc.code
    finally:
        console._stream = None
        os.environ.clear()
        os.environ.update(saved)
    return code, err.getvalue()


@pytest.mark.parametrize("name,content", [h for h in HOSTILE if h[0] not in ("huge but allowed", "deep json body")],
                         ids=[h[0] for h in HOSTILE if h[0] not in ("huge but allowed", "deep json body")])
def test_hostile_files_are_exit_2_through_the_cli_before_any_ray(tmp_path, monkeypatch, name, content):
    """`ci-serve smoke --requests FILE` checks the file before a head starts: exit 2, no traceback."""
    from ci_serve.cluster import head

    def no_head(self):
        raise AssertionError("a Ray head was started for a broken requests file")

    monkeypatch.setattr(head.TemporaryHead, "launch", no_head)
    (tmp_path / "app.py").write_text("app = None\n")
    path = tmp_path / "requests.yaml"
    path.write_bytes(content)
    report = tmp_path / "report.json"
    code, output = run_cli(["smoke", "app:app", "--app-dir", str(tmp_path), "--requests", str(path),
                            "--report", str(report)])
    assert code == EXIT_BAD_INPUT, output
    assert "Traceback" not in output and "ERROR" in output, output
    assert "pwned" not in output
    data = json.loads(report.read_text())
    assert data["exit_code"] == 2 and data["errors"]
