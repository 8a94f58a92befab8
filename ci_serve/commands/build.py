"""`ci-serve build IMPORT_PATH [IMPORT_PATH ...] [--app-dir DIR] (-o FILE | --rayservice MANIFEST)`, like
`serve build`; ``--rayservice`` writes the config into a KubeRay manifest's ``spec.serveConfigV2``."""

from __future__ import annotations

import argparse
from pathlib import Path

from ci_serve import console
from ci_serve.config.build import build_config, into_rayservice, parse_specs, render
from ci_serve.config.schema import schema_errors
from ci_serve.errors import InputError
from ci_serve.report import write_text_atomic
from ci_serve.steps import Done, StepLog


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("import_paths", nargs="+", metavar="IMPORT_PATH",
                        help="module:attribute of an application or builder function; key=value words after "
                             "a builder function are its arguments")
    parser.add_argument("--app-dir", default=".", metavar="DIR",
                        help="folder the import paths are imported from (default: the current folder)")
    parser.add_argument("-o", "--output", metavar="FILE", help="the config file to write")
    parser.add_argument("--rayservice", metavar="MANIFEST",
                        help="a KubeRay RayService manifest whose spec.serveConfigV2 is replaced by the built "
                             "config; the rest of the file is kept byte for byte")


def execute(args: argparse.Namespace, log: StepLog) -> Done:
    if not args.output and not args.rayservice:
        raise InputError("nothing to write: give -o FILE, --rayservice MANIFEST, or both",
                         "e.g. `ci-serve build my_app.main:app -o serve_config.yaml`")
    specs = parse_specs(args.import_paths)
    with log.step(f"import {len(specs)} application(s) from {args.app_dir}") as st:
        config = build_config(specs, args.app_dir)
        st.detail = ", ".join(f"{a['name']}: {len(a['deployments'])} deployment(s)" for a in config["applications"])
    errors = [e for e in schema_errors(config) if e[4] == "error"]
    if errors:  # our own output must validate; anything else is a bug in build
        raise InputError("the built config does not validate: " + str(errors[0][1]))
    text = render(config, specs)
    done = Done("built")
    if args.rayservice:
        manifest = Path(args.rayservice)
        with log.step(f"write spec.serveConfigV2 of {manifest}"):
            new_text = into_rayservice(manifest, config, text)
            mode = manifest.stat().st_mode
            write_text_atomic(manifest, new_text)
            manifest.chmod(mode)  # an edit in place: keep the file's permissions too
        done.data["rayservice"] = str(manifest)
    if args.output:
        output = Path(args.output)
        with log.step(f"write {output}"):
            write_text_atomic(output, text)
        done.data["output"] = str(output)
    done.data["applications"] = [{"name": a["name"], "route_prefix": a["route_prefix"],
                                  "import_path": a["import_path"],
                                  "deployments": [d["name"] for d in a["deployments"]]}
                                 for a in config["applications"]]
    console.say(f"wrote {args.output or args.rayservice}: application names and route prefixes follow `serve build` "
                "(app1 at '/', or app1, app2, ... at /app1, /app2, ...); rename them as you need")
    return done
