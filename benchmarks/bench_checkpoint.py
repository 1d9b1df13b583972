"""Checkpoint size and save time of a ResNet18/CIFAR-100 DNR trial: the old dense format vs lean.

Goal (issue 16): a checkpoint <= 100 MB with exact resume; bytes and save seconds per epoch
before/after.

- The run: ``TrainingRun`` with ResNet18 (full width, 100 classes: CIFAR-100's shapes), trained one
  epoch on a 16-image synthetic set, so momentum, rewired masks, ``z`` and the selected weights
  all exist, at each ``--density`` (irregular pruning).
- ``before``: what every epoch's checkpoint held until issue 16, ``torch.save`` of the dense state
  (model, momentum, float32 masks, dense ``z``, the selected weights), rebuilt here from the run;
  a finished trial also wrote ``final_state.pt`` of the same size.
- ``after``: ``TrainingRun.state_dict(selected_weights=False)`` as the trainable saves it (masks as bits,
  masked weights as their nonzero values, ``z`` by reference, momentum dense), plus the selected
  weights file, written only when the selection changed since the last checkpoint.
- Save time: serialise + write + fsync to ``--dir`` (default: a temporary folder), median of
  ``--reps`` interleaved repetitions. With ``tune.checkpoint_every: auto`` a trial checkpoints every
  ``ceil(save_s / (0.02 * epoch_s))`` epochs; per-epoch figures use ``--epoch-s`` (default 5 s, a
  ResNet18 CIFAR epoch on one GPU as the issue measured).

    PYTHONPATH=. python benchmarks/bench_checkpoint.py [--density 0.05 1.0 --reps 5]
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import Subset  # noqa: E402

from dnr_sweep.artifacts import checkpoint, state_codec
from dnr_sweep.config import RunConfig
from dnr_sweep.data.loaders import build_datasets
from dnr_sweep.sweep.trainable import AUTO_CHECKPOINT_BUDGET
from dnr_sweep.training.engine import TrainingRun

MB = 1e6


def resnet18_cifar100_run(density: float, images: int = 16) -> TrainingRun:
    """A ResNet18/CIFAR-100-shaped DNR run after one (tiny) epoch: every piece of state exists."""
    config = RunConfig.model_validate({
        "name": "bench_checkpoint",
        "data": {"dataset": "synthetic", "val_size": images},
        "model": {"arch": "resnet18", "width": 1.0},
        "train": {"epochs": 3, "batch_size": images, "lr": 0.05, "lr_milestones": [2], "warmup_epochs": 0,
                  "device": "cpu", "eval_subset": images, "seed": 0},
        "dnr": {"pruning": "irregular", "density": density, "beta": 0.5},
        "attack": {"train": {"eps": 0.03, "alpha": 0.01, "steps": 1},
                   "eval": {"fgsm": {"eps": 0.03}, "pgd": {"eps": 0.03, "alpha": 0.01, "steps": 1}}},
    })  # fmt: skip
    data = build_datasets("synthetic", root=Path("."), download=False, val_size=images, seed=0)
    data = dataclasses.replace(
        data, num_classes=100, train=Subset(data.train, range(images)), val=Subset(data.val, range(images)),
        test=Subset(data.test, range(images)),
    )  # fmt: skip
    run = TrainingRun(config, data=data)
    run.train_epoch()
    return run


def old_format(run: TrainingRun) -> dict:
    """The state every checkpoint held before issue 16 (``TrainingRun.state_dict`` as it was): everything
    dense, float32 masks, ``z`` and the selected weights inside."""
    return {
        "epoch": run.epoch,
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": {"last_epoch": run.scheduler.last_epoch, "last_lr": run.scheduler.get_last_lr()},
        "masking": run.masking.state_dict(),
        "l2": run.l2.state_dict(),
        "selection": run.selection.state_dict(),
        "selected_state": run.selected_state,
        "final": None,
        "rng": {"torch": torch.get_rng_state(), "cuda": [], "loader": None, "attack": run.attack_rng.get_state()},
    }


def timed_save(obj_fn, path: Path) -> tuple[float, int]:
    start = time.perf_counter()
    checkpoint.save(obj_fn(), path)
    return time.perf_counter() - start, path.stat().st_size


def measure(density: float, reps: int, folder: Path, epoch_s: float) -> dict:
    run = resnet18_cifar100_run(density)
    variants = {
        "before": lambda: old_format(run),
        "after": lambda: {"run": run.state_dict(selected_weights=False), "selected_refs": [run.selection.epoch]},
        "selected": lambda: state_codec.encode(run.selected_state_dict()),
    }
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    size: dict[str, int] = {}
    for rep in range(reps + 1):  # the first repetition warms up
        order = list(variants) if rep % 2 == 0 else list(variants)[::-1]
        for name in order:
            took, size[name] = timed_save(variants[name], folder / f"{name}.pt")
            if rep:
                seconds[name].append(took)
    # the lean checkpoint restores the run exactly (every tensor, bit for bit)
    again = resnet18_cifar100_run(density)
    state = checkpoint.load(folder / "after.pt")
    again.load_state_dict(state["run"], selected_state=state_codec.decode(checkpoint.load(folder / "selected.pt")))
    reference = old_format(run)
    restored = old_format(again)
    exact = all(
        state_codec.same_bits(a, b) if isinstance(a, torch.Tensor) else a == b
        for a, b in zip(_leaves(reference), _leaves(restored), strict=True)
    )
    med = {name: _common.median(values) for name, values in seconds.items()}
    every = max(1, math.ceil((med["after"] + med["selected"]) / (AUTO_CHECKPOINT_BUDGET * epoch_s)))
    return {
        "density": density,
        "mb": {name: size[name] / MB for name in size},
        "save_s": med,
        "restore_bit_identical": exact,
        "auto_every_epochs": every,
        "per_epoch_before": {"mb": size["before"] / MB, "save_s": med["before"]},
        # worst case for "after": the selection changed at every checkpoint
        "per_epoch_after": {"mb": (size["after"] + size["selected"]) / MB / every,
                            "save_s": (med["after"] + med["selected"]) / every},
        "times_s": seconds,
    }  # fmt: skip


def _leaves(obj):
    if isinstance(obj, dict):
        for key in sorted(obj, key=str):
            yield from _leaves(obj[key])
    elif isinstance(obj, list | tuple):
        for value in obj:
            yield from _leaves(value)
    else:
        yield obj


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--density", type=float, nargs="+", default=[0.05, 1.0])
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--epoch-s", type=float, default=5.0, help="epoch time the per-epoch figures assume")
    p.add_argument("--dir", default=None, help="where checkpoints are written (default: a temporary folder)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="dnr-bench-ckpt-", dir=args.dir) as tmp:
        rows = [measure(d, args.reps, Path(tmp), args.epoch_s) for d in args.density]
    result = {
        "benchmark": "checkpoint",
        "machine": {**_common.machine("cpu"), "load_avg_1min": [load_before, os.getloadavg()[0]]},
        "settings": {k: v for k, v in vars(args).items() if k != "no_write"},
        "timing": "checkpoint.save (serialise + write + fsync) to a local temporary folder, medians of interleaved reps",
        "results": rows,
        "goal": "after <= 100 MB per checkpoint, restore bit-identical",
    }
    parts = []
    for r in rows:
        parts.append(
            f"density {r['density']:g}: before {r['mb']['before']:.1f} MB / {r['save_s']['before']:.2f} s every epoch; "
            f"after {r['mb']['after']:.1f} MB / {r['save_s']['after']:.2f} s + selected weights {r['mb']['selected']:.1f} MB "
            f"/ {r['save_s']['selected']:.2f} s when the selection changed; auto at {args.epoch_s:g} s epochs: every "
            f"{r['auto_every_epochs']} epochs -> <= {r['per_epoch_after']['mb']:.1f} MB and "
            f"{r['per_epoch_after']['save_s']:.3f} s per epoch; restore bit-identical: {r['restore_bit_identical']}"
        )
    summary = (f"ResNet18/CIFAR-100 (synthetic data, 1 epoch trained), {args.reps} interleaved reps, load avg "
               f"{load_before:.1f}: " + " | ".join(parts))  # fmt: skip
    _common.report("bench_checkpoint", result, summary, write=not args.no_write)
    return result


if __name__ == "__main__":
    main()
