"""Requests against a deployed application, and the question "what serves this route right now?".

The requests file, the sending and the judging are the smoke stage's (:mod:`ci_serve.smoke`); this
adds what a cluster deploy needs: the URL of a route prefix on the cluster's Serve proxy, a few
retries right after a write (the proxies pick up a new route table a moment after RUNNING), the
default check without a requests file, and :func:`serving` (the proof behind exit 1).

Default check (no requests file): the proxy's route table (``GET <serve>/-/routes``) must route the
prefix to the application we wrote (a route the proxy does not know fails), and a GET of the prefix
must get an answer from the app that is not a 5xx: its own 404 (a FastAPI app with no ``/`` route)
passes.
"""

from __future__ import annotations

import time
from typing import Any

import requests

from ci_serve import cancel, secrets
from ci_serve.deploy.verdict import Seen
from ci_serve.deploy.view import ClusterView, read_routes, read_view
from ci_serve.errors import CheckFailed
from ci_serve.smoke.checks import Answer, Outcome, compare, default_check, send
from ci_serve.smoke.requests_file import SmokeRequest

RETRY_STATUSES = (404, 503)
#: how long the proxy may take to list a route after the application is RUNNING
ROUTE_WAIT_S = 15.0
PROXY_NOT_FOUND = b"-/routes"


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
        if not transient or attempt == attempts - 1 or cancel.spent():
            break
        cancel.pause(1.0)
    return answer


def route_holder(serve_url: str, prefix: str, physical: str | None, wait: float = ROUTE_WAIT_S
                 ) -> tuple[bool | None, str]:
    """Does the proxy route ``prefix`` to ``physical``? (None: the table could not be read.)"""
    deadline = time.monotonic() + cancel.time_left(wait)
    while True:
        routes, why = read_routes(serve_url)
        if routes is None:
            return None, why or "route table not read"
        holder = routes.get(prefix)
        if holder is not None and (physical is None or holder == physical):
            return True, f"the proxy routes {prefix} to {holder}"
        if time.monotonic() >= deadline:
            return False, (f"the proxy routes {prefix} to {holder}, not {physical}" if holder
                           else f"the proxy has no route {prefix}")
        cancel.pause(0.5)


def probe(serve_url: str, prefix: str, app: str, physical: str | None = None, *, attempts: int = 5,
          timeout: float = 30.0) -> Outcome:
    """Without a requests file: the proxy knows the route, and the app answers it without a 5xx."""
    req = SmokeRequest(name=f"{app} answers")
    path = join_path(prefix, "/")
    known, why = route_holder(serve_url, prefix, physical)
    problems: list[str] = [] if known is not False else [why]
    answer = Answer(None, error="not sent")
    if not problems:
        with requests.Session() as session:
            session.trust_env = False
            for attempt in range(attempts):
                answer = send(session, serve_url, path, req, timeout)
                proxy_404 = answer.status == 404 and PROXY_NOT_FOUND in (answer.body or b"")
                if (not (answer.error is not None or answer.status == 503 or proxy_404) or attempt == attempts - 1
                        or cancel.spent()):
                    break
                cancel.pause(1.0)
        problems = default_check(answer)
        if not problems and answer.status == 404 and known is None and PROXY_NOT_FOUND in (answer.body or b""):
            problems = ["status: 404 from the proxy: it has no route to the application"]
    return Outcome(req.name, app, "GET", path, not problems, answer.status, answer.elapsed_ms,
                   error=secrets.scrub("; ".join(problems)) or None, mismatches=problems)


def run_checks(reqs: list[SmokeRequest] | None, serve_url: str, prefixes: dict[str, str],
               outcomes: list[Outcome], *, attempts: int = 3, timeout: float = 30.0,
               physical: dict[str, str] | None = None) -> None:
    """Send every request to the prefix of the app it names (or the only app); probe each app when
    there is no requests file. Raise :class:`CheckFailed` if any fails."""
    if not reqs:
        outcomes.extend(probe(serve_url, prefix, app, (physical or {}).get(app)) for app, prefix in prefixes.items())
    else:
        default = next(iter(prefixes)) if len(prefixes) == 1 else None
        with requests.Session() as session:
            session.trust_env = False
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


