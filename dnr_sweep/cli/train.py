"""``dnr-sweep train CONFIG --out DIR``: one DNR run without Ray (debugging, small machines).

Before anything is written: the config is validated and dry-prepared (:mod:`dnr_sweep.training.dry_run`), the
data set is fetched and verified if missing (:func:`dnr_sweep.data.fetch.prepare`), and ``--out`` is checked (not empty, not a file, writable). Then the
folder's lock is taken (:mod:`dnr_sweep.foundation.locks`: a second ``train`` into the same folder is
refused, naming the first) and the folder must be new or empty, or hold this run's checkpoint with
``--resume``: files already there are never written over. A train that fails (a full disk, Ctrl-C) before its
first checkpoint leaves ``--out`` as it found it, so the next train can use it; after one, the message says
how to continue with ``--resume``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from dnr_sweep.cli._common import add_set
from dnr_sweep.data import fetch as data_fetch
from dnr_sweep.foundation import files, os_errors
from dnr_sweep.foundation import locks as folder_lock
from dnr_sweep.foundation import run_contract as rc
from dnr_sweep.foundation.errors import EXIT_INTERRUPTED, PathError, StorageError, UserError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="one DNR run without Ray (debugging, small machines)")
    p.add_argument("config", metavar="CONFIG")
    p.add_argument(
        "--out", required=True, metavar="DIR", help="a new or empty folder for model.pt, checkpoint.pt, metrics.json"
    )
    p.add_argument("--resume", action="store_true", help="continue from DIR/checkpoint.pt")
    add_set(p)


def check_out_contents(out: Path, *, resume: bool) -> None:
    """``--out`` must be new or empty (``--resume``: hold a checkpoint); never write over other files, and
    never into a folder that holds a link (a run folder holds none: one there was put by someone else)."""
    present = sorted(p.name for p in out.iterdir() if p.name != rc.LOCK_FILE) if out.is_dir() else []
    link = files.find_link(out)
    if link is not None:
        raise files.link_refused(link)
    if resume:
        if rc.CHECKPOINT_FILE not in present:
            raise PathError(f"{out}: no {rc.CHECKPOINT_FILE} to resume from; run without --resume to start")
        return
    if rc.CHECKPOINT_FILE in present:
        raise PathError(f"{out}: already holds a run ({rc.CHECKPOINT_FILE}); pass --resume or choose another --out")
    if present:
        shown = ", ".join(present[:5]) + (", ..." if len(present) > 5 else "")
        raise PathError(f"{out}: holds other files ({shown}); train writes {rc.CONFIG_FILE}, {rc.MODEL_FILE} and "
                        f"{rc.METRICS_FILE} there, so choose a new or empty --out folder")  # fmt: skip


def discard_unstarted(out: Path) -> None:
    """Remove what a fresh train wrote into ``out`` before its first checkpoint (its config, epoch table,
    selected weights), keeping the lock file: :func:`check_out_contents` found ``out`` empty under the lock,
    so everything else in it is this train's, and none of it can be resumed. Best effort: the failure being
    raised matters more."""
    for entry in out.iterdir():
        if entry.name == rc.LOCK_FILE:
            continue
        try:
            files.remove(entry)  # a folder with what is in it, never through a link
        except (OSError, UserError):
            pass


def run(args: argparse.Namespace) -> int:
    # lazy: loaded only when this command runs (cli/__init__ imports every command for --help)
    from dnr_sweep.config import load_run_config
    from dnr_sweep.training.dry_run import check_run

    out = files.output_folder(args.out, "--out")
    config = load_run_config(args.config, args.overrides)
    check_run(config, args.config)
    from dnr_sweep.training.single_run import train_to_dir  # lazy: torch (seconds), once the config is good

    with folder_lock.hold(out, purpose="train"):  # nothing was written before: a refusal here loses nothing
        check_out_contents(out, resume=args.resume)
        data_fetch.prepare(config.data)  # fetched and verified here if missing, before training
        pruning, density = (
            (config.dnr.pruning, config.dnr.density)
            if config.method_block is None
            else (config.method, getattr(config.method_block, "density", None))
        )  # a baseline prunes by its own block
        how = f"{pruning} pruning" + (f" at density {density:g}" if density is not None else "")
        print(f"training {config.model.arch} on {config.data.dataset}: {how}, {config.train.epochs} epochs -> {out}")
        command = ["dnr-sweep", "train", args.config, "--out", str(out)]
        command += [part for item in args.overrides for part in ("--set", item)] + ["--resume"]
        try:
            final = train_to_dir(config, out, resume=args.resume)
        except BaseException as exc:
            started = args.resume or (out / rc.CHECKPOINT_FILE).exists()
            if not started:  # nothing to resume: what this train wrote goes, so the next train may use --out
                discard_unstarted(out)
            if isinstance(exc, KeyboardInterrupt):
                print(f"\ninterrupted; every finished epoch is in {out / rc.CHECKPOINT_FILE}. Continue with:\n"
                      f"  {shlex.join(command)}" if started else "\ninterrupted before the first epoch finished; "
                      f"nothing was kept in {out}", file=sys.stderr)  # fmt: skip
                return EXIT_INTERRUPTED
            if os_errors.is_outside_world(exc):  # a full disk, a read-only mount: one message, what was kept
                if started:
                    kept = f"Every finished epoch is in {out / rc.CHECKPOINT_FILE}; then continue with: {shlex.join(command)}"
                else:
                    kept = f"Nothing of this run was kept in {out}"
                raise StorageError(f"{os_errors.storage_error(exc, doing='write')}. {kept}") from None
            raise
    print(
        f"done: selected epoch {final['selected_epoch']}, test clean {final['clean_acc']:.2f}% "
        f"fgsm {final['fgsm_acc']:.2f}% pgd {final['pgd_acc']:.2f}% at {final['compression']:.2f}x "
        f"compression (density {final['density']:.4f})"
    )
    print(f"results: {out / rc.METRICS_FILE}, model: {out / rc.MODEL_FILE}")
    return 0
