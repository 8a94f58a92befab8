"""``ci-serve``: parse, call the library, render. Nothing else lives here.

Each command is a module in :mod:`ci_serve.commands` with ``add_arguments(parser)`` and
``run(args, run) -> int``. Command modules import Ray lazily, so ``ci-serve --help`` and
``validate --no-import`` stay fast. Typed errors are rendered here, once, where the exit code is chosen.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from types import FrameType
from typing import NoReturn

from ci_serve import __version__, cancel, console
from ci_serve.errors import EXIT_BAD_INPUT, EXIT_FAILED, Cancelled, CiServeError
from ci_serve.report import Run

COMMANDS = {
    "smoke": "test an app on a temporary Ray head, like `serve run` + curl, checked and cleaned up",
    "validate": "check a Serve config: every problem, with file:line",
    "build": "write a Serve config from import paths, like `serve build`",
    "plan": "show what a deploy of CONFIG would change on a cluster",
    "deploy": "deploy CONFIG to a cluster, gated on RUNNING, rolled back on failure",
    "status": "show the applications on a cluster, like `serve status`",
    "config": "show the config a cluster is running, like `serve config`",
}


def add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by every command that talks to a dashboard."""
    parser.add_argument("--address", "-a", metavar="URL",
                        help="Ray dashboard address (default: $RAY_DASHBOARD_ADDRESS, $RAY_ADDRESS when it "
                             "is an http(s) URL, else http://127.0.0.1:8265)")
    parser.add_argument("--ca-cert", metavar="FILE", help="extra CA certificate bundle for an https dashboard")
    parser.add_argument("--insecure", action="store_true",
                        help="do not verify the dashboard's TLS certificate (prints a warning)")


def add_ray_pin_arguments(parser: argparse.ArgumentParser) -> None:
    """``plan``/``deploy``: the Ray the app pins, compared with the cluster's (ci_serve.cluster.versions)."""
    pins = parser.add_mutually_exclusive_group()
    pins.add_argument("--requirements", metavar="FILE",
                      help="the app's requirements file: its Ray pin (`ray[serve]==X`) is compared with the "
                           "cluster's Ray, and a mismatch warned of")
    pins.add_argument("--ray-version", metavar="X", help="the Ray version the app was tested with")
    parser.add_argument("--require-same-ray", action="store_true",
                        help="exit 2 when the cluster's Ray differs from the app's pin")


def add_report_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--report", metavar="FILE", help="write a JSON account of the run to FILE (atomically)")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # exit 2 with a TIP, like every other bad input
        self.print_usage(sys.stderr)
        console.say(f"ERROR {message}")
        console.say(f"TIP   run `{self.prog} --help` for the options")
        raise SystemExit(EXIT_BAD_INPUT)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ci-serve", description="Take a Ray Serve application from pull request to production.")
    parser.add_argument("--version", action="version", version=f"ci-serve {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name, help_text in COMMANDS.items():
        module = importlib.import_module(f"ci_serve.commands.{name}")
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(cmd)
        if not any(a.dest == "report" for a in cmd._actions):
            add_report_argument(cmd)
    return parser


class _CancelOnSignal:
    """The first SIGINT/SIGTERM raises :class:`Cancelled` where the program is, so every ``finally``
    (remove the candidate, stop the head, write the report) runs; later signals are ignored so the
    runner's SIGTERM after SIGINT cannot interrupt that cleanup."""

    def __init__(self) -> None:
        self.fired = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.fired:
            console.say(f"... {signal.Signals(signum).name} again: still cleaning up")
            return
        self.fired = True
        err = Cancelled(f"cancelled by {signal.Signals(signum).name}",
                        "the run was stopped before it finished; cleanup ran, see the steps above")
        cancel.request(err)  # in case library code swallows the exception raised here
        raise err

    def install(self) -> None:
        signal.signal(signal.SIGINT, self)
        signal.signal(signal.SIGTERM, self)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    module = importlib.import_module(f"ci_serve.commands.{args.command}")
    run = Run(command=args.command)
    _CancelOnSignal().install()
    try:
        code: int = module.run(args, run)
    except CiServeError as err:
        console.render_error(err)
        run.errors.append(err.as_dict())
        run.result = err.result
        code = err.exit_code
    except KeyboardInterrupt:  # a SIGINT that arrived before our handler was installed
        cancelled = Cancelled("cancelled by SIGINT")
        console.render_error(cancelled)
        run.errors.append(cancelled.as_dict())
        run.result, code = cancelled.result, cancelled.exit_code
    run.exit_code = code
    try:
        run.write(getattr(args, "report", None))
    except OSError as exc:
        console.say(f"ERROR could not write the report {args.report}: {exc.strerror}")
        code = code or EXIT_FAILED
    return code


def entry() -> None:
    """The console script and ``python -m ci_serve``: :func:`main`, then exit with its code.

    When this process loaded Ray as a driver (smoke), Ray's own at-exit hooks run after ``main``
    returns; seen here: a segfault in them after a cancel replaced our exit code. Everything the run
    owes the user (report, outputs, cleanup) is done by then, so the process leaves without them.
    """
    try:
        code = main()
    except SystemExit as exc:  # argparse: --help, --version, usage errors
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_BAD_INPUT)
    if "ray" in sys.modules:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    raise SystemExit(code)


if __name__ == "__main__":
    entry()
