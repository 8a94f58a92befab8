"""The requests file of ``ci-serve smoke --requests FILE``: strict models, errors with file:line.

```yaml
requests:
  - name: pear price            # required, shown in every report
    method: POST                # default GET
    path: /                     # relative to the route prefix of the application named by `app`
    app: fruit                  # needed only when the target has more than one application
    headers: {X-Tenant: a}
    json: ["PEAR", 2]           # or `body: "raw text"`
    expect:
      status: 200               # default 200
      json: 8                   # exact JSON equality
      contains: "..."           # substring of the body
      max_ms: 500               # latency budget for this request
```

Every problem in the file is reported at once (exit 2), each with its line, before any Ray process
starts. Unknown keys are errors with a suggestion ("expcet" -> "did you mean 'expect'?").
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails

from ci_serve.config.loader import read_text
from ci_serve.config.problems import Problem, format_path
from ci_serve.errors import InputError

Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Expect(_Strict):
    """What a request must get back. ``json`` is compared only when the key is written (``json: null``
    expects a JSON null)."""

    status: int = Field(200, ge=100, le=599, description="expected HTTP status")
    json_: Any = Field(None, alias="json", description="expected JSON body, exact equality")
    contains: str | None = Field(None, min_length=1, description="a substring the body must contain")
    max_ms: float | None = Field(None, gt=0, description="latency budget in milliseconds")

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)

    @property
    def has_json(self) -> bool:
        return "json_" in self.model_fields_set


class SmokeRequest(_Strict):
    """One request, sent and checked in file order."""

    name: str = Field(min_length=1, description="shown in every report; unique in the file")
    method: Method = "GET"
    path: str = Field("/", description="relative to the application's route prefix")
    app: str | None = Field(None, min_length=1, description="application name (needed with several)")
    headers: dict[str, str] = Field(default_factory=dict)
    json_: Any = Field(None, alias="json", description="JSON request body")
    body: str | None = Field(None, description="raw request body")
    expect: Expect = Field(default_factory=Expect)

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"path must start with '/', got {value!r}")
        if "://" in value:
            raise ValueError("path is relative to the application's route prefix, not a URL")
        return value

    @model_validator(mode="after")
    def _one_body(self) -> SmokeRequest:
        if self.has_json and self.body is not None:
            raise ValueError("give either `json` or `body`, not both")
        return self

    @property
    def has_json(self) -> bool:
        return "json_" in self.model_fields_set


class RequestsFile(_Strict):
    requests: list[SmokeRequest] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_names(self) -> RequestsFile:
        seen: set[str] = set()
        for req in self.requests:
            if req.name in seen:
                raise ValueError(f"request name {req.name!r} is used twice; names must be unique")
            seen.add(req.name)
        return self


class RequestsFileError(InputError):
    def __init__(self, message: str, hint: str | None = None, *, problems: list[Problem] | None = None):
        self.problems = problems or []
        details = "\n".join(p.render() for p in self.problems) or None
        super().__init__(message, hint, details=details)

    def as_dict(self) -> dict[str, Any]:
        data = super().as_dict()
        data["problems"] = [p.as_dict() for p in self.problems]
        return data


HINT = "see docs/smoke.md for the requests file format"


def load_requests(path: str | Path) -> list[SmokeRequest]:
    """Read and check a requests file; raise :class:`RequestsFileError` with every problem found."""
    path = Path(path)
    try:
        text = read_text(path, what="requests file")
    except InputError as exc:
        raise RequestsFileError(exc.message, exc.hint) from None
    reqs = parse_requests(text, str(path))
    register_header_secrets(reqs)
    return reqs


#: request headers whose values are not secret (everything else, e.g. ``X-Api-Key``, is masked)
PLAIN_HEADERS = frozenset({"accept", "accept-encoding", "accept-language", "cache-control", "connection",
                           "content-type", "user-agent", "x-request-id", "x-tenant"})


def register_header_secrets(reqs: list[SmokeRequest]) -> None:
    """Header values may be credentials: mask them in every log, report and JUnit file from now on
    (an app that echoes what it was sent must not print them through a failed check)."""
    from ci_serve import secrets

    for req in reqs:
        for name, value in req.headers.items():
            if name.lower() not in PLAIN_HEADERS:
                secrets.register(value)


def parse_requests(text: str, filename: str = "<requests>") -> list[SmokeRequest]:
    try:
        node = yaml.compose(text)
        _check_expansion(node, filename)
        data = yaml.safe_load(text)
    except RecursionError:
        raise RequestsFileError(f"{filename}: the YAML is nested too deeply to be a requests file", HINT) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        found = Problem(filename, mark.line + 1 if mark else None, None, "", problem)
        raise RequestsFileError(f"{filename}: YAML syntax error",
                                "fix the YAML at that line (indentation, a missing ':' or quote)",
                                problems=[found]) from None
    if isinstance(data, list):  # a bare list of requests is accepted too
        data = {"requests": data}
        node = yaml.MappingNode("tag:yaml.org,2002:map", [(yaml.ScalarNode("tag:yaml.org,2002:str", "requests"), node)])
    if data is None:
        raise RequestsFileError(f"{filename}: the requests file is empty", HINT)
    if not isinstance(data, dict):
        raise RequestsFileError(f"{filename}: a requests file must be a mapping with a `requests:` list",
                                HINT, problems=[Problem(filename, 1, None, "", f"found {type(data).__name__}")])
    try:
        return RequestsFile.model_validate(data).requests
    except ValidationError as exc:
        problems = [_problem(filename, node, err) for err in exc.errors()]
        noun = "problem" if len(problems) == 1 else "problems"
        raise RequestsFileError(f"{filename}: {len(problems)} {noun} in the requests file", HINT,
                                problems=problems) from None


#: nodes a requests file may hold once its YAML aliases are expanded (an alias bomb holds billions)
MAX_EXPANDED_NODES = 200_000


def _check_expansion(root: Any, filename: str) -> None:
    """Refuse a document that contains itself or whose aliases expand past :data:`MAX_EXPANDED_NODES`:
    it would load in milliseconds and then hang whatever serializes a request body."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: Any) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise RequestsFileError(f"{filename}: a YAML alias refers to the node that contains it", HINT)
        active.add(key)
        if isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = node.value
        else:
            children = []
        total = 1
        for child in children:
            total += size(child)
            if total > MAX_EXPANDED_NODES:
                raise RequestsFileError(
                    f"{filename}: the YAML aliases expand to more than {MAX_EXPANDED_NODES} values",
                    "write the requests out; an alias bomb is not a requests file")
        active.discard(key)
        sizes[key] = total
        return total

    if root is not None:
        size(root)


