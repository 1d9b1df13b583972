"""Flags several commands share."""

from __future__ import annotations

import argparse


def add_set(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config value by dotted path, e.g. --set dnr.density=0.1 (repeatable)",
    )  # fmt: skip


def add_ray(parser: argparse.ArgumentParser) -> None:
    """Where the sweep runs: an embedded local Ray or a cluster, and its dashboard."""
    parser.add_argument("--address", default=None, help="an existing Ray cluster, e.g. 10.0.0.1:6379 or 'auto'")
    parser.add_argument("--no-dashboard", action="store_true", help="do not start Ray's dashboard")
    parser.add_argument("--dashboard-host", default="127.0.0.1",
                        help="interface the dashboard and job API bind to (default loopback only)")  # fmt: skip
    parser.add_argument("--no-report", action="store_true", help="skip the report at the end")
