"""`ci-serve promote CONFIG --version V`: take a release held by `deploy --hold` live, as a deploy would.

The held release is found on the cluster alone (the job that held it may have run days before, on
another runner). Refused with exit 2, nothing written, when no release V of the config's applications
is held, or when the live application or the held candidate changed since the hold. Otherwise the
candidates are gated and checked again, then switched, verified and the old versions retired.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ci_serve.commands import deploy
from ci_serve.steps import StepLog

if TYPE_CHECKING:
    from ci_serve.deploy.result import DeployResult


def add_arguments(parser: argparse.ArgumentParser) -> None:
    deploy.add_held_arguments(parser, "promote")


def execute(args: argparse.Namespace, log: StepLog) -> DeployResult:
    return deploy.execute_mode(args, log, "promote")