def _problem(filename: str, root: Any, err: ErrorDetails) -> Problem:
    loc = [p for p in err["loc"] if p not in ("json-or-python", "function-after")]
    # pydantic names the field by its alias in loc already (json_ -> json)
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden" and loc:
        parent = _model_at(loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), parent, n=1) if parent else []
        message = f"unknown key {loc[-1]!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
        if parent:
            message += f"; allowed: {', '.join(parent)}"
    elif err["type"] == "too_short" and loc == ["requests"]:
        message = "the list is empty: write at least one request"
    elif err["type"] == "missing":
        message = "required"
    elif err["type"] == "literal_error" and loc and loc[-1] == "method":
        message = f"unknown method {err.get('input')!r}; use one of GET POST PUT PATCH DELETE HEAD OPTIONS"
    return Problem(filename, _line_of(root, loc), None, format_path(loc) if loc else "", message)


def _model_at(loc: list[Any]) -> list[str]:
    """The allowed keys at ``loc`` (for suggestions)."""
    if loc == []:
        return list(RequestsFile.model_fields)
    if loc[0] == "requests" and len(loc) == 2:
        return _keys(SmokeRequest)
    if loc[0] == "requests" and len(loc) == 3 and loc[2] == "expect":
        return _keys(Expect)
    return []


def _keys(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items()]


def _line_of(node: Any, loc: list[Any]) -> int | None:
    """1-based line of the deepest YAML node along ``loc`` that exists."""
    mark = getattr(node, "start_mark", None)
    line = mark.line + 1 if mark is not None else None
    for part in loc:
        child = None
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == part:
                    child = value if not isinstance(value, yaml.ScalarNode) or part != loc[-1] else key
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            child = node.value[part]
        if child is None:
            break
        node = child
        mark = getattr(node, "start_mark", None)
        line = mark.line + 1 if mark is not None else line
    return line
