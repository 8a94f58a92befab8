"""Smoke requests against a deployed application (preview prefix before the switch, live after).

The requests file, the sending and the judging are the smoke stage's (:mod:`ci_serve.smoke`); this
adds only what a cluster deploy needs: the URL of a route prefix on the cluster's Serve proxy, and a
few retries of a 404/503 or refused connection right after a write (the proxies pick up a new route
table a moment after the application is RUNNING).
"""

from __future__ import annotations

import time
from typing import Any

import requests

from ci_serve import secrets
from ci_serve.errors import CheckFailed
from ci_serve.smoke.checks import Answer, Outcome, compare, default_check, send
from ci_serve.smoke.requests_file import SmokeRequest

RETRY_STATUSES = (404, 503)


def join_path(prefix: str | None, path: str) -> str:
    prefix = (prefix or "/").rstrip("/")
    return prefix + (path if path.startswith("/") else "/" + path)


def _send_settled(session: requests.Session, base_url: str, url_path: str, req: SmokeRequest,
                  attempts: int, timeout: float) -> Answer:
    answer = Answer(None, error="not sent")
    for attempt in range(attempts):
        answer = send(session, base_url, url_path, req, timeout)
        transient = answer.error is not None or (answer.status in RETRY_STATUSES
                                                 and answer.status != req.expect.status)
        if not transient or attempt == attempts - 1:
            break
        time.sleep(1.0)
    return answer


def probe(serve_url: str, prefix: str, app: str, *, attempts: int = 5, timeout: float = 30.0) -> Outcome:
    """Without a requests file: the route prefix must answer, and not with a 5xx (or a 404: no route)."""
    req = SmokeRequest(name=f"{app} answers")
    path = join_path(prefix, "/")
    with requests.Session() as session:
        answer = _send_settled(session, serve_url, path, req, attempts, timeout)
    problems = default_check(answer)
    if not problems and answer.status == 404:
        problems = ["status: 404, the proxy has no route to the application"]
    return Outcome(req.name, app, "GET", path, not problems, answer.status, answer.elapsed_ms,
                   error=secrets.scrub("; ".join(problems)) or None, mismatches=problems)


def run_checks(reqs: list[SmokeRequest] | None, serve_url: str, prefixes: dict[str, str],
               outcomes: list[Outcome], *, attempts: int = 3, timeout: float = 30.0) -> None:
    """Send every request to the prefix of the app it names (or the only app); probe each app when
    there is no requests file. Raise :class:`CheckFailed` if any fails."""
    if not reqs:
        outcomes.extend(probe(serve_url, prefix, app) for app, prefix in prefixes.items())
    else:
        default = next(iter(prefixes)) if len(prefixes) == 1 else None
        with requests.Session() as session:
            for req in reqs:
                app = req.app or default
                if app not in prefixes:
                    raise CheckFailed(f"request {req.name!r} names application {app!r}, which this deploy "
                                      "does not ship",
                                      f"use one of: {', '.join(sorted(prefixes))} (field `app` in the requests file)")
                path = join_path(prefixes[app], req.path)
                answer = _send_settled(session, serve_url, path, req, attempts, timeout)
                problems = compare(req.expect, answer)
                outcomes.append(Outcome(req.name, app, req.method, path, not problems, answer.status,
                                        answer.elapsed_ms, error=secrets.scrub("; ".join(problems)) or None,
                                        mismatches=problems))
    failed = [o for o in outcomes if not o.passed]
    if failed:
        raise CheckFailed(f"{len(failed)} of {len(outcomes)} check(s) failed: "
                          + "; ".join(f"{o.name}: {o.error}" for o in failed[:5]),
                          "the new version does not answer as expected; fix it or the requests file")


def as_dicts(outcomes: list[Outcome]) -> list[dict[str, Any]]:
    return [o.as_dict() for o in outcomes]