def serving(client: Any, serve_url: str, expected: list[tuple[str, str | None, str | None]], *,
            budget: float = 20.0) -> tuple[bool, list[str]]:
    """Is each ``(logical, route_prefix, physical)`` seen serving? (all true, one line per application)"""
    seen, lines = seen_serving(client, serve_url, expected, budget=budget)
    return all(s.good for s in seen), lines


def seen_serving(client: Any, serve_url: str, expected: list[tuple[str, str | None, str | None]], *,
                 budget: float = 20.0) -> tuple[list[Seen], list[str]]:
    """What serves each ``(logical, route_prefix, physical)``: good when ``physical`` is RUNNING, holds the
    route in the proxy's table and answers a GET without a 5xx (a route-less app: RUNNING). ``physical``
    None means nothing of ours may run for ``logical``. Waits up to ``budget`` seconds for every one to be
    good; returns one :class:`Seen` (``passed`` set: the caller names versions that passed their checks)
    and one line per application saying what is where."""
    deadline = time.monotonic() + cancel.time_left(budget)
    while True:
        view = read_view(client, serve_url)
        seen, lines = [], []
        for logical, prefix, physical in expected:
            s, line = _seen_one(view, serve_url, logical, prefix, physical)
            seen.append(s)
            lines.append(line)
        if all(s.good for s in seen) or time.monotonic() >= deadline:
            return seen, lines
        cancel.pause(0.5)


def _seen_one(view: ClusterView, serve_url: str, logical: str, prefix: str | None,
              physical: str | None) -> tuple[Seen, str]:
    members = [m.name for m in view.members(logical, prefix) if m.status != "DELETING"]
    holder = view.serving(prefix) if prefix is not None else None
    if physical is None:
        if members:
            return Seen(logical, holder, False, True), f"{logical}: {', '.join(members)} still on the cluster"
        return Seen(logical, None, True, True), f"{logical}: nothing of ours runs (it had no live version)"
    app = view.apps.get(physical)
    if app is None:
        return Seen(logical, holder, False, True), (f"{logical}: {physical} is not on the cluster"
                                                    + (f" ({', '.join(members)} are)" if members else ""))
    if app.status != "RUNNING":
        return Seen(logical, holder, False, True), f"{logical}: {physical} is {app.status}: {_last_line(app.message)}"
    if prefix is None:
        return Seen(logical, physical, True, True), f"{logical}: {physical} RUNNING (no HTTP route)"
    if holder != physical:
        return Seen(logical, holder, False, True), (f"{logical}: {prefix} is served by {holder or 'no application'}, "
                                                    f"not {physical}")
    status, error = _get(serve_url + join_path(prefix, "/"))
    if status is None or status >= 500 or (status == 404 and view.routes is None and error == "proxy"):
        return Seen(logical, holder, False, True), (f"{logical}: {physical} holds {prefix} but answered "
                                                    f"{status or error}")
    return Seen(logical, holder, True, True), f"{logical}: {physical} serves {prefix} (HTTP {status})"


def _get(url: str) -> tuple[int | None, str | None]:
    wait = cancel.time_left(10.0)
    if wait <= 0:
        return None, f"not sent: {cancel.SPENT}"
    try:
        with requests.Session() as session:
            session.trust_env = False
            resp = session.get(url, timeout=wait, allow_redirects=False)
    except requests.RequestException as exc:
        return None, type(exc).__name__
    return resp.status_code, "proxy" if PROXY_NOT_FOUND in resp.content else None


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "no message"


def as_dicts(outcomes: list[Outcome]) -> list[dict[str, Any]]:
    return [o.as_dict() for o in outcomes]
