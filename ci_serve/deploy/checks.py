"""Smoke requests against a deployed application (preview prefix before the switch, live after).

The requests file format and loader are the smoke stage's (:mod:`ci_serve.smoke.requests_file`);
this sends each request to ``serve_url + route_prefix + path`` and checks status, JSON, substring
and latency the way ``ci-serve smoke`` does.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import requests

from ci_serve import secrets
from ci_serve.errors import CheckFailed


@dataclass
class Outcome:
    name: str
    passed: bool
    status: int | None
    elapsed_ms: float
    error: str | None
    app: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "status": self.status, "elapsed_ms": self.elapsed_ms,
                "error": self.error, "app": self.app}


def join_url(base: str, prefix: str | None, path: str) -> str:
    prefix = (prefix or "/").rstrip("/")
    return base.rstrip("/") + prefix + (path if path.startswith("/") else "/" + path)


def send(req: Any, url: str, *, app: str | None, timeout: float = 30.0, attempts: int = 3) -> Outcome:
    """Send one :class:`~ci_serve.smoke.requests_file.SmokeRequest` and check its answer.

    A refused connection or a 404/503 right after a write is retried a few times: the proxy may
    not have the new route table yet.
    """
    kwargs: dict[str, Any] = {"headers": dict(req.headers), "timeout": timeout}
    if req.has_json:
        kwargs["json"] = req.json_
    elif req.body is not None:
        kwargs["data"] = req.body.encode()
    error = None
    resp = None
    elapsed = 0.0
    for attempt in range(attempts):
        t0 = time.monotonic()
        try:
            resp = requests.request(req.method, url, **kwargs)
            elapsed = (time.monotonic() - t0) * 1000
            if resp.status_code in (404, 503) and req.expect.status not in (404, 503) and attempt < attempts - 1:
                time.sleep(1.0)
                continue
            break
        except requests.RequestException as exc:
            elapsed = (time.monotonic() - t0) * 1000
            error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
            resp = None
            if attempt < attempts - 1:
                time.sleep(1.0)
    if resp is None:
        return Outcome(req.name, False, None, round(elapsed, 1), secrets.scrub(error or "no answer"), app)
    problems = []
    expect = req.expect
    if expect.status is None:  # a bare probe: any answer the proxy routed passes
        if resp.status_code >= 500 or resp.status_code == 404:
            problems.append(f"status {resp.status_code}")
    elif resp.status_code != expect.status:
        problems.append(f"status {resp.status_code}, expected {expect.status}")
    if expect.has_json:
        try:
            got = resp.json()
        except (ValueError, json.JSONDecodeError):
            problems.append("body is not JSON")
        else:
            if got != expect.json_:
                problems.append(f"JSON {json.dumps(got)[:200]}, expected {json.dumps(expect.json_)[:200]}")
    if expect.contains is not None and expect.contains not in resp.text:
        problems.append(f"body does not contain {expect.contains!r}")
    if expect.max_ms is not None and elapsed > expect.max_ms:
        problems.append(f"took {elapsed:.0f} ms, budget {expect.max_ms:.0f} ms")
    error = "; ".join(problems) or None
    return Outcome(req.name, not problems, resp.status_code, round(elapsed, 1), secrets.scrub(error) if error else None,
                   app)


def run_checks(reqs: list[Any], serve_url: str, prefixes: dict[str, str], default_app: str | None,
               outcomes: list[Outcome]) -> None:
    """Send every request (to the app it names, else ``default_app``); raise :class:`CheckFailed` if any fails.

    ``prefixes`` maps logical app name -> the route prefix to use (preview or live).
    """
    for req in reqs:
        app = req.app or default_app
        if app not in prefixes:
            raise CheckFailed(f"request {req.name!r} names application {app!r}, which this deploy does not ship",
                              f"use one of: {', '.join(sorted(prefixes))} (field `app` in the requests file)")
        outcomes.append(send(req, join_url(serve_url, prefixes[app], req.path), app=app))
    failed = [o for o in outcomes if not o.passed]
    if failed:
        raise CheckFailed(f"{len(failed)} of {len(outcomes)} smoke request(s) failed: "
                          + "; ".join(f"{o.name}: {o.error}" for o in failed[:5]),
                          "the new version answers wrongly; fix it or the requests file")
