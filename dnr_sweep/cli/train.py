"""``dnr-sweep train CONFIG --out DIR``: one DNR run without Ray (debugging, small machines)."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from dnr_sweep import run_contract as rc
from dnr_sweep.cli._common import add_set
from dnr_sweep.errors import EXIT_INTERRUPTED, UserError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="one DNR run without Ray (debugging, small machines)")
    p.add_argument("config", metavar="CONFIG")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for model.pt, checkpoint.pt, metrics.json")
    p.add_argument("--resume", action="store_true", help="continue from DIR/checkpoint.pt")
    add_set(p)


def run(args: argparse.Namespace) -> int:
    from dnr_sweep.config import load_run_config

    config = load_run_config(args.config, args.overrides)
    from dnr_sweep.single_run import train_to_dir

    out = Path(args.out)
    if not args.resume and (out / rc.CHECKPOINT_FILE).exists():
        raise UserError(f"{out}: already holds a run ({rc.CHECKPOINT_FILE}); pass --resume or choose another --out")
    print(f"training {config.model.arch} on {config.data.dataset}: {config.dnr.pruning} pruning at density "
          f"{config.dnr.density:g}, {config.train.epochs} epochs -> {out}")  # fmt: skip
    try:
        final = train_to_dir(config, out, resume=args.resume)
    except KeyboardInterrupt:
        command = ["dnr-sweep", "train", args.config, "--out", str(out)]
        command += [part for item in args.overrides for part in ("--set", item)] + ["--resume"]
        print(f"\ninterrupted; every finished epoch is in {out / rc.CHECKPOINT_FILE}. Continue with:\n"
              f"  {shlex.join(command)}", file=sys.stderr)  # fmt: skip
        return EXIT_INTERRUPTED
    print(
        f"done: selected epoch {final['selected_epoch']}, test clean {final['clean_acc']:.2f}% "
        f"fgsm {final['fgsm_acc']:.2f}% pgd {final['pgd_acc']:.2f}% at {final['compression']:.2f}x "
        f"compression (density {final['density']:.4f})"
    )
    print(f"results: {out / rc.METRICS_FILE}, model: {out / rc.MODEL_FILE}")
    return 0
