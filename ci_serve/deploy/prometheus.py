"""What each version's Serve proxies counted, read from a real Prometheus (its HTTP API, instant queries).

A progressive release judges each traffic step by the counters of the two clusters (see
:mod:`ci_serve.deploy.analysis`). A team's Prometheus scrapes both (from the service-discovery file each
Ray head writes, docs/progressive.md); this module asks it, through ``GET /api/v1/query``, for the
counters of each (session, application) at a given time, and returns them as :class:`Samples`.

- :func:`parse_headers` reads ``--prometheus-header "Name: value"`` values; each value is registered as a
  secret at once, so no log, error or report ever shows it.
- :meth:`Prometheus.check` is asked once before anything is written: a bad URL, an address that does not
  answer, an answer that is not Prometheus's API, or a refused header raise :class:`InputError` (exit 2).
- :meth:`Prometheus.samples` during a step: a query that fails then raises :class:`PrometheusFault`, a
  :class:`CiServeError` that is *not* an input error. It is a fault of the step: the caller treats it as a
  failed step (traffic back to 0, exit 1), never as a pass.
- :func:`session_of` tells a cluster's session (every Ray metric's ``SessionName``): ``session_name`` from
  the dashboard's ``/api/version`` (Ray 2.40 and newer), else the session folder in the head's raylet
  socket path (``/nodes?view=summary``; measured on real 2.9.3 and 2.60 heads), else an :class:`InputError`.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests
import yaml

from ci_serve import secrets
from ci_serve.deploy.analysis import Samples, promql
from ci_serve.errors import CiServeError, InputError

#: how long one query may take before the step counts it as failed
QUERY_TIMEOUT_S = 10.0
#: a header name as RFC 9110 allows it (a token)
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
#: a Ray session folder, as Ray names it: session_<date>_<time>_<microseconds>_<pid>
_SESSION = re.compile(r"^session_\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}_\d+_\d+$")


class PrometheusFault(CiServeError):
    """A query failed during a step (unreachable, an error answer): the step cannot be judged, it failed."""


def parse_headers(values: Iterable[str]) -> dict[str, str]:
    """``["Authorization: Bearer abc", "X-Scope-OrgID: team"]`` -> a dict; every value registered as a
    secret before anything else can print it. A value without ``Name: value`` form is an input error whose
    message names the header, never its value."""
    headers: dict[str, str] = {}
    for raw in values:
        name, sep, value = raw.partition(":")
        secrets.register(value.strip())
        name = name.strip()
        if not sep or not _HEADER_NAME.match(name) or not value.strip():
            shown = name if sep and _HEADER_NAME.match(name) else "(unnamed)"
            raise InputError(f"--prometheus-header {shown}: not of the form 'Name: value'",
                             "pass e.g. --prometheus-header 'Authorization: Bearer TOKEN' (the value is masked)")
        headers[name] = value.strip()
    return headers


def normalize_url(url: str) -> str:
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    try:
        port_ok = parts.port is None or parts.port > 0
    except ValueError:  # not a number, or out of range
        port_ok = False
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        raise InputError(f"--prometheus-url {secrets.mask_urls(url)!r} is not an http(s) URL",
                         "pass Prometheus's base URL, e.g. --prometheus-url http://prometheus:9090")
    return url


class Prometheus:
    """``Prometheus(url, headers).check()``, then :meth:`samples` per version and time."""

    def __init__(self, url: str, headers: dict[str, str] | None = None, *, timeout: float = QUERY_TIMEOUT_S):
        secrets.register_url(url)
        self.url = normalize_url(url)
        self.timeout = timeout
        self.session = requests.Session()
        self.session.trust_env = False  # no proxy or netrc from the environment sees the headers
        self.session.headers.update(headers or {})
        # one session shared by the step loop and its heartbeat thread
        self._lock = threading.Lock()

    def check(self) -> str:
        """Before anything is written: Prometheus answers a query. Its version when it says it."""
        try:
            self._query("vector(1)", None)
        except PrometheusFault as err:
            raise InputError(f"Prometheus at {self.url} cannot be used: {err.message}", err.hint) from None
        try:
            with self._lock:
                resp = self.session.get(self.url + "/api/v1/status/buildinfo", timeout=self.timeout)
            version = resp.json().get("data", {}).get("version") if resp.status_code == 200 else None
        except (requests.RequestException, ValueError, AttributeError):
            version = None
        return f"Prometheus {version}" if isinstance(version, str) else "Prometheus"

    def scrape_interval(self) -> float | None:
        """The longest scrape interval in Prometheus's loaded config (``/api/v1/status/config``): its global one
        and every job's; None when it does not say (an API that hides its config, e.g. a managed one)."""
        try:
            with self._lock:
                resp = self.session.get(self.url + "/api/v1/status/config", timeout=self.timeout)
            text = resp.json().get("data", {}).get("yaml") if resp.status_code == 200 else None
            config = yaml.safe_load(text) if isinstance(text, str) else None
        except (requests.RequestException, ValueError, AttributeError, yaml.YAMLError):
            return None
        if not isinstance(config, dict):
            return None
        found = [(config.get("global") or {}).get("scrape_interval") if isinstance(config.get("global"), dict)
                 else None]
        found += [job.get("scrape_interval") for job in config.get("scrape_configs") or [] if isinstance(job, dict)]
        seconds = [s for s in (duration_s(v) for v in found) if s is not None]
        return max(seconds) if seconds else None

    def _query(self, query: str, at: float | None) -> list[dict[str, Any]]:
        params: dict[str, str] = {"query": query}
        if at is not None:
            params["time"] = f"{at:.3f}"
        try:
            with self._lock:
                resp = self.session.get(self.url + "/api/v1/query", params=params, timeout=self.timeout)
        except requests.RequestException as exc:
            raise PrometheusFault(f"{self.url} did not answer ({secrets.scrub(type(exc).__name__)})",
                                  "check --prometheus-url and that this runner reaches it") from None
        if resp.status_code in (401, 403):
            raise PrometheusFault(f"{self.url} refused the query (HTTP {resp.status_code})",
                                  "pass the credentials it needs with --prometheus-header 'Name: value'")
        try:
            body = resp.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or "status" not in body:
            raise PrometheusFault(f"{self.url} answered HTTP {resp.status_code} with something that is not "
                                  "Prometheus's query API",
                                  "pass Prometheus's base URL (the one whose /api/v1/query answers)")
        if body.get("status") != "success":
            raise PrometheusFault(f"{self.url} answered the query with an error: "
                                  f"{secrets.scrub(str(body.get('error') or body.get('errorType')))[:300]}",
                                  "see the query in docs/metrics.md")
        data = body.get("data")
        result = data.get("result") if isinstance(data, dict) else None
        if not isinstance(result, list) or not isinstance(data, dict) or data.get("resultType") != "vector":
            raise PrometheusFault(f"{self.url} answered an instant query without a vector",
                                  "pass Prometheus's base URL (the one whose /api/v1/query answers)")
        return [r for r in result if isinstance(r, dict)]

    def samples(self, session: str, applications: Sequence[str], at: float) -> Samples:
        """What the proxies of ``session`` counted for ``applications`` (summed) up to ``at`` (unix time), as
        Prometheus holds it then; a series that does not exist yet counts 0. Raises :class:`PrometheusFault`."""
        total = Samples()
        for application in applications:
            queries = promql(application, session)
            buckets = tuple(sorted((_bound(r.get("metric", {}).get("le")), _value(r))
                                   for r in self._query(queries["buckets"], at)))
            total = total.plus(Samples(_scalar(self._query(queries["requests"], at)),
                                       _scalar(self._query(queries["errors"], at)),
                                       tuple(b for b in buckets if not math.isnan(b[0]))))
        return total


    def has_series(self, session: str, applications: Sequence[str], at: float) -> bool:
        """Whether Prometheus holds, at ``at``, a request counter of ``session`` for one of ``applications``
        (Serve creates it on the first request; Prometheus has it a report and a scrape later)."""
        return any(self._query(promql(application, session)["requests"], at) for application in applications)


