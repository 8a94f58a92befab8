"""Table tests of the smoke requests file: what parses, and every error with its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from ci_serve.errors import EXIT_BAD_INPUT
from ci_serve.smoke.requests_file import RequestsFileError, load_requests, parse_requests

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "fruit" / "requests.yaml"

GOOD = [
    ("minimal", "requests:\n  - name: a\n",
     {"name": "a", "method": "GET", "path": "/", "app": None, "has_json": False, "status": 200}),
    ("method lower case", "requests:\n  - {name: a, method: post, json: [1, 2]}\n",
     {"method": "POST", "has_json": True, "json_": [1, 2]}),
    ("json null is a body", "requests:\n  - {name: a, method: PUT, json: null}\n",
     {"has_json": True, "json_": None}),
    ("raw body and headers", "requests:\n  - {name: a, body: hi, headers: {X-Tenant: t}}\n",
     {"body": "hi", "headers": {"X-Tenant": "t"}, "has_json": False}),
    ("bare list", "- name: a\n  path: /x\n  app: fruit\n", {"path": "/x", "app": "fruit"}),
    ("expect all", "requests:\n  - name: a\n    expect: {status: 404, json: {k: 1}, contains: x, max_ms: 50}\n",
     {"status": 404, "expect_json": {"k": 1}, "contains": "x", "max_ms": 50}),
    ("expect json null", "requests:\n  - name: a\n    expect: {json: null}\n", {"expect_has_json": True}),
]


@pytest.mark.parametrize("text,want", [(t, w) for _, t, w in GOOD], ids=[c[0] for c in GOOD])
def test_parses(text: str, want: dict) -> None:
    req = parse_requests(text, "r.yaml")[0]
    got = {"name": req.name, "method": req.method, "path": req.path, "app": req.app, "has_json": req.has_json,
           "json_": req.json_, "body": req.body, "headers": req.headers, "status": req.expect.status,
           "expect_json": req.expect.json_, "expect_has_json": req.expect.has_json,
           "contains": req.expect.contains, "max_ms": req.expect.max_ms}
    for key, value in want.items():
        assert got[key] == value, key


BAD = [
    ("empty file", "", None, "empty"),
    ("not a mapping", "hello\n", "1:", "mapping"),
    ("yaml syntax", "requests:\n  - name: [a\n", "r.yaml:", "YAML syntax"),
    ("no requests", "requests: []\n", "r.yaml:1:", "at least one request"),
    ("missing name", "requests:\n  - path: /\n", "r.yaml:2: requests[0].name", "required"),
    ("typo with suggestion", "requests:\n  - name: a\n    expcet: {status: 200}\n",
     "r.yaml:3: requests[0].expcet", "did you mean 'expect'"),
    ("typo in expect", "requests:\n  - name: a\n    expect:\n      satus: 200\n",
     "r.yaml:4: requests[0].expect.satus", "did you mean 'status'"),
    ("unknown method", "requests:\n  - {name: a, method: FETCH}\n", "requests[0].method", "unknown method"),
    ("relative path", "requests:\n  - {name: a, path: fruit}\n", "requests[0].path", "must start with '/'"),
    ("url as path", "requests:\n  - {name: a, path: 'http://x/'}\n", "requests[0].path", "must start"),
    ("json and body", "requests:\n  - {name: a, json: 1, body: x}\n", "requests[0]", "not both"),
    ("status as string", "requests:\n  - name: a\n    expect: {status: '200'}\n",
     "requests[0].expect.status", "integer"),
    ("status out of range", "requests:\n  - name: a\n    expect: {status: 42}\n", "expect.status", "100"),
    ("negative budget", "requests:\n  - name: a\n    expect: {max_ms: -1}\n", "expect.max_ms", "greater than 0"),
    ("duplicate names", "requests:\n  - {name: a}\n  - {name: a}\n", "r.yaml", "used twice"),
    ("header value not a string", "requests:\n  - {name: a, headers: {X: 1}}\n", "headers.X", "string"),
    ("top-level typo", "requets:\n  - {name: a}\n", "requets", "did you mean 'requests'"),
]


@pytest.mark.parametrize("text,where,what", [(t, w, m) for _, t, w, m in BAD], ids=[c[0] for c in BAD])
def test_rejects_with_location(text: str, where: str | None, what: str) -> None:
    with pytest.raises(RequestsFileError) as info:
        parse_requests(text, "r.yaml")
    err = info.value
    assert err.exit_code == EXIT_BAD_INPUT
    shown = f"{err.message}\n{err.details or ''}"
    if where:
        assert where in shown
    assert what in shown


def test_every_problem_reported_at_once() -> None:
    text = "requests:\n  - {name: a, method: FETCH}\n  - {path: x}\n"
    with pytest.raises(RequestsFileError) as info:
        parse_requests(text, "r.yaml")
    assert "3 problems" in info.value.message
    lines = {p.line for p in info.value.problems}
    assert lines == {2, 3}
    assert info.value.as_dict()["problems"][0]["file"] == "r.yaml"


def test_problems_are_reported_like_a_serve_config_s() -> None:
    """One ``Problem`` type for every file a user writes: same report keys, same ``file:line: path:`` lines."""
    from ci_serve.config.problems import Problem

    with pytest.raises(RequestsFileError) as info:
        parse_requests("requests:\n  - {name: a, method: FETCH}\n", "r.yaml")
    problem = info.value.problems[0]
    assert isinstance(problem, Problem)
    assert set(info.value.as_dict()["problems"][0]) == {"file", "line", "column", "path", "message", "hint",
                                                       "severity"}
    assert problem.render().startswith("r.yaml:2: requests[0].method: unknown method 'FETCH'")


def test_missing_file_is_input_error(tmp_path: Path) -> None:
    with pytest.raises(RequestsFileError) as info:
        load_requests(tmp_path / "nope.yaml")
    assert "does not exist" in info.value.message


def test_bundled_example_parses() -> None:
    reqs = load_requests(EXAMPLE)
    assert reqs[0].name == "pear price" and reqs[0].json_ == ["PEAR", 2] and reqs[0].expect.json_ == 8


def test_a_problem_of_the_whole_file_names_no_field() -> None:
    """A duplicate name is about the file, not one field: ``r.yaml:3: request name ...``, path empty."""
    with pytest.raises(RequestsFileError) as info:
        parse_requests("requests:\n  - {name: a}\n  - {name: a}\n", "r.yaml")
    problem = info.value.problems[0]
    assert problem.path == ""
    assert "(top level)" not in problem.render()
