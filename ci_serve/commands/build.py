"""`ci-serve build IMPORT_PATH [IMPORT_PATH ...] [--app-dir DIR] (-o FILE | --rayservice MANIFEST)`, like
`serve build`; ``--rayservice`` writes the config into a KubeRay manifest's ``spec.serveConfigV2``."""

from __future__ import annotations

import argparse
from pathlib import Path

from ci_serve import console
from ci_serve.config.build import build, parse_specs
from ci_serve.errors import InputError
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
    written = build(parse_specs(args.import_paths), args.app_dir, log=log,
                    output=Path(args.output) if args.output else None,
                    rayservice=Path(args.rayservice) if args.rayservice else None)
    console.say(f"wrote {args.output or args.rayservice}: application names and route prefixes follow `serve build` "
                "(app1 at '/', or app1, app2, ... at /app1, /app2, ...); rename them as you need")
    return Done("built", written)
