"""The fault matrix: every fault at every step of a plan, and the same promises after each (issue 21).

For each plan (blue-green, in-place, route-less) a clean ``ci-serve deploy`` through the fault proxy
(tests/support/faults.py) records the plan's steps; then, for every step and every fault that means
something there, the same deploy runs again from the same starting state with that one fault, as a
user runs it (the CLI as a subprocess). After each cell:

- the public route is served by our old or new version (both can serve it in every plan here);
- the bystander (another team's application, no ci-serve marker) was never changed, in any state the
  cluster went through;
- the exit code matches what is seen serving at the end: 0 the new version serves; 1 the previous
  one serves; 2 nothing of ours changed; 3 is not a clean restore (that would be exit 1);
- the report says the same exit (and for exit 0, the application that serves);
- a SIGINT was enough: the runner's SIGTERM, 7.5 s later, was not needed.

The cells run against the fake dashboard (tests/support/fake_serve.py), which answers as Ray 2.60's
does, several at once (each has its own fake and proxy). ``test_real_head_cells`` runs a
representative few against a real head. The count of (step, fault) pairs tried is printed at the end
of the session (tests/conftest.py's terminal summary).
"""

from __future__ import annotations

import atexit
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
import requests as http

from tests.conftest import REPO
from tests.support.fake_serve import FakeCluster, FakeServe, QuietServer
from tests.support.faults import MATRIX_KEY, FaultProxy, Injection, Run, Step, faults_for, run_deploy

APPS = REPO / "tests" / "apps"
WORKERS = int(os.environ.get("CI_SERVE_MATRIX_WORKERS", "4"))
BYSTANDER_PACKAGE = "gcs://_ray_pkg_bystander0000000.zip"
BYSTANDER = {"name": "payments", "route_prefix": "/payments", "import_path": "deploy_app:app",
             "runtime_env": {"working_dir": BYSTANDER_PACKAGE}}


@dataclass(frozen=True)
class Plan:
    name: str
    #: the route prefix (None: a route-less application)
    prefix: str | None
    #: (working dir, greeting) deployed before, in order, to reach the starting state
    before: tuple[tuple[str, str], ...]
    #: what the deploy under test ships
    deploy: tuple[str, str]
    #: (version, greeting) the previous and the new version answer
    old: tuple[str, str]
    new: tuple[str, str]
    #: across two clusters: whose dashboard gets the faults, "live" or "standby" (None: one cluster)
    faulted: str | None = None
    #: ships its code (``--working-dir``: the package steps are in the plan); else runs stored packages
    ship: bool = False
    #: the command under test: ``deploy``, ``hold`` (deploy --hold), ``promote`` or ``abort`` release r2
    #: (across two clusters: of the whole config on the standby, issue 22)
    mode: str = "deploy"
    #: the starting state ends with ``deploy`` held as release r2 (for promote and abort)
    held_before: bool = False
    #: across two clusters: ``--traffic-command`` with steps (no Prometheus: each step checks the public entry)
    traffic: bool = False

    @property
    def success(self) -> str:
        """What serves after a run that exits 0: the new version, or (hold, abort) the old one still."""
        return "old" if self.mode in ("hold", "abort") else "new"


#: the held-release paths across two clusters (issue 22). The hold's own steps are those of two-cluster-standby
#: up to its checks, so it runs only with CI_SERVE_MATRIX_FULL=1 (it adds ~24 cells; the three below ~57)
TWO_CLUSTER_HELD = (("promote", "standby"), ("promote", "live"), ("abort", "standby"),
                    *((("hold", "standby"),) if os.environ.get("CI_SERVE_MATRIX_FULL") else ()))
