"""``dnr-sweep resume RUN_DIR``: continue an interrupted sweep; finished trials are not run again."""

from __future__ import annotations

import argparse

from dnr_sweep import storage
from dnr_sweep.cli._common import add_ray
from dnr_sweep.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("resume", help="continue an interrupted sweep")
    p.add_argument("run_dir", metavar="RUN_DIR")
    add_ray(p)


def run(args: argparse.Namespace) -> int:
    from dnr_sweep.cli.run import finish
    from trainables import sweep

    try:
        run_dir = storage.locate(args.run_dir, what="RUN_DIR")
        config = sweep.load_run_dir_config(run_dir)
        sweep.start_ray(address=args.address, dashboard=not args.no_dashboard, dashboard_host=args.dashboard_host)
        sweep.check_resources_feasible(config)
    except (sweep.SweepError, storage.StorageError) as exc:
        raise UserError(str(exc)) from None
    print(f"resuming {run_dir}")
    outcome = sweep.fit(config, run_dir, restore=True)
    return finish(outcome, config, report=not args.no_report)
