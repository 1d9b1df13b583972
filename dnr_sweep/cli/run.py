"""``dnr-sweep run CONFIG``: the sweep on Ray Tune; writes results.parquet, epochs.parquet, the report."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from dnr_sweep.cli._common import add_ray, add_set
from dnr_sweep.errors import EXIT_INTERRUPTED, UserError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run the sweep on Ray Tune (embedded local Ray or --address)")
    p.add_argument("config", metavar="CONFIG")
    p.add_argument("--storage", default="runs", metavar="DIR|URI",
                   help="where run folders go: a folder (default ./runs; shared by all nodes on a cluster) or a "
                        "filesystem URI Ray Tune accepts, e.g. s3://bucket/runs, file:///shared/runs")  # fmt: skip
    p.add_argument("--name", default=None, help="run folder name (default: the config's name and a timestamp)")
    add_ray(p)
    add_set(p)


def run(args: argparse.Namespace) -> int:
    from dnr_sweep.config import load_sweep_config

    config = load_sweep_config(args.config, args.overrides)  # fails fast, before Ray starts
    from dnr_sweep.data import check_available
    from trainables import sweep

    try:
        run_dir = sweep.plan_run_dir(config, storage=args.storage, name=args.name)
        check_available(config.data.dataset, root=config.data.root_path, download=config.data.download)
        sweep.start_ray(address=args.address, dashboard=not args.no_dashboard, dashboard_host=args.dashboard_host)
        sweep.check_resources_feasible(config)
        sweep.prepare_run_dir(run_dir, config_path=Path(args.config), overrides=args.overrides)
    except sweep.SweepError as exc:
        raise UserError(str(exc)) from None
    print(f"run folder: {run_dir}")
    outcome = sweep.fit(config, run_dir, restore=False)
    return finish(outcome, config, report=not args.no_report)


def finish(outcome: Any, config: Any, *, report: bool) -> int:
    """Assemble the sweep's tables, print its summary, draw the report; the exit code."""
    from trainables.results import finish_sweep

    summary = finish_sweep(outcome, config, report=report)
    for line in summary.lines:
        print(line)
    if outcome.errors:
        print(f"\n{len(outcome.errors)} trial(s) failed:", file=sys.stderr)
        for trial_id, error in outcome.errors.items():
            print(f"  {trial_id}: {error}", file=sys.stderr)
    if outcome.interrupted:
        command = shlex.join(["dnr-sweep", "resume", str(outcome.run_dir)])
        print(f"\nthe sweep was interrupted; continue it with: {command}", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 1 if outcome.errors else 0
