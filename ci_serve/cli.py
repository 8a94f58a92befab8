"""``ci-serve``: parse, call the library, render. Nothing else lives here.

Each command is a module in :mod:`ci_serve.commands` with ``add_arguments(parser)`` and
``execute(args, log) -> result``: it records its steps in the :class:`~ci_serve.steps.StepLog` and
returns what happened (:class:`~ci_serve.steps.StageResult`). Here, and only here, that becomes the
exit code and the report; a typed error is rendered once, where the exit code is chosen. Command
modules import Ray lazily, so ``ci-serve --help`` and ``validate --no-import`` stay fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import NoReturn

from ci_serve import __version__, console, ledger
from ci_serve.cancel import install_signal_handlers
from ci_serve.commands.options import add_report_argument
from ci_serve.errors import EXIT_BAD_INPUT, EXIT_FAILED, Cancelled, CiServeError, Unexpected
from ci_serve.report import Run
from ci_serve.steps import StageResult, StepLog

COMMANDS = {
    "smoke": "test an app on a temporary Ray head, like `serve run` + curl, checked and cleaned up",
    "validate": "check a Serve config: every problem, with file:line",
    "build": "write a Serve config from import paths, like `serve build`",
    "plan": "show what a deploy of CONFIG would change on a cluster",
    "deploy": "deploy CONFIG to a cluster, gated on RUNNING, rolled back on failure",
    "promote": "take a release held by `deploy --hold` live, as deploy would",
    "abort": "remove a release held by `deploy --hold`; live stays as it was",
    "status": "show the applications on a cluster, like `serve status`",
    "config": "show the config a cluster is running, like `serve config`",
}


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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    module = importlib.import_module(f"ci_serve.commands.{args.command}")
    run = Run(command=args.command)
    log = StepLog()
    install_signal_handlers()
    ledger.clear()
    error: CiServeError | None = None
    try:
        result: StageResult = module.execute(args, log)
        run.result, run.data, error = result.outcome, result.sections(), result.error
    except CiServeError as err:
        error = err
    except KeyboardInterrupt:  # a SIGINT that arrived before our handler was installed
        error = Cancelled("cancelled by SIGINT")
    except Exception as exc:  # a bug: its verdict, the traceback in the report, one ERROR line
        error = unexpected(exc)
    run.steps, run.timings = log.steps, log.timings
    code = 0
    if error is not None:
        if isinstance(error, Unexpected):
            report = getattr(args, "report", None)
            console.say(f"ERROR {error.message}; the traceback is in "
                        + (f"the report {report}" if report else "the report (pass --report FILE to keep it)"))
        else:
            console.render_error(error)
        run.errors.append(error.as_dict())
        run.result, code = error.result, error.exit_code
    run.exit_code = code
    try:
        run.write(getattr(args, "report", None))
    except OSError as exc:
        console.say(f"ERROR could not write the report {args.report}: {exc.strerror}")
        code = code or EXIT_FAILED
    return code


def unexpected(exc: BaseException) -> Unexpected:
    """The error an exception nobody named becomes: exit 3 once this process sent a write, else 2."""
    from ci_serve.deploy.verdict import unexpected as verdict_of

    return verdict_of(exc, wrote=ledger.wrote())


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
