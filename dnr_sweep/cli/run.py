"""``dnr-sweep run CONFIG``: the sweep on Ray Tune; writes results.parquet, epochs.parquet, the report.

Everything that can be known before Ray starts is checked first, in seconds: the config (schema and
dry preparation, :mod:`dnr_sweep.training.dry_run`), ``--storage``/``--name``, the data set's files, Tune's
own rules for the search space, resources against this machine (embedded Ray) and ``--address``
(reachable within seconds). The data set is then fetched and verified here if missing
(:func:`dnr_sweep.data.fetch.prepare`; offline or a 404 ends in one message before Ray starts) and,
on a cluster, once on every node before the trials (:mod:`dnr_sweep.sweep.data_nodes`). The run folder's lock is then held for the whole sweep: a second
``run``/``resume`` into it is refused, naming the holder.
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import sys
from pathlib import Path
from typing import Any

from dnr_sweep.cli._common import add_ray, add_set
from dnr_sweep.data import fetch as data_fetch
from dnr_sweep.foundation import locks as folder_lock
from dnr_sweep.foundation.errors import EXIT_INTERRUPTED, EXIT_USAGE, UserError
from dnr_sweep.sweep.data_nodes import prepare_nodes


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
    # lazy: loaded only when this command runs (cli/__init__ imports every command for --help)
    from dnr_sweep.config import load_sweep_config
    from dnr_sweep.sweep import cluster, run_folder, search, tuner
    from dnr_sweep.training.dry_run import check_sweep

    cluster.check_dashboard_host(args.dashboard_host)
    if args.address is not None:
        cluster.check_cluster_address(args.address)  # seconds, so first: ray.init would wait without end
    config = load_sweep_config(args.config, args.overrides)  # fails fast, before Ray starts
    run_dir = run_folder.plan_run_dir(config, storage=args.storage, name=args.name)
    if args.address is None:
        cluster.check_local_resources(config)
    check_sweep(config, args.config)  # imports torch: after the checks that need little
    data_fetch.prepare(config.data)  # here, before Ray starts: offline or a 404 ends in seconds
    search.param_space(config)
    # a local run folder is locked while the sweep runs; object stores (s3://...) have no locks
    local = run_dir.local
    lock = folder_lock.hold(local, purpose="run the sweep") if local is not None else contextlib.nullcontext()
    with lock:
        if local is not None:
            run_folder.check_run_dir_unused(local)  # again, now that no other run can start here
        cluster.start_ray(address=args.address, dashboard=not args.no_dashboard, dashboard_host=args.dashboard_host)
        cluster.check_resources_feasible(config)
        if args.address is not None:  # every node of a cluster, once, before the trials (trials never download)
            prepare_nodes(config.data)
        run_folder.prepare_run_dir(run_dir, config_path=Path(args.config), overrides=args.overrides)
        print(f"run folder: {run_dir}")
        outcome = tuner.fit(config, run_dir, restore=False)
        return finish(outcome, config, report=not args.no_report)


def finish(outcome: Any, config: Any, *, report: bool) -> int:
    """Assemble the sweep's tables, print its summary, draw the report; the exit code."""
    # lazy: loaded only when this command runs (cli/__init__ imports every command for --help)
    from dnr_sweep.sweep.results import finish_sweep

    report_error = None
    try:
        summary = finish_sweep(outcome, config, report=report)
    except UserError as exc:  # the tables are written before the report is drawn: the results are safe
        summary, report_error = None, exc
    for line in summary.lines if summary is not None else []:
        print(line)
    if outcome.errors:
        print(f"\n{len(outcome.errors)} trial(s) failed:", file=sys.stderr)
        for trial_id, error in outcome.errors.items():
            print(f"  {trial_id}: {error}", file=sys.stderr)
    if outcome.interrupted:
        command = shlex.join(["dnr-sweep", "resume", str(outcome.run_dir)])
        print(f"\nthe sweep was interrupted; continue it with: {command}", file=sys.stderr)
        return EXIT_INTERRUPTED
    if report_error is not None:
        print(f"\nthe trials finished, but the report failed: {report_error}\nfix it and draw the report with: "
              f"{shlex.join(['dnr-sweep', 'report', str(outcome.run_dir)])}", file=sys.stderr)  # fmt: skip
        return EXIT_USAGE
    return 1 if outcome.errors else 0
