"""``dnr-sweep status RUN_DIR``: where a running or finished sweep stands, from its files only (no Ray)."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="progress of a running or finished sweep, from its files (no Ray)")
    p.add_argument("run_dir", metavar="RUN_DIR", help="the run folder `dnr-sweep run` printed (storage/name)")
    p.add_argument("--json", action="store_true", help="print one JSON object (for scripts) instead of text")


def run(args: argparse.Namespace) -> int:
    from dnr_sweep.sweep.status import format_status, sweep_status  # lazy: pulls pandas; --help stays light

    status = sweep_status(args.run_dir)
    if args.json:
        print(json.dumps(status.to_json(), indent=2))
    else:
        print(format_status(status))
    return 0