PLANS = {p.name: p for p in (
    Plan("blue-green", "/shop", (("deploy_v1", "hi"),), ("deploy_v2", "hi"), ("v1", "hi"), ("v2", "hi"), ship=True),
    Plan("in-place", "/shop", (("deploy_v2", "hi"),), ("deploy_v2", "yo"), ("v2", "hi"), ("v2", "yo")),
    Plan("route-less", None, (("deploy_v1", "hi"),), ("deploy_v2", "hi"), ("v1", "hi"), ("v2", "hi")),
    Plan("two-cluster-live", "/shop", (("deploy_v1", "hi"),), ("deploy_v2", "hi"), ("v1", "hi"), ("v2", "hi"),
         faulted="live"),
    Plan("two-cluster-standby", "/shop", (("deploy_v1", "hi"),), ("deploy_v2", "hi"), ("v1", "hi"), ("v2", "hi"),
         faulted="standby"),
    Plan("hold", "/shop", (("deploy_v1", "hi"),), ("deploy_v2", "hi"), ("v1", "hi"), ("v2", "hi"), mode="hold"),
    Plan("promote", "/shop", (("deploy_v1", "hi"),), ("deploy_v2", "hi"), ("v1", "hi"), ("v2", "hi"),
         mode="promote", held_before=True),
    Plan("abort", "/shop", (("deploy_v1", "hi"),), ("deploy_v2", "hi"), ("v1", "hi"), ("v2", "hi"),
         mode="abort", held_before=True),
    *(Plan(f"two-cluster-traffic-{side}", "/shop", (("deploy_v1", "hi"),), ("deploy_v2", "hi"), ("v1", "hi"),
           ("v2", "hi"), faulted=side, traffic=True) for side in ("live", "standby")),
    *(Plan(f"two-cluster-{mode}-{side}", "/shop", (("deploy_v1", "hi"),), ("deploy_v2", "hi"), ("v1", "hi"),
           ("v2", "hi"), faulted=side, mode=mode,
           held_before=mode != "hold")
      for mode, side in TWO_CLUSTER_HELD),
)}

#: cells that break a promise until the deploy core's issue-21 fixes land; strict: a fix makes them fail
#: (XPASS), which says the mark is to be removed
XFAIL: dict[tuple[str, str, str], str] = {}


def config_file(directory: Path, plan: Plan, greeting: str, working_dir: str = "") -> Path:
    """The plan's config; with ``working_dir`` (a plan that does not ship its code), the application runs
    the package of that folder already on the cluster (:func:`stored_packages`)."""
    app: dict[str, Any] = {"name": "shop", "route_prefix": plan.prefix, "import_path": "deploy_app:app",
                           "deployments": [{"name": "Echo", "user_config": {"greeting": greeting}}]}
    if working_dir and not plan.ship:
        app["runtime_env"] = {"working_dir": f"gcs://_ray_pkg_{working_dir}.zip"}
    path = directory / f"serve-{plan.name}-{working_dir}-{greeting}.json"
    path.write_text(json.dumps({"applications": [app]}))
    return path


def stored_packages() -> dict[str, bytes]:
    """The packages the fakes hold from the start: the bystander's, and one per app folder for the plans
    that do not ship their code (shipping imports Ray: twice the CPU of a run that does not)."""
    out = {BYSTANDER_PACKAGE.replace("gcs://", "/api/packages/gcs/"): bystander_package()}
    for folder in ("deploy_v1", "deploy_v2"):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.write(APPS / folder / "deploy_app.py", "deploy_app.py")
        out[f"/api/packages/gcs/_ray_pkg_{folder}.zip"] = buf.getvalue()
    return out


def cli_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "GITHUB_", "INPUT_"))}
    return dict(env, HOME=str(home), PYTHONUNBUFFERED="1")


def deploy_cmd(address: str, config: Path, working_dir: str | None, report: Path) -> list[str]:
    """``ci-serve deploy``; ``--working-dir`` when ``working_dir`` is given (the code is shipped)."""
    ship = ["--working-dir", str(APPS / working_dir)] if working_dir else []
    return [sys.executable, "-m", "ci_serve", "deploy", str(config), "--address", address, *ship,
            "--report", str(report)]


def bystander_package() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("deploy_app.py", 'VERSION = "payments"\n')
    return buf.getvalue()


