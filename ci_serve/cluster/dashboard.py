"""The one client for a Ray dashboard's REST API: versions, Serve applications, the package store.

Every request has a timeout. Refused connections, resets, timeouts and 502/503/504 are retried with
backoff, bounded by a total budget so that a dead address is reported within a minute, naming it.
Packages are content-addressed, so retrying their upload is safe. A Serve config PUT is never retried
here: resending a body built from an old read could undo what another writer did since. One that cannot
have reached the dashboard (the connection was never made) is :class:`NotSent` (not applied: the caller
writes again from a fresh read and a fresh guard); any other fault is :class:`AnswerLost`: the caller
re-reads the cluster and classifies the write (applied, not applied, overtaken) rather than assume.

Tokens go only into the ``Authorization`` header and are registered as secrets; no header value is
ever put into a message.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests

from ci_serve import cancel, console, ledger, secrets
from ci_serve.cluster.address import Target, is_loopback, resolve_target
from ci_serve.errors import EXIT_NOT_RESTORED, CiServeError, CredentialsError, DashboardError, InputError

#: Ray added the multi-application REST API (``/api/serve/applications/``) in 2.9.
MIN_RAY_VERSION = (2, 9)
APPLICATIONS = "/api/serve/applications/"
RETRY_STATUSES = (502, 503, 504)

TOKEN_HINT = ("set RAY_AUTH_TOKEN to the cluster's token (or RAY_AUTH_TOKEN_PATH to a file holding it; "
              "`ray get-auth-token` prints it on the head node); in the action, the ray-auth-token input")


class DashboardUnavailable(DashboardError):
    """The dashboard did not answer within the retry budget (down, unreachable, overloaded)."""


class AnswerLost(CiServeError):
    """A Serve config PUT was sent, and its answer never came back: the write may have been applied."""

    exit_code = EXIT_NOT_RESTORED


class NotSent(AnswerLost):
    """A Serve config PUT that never reached the dashboard (connection refused, connect timeout): not
    applied, for certain. Never resent with the same body: the caller writes again from a fresh read."""


class SchemaRejected(InputError):
    """The dashboard refused a Serve config (HTTP 400): nothing was changed."""


def parse_version(text: str) -> tuple[int, ...]:
    """``"2.60.0"`` -> ``(2, 60, 0)``; ``"3.0.0rc1"`` -> ``(3, 0, 0)``; junk -> ``()``."""
    parts: list[int] = []
    for piece in str(text).split("."):
        digits = ""
        for ch in piece:
            if not ch.isdigit():
                break
            digits += ch
        if not digits:
            break
        parts.append(int(digits))
        if digits != piece:
            break
    return tuple(parts)


def package_path(uri: str) -> str:
    """``gcs://_ray_pkg_<hash>.zip`` -> ``/api/packages/gcs/_ray_pkg_<hash>.zip``."""
    protocol, sep, name = uri.partition("://")
    if not sep or not name or "/" in name:
        raise InputError(f"{uri!r} is not a package URI like gcs://_ray_pkg_<hash>.zip")
    return f"/api/packages/{protocol}/{name}"


