"""Command-line options several commands share: the cluster to talk to, the app's Ray pin, the report."""

from __future__ import annotations

import argparse


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
    pins.add_argument("--requirements", metavar="FILE", help=REQUIREMENTS_HELP)
    pins.add_argument("--ray-version", metavar="X", help="the Ray version the app was tested with")
    parser.add_argument("--require-same-ray", action="store_true", help="exit 2 when the cluster's Ray differs "
                        "from the app's pin")


REQUIREMENTS_HELP = ("the app's requirements file: its Ray pin (`ray[serve]==X`) is compared with the cluster's "
                     "Ray, and a mismatch warned of")


def add_report_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--report", metavar="FILE", help="write a JSON account of the run to FILE (atomically)")
