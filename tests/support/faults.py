"""Systematic fault injection: one fault at one step of a deploy, for every step and every fault.

A deploy's *steps* are its dashboard requests in order, with consecutive identical requests (the
polls of one gate) taken as one step and the capacity reads (``/api/cluster_status``,
``/api/v0/cluster_events``, read alongside a gate's polls as often as timing makes them) left out. A
clean run through :class:`FaultProxy` records them (:attr:`FaultProxy.steps`); a faulted run counts
them the same way and injects its fault into the first request of step ``i``. Counting by steps,
not by requests, keeps "step i" the same moment of the plan however many polls a gate took.

Faults (:data:`FAULTS`):

- ``fail``: the connection is closed before the request is forwarded (it never reached Ray);
- ``lost``: the request is forwarded, Ray applies it, and the answer is lost (the connection closed);
- ``empty``: a read of the applications answers 200 with no applications, once;
- ``stale``: a read of the applications answers what the previous read answered, once;
- ``sigint``: the request is forwarded, then the deploy gets SIGINT while it waits for the answer
  (the runner's cancel; SIGTERM follows 7.5 s later if it has not exited, as the runner does, and the
  cell fails: a cancel must not need it);
- ``sigkill``: the request is forwarded, then the deploy is killed before the answer; the same deploy
  is run again, as a user re-runs a job.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

import pytest
import requests

from tests.support.dashboard_proxy import drop_connection
from tests.support.fake_serve import QuietServer

FAULTS = ("fail", "lost", "empty", "stale", "sigint", "sigkill")
APPLICATIONS = "/api/serve/applications/"
#: reads a gate makes alongside its polls as often as timing makes them: never a step of their own
NOT_STEPS = ("/api/cluster_status", "/api/v0/cluster_events")
#: the runner's cancel: SIGINT, then SIGTERM this long after, then SIGKILL 2.5 s later
SIGTERM_AFTER_S = 7.5
SIGKILL_AFTER_S = 2.5
#: where the fault matrix leaves its count of (step, fault) pairs for the session's summary
MATRIX_KEY = pytest.StashKey[dict[str, int]]()


def kind(path: str) -> str:
    """A request's path as a step names it: ``apps``, ``package``, ``version`` or the path."""
    if path.startswith(APPLICATIONS):
        return "apps"
    if path.startswith("/api/packages/"):
        return "package"
    if path.startswith("/api/version"):
        return "version"
    return path


@dataclass(frozen=True)
class Step:
    index: int
    method: str
    kind: str
    #: the number of PUTs of the applications before this step: which part of the plan it belongs to
    writes: int

    @property
    def label(self) -> str:
        return f"{self.index:02d}-{self.method}-{self.kind}-w{self.writes}"


def faults_for(step: Step) -> tuple[str, ...]:
    """The faults that mean something at ``step``: empty and stale answers only for reads of the
    applications (stale only after a write changed what they read), a lost answer only for writes (a
    lost read is a failed read)."""
    out = ["fail"]
    if step.method == "PUT":
        out.append("lost")
    if step.method == "GET" and step.kind == "apps":
        out.append("empty")
        if step.writes:  # before the first write, the previous read is the same state: no stale answer
            out.append("stale")
    return (*out, "sigint", "sigkill")


@dataclass
class Injection:
    """``fault`` at step number ``step``, or (``step`` None) at the first step that is ``at``:
    (method, kind, writes before it), e.g. ``("GET", "apps", 2)``, the first read after the second write."""

    step: int | None
    fault: str
    at: tuple[str, str, int] | None = None
    done: threading.Event = field(default_factory=threading.Event)
    #: the monotonic time the SIGINT was sent
    sigint_at: float | None = None