class DashboardClient:
    """``DashboardClient(target).get_applications()``.

    ``retry_budget`` bounds the total time spent retrying one request; ``min_interval`` spaces
    requests so that polling never exceeds ``1 / min_interval`` requests per second.
    """

    def __init__(self, target: Target, *, timeout: float = 15.0, connect_timeout: float = 5.0,
                 retry_budget: float | None = None, ca_cert: str | None = None, insecure: bool = False,
                 min_interval: float = 0.25, sleep: Callable[[float], None] = time.sleep):
        self.target = target
        self.address = target.address
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        #: default 40 s, or $CI_SERVE_RETRY_BUDGET_S (how long an unreachable dashboard is waited for)
        self.retry_budget = retry_budget if retry_budget is not None else _default_retry_budget()
        self.min_interval = min_interval
        self._sleep = sleep
        self._last_request: dict[str, float] = {}
        self._lock = threading.Lock()
        #: requests sent, by "METHOD path" (tests and reports read it)
        self.counts: dict[str, int] = {}
        self.session = requests.Session()
        self.session.trust_env = False  # no proxy or netrc from the environment may see the token
        if target.token:
            secrets.register(target.token)
            self.session.headers["Authorization"] = f"Bearer {target.token}"
        https = self.address.startswith("https://")
        if insecure:
            self.session.verify = False
            if https:
                console.say(f"WARN  TLS certificate of {self.address} is NOT verified (--insecure)")
            import urllib3
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        elif ca_cert:
            self.session.verify = _checked_ca(ca_cert)
        if target.token and not https and not is_loopback(self.address):
            console.say(f"WARN  the token is sent over plain http to {self.address}; anyone on the path can "
                        "read it. Use an https address or an SSH tunnel to the dashboard")

    # -- transport -------------------------------------------------------------------------
    def _pace(self, key: str) -> None:
        # Per "METHOD path": polling one endpoint is spaced, a sequence of different requests is not
        # (spacing those cost an unchanged deploy 0.25 s per request; benchmarks/bench_deploy.py).
        with self._lock:
            wait = self._last_request.get(key, 0.0) + self.min_interval - time.monotonic()
            if wait > 0:
                self._sleep(wait)
            self._last_request[key] = time.monotonic()

    def request(self, method: str, path: str, *, ok: tuple[int, ...] = (200,), json_body: Any = None,
                data: bytes | None = None, timeout: float | None = None, resend: bool = True) -> requests.Response:
        """Send one request, retrying transient faults; return a response whose status is in ``ok``.

        ``resend=False`` (a write that must not be repeated blindly): every transport fault raises, never
        a retry: :class:`NotSent` when the request cannot have reached the server, else :class:`AnswerLost`."""
        url = self.address + path
        key = f"{method} {path}"
        t0 = time.monotonic()
        attempt = 0
        last = ""
        while True:
            attempt += 1
            self._pace(key)
            wait = cancel.time_left(timeout or self.timeout)  # after a cancel: what is left of the cleanup's time
            if wait <= 0:
                raise (DashboardUnavailable if resend else NotSent)(
                    f"{method} {path} was not sent: {cancel.SPENT}",
                    "the runner kills a cancelled job 10 s after SIGINT; `ci-serve status` shows what runs")
            self.counts[key] = self.counts.get(key, 0) + 1
            try:
                resp = self.session.request(method, url, json=json_body, data=data, allow_redirects=False,
                                            timeout=(min(self.connect_timeout, wait), wait))
            except requests.exceptions.SSLError as exc:
                raise DashboardError(
                    f"TLS verification of {self.address} failed: {secrets.scrub(_short(exc))}",
                    "pass the cluster's CA certificate with --ca-cert FILE, or --insecure to skip the check",
                ) from None
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
                last = _describe(exc)
                if not resend and _never_sent(exc):  # a retry would resend a body built from an old read
                    raise NotSent(f"{method} {path} never reached the dashboard ({last}); it was not applied",
                                  "check that the dashboard is up; `ci-serve status` shows what runs") from None
                if not resend:
                    raise AnswerLost(f"the answer to {method} {path} never came back ({last}); the write may "
                                     "have been applied", "`ci-serve status` shows what runs") from None
            except requests.RequestException as exc:  # not transient: a malformed URL, a redirect loop...
                raise DashboardError(f"cannot talk to the Ray dashboard at {self.address}: "
                                     f"{secrets.scrub(_short(exc))}",
                                     "check the --address value (e.g. http://head-node:8265)") from None
            else:
                if resp.status_code not in RETRY_STATUSES:
                    return self._check(resp, ok, method, path)
                last = f"HTTP {resp.status_code}"
                if not resend:  # a gateway's 502/504 may come after the dashboard applied the write
                    raise AnswerLost(f"{method} {path} answered {last}; the write may have been applied",
                                     "`ci-serve status` shows what runs")
            spent = time.monotonic() - t0
            delay = min(0.5 * 2 ** (attempt - 1), 5.0)
            if spent + delay > self.retry_budget or cancel.time_left(math.inf) <= delay:  # no retry past a cancel's end
                raise DashboardUnavailable(
                    f"the Ray dashboard at {self.address} did not answer {method} {path}: {last} "
                    f"({attempt} attempts over {spent:.0f}s)",
                    "check the address (--address or RAY_DASHBOARD_ADDRESS, port 8265 by default), that the "
                    "head node is up, and that this runner can reach it",
                )
            self._sleep(delay)

    def _check(self, resp: requests.Response, ok: tuple[int, ...], method: str, path: str) -> requests.Response:
        if resp.status_code in ok:
            return resp
        if resp.status_code == 401:
            raise CredentialsError(
                f"the Ray dashboard at {self.address} requires a token and "
                + ("none was found" if not self.target.token else "did not accept the one sent"),
                TOKEN_HINT,
            )
        if resp.status_code == 403:
            where = self.target.token_source or "the environment"
            raise CredentialsError(
                f"the Ray dashboard at {self.address} refused the token from {where} (HTTP 403: wrong token)",
                TOKEN_HINT,
            )
        body = secrets.scrub(resp.text or "")[:2000]
        if resp.status_code == 400 and method == "PUT" and path == APPLICATIONS:
            raise SchemaRejected("the Ray dashboard rejected the Serve config (HTTP 400)",
                                 "fix the config; `ci-serve validate CONFIG` shows each problem", details=body)
        if resp.status_code == 404:
            raise DashboardError(
                f"{self.address} has no {path} (HTTP 404): not a Ray dashboard, or one without Serve",
                "point --address at the Ray dashboard (port 8265 by default) of a cluster with ray[serve]",
            )
        raise DashboardError(f"the Ray dashboard at {self.address} answered {method} {path} with HTTP "
                             f"{resp.status_code}", "see the answer below", details=body)

    def _json(self, resp: requests.Response, what: str) -> Any:
        try:
            return resp.json()
        except (ValueError, json.JSONDecodeError):
            raise DashboardError(f"{self.address} answered {what} with something that is not JSON: "
                                 "not a Ray dashboard",
                                 "point --address at the Ray dashboard (port 8265 by default)") from None

    # -- API ---------------------------------------------------------------------------------
    def get_version(self) -> str:
        """The cluster's Ray version; refuses a non-Ray answer and Ray older than 2.9."""
        data = self._json(self.request("GET", "/api/version"), "/api/version")
        version = data.get("ray_version") if isinstance(data, dict) else None
        if not isinstance(version, str) or not parse_version(version):
            raise DashboardError(f"{self.address} does not answer /api/version as a Ray dashboard",
                                 "point --address at the Ray dashboard (port 8265 by default)")
        if parse_version(version)[:2] < MIN_RAY_VERSION:
            raise DashboardError(
                f"the cluster runs Ray {version}; ci-serve needs Ray 2.9 or newer (multi-application Serve API)",
                "upgrade the cluster to a current Ray, e.g. ray[serve]==2.60.0",
            )
        return version

    def get_applications(self) -> dict[str, Any]:
        """The raw ``/api/serve/applications/`` answer, leniently: missing parts become empty."""
        data = self._json(self.request("GET", APPLICATIONS), APPLICATIONS)
        if not isinstance(data, dict):
            raise DashboardError(f"{self.address} answered {APPLICATIONS} with a {type(data).__name__}, "
                                 "not an object", "is this a Ray dashboard?")
        if not isinstance(data.get("applications"), dict):
            data["applications"] = {}
        return data

    def put_applications(self, config: dict[str, Any]) -> None:
        """Send a whole declarative Serve config (apps missing from it are deleted by Ray), once: a fault
        after it may have reached the dashboard is :class:`AnswerLost` (re-read, never resend)."""
        ledger.record(self.address)
        self.request("PUT", APPLICATIONS, json_body=config, timeout=max(self.timeout, 30.0), resend=False)

    def get_cluster_status(self) -> dict[str, Any] | None:
        """``/api/cluster_status``'s ``clusterStatus``: resource demands and, when an autoscaler runs, its
        report (see ``ci_serve/deploy/capacity.py``); None when the cluster reports none (no monitor)."""
        resp = self.request("GET", "/api/cluster_status", ok=(200, 404))
        data = self._json(resp, "/api/cluster_status") if resp.status_code == 200 else None
        inner = data.get("data") if isinstance(data, dict) else None
        status = inner.get("clusterStatus") if isinstance(inner, dict) else None
        return status if isinstance(status, dict) else None

    def get_node_summary(self) -> dict[str, Any] | None:
        """``GET /nodes?view=summary`` (each node's hostname and raylet info: what
        :func:`~ci_serve.cluster.kuberay.detect_kuberay` reads), or None when the dashboard does not serve it
        as Ray does (404 on an older Ray, 403 from a proxy in front of it, not JSON, not an object)."""
        resp = self.request("GET", "/nodes?view=summary", ok=(200, 403, 404))
        if resp.status_code != 200:
            return None
        try:
            data = resp.json()
        except (ValueError, json.JSONDecodeError):
            return None
        return data if isinstance(data, dict) else None

    def get_autoscaler_events(self, limit: int = 2000) -> list[str]:
        """The messages of the autoscaler's cluster events (``/api/v0/cluster_events``), oldest first."""
        resp = self.request("GET", f"/api/v0/cluster_events?limit={int(limit)}", ok=(200, 404))
        data = self._json(resp, "/api/v0/cluster_events") if resp.status_code == 200 else None
        found = data
        for key in ("data", "result", "result"):  # {"data": {"result": {"result": [events]}}}
            found = found.get(key) if isinstance(found, dict) else found
        events = found if isinstance(found, list) else []
        return [str(e.get("message")) for e in events
                if isinstance(e, dict) and str(e.get("source_type") or e.get("sourceType")) == "AUTOSCALER"
                and e.get("message")]

    def package_exists(self, uri: str) -> bool:
        resp = self.request("GET", package_path(uri), ok=(200, 404))
        return resp.status_code == 200

    def upload_package(self, uri: str, data: bytes) -> None:
        self.request("PUT", package_path(uri), data=data, timeout=max(self.timeout, 120.0))


