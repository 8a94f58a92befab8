"""`ci-serve build IMPORT_PATH [IMPORT_PATH ...] [--app-dir DIR] -o FILE`, like `serve build`."""

from __future__ import annotations

import argparse
from pathlib import Path

from ci_serve import console
from ci_serve.config.build import build_config, parse_specs, render
from ci_serve.config.schema import schema_errors
from ci_serve.errors import InputError
from ci_serve.report import Run, write_text_atomic


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("import_paths", nargs="+", metavar="IMPORT_PATH",
                        help="module:attribute of an application or builder function; key=value words after "
                             "a builder function are its arguments")
    parser.add_argument("--app-dir", default=".", metavar="DIR",
                        help="folder the import paths are imported from (default: the current folder)")
    parser.add_argument("-o", "--output", required=True, metavar="FILE", help="the config file to write")


def run(args: argparse.Namespace, run: Run) -> int:
    specs = parse_specs(args.import_paths)
    with console.step(run, f"import {len(specs)} application(s) from {args.app_dir}") as st:
        config = build_config(specs, args.app_dir)
        st.detail = ", ".join(f"{a['name']}: {len(a['deployments'])} deployment(s)" for a in config["applications"])
    if schema_errors(config):  # our own output must validate; anything else is a bug in build
        raise InputError("the built config does not validate: " + str(schema_errors(config)[0][1]))
    output = Path(args.output)
    with console.step(run, f"write {output}"):
        write_text_atomic(output, render(config, specs))
    run.data["output"] = str(output)
    run.data["applications"] = [{"name": a["name"], "route_prefix": a["route_prefix"],
                                 "import_path": a["import_path"],
                                 "deployments": [d["name"] for d in a["deployments"]]}
                                for a in config["applications"]]
    console.say(f"wrote {output}: application names and route prefixes follow `serve build` "
                "(app1 at '/', or app1, app2, ... at /app1, /app2, ...); rename them as you need")
    run.result = "built"
    return 0
