"""``dnr-sweep resume RUN_DIR``: continue an interrupted sweep; finished trials are not run again.

Before Ray starts: the folder must be a sweep's run folder whose config, ``sweep.json`` and Tune state
are readable (:func:`trainables.sweep.check_restorable`), and ``--address`` must answer. The run
folder's lock is held while the sweep runs: a second ``resume`` (or a ``run`` still going) is refused.
"""

from __future__ import annotations

import argparse
import contextlib

from dnr_sweep.cli._common import add_ray
from dnr_sweep.cli.run import finish
from dnr_sweep.data import fetch as data_fetch
from dnr_sweep.foundation import files, storage
from dnr_sweep.foundation import locks as folder_lock
from dnr_sweep.foundation import run_contract as rc
from dnr_sweep.foundation.errors import PathError
from dnr_sweep.sweep.data_nodes import prepare_nodes


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("resume", help="continue an interrupted sweep")
    p.add_argument("run_dir", metavar="RUN_DIR")
    add_ray(p)


def run(args: argparse.Namespace) -> int:
    # lazy: loaded only when this command runs (cli/__init__ imports every command for --help)
    from dnr_sweep.sweep import cluster, restore, run_folder, tuner

    if not args.run_dir.strip():
        raise PathError("RUN_DIR '': an empty path; pass the run folder `dnr-sweep run` printed")
    cluster.check_dashboard_host(args.dashboard_host)
    if args.address is not None:
        cluster.check_cluster_address(args.address)
    run_dir = storage.locate(args.run_dir, what="RUN_DIR")  # a folder or a URI (s3://...)
    link = files.find_link(run_dir.local) if run_dir.local is not None else None
    if link is not None:  # Ray Tune writes into the folder without dnr-sweep's writer: no link may be there
        raise files.link_refused(link)
    config = run_folder.load_run_dir_config(run_dir)
    trainable_name = restore.check_restorable(run_dir, config)  # local or remote: Tune's state has its shape
    if args.address is None:
        cluster.check_local_resources(config)
    data_fetch.prepare(config.data)  # the trials open the data again: present and verified, before Ray
    # a local run folder is locked while the sweep runs; object stores have no locks
    lock = folder_lock.hold(run_dir.local, purpose="resume") if run_dir.local is not None else contextlib.nullcontext()
    with lock:
        cluster.start_ray(address=args.address, dashboard=not args.no_dashboard, dashboard_host=args.dashboard_host)
        cluster.check_resources_feasible(config)
        if args.address is not None:
            prepare_nodes(config.data)
        print(f"resuming {run_dir}")
        if run_dir.local is not None:  # a new session of the driver: the last one's end no longer holds
            files.remove(run_dir.local / rc.DRIVER_END_FILE)
        outcome = tuner.fit(config, run_dir, restore=True, trainable_name=trainable_name)
        return finish(outcome, config, report=not args.no_report)