class FaultProxy:
    """``with FaultProxy(upstream) as proxy``: forwards to ``upstream``, records the steps, and injects
    ``proxy.arm(step, fault)`` into the next run; ``proxy.process`` is the deploy to signal."""

    def __init__(self, upstream: str):
        self.upstream = upstream.rstrip("/")
        self.lock = threading.Lock()
        self.steps: list[Step] = []
        self.injection: Injection | None = None
        self.process: subprocess.Popen[str] | None = None
        #: every request: (method, path, status or the fault)
        self.log: list[tuple[str, str, str]] = []
        self._last_key: tuple[str, str] | None = None
        self._writes = 0
        self._last_apps: bytes | None = None
        self.server = QuietServer(("127.0.0.1", 0), self._handler())
        self.session = requests.Session()
        self.session.trust_env = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def reset(self, injection: Injection | None = None) -> None:
        """A new run: steps counted from 0, ``injection`` armed (None: a clean run)."""
        with self.lock:
            self.steps, self.log, self._last_key, self._writes = [], [], None, 0
            self._last_apps = None
            self.injection = injection
            self.process = None

    def _step_of(self, method: str, path: str) -> Step | None:
        """The step this request belongs to, and whether it starts it (None: not a step)."""
        if path.startswith(NOT_STEPS):
            return None
        key = (method, kind(path))
        if key != self._last_key:
            self._last_key = key
            self.steps.append(Step(len(self.steps), method, key[1], self._writes))
            if method == "PUT" and key[1] == "apps":
                self._writes += 1
            return self.steps[-1]
        return None

    def _signal(self, sig: signal.Signals) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _drop(self) -> None:
                drop_connection(self)

            def _answer(self, status: int, headers: dict[str, str], payload: bytes) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    if key.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                with proxy.lock:
                    started = proxy._step_of(self.command, self.path)
                    inj = proxy.injection
                    hit = inj is not None and started is not None and not inj.done.is_set() and (
                        started.index == inj.step if inj.step is not None
                        else (started.method, started.kind, started.writes) == inj.at)
                    fault = inj.fault if hit else None  # type: ignore[union-attr]
                    if fault:
                        inj.done.set()  # type: ignore[union-attr]
                    stale = proxy._last_apps
                if fault == "fail":
                    proxy.log.append((self.command, self.path, "fail"))
                    self._drop()
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                try:
                    resp = proxy.session.request(self.command, proxy.upstream + self.path, headers=headers,
                                                 data=body, timeout=120, allow_redirects=False)
                except requests.RequestException:
                    self._answer(502, {}, b"")
                    return
                payload = resp.content
                is_apps_read = self.command == "GET" and kind(self.path) == "apps" and resp.status_code == 200
                if is_apps_read:
                    with proxy.lock:
                        proxy._last_apps = payload
                proxy.log.append((self.command, self.path, fault or str(resp.status_code)))
                if fault == "lost":
                    self._drop()
                    return
                if fault == "sigkill":
                    proxy._signal(signal.SIGKILL)
                    self._drop()
                    return
                if fault == "sigint":
                    inj.sigint_at = time.monotonic()  # type: ignore[union-attr]
                    proxy._signal(signal.SIGINT)
                    time.sleep(0.2)  # the answer arrives after the cancel, as one in flight would
                if fault == "empty" and is_apps_read:
                    data = json.loads(payload)
                    data["applications"] = {}
                    payload = json.dumps(data).encode()
                if fault == "stale" and is_apps_read and stale is not None:
                    payload = stale
                self._answer(resp.status_code, dict(resp.headers), payload)

            do_GET = do_PUT = do_POST = do_DELETE = _any

        return Handler

    def __enter__(self) -> FaultProxy:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.session.close()


@dataclass
class Run:
    code: int | None
    stderr: str
    #: the runner sent its SIGTERM: the deploy had not exited within 7.5 s of the SIGINT (it ignores the SIGTERM
    #: while it cleans up, which must end before the SIGKILL: :data:`ci_serve.cancel.CLEANUP_S`)
    needed_sigterm: bool = False
    killed: bool = False

    @property
    def cut_short(self) -> bool:
        """The runner ended a cancelled deploy: the SIGKILL was needed, or the SIGTERM killed it."""
        return self.needed_sigterm and (self.killed or self.code == -signal.SIGTERM)


def run_deploy(proxy: FaultProxy, cmd: list[str], env: dict[str, str], cwd: str, timeout: float = 300) -> Run:
    """Run the deploy ``cmd`` (its ``--address`` is the proxy), cancelled as the runner does when the
    proxy sent SIGINT: SIGTERM 7.5 s later, SIGKILL 2.5 s after that."""
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    proxy.process = proc
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.extend(iter(proc.stderr.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    deadline = time.monotonic() + timeout
    needed_sigterm = False
    while proc.poll() is None:
        inj = proxy.injection
        if inj is not None and inj.sigint_at is not None:
            since = time.monotonic() - inj.sigint_at
            if since > SIGTERM_AFTER_S + SIGKILL_AFTER_S:
                proc.kill()
            elif since > SIGTERM_AFTER_S and not needed_sigterm:
                needed_sigterm = True
                proc.send_signal(signal.SIGTERM)
        if time.monotonic() > deadline:
            proc.kill()
        time.sleep(0.05)
    reader.join(timeout=10)
    code = proc.returncode
    return Run(code, "".join(err), needed_sigterm, killed=code == -signal.SIGKILL)