# -- the starting state and the steps of each plan, on the fake --------------------------------------
class PublicEntry:
    """The public entry of two clusters: forwards every GET to the Serve address in ``target_file``, which
    the switch command rewrites (``printf %s "$CI_SERVE_NEW_URL" > FILE``), as a load balancer would."""

    def __init__(self, target_file: Path, first: str):
        self.target_file = target_file
        target_file.write_text(first)
        entry = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                try:
                    resp = http.get(entry.target_file.read_text().strip() + self.path, timeout=10)
                    status, payload = resp.status_code, resp.content
                except http.RequestException:
                    status, payload = 502, b"bad gateway"
                self.send_response(status)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = QuietServer(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def switch_command(self) -> str:
        return f'printf %s "$CI_SERVE_NEW_URL" > {self.target_file}'

    def traffic_command(self) -> str:
        """All of it to the new cluster at any share above 0 (this entry cannot split), back at 0."""
        return (f'if [ "$CI_SERVE_TRAFFIC_WEIGHT" -gt 0 ]; then printf %s "$CI_SERVE_NEW_URL" > {self.target_file}; '
                f'else printf %s "$CI_SERVE_OLD_URL" > {self.target_file}; fi')

    def __enter__(self) -> PublicEntry:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def with_bystander(fake: FakeServe) -> FakeServe:
    fake.state.packages.update(stored_packages())
    assert fake.put({"applications": [BYSTANDER]})[0] == 200
    return fake


class Stage:
    """The clusters of one run of a plan: one fake (two across two clusters, and the public entry), each
    behind a fault proxy, restored to the plan's starting state; the deploy's command; what is seen."""

    def __init__(self, plan: Plan, workdir: Path, baselines: list[FakeCluster] | None):
        self.plan, self.workdir = plan, workdir
        self.fakes = [FakeServe() for _ in range(2 if plan.faulted else 1)]
        self.stack = ExitStack()
        for fake in self.fakes:
            self.stack.enter_context(fake)
        self.proxies = [self.stack.enter_context(FaultProxy(f.dashboard_url)) for f in self.fakes]
        if baselines is None:
            for fake in self.fakes:
                with_bystander(fake)
        else:
            for fake, baseline in zip(self.fakes, baselines, strict=True):
                fake.restore(baseline)
        self.entry = self.stack.enter_context(PublicEntry(workdir / "entry", self.fakes[0].serve_url)) \
            if plan.faulted else None

    @property
    def proxy(self) -> FaultProxy:
        """The proxy that gets the faults: the live cluster's, or the standby's."""
        return self.proxies[1] if self.plan.faulted == "standby" else self.proxies[0]

    def cmd(self, working_dir: str, greeting: str, report: Path, *, single: bool = False,
            mode: str | None = None) -> list[str]:
        """The deploy of ``working_dir`` with ``greeting``: to the one cluster, or (``single`` False across
        two clusters) to the standby, switched by the public entry; held, promoted or aborted (``mode``,
        default the plan's) as release r2."""
        config = config_file(self.workdir, self.plan, greeting, working_dir)
        base = deploy_cmd(self.proxies[0].url, config, working_dir if self.plan.ship else None, report)
        if self.plan.mode == "hold" and not single and not self.plan.faulted:
            return [*base, "--hold", "--version", "r2"]
        if self.plan.mode in ("promote", "abort") and not single and not self.plan.faulted:
            return [sys.executable, "-m", "ci_serve", self.plan.mode, str(config), "--address", self.proxies[0].url,
                    "--version", "r2", "--report", str(report)]
        if not self.plan.faulted or single:
            return base
        mode = mode or self.plan.mode
        if mode != "deploy":
            base = [*base[:3], "deploy" if mode == "hold" else mode, *base[4:], "--version", "r2",
                    *(["--hold"] if mode == "hold" else [])]
        if mode == "abort":
            return [*base, "--standby-address", self.proxies[1].url]
        expect = self.workdir / "requests.yaml"
        version = "v2" if working_dir == "deploy_v2" else "v1"
        expect.write_text(f"requests:\n  - name: version\n    path: /\n    expect:\n"
                          f"      json: {{version: {version}, greeting: {greeting}}}\n")
        assert self.entry is not None
        moves = (["--traffic-command", self.entry.traffic_command(), "--traffic-steps", "50,100",
                  "--step-interval", "1"] if self.plan.traffic else ["--switch-command", self.entry.switch_command()])
        return [*base, "--standby-address", self.proxies[1].url, "--standby-url", self.fakes[1].serve_url,
                *moves, "--verify-url", self.entry.url, "--verify-timeout", "10", "--requests", str(expect)]

    def snapshots(self) -> list[FakeCluster]:
        for fake in self.fakes:
            fake.settle()
        return [fake.snapshot() for fake in self.fakes]

    def seen(self) -> Seen:
        for fake in self.fakes:
            fake.settle()
        ours = {f"{i}:{n}": c for i, fake in enumerate(self.fakes) for n, c in fake.configs().items()
                if n != "payments"}
        plan = self.plan
        if self.entry is not None:
            try:
                answer = http.get(f"{self.entry.url}{plan.prefix}", timeout=10).json()
                got: Any = (answer.get("version"), answer.get("greeting"))
            except (http.RequestException, ValueError, AttributeError) as exc:
                got = type(exc).__name__
        elif plan.prefix is not None:
            status, answer = self.fakes[0].answer(plan.prefix)
            got = (answer.get("version"), answer.get("greeting")) if isinstance(answer, dict) else (status, answer)
        else:
            app = self.fakes[0].snapshot().apps.get("shop")
            got = app.serving if app is not None and app.deleting_until is None and not app.failed else None
        return Seen("new" if got == plan.new else "old" if got == plan.old else f"nobody ({got})", ours)

    def bystander_history(self) -> list[Any]:
        return [state.get("payments") for fake in self.fakes for state in fake.history]

    def close(self) -> None:
        self.stack.close()


@dataclass
class Prepared:
    plan: Plan
    baselines: list[FakeCluster]
    steps: list[Step]
    workdir: Path
    #: our applications at the start
    before: dict[str, Any]


def prepare(plan: Plan, workdir: Path) -> Prepared:
    """The plan's starting state (the bystander, then our previous version, deployed by ci-serve) and
    its steps, recorded from a clean run of the deploy under test."""
    workdir.mkdir(parents=True, exist_ok=True)
    env = cli_env(workdir / "home")
    stage = Stage(plan, workdir, None)
    try:
        for working_dir, greeting in plan.before:
            proxy = stage.proxies[0]
            proxy.reset()
            run = run_deploy(proxy, stage.cmd(working_dir, greeting, workdir / "before.json", single=True), env,
                             str(workdir))
            assert run.code == 0, run.stderr
        if plan.held_before:  # the release the cell promotes or aborts, held (across two clusters: on the standby)
            proxy = stage.proxies[0]
            proxy.reset()
            hold = stage.cmd(*plan.deploy, workdir / "held.json", mode="hold") if plan.faulted else \
                [*stage.cmd(*plan.deploy, workdir / "held.json", single=True), "--hold", "--version", "r2"]
            run = run_deploy(proxy, hold, env, str(workdir))
            assert run.code == 0, run.stderr
        baselines = stage.snapshots()
        before = stage.seen().ours
        stage.proxy.reset()
        run = run_deploy(stage.proxy, stage.cmd(*plan.deploy, workdir / "clean.json"), env, str(workdir))
        assert run.code == 0, run.stderr
        return Prepared(plan, baselines, list(stage.proxy.steps), workdir, before)
    finally:
        stage.close()


_PREPARED: dict[str, Prepared] = {}


def prepared(plan: str, root: Path) -> Prepared:
    if plan not in _PREPARED:
        _PREPARED[plan] = prepare(PLANS[plan], root / plan)
    return _PREPARED[plan]


def _root() -> Path:
    """The matrix's folder (configs, reports, HOME of each cell), removed when the session ends."""
    path = Path(tempfile.mkdtemp(prefix="ci-serve-matrix-"))
    atexit.register(shutil.rmtree, path, True)
    return path


_ROOT: list[Path] = []


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "cell" not in metafunc.fixturenames:
        return
    if not _ROOT:
        _ROOT.append(_root())
    params = []
    for name in PLANS:
        for step in prepared(name, _ROOT[0]).steps:
            for fault in faults_for(step):
                reason = XFAIL.get((name, step.label, fault))
                marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
                params.append(pytest.param((name, step.index, fault), id=f"{name}-{step.label}-{fault}", marks=marks))
    metafunc.parametrize("cell", params)


# -- one cell --------------------------------------------------------------------------------------
@dataclass
class Seen:
    #: "new", "old" or what answered instead
    serving: str
    #: our applications' configs at the end
    ours: dict[str, Any]


def promises(plan: Plan, seen: Seen, history: list[dict[str, Any]], before: dict[str, Any], run: Run,
             report: Path) -> list[str]:
    """Every promise the cell breaks, as a sentence (empty: all hold). ``history``: the bystander's config
    in every state the cluster went through; ``before``: our applications' configs at the start."""
    broken = []
    if run.cut_short:
        broken.append("the runner had to end the cancelled run (its SIGTERM killed it, or the SIGKILL 10 s after "
                      "SIGINT was needed): the cleanup was cut short")
    for i, state in enumerate(history):
        if state != BYSTANDER | {"route_prefix": "/payments"}:
            broken.append(f"the bystander was changed or removed (state {i}: {state})")
            break
    if not seen.serving.startswith(("new", "old")):
        broken.append(f"the public route is served by {seen.serving}, yet a version that can serve it exists")
    code = run.code
    if code == 0 and seen.serving != plan.success:
        broken.append(f"exit 0 but {seen.serving} serves")
    elif code == 1 and seen.serving != "old":
        broken.append(f"exit 1 but {seen.serving} serves (exit 1 says the previous version does)")
    elif code == 2 and seen.ours != before:
        broken.append(f"exit 2 (nothing changed) but ours changed: {sorted(before)} -> {sorted(seen.ours)}")
    elif code == 3 and seen.serving == "old" and seen.ours == before:
        broken.append("exit 3 but the previous state is restored and serves (that is exit 1)")
    elif code not in (0, 1, 2, 3):
        broken.append(f"exit {code}")
    held = [n for n, c in seen.ours.items() if "CI_SERVE_HOLD" in json.dumps(c)]
    if code == 0 and plan.mode == "hold" and not held:
        broken.append("exit 0 (held) but no application of ours carries the hold marker")
    if code == 0 and plan.mode == "abort" and held:
        broken.append(f"exit 0 (aborted) but {held} still carry the hold marker")
    if "Traceback" in run.stderr:
        broken.append("a traceback on the console")
    if not report.exists():
        broken.append("no report written")
    else:
        data = json.loads(report.read_text())
        if data.get("exit_code") != code:
            broken.append(f"the report says exit {data.get('exit_code')}, the process exited {code}")
        if (data.get("result") in ("deployed", "unchanged", "held", "aborted")) != (code == 0):
            broken.append(f"the report's result {data.get('result')!r} with exit {code}")
    return broken


def run_cell(prep: Prepared, step: int, fault: str) -> tuple[bool, list[str]]:
    """(was the fault injected, the promises broken) for one cell, on fakes of its own."""
    plan = prep.plan
    cell_dir = prep.workdir / f"cell-{step}-{fault}"
    cell_dir.mkdir(exist_ok=True)
    env = cli_env(cell_dir / "home")
    report = cell_dir / "report.json"
    stage = Stage(plan, cell_dir, prep.baselines)
    try:
        injection = Injection(step, fault)
        stage.proxy.reset(injection)
        run = run_deploy(stage.proxy, stage.cmd(*plan.deploy, report), env, str(cell_dir))
        broken = []
        if fault == "sigkill" and run.killed:
            seen = stage.seen()
            if not seen.serving.startswith(("new", "old")):
                broken.append(f"killed: the public route is served by {seen.serving}")
            stage.proxy.reset()
            report.unlink(missing_ok=True)
            run = run_deploy(stage.proxy, stage.cmd(*plan.deploy, report), env, str(cell_dir))
            broken += [f"re-run: {b}" for b in promises(plan, stage.seen(), stage.bystander_history(), prep.before,
                                                        run, report)]
        else:
            broken += promises(plan, stage.seen(), stage.bystander_history(), prep.before, run, report)
        if broken:
            broken.append(f"exit {run.code}; console tail:\n{run.stderr[-1500:]}")
        return injection.done.is_set(), broken
    finally:
        stage.close()


# -- running the selected cells several at once ----------------------------------------------------
_RESULTS: dict[tuple[str, int, str], tuple[bool, list[str]]] = {}
TRIED: dict[str, int] = {"cells": 0, "injected": 0}


@pytest.fixture(scope="module")
def matrix(request: pytest.FixtureRequest) -> dict[tuple[str, int, str], tuple[bool, list[str]]]:
    """Runs every selected cell of this module once, ``WORKERS`` at a time; their results by cell."""
    cells = [item.callspec.params["cell"] for item in request.session.items
             if item.module is request.module and hasattr(item, "callspec") and "cell" in item.callspec.params]
    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        futures = {c: pool.submit(run_cell, _PREPARED[c[0]], c[1], c[2]) for c in cells}
        for c, future in futures.items():
            _RESULTS[c] = future.result()
    TRIED["cells"] += len(cells)
    TRIED["injected"] += sum(1 for injected, _ in _RESULTS.values() if injected)
    TRIED["seconds"] = int(time.monotonic() - t0)
    request.config.stash[MATRIX_KEY] = dict(TRIED)
    return _RESULTS


def test_fault_at_step(matrix: dict[tuple[str, int, str], tuple[bool, list[str]]], cell: tuple[str, int, str]) -> None:
    injected, broken = matrix[cell]
    assert not broken, "\n".join(broken)
    assert injected, "the fault was never injected: the run took another path before this step"


# -- a representative few on a real head ----------------------------------------------------------
#: (plan, step, fault): the switch PUT's answer lost after Ray applied it; a cancel right after the switch
REAL_CELLS = [("blue-green", ("PUT", "apps", 1), "lost"), ("blue-green", ("GET", "apps", 2), "sigint")]


def real_seen(client: Any, head: Any, plan: Plan) -> Seen:
    apps = client.get_applications()["applications"]
    ours = {n: a.get("deployed_app_config") for n, a in apps.items() if n.startswith("shop")}
    try:
        answer = http.get(head.serve_url + str(plan.prefix), timeout=10).json()
        got: Any = (answer.get("version"), answer.get("greeting"))
    except (http.RequestException, ValueError, AttributeError) as exc:
        got = type(exc).__name__
    return Seen("new" if got == plan.new else "old" if got == plan.old else f"nobody ({got})", ours)


@pytest.fixture(scope="module")
def real_baseline(head: Any, client: Any, bystander: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
                  ) -> dict[str, Any]:
    """The blue-green plan's starting state on the module's head (our v1 live beside the bystander): the
    body that restores it by one PUT."""
    from tests.support.processes import wait_until
    work = tmp_path_factory.mktemp("real")
    plan = PLANS["blue-green"]
    for working_dir, greeting in plan.before:
        env = dict(cli_env(work / "home"), RAY_AUTH_TOKEN=head.token)
        proc = subprocess.run(deploy_cmd(head.dashboard_url, config_file(work, plan, greeting), working_dir,
                                         work / "before.json"), env=env, cwd=work, capture_output=True, text=True,
                              timeout=400)
        assert proc.returncode == 0, proc.stderr
    snapshot = client.get_applications()
    wait_until(lambda: real_seen(client, head, plan).serving == "old", 60, "v1 serving /shop")
    return {"http_options": {"host": "127.0.0.1", "port": head.serve_port},
            "applications": [a["deployed_app_config"] for a in snapshot["applications"].values()]}


@pytest.mark.ray
@pytest.mark.parametrize("plan_name,at,fault", REAL_CELLS,
                         ids=[f"{p}-{a[0]}-{a[1]}-w{a[2]}-{f}" for p, a, f in REAL_CELLS])
def test_real_head_cell(head: Any, client: Any, bystander: dict[str, Any], real_baseline: dict[str, Any],
                        tmp_path: Path, plan_name: str, at: tuple[str, str, int], fault: str) -> None:
    """A cell of the matrix against a real Ray head, restored to the starting state by one PUT."""
    from tests.support.processes import wait_until
    plan = PLANS[plan_name]
    client.put_applications(real_baseline)
    wait_until(lambda: set(real_seen(client, head, plan).ours) == {a["name"] for a in real_baseline["applications"]
                                                                   if a["name"].startswith("shop")}
               and real_seen(client, head, plan).serving == "old", 180, "the starting state restored")
    before = real_seen(client, head, plan).ours
    report = tmp_path / "report.json"
    with FaultProxy(head.dashboard_url) as proxy:
        injection = Injection(None, fault, at=at)
        proxy.reset(injection)
        run = run_deploy(proxy, deploy_cmd(proxy.url, config_file(tmp_path, plan, plan.deploy[1]), plan.deploy[0],
                                           report), dict(cli_env(tmp_path / "home"), RAY_AUTH_TOKEN=head.token),
                         str(tmp_path))
    assert injection.done.is_set(), f"the fault was never injected:\n{run.stderr}"
    # a removal written before the exit: Ray carries it out a moment later
    wait_until(lambda: all(a["status"] not in ("DELETING", "DEPLOYING")
                           for a in client.get_applications()["applications"].values()), 120, "the cluster settled")
    broken = promises(plan, real_seen(client, head, plan), [], before, run, report)
    assert not broken, "\n".join([*broken, run.stderr[-2000:]])
    if at == ("GET", "apps", 2) and fault == "sigint":
        # a cancel after the switch: the new version serves, the run could not finish: exit 3, saying so
        assert run.code == 3, run.stderr
        assert "after the switch" in run.stderr, run.stderr


# -- the harness itself ----------------------------------------------------------------------------
def test_interrupt_fails_when_the_runner_had_to_end_the_process() -> None:
    from tests.support.processes import interrupt

    def started(code: str) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", code + "\nprint('ready', flush=True)\ntime.sleep(60)"],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        return proc

    deaf = started("import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)")  # the SIGTERM ends it
    with pytest.raises(AssertionError, match="SIGTERM ended it"):
        interrupt(deaf, sigterm_after=0.5)
    deafer = started("import signal, time\nfor s in (signal.SIGINT, signal.SIGTERM): signal.signal(s, signal.SIG_IGN)")
    with pytest.raises(AssertionError, match="SIGKILL was needed"):
        interrupt(deafer, sigterm_after=0.5)
    assert deaf.poll() is not None and deafer.poll() is not None
    polite = started("import time")
    assert interrupt(polite) >= 0 and polite.returncode != 0
    # still cleaning up at the SIGTERM, which it ignores, and done before the SIGKILL: what ci-serve does
    slow = started("import signal, sys, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                   "def stop(*_):\n    time.sleep(1.0)\n    sys.exit(1)\nsignal.signal(signal.SIGINT, stop)")
    assert interrupt(slow, sigterm_after=0.5) >= 0.5 and slow.returncode == 1


def test_steps_collapse_a_gates_polls_and_skip_capacity_reads() -> None:
    with FakeServe() as fake, FaultProxy(fake.dashboard_url) as proxy:
        proxy.reset(Injection(None, "empty", at=("GET", "apps", 1)))
        for method, path in [("GET", "/api/version"), ("GET", "/api/serve/applications/"),
                             ("PUT", "/api/serve/applications/"), ("GET", "/api/serve/applications/"),
                             ("GET", "/api/cluster_status"), ("GET", "/api/serve/applications/")]:
            body = {"applications": []} if method == "PUT" else None
            resp = http.request(method, proxy.url + path, json=body, timeout=5)
            if method == "GET" and path.endswith("applications/"):
                assert ("applications" in resp.json()) is True
        assert [s.label for s in proxy.steps] == ["00-GET-version-w0", "01-GET-apps-w0", "02-PUT-apps-w0",
                                                   "03-GET-apps-w1"]
        assert proxy.injection is not None and proxy.injection.done.is_set()
        assert [entry[2] for entry in proxy.log if entry[0] == "GET" and "applications" in entry[1]] == \
            ["200", "empty", "200"]
