"""`ci-serve validate` (not implemented yet)."""

from __future__ import annotations

import argparse

from ci_serve.errors import InputError
from ci_serve.report import Run


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace, run: Run) -> int:
    raise InputError("`ci-serve validate` is not implemented yet")
