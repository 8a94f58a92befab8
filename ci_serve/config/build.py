"""`ci-serve build`: a multi-application Serve config from import paths, like `serve build`.

Each import path is imported in a child process (:func:`ci_serve.config.inspect.inspect_app`) and
every deployment is written with the options set in code. Names and route prefixes follow
`serve build`: ``app1``, ``app2``, ... and route prefix ``/`` for a single application, ``/app1``,
``/app2``, ... for several, so a file written by either tool looks the same. Unlike `serve build`,
the output is deterministic (no host IP, no time), builder functions take ``key=value`` arguments
(written under the application's ``args``), and the file starts with a comment saying what wrote it.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from ci_serve import __version__
from ci_serve.config.importpath import import_path_problem
from ci_serve.config.inspect import AppGraph, inspect_app
from ci_serve.config.schema import schema_errors
from ci_serve.config.validate import IMPORT_WORKERS
from ci_serve.errors import InputError
from ci_serve.report import write_text_atomic
from ci_serve.steps import StepLog


@dataclass
class AppSpec:
    """One application to build: an import path and its builder arguments."""

    import_path: str
    args: dict[str, str] = field(default_factory=dict)


def parse_specs(words: Sequence[str]) -> list[AppSpec]:
    """``["m:builder", "k=v", "n:app"]`` -> two specs; ``key=value`` words belong to the import path before them."""
    specs: list[AppSpec] = []
    for word in words:
        if "=" in word and ":" not in word.split("=", 1)[0]:
            key, _, value = word.partition("=")
            if not specs:
                raise InputError(f"argument {word!r} comes before any import path",
                                 "write the import path first: `ci-serve build module:builder key=value -o FILE`")
            if not key:
                raise InputError(f"argument {word!r} has no name", "write builder arguments as key=value")
            specs[-1].args[key] = value
        else:
            wrong = import_path_problem(word)
            if wrong:
                raise InputError(wrong[0], wrong[1])
            specs.append(AppSpec(word))
    if not specs:
        raise InputError("no import path given", "e.g. `ci-serve build my_app.main:app -o serve_config.yaml`")
    return specs


def app_names(count: int) -> list[tuple[str, str]]:
    """(name, route_prefix) per application, as `serve build` chooses them."""
    if count == 1:
        return [("app1", "/")]
    return [(f"app{i}", f"/app{i}") for i in range(1, count + 1)]


def build_config(specs: Sequence[AppSpec], app_dir: str | Path = ".", timeout: float = 60) -> dict[str, Any]:
    """The config as data: every application with every deployment and its options from code."""
    with ThreadPoolExecutor(max_workers=IMPORT_WORKERS) as pool:  # map keeps the order: deterministic
        graphs: list[AppGraph] = list(pool.map(
            lambda s: inspect_app(s.import_path, app_dir, s.args or None, timeout=timeout), specs))
    apps = []
    for spec, graph, (name, prefix) in zip(specs, graphs, app_names(len(specs)), strict=True):
        app: dict[str, Any] = {"name": name, "route_prefix": prefix, "import_path": spec.import_path,
                               "runtime_env": {}}
        if spec.args:
            app["args"] = dict(spec.args)
        app["deployments"] = [{"name": dep, **options} for dep, options in graph.deployments.items()]
        apps.append(app)
    return {"proxy_location": "EveryNode", "http_options": {"host": "0.0.0.0", "port": 8000},
            "applications": apps}


def render(config: dict[str, Any], specs: Sequence[AppSpec]) -> str:
    sources = " ".join(s.import_path + "".join(f" {k}={v}" for k, v in s.args.items()) for s in specs)
    header = (f"# Written by `ci-serve build` (ci-serve {__version__}, Ray {_ray_version()}) from: {sources}\n"
              "# Every deployment is listed with the options set in its code; change them here (this file\n"
              "# overrides the code field by field). Check it with `ci-serve validate`.\n\n")
    body = yaml.safe_dump(config, sort_keys=False, default_flow_style=False, width=1000, indent=2)
    return header + body


def _ray_version() -> str:
    try:
        return metadata.version("ray")
    except metadata.PackageNotFoundError:
        return "unknown"


def into_rayservice(manifest: Path, config: dict[str, Any], config_text: str) -> str:
    """The text of ``manifest`` (a KubeRay RayService) with ``config_text`` as its ``spec.serveConfigV2``;
    every byte outside that block is kept (comments, key order, other documents)."""
    from ci_serve.config.loader import _parse, read_text
    from ci_serve.config.rayservice import find_serve_config, replace_serve_config

    raw = read_text(manifest, what="RayService manifest")
    block = find_serve_config(_parse(raw, manifest, offset=None), raw, str(manifest))
    text = replace_serve_config(raw, block, config_text)
    again = find_serve_config(_parse(text, manifest, offset=None), text, str(manifest))
    if yaml.safe_load(again.text) != config:  # our own edit must read back; anything else is a bug here
        raise InputError(f"{manifest}: the built config did not read back from serveConfigV2",
                         "write it with -o and paste it under serveConfigV2 by hand")
    return text


def build(specs: Sequence[AppSpec], app_dir: str, *, output: Path | None, rayservice: Path | None,
          log: StepLog) -> dict[str, Any]:
    """Import, build, check and write the config (to ``output``, into ``rayservice``'s manifest, or both),
    each a step of ``log``. Returns the report's sections: what was written and its applications."""
    with log.step(f"import {len(specs)} application(s) from {app_dir}") as st:
        config = build_config(specs, app_dir)
        st.detail = ", ".join(f"{a['name']}: {len(a['deployments'])} deployment(s)" for a in config["applications"])
    errors = [e for e in schema_errors(config) if e[4] == "error"]
    if errors:  # our own output must validate; anything else is a bug in build
        raise InputError("the built config does not validate: " + str(errors[0][1]))
    text = render(config, specs)
    written: dict[str, Any] = {}
    if rayservice is not None:
        with log.step(f"write spec.serveConfigV2 of {rayservice}"):
            new_text = into_rayservice(rayservice, config, text)
            mode = rayservice.stat().st_mode
            write_text_atomic(rayservice, new_text)
            rayservice.chmod(mode)  # an edit in place: keep the file's permissions too
        written["rayservice"] = str(rayservice)
    if output is not None:
        with log.step(f"write {output}"):
            write_text_atomic(output, text)
        written["output"] = str(output)
    written["applications"] = [{"name": a["name"], "route_prefix": a["route_prefix"], "import_path": a["import_path"],
                                "deployments": [d["name"] for d in a["deployments"]]}
                               for a in config["applications"]]
    return written