_DURATION = re.compile(r"(\d+)(ms|y|w|d|h|m|s)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, "y": 31536000.0}


def duration_s(value: object) -> float | None:
    """A Prometheus duration (``15s``, ``1m30s``, ``500ms``) in seconds; None when it is not one."""
    if not isinstance(value, str) or not value:
        return None
    parts = _DURATION.findall(value)
    if "".join(n + u for n, u in parts) != value:
        return None
    return sum(int(n) * _UNIT_S[u] for n, u in parts)


def _value(result: dict[str, Any]) -> float:
    value = result.get("value")
    try:
        return float(value[1]) if isinstance(value, list) and len(value) == 2 else 0.0
    except (TypeError, ValueError):
        return 0.0


def _scalar(results: list[dict[str, Any]]) -> float:
    return sum(_value(r) for r in results)


def _bound(le: object) -> float:
    try:
        return float(str(le))  # "+Inf" -> inf
    except ValueError:
        return math.nan


@dataclass(frozen=True)
class VersionMetrics:
    """The sample source of a progressive release: the new and the old version's counters in one Prometheus,
    told apart by the session of each cluster."""

    prometheus: Prometheus
    #: the new version's applications on the standby (the config's names, as a two-cluster release writes them)
    applications: tuple[str, ...]
    new_session: str
    old_session: str
    #: the old version's applications on the live cluster, by their own names (a one-cluster deploy left them
    #: under a colour, ``shop-blue``); None: the same names as the new version's
    old_applications: tuple[str, ...] | None = None

    def totals(self, at: float) -> tuple[Samples, Samples]:
        return (self.prometheus.samples(self.new_session, self.applications, at),
                self.prometheus.samples(self.old_session, self.old_applications or self.applications, at))

    def ready(self, at: float) -> bool:
        """The new version's counter is in Prometheus: the checks on the standby created it, so from now on a
        step's start reading is its true count, not a zero that the first scrape would later contradict."""
        return self.prometheus.has_series(self.new_session, self.applications, at)

    def describe(self) -> str:
        return (f"Serve metrics from {self.prometheus.url} (new: SessionName {self.new_session}, "
                f"old: {self.old_session})")


class _Dashboard(Protocol):
    address: str

    def request(self, method: str, path: str, *, ok: tuple[int, ...] = ...) -> requests.Response: ...

    def get_node_summary(self) -> dict[str, Any] | None: ...


def session_of(client: _Dashboard) -> str:
    """The Ray session of the cluster behind ``client`` (its metrics' ``SessionName``): ``/api/version``'s
    ``session_name`` (Ray 2.40 and newer), else the ``session_*`` folder of the head's raylet socket path in
    ``/nodes?view=summary`` (Ray 2.9 to 2.30 report it nowhere else; read on real 2.9.3 and 2.60 heads).
    :class:`InputError` when neither says it (a custom ``--raylet-socket-name``)."""
    try:
        info = client.request("GET", "/api/version").json()
    except ValueError:
        info = None
    session = info.get("session_name") if isinstance(info, dict) else None
    if isinstance(session, str) and session:
        return session
    found = session_from_node_summary(client.get_node_summary())
    if found:
        return found
    raise InputError(f"the Ray cluster at {client.address} does not say its session name, so its Serve metrics "
                     "cannot be told apart from the other cluster's",
                     "use Ray 2.40 or newer (its /api/version reports session_name), or run without "
                     "--prometheus-url (steps then hold their interval and check the requests file)")


def session_from_node_summary(summary: dict[str, Any] | None) -> str | None:
    """The one session every node's raylet socket path lies in (``.../session_<...>/sockets/raylet``)."""
    data = summary.get("data") if isinstance(summary, dict) else None
    nodes = data.get("summary") if isinstance(data, dict) else None
    found: set[str] = set()
    for node in nodes if isinstance(nodes, list) else []:
        raylet = node.get("raylet") if isinstance(node, dict) else None
        path = raylet.get("rayletSocketName") if isinstance(raylet, dict) else None
        if isinstance(path, str):
            found |= {part for part in path.split("/") if _SESSION.match(part)}
    return found.pop() if len(found) == 1 else None
