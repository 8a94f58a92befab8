"""Send the smoke requests and judge the answers.

:func:`compare` is pure (an answer and an expectation in, the list of mismatches out) and is what
the table tests cover; :func:`send` is the thin HTTP part.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import requests

from ci_serve import cancel
from ci_serve.smoke.requests_file import Expect, SmokeRequest

_BODY_SHOWN = 300


@dataclass
class Answer:
    status: int | None
    body: bytes = b""
    elapsed_ms: float = 0.0
    #: a transport error (refused, timed out) instead of an HTTP answer
    error: str | None = None


@dataclass
class Outcome:
    """One checked request, as shown on the console and written to the reports."""

    name: str
    app: str
    method: str
    url_path: str
    passed: bool
    status: int | None
    elapsed_ms: float
    error: str | None = None
    mismatches: list[str] = field(default_factory=list)
    skipped: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "status": self.status,
                "elapsed_ms": round(self.elapsed_ms, 1), "error": self.error, "app": self.app,
                "method": self.method, "path": self.url_path, "skipped": self.skipped}

    def line(self) -> str:
        word = "skip" if self.skipped else ("ok  " if self.passed else "FAIL")
        status = self.status if self.status is not None else "---"
        return f"{word} {self.name}  [{self.method} {self.url_path} -> {status}, {self.elapsed_ms:.0f} ms]"


def short(body: bytes | str, limit: int = _BODY_SHOWN) -> str:
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


def json_equal(a: Any, b: Any) -> bool:
    """JSON equality: 8 == 8.0, but true != 1 and "8" != 8."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def compare(expect: Expect, answer: Answer) -> list[str]:
    """Every way ``answer`` differs from ``expect``; empty means passed."""
    if answer.error is not None:
        return [answer.error]
    problems: list[str] = []
    if answer.status != expect.status:
        problems.append(f"status: expected {expect.status}, got {answer.status}; body: {short(answer.body)!r}")
    if expect.has_json:
        try:
            actual = json.loads(answer.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            problems.append(f"json: expected {json.dumps(expect.json_)}, got a body that is not JSON: "
                            f"{short(answer.body)!r}")
        else:
            if not json_equal(actual, expect.json_):
                problems.append(f"json: expected {json.dumps(expect.json_)}, got {short(json.dumps(actual))}")
    if expect.contains is not None:
        text = answer.body.decode("utf-8", errors="replace")
        if expect.contains not in text:
            problems.append(f"contains: expected the body to contain {expect.contains!r}, got {short(text)!r}")
    if expect.max_ms is not None and answer.elapsed_ms > expect.max_ms:
        problems.append(f"max_ms: expected at most {expect.max_ms:g} ms, took {answer.elapsed_ms:.0f} ms")
    return problems


def send(session: requests.Session, base_url: str, url_path: str, request: SmokeRequest,
         timeout: float) -> Answer:
    timeout = cancel.time_left(timeout)  # after a cancel, no longer than the cleanup has left
    if timeout <= 0:
        return Answer(None, error=f"not sent: {cancel.SPENT}")
    kwargs: dict[str, Any] = {"headers": dict(request.headers), "timeout": max(timeout, 0.1),
                              "allow_redirects": False}
    if request.has_json:
        kwargs["json"] = request.json_
    elif request.body is not None:
        kwargs["data"] = request.body.encode("utf-8")
    t0 = time.monotonic()
    try:
        resp = session.request(request.method, base_url + url_path, **kwargs)
    except requests.Timeout:
        return Answer(None, elapsed_ms=(time.monotonic() - t0) * 1000,
                      error=f"no answer within {timeout:.0f}s")
    except requests.RequestException as exc:
        return Answer(None, elapsed_ms=(time.monotonic() - t0) * 1000,
                      error=f"request failed: {type(exc).__name__}: {exc}")
    return Answer(resp.status_code, resp.content, (time.monotonic() - t0) * 1000)


def default_check(answer: Answer) -> list[str]:
    """Without a requests file: the route prefix must answer HTTP without a 5xx."""
    if answer.error is not None:
        return [answer.error]
    if answer.status is not None and answer.status >= 500:
        return [f"status: expected no 5xx, got {answer.status}; body: {short(answer.body)!r}"]
    return []
