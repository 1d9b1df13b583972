"""``dnr-sweep submit CONFIG --address http://HEAD:8265 --storage DIR``: the sweep as a Ray Job.

The config is validated here first, so a bad one never reaches the cluster; then it is shipped
with the job and ``dnr-sweep run`` runs on the cluster (see :mod:`dnr_sweep.sweep.jobs`). Every request
to the job API has a deadline (:mod:`dnr_sweep.foundation.http`); an address that answers anything but
the job API is "no Ray dashboard at URL", and the address is shown without userinfo or query values.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from dnr_sweep.cli._common import add_set
from dnr_sweep.foundation.errors import EXIT_INTERRUPTED


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("submit", help="run the sweep as a Ray Job on a cluster (follow it in the dashboard)")
    p.add_argument("config", metavar="CONFIG")
    p.add_argument("--address", default=os.environ.get("RAY_API_SERVER_ADDRESS"),
                   help="the head's dashboard / job API, e.g. http://127.0.0.1:8265 through an SSH tunnel "
                        "(default $RAY_API_SERVER_ADDRESS)")  # fmt: skip
    p.add_argument("--storage", required=True, metavar="DIR",
                   help="where run folders go on the cluster: an absolute path every node mounts (e.g. /shared/runs)")  # fmt: skip
    p.add_argument("--name", default=None, help="run folder name (default: the config's name and a timestamp)")
    p.add_argument("--no-report", action="store_true", help="skip the report at the end")
    p.add_argument("--python", default="python", metavar="EXE",
                   help="the cluster's Python that has dnr-sweep installed (default: `python` on the PATH of "
                        "the environment that ran `ray start` on the head)")  # fmt: skip
    p.add_argument("--follow", action="store_true",
                   help="follow the job (polling its status and log) until it ends; exit 0 if it succeeded (Ctrl-C stops following only)")  # fmt: skip
    add_set(p)


def run(args: argparse.Namespace) -> int:
    # lazy: loaded only when this command runs (cli/__init__ imports every command for --help)
    from dnr_sweep.config import load_sweep_config

    config_path = Path(args.config)
    config = load_sweep_config(config_path, args.overrides)  # a bad config never reaches the cluster
    from dnr_sweep.sweep import jobs  # lazy: as above
    from dnr_sweep.sweep.run_folder import default_run_name

    address = jobs.check_address(args.address)
    shown = jobs.shown_address(address)  # without userinfo or query values
    job = jobs.plan_job(config, config_path, storage=args.storage, name=args.name or default_run_name(config),
                        overrides=args.overrides, report=not args.no_report, python=args.python)  # fmt: skip
    print(f"config ok: {config.name}, {config.grid_size()} trial(s) x {config.train.epochs} epochs")
    if not jobs.is_loopback(address) and address.startswith("http://"):
        print(f"note: the token travels unencrypted to {shown}; prefer an SSH tunnel "
              "(ssh -L 8265:127.0.0.1:8265 HEAD) and --address http://127.0.0.1:8265", file=sys.stderr)  # fmt: skip
    client = jobs.connect(address)
    with jobs.working_dir(config_path, job) as folder:
        job_id = jobs.submit(client, job, folder)
    source = jobs.token_source()
    print(f"submitted Ray job {job_id} to {shown}" + (f" (token from {source})" if source else " (no token)"))
    print(f"run folder on the cluster: {job.run_dir}")
    print("follow it:")
    for line in jobs.follow_commands(shown, job_id, job.run_dir):
        print(line)
    if not args.follow:
        return 0
    print(f"\n--- log of {job_id} ---", flush=True)
    try:
        status = jobs.follow(client, job_id, write=lambda text: print(text, end="", flush=True))
    except KeyboardInterrupt:
        print(f"\nstopped following; the job keeps running on the cluster ({job_id})", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(f"--- job {job_id}: {status} ---")
    return 0 if status == "SUCCEEDED" else 1