@dataclass(frozen=True)
class DashboardAccess:
    """How to reach a dashboard, as a user gives it: the address (``None``: from the environment, see
    :func:`~ci_serve.cluster.address.resolve_address`) and the TLS options."""

    address: str | None = None
    ca_cert: str | None = None
    insecure: bool = False

    def client(self) -> DashboardClient:
        return DashboardClient(resolve_target(self.address), ca_cert=self.ca_cert, insecure=self.insecure)


def _default_retry_budget() -> float:
    import os

    try:
        value = float(os.environ.get("CI_SERVE_RETRY_BUDGET_S") or 40.0)
    except ValueError:
        raise InputError("CI_SERVE_RETRY_BUDGET_S must be a number of seconds") from None
    return value if value > 0 else 40.0


def _checked_ca(path: str) -> str:
    """``--ca-cert``: a PEM file (or a folder of them) that loads, else exit 2 saying so."""
    import ssl
    from pathlib import Path

    where = Path(path).expanduser()
    hint = "pass a PEM file holding the CA certificate that signed the dashboard's certificate"
    try:
        context = ssl.create_default_context()
        if where.is_dir():
            context.load_verify_locations(capath=str(where))
        else:
            context.load_verify_locations(cafile=str(where))
    except ssl.SSLError:
        raise InputError(f"--ca-cert {path} holds no PEM certificate", hint) from None
    except OSError as exc:
        raise InputError(f"--ca-cert {path} cannot be read ({exc.strerror or exc})", hint) from None
    return str(where)


def _never_sent(exc: Exception) -> bool:
    """The request cannot have reached the server: the connection itself was never made."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if type(cause).__name__ in ("NewConnectionError", "ConnectionRefusedError", "NameResolutionError"):
            return True
        cause = cause.__cause__ or cause.__context__ or (cause.args[0] if cause.args and
                                                          isinstance(cause.args[0], BaseException) else None)
        reason = getattr(cause, "reason", None)
        if isinstance(reason, BaseException) and id(reason) not in seen:
            cause = reason
    return False


def _describe(exc: Exception) -> str:
    if isinstance(exc, requests.Timeout):
        return "timed out"
    text = str(exc)
    for word, label in (("Connection refused", "connection refused"), ("reset", "connection reset"),
                        ("Name or service not known", "host name not found"),
                        ("RemoteDisconnected", "connection closed without an answer")):
        if word in text:
            return label
    return _short(exc)


def _short(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]
