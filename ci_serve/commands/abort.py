"""`ci-serve abort CONFIG --version V`: remove a release held by `deploy --hold`; live stays as it was.

Exit 0 with ``result: aborted``; when nothing of release V is held, exit 0 with ``result: unchanged``
and a note.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ci_serve.commands import deploy
from ci_serve.steps import StepLog

if TYPE_CHECKING:
    from ci_serve.deploy.result import DeployResult


def add_arguments(parser: argparse.ArgumentParser) -> None:
    deploy.add_held_arguments(parser, "abort")


def execute(args: argparse.Namespace, log: StepLog) -> DeployResult:
    return deploy.execute_mode(args, log, "abort")
