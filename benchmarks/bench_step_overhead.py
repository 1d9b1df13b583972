"""DNR step overhead: one DNR training step vs one plain dense PGD-7 adversarial training step.

Goal (issue 9): median ratio <= 1.05. Three variants on the same model architecture, batch and attack,
timed interleaved in one process (A, B, C, C, B, A, ...), median over repetitions:

- ``dense``: the baseline. ``attacks.pgd`` (PGD-7, random start), clean and adversarial
  cross-entropy (``0.5 * (J_clean + J_adv)``), ``zero_grad``, ``backward``, ``optimizer.step()``.
- ``dnr``: the same, built from the library pieces: the hybrid loss with the dynamic L2 penalty
  (``DynamicL2.penalty``) and ``Masking.step`` (optimizer step, then the masks re-applied).
- ``engine``: the real engine loop, ``TrainingRun._train_one_epoch`` over a one-batch loader (so it
  also counts the engine's on-device bookkeeping: loss sums, finiteness check).

Each variant has its own copy of the model and optimizer (same initial weights). On CPU, 1 torch
thread by default (a sweep trial's allocation); the machine may be shared, hence interleaving.

    PYTHONPATH=. python benchmarks/bench_step_overhead.py [--arch resnet18 --width 0.25 --batch 64]
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402  (puts the repository root on sys.path)
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.utils.data import TensorDataset  # noqa: E402

from dnr_sweep.attacks import gradient as attacks
from dnr_sweep.config import RunConfig
from dnr_sweep.data.loaders import DataSplits
from dnr_sweep.sparsity import DynamicL2, Masking  # noqa: E402
from dnr_sweep.training.engine import TrainingRun


def build(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(args.batch, 3, args.size, args.size, generator=g)
    y = torch.randint(0, 10, (args.batch,), generator=g)
    splits = DataSplits(
        train=TensorDataset(x, y), val=TensorDataset(x[:8], y[:8]), test=TensorDataset(x[:8], y[:8]),
        num_classes=10, in_channels=3, image_size=args.size, mean=(0.5,) * 3, std=(0.25,) * 3,
    )  # fmt: skip
    config = RunConfig.model_validate({
        "data": {"dataset": "synthetic", "val_size": 8},
        "model": {"arch": args.arch, "width": args.width},
        "train": {"epochs": 10, "batch_size": args.batch, "warmup_epochs": 0, "device": device.type,
                  "precision": args.precision, "channels_last": args.channels_last, "num_threads": args.threads},
        "dnr": {"pruning": args.pruning, "density": args.density, "beta": 0.5, "rho": 1e-4},
        "attack": {"train": {"kind": "pgd", "eps": 8 / 255, "alpha": 0.01, "steps": args.steps, "random_start": True}},
    })  # fmt: skip
    run = TrainingRun(config, data=splits, device=device)
    x, y = x.to(device), y.to(device)
    if run.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    run.train_loader = [(x, y)]  # one step per _train_one_epoch call
    spec = config.attack.train

    def autocast():
        return run._autocast()

    # the library pieces, on their own copy of the model
    dnr_model = copy.deepcopy(run.model)
    dnr_opt = torch.optim.SGD(dnr_model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    masking = Masking(dnr_model, dnr_opt, density=args.density, pruning=args.pruning, prune_rate=0.5,
                      total_epochs=10, generator=torch.Generator().manual_seed(1))  # fmt: skip
    l2 = DynamicL2(masking, rho=1e-4)
    dnr_rng = torch.Generator(device=device).manual_seed(2)

    def dnr_step() -> None:
        dnr_model.train()
        with autocast():
            adv = attacks.pgd(dnr_model, x, y, eps=spec.eps, alpha=spec.alpha, steps=spec.steps,
                              random_start=True, generator=dnr_rng)  # fmt: skip
            loss_clean = F.cross_entropy(dnr_model(x), y)
            loss_adv = F.cross_entropy(dnr_model(adv), y)
        loss = 0.5 * (loss_clean + l2.penalty()) + 0.5 * loss_adv
        dnr_opt.zero_grad(set_to_none=True)
        loss.backward()
        masking.step()

    dense_model = copy.deepcopy(run.model)
    dense_opt = torch.optim.SGD(dense_model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    dense_rng = torch.Generator(device=device).manual_seed(2)

    def dense_step() -> None:
        dense_model.train()
        with autocast():
            adv = attacks.pgd(dense_model, x, y, eps=spec.eps, alpha=spec.alpha, steps=spec.steps,
                              random_start=True, generator=dense_rng)  # fmt: skip
            loss = 0.5 * F.cross_entropy(dense_model(x), y) + 0.5 * F.cross_entropy(dense_model(adv), y)
        dense_opt.zero_grad(set_to_none=True)
        loss.backward()
        dense_opt.step()

    def engine_step() -> None:
        run._train_one_epoch(None)

    def penalty_backward() -> None:  # the dynamic L2 term alone: forward and its backward
        dnr_opt.zero_grad(set_to_none=True)
        (0.5 * l2.penalty()).backward()

    components = {"l2_penalty_fwd_bwd": penalty_backward, "apply_masks": masking.apply_masks}
    return {
        "device": device,
        "fns": {"dense": dense_step, "dnr": dnr_step, "engine": engine_step},
        "components": components,
        "run": run,
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="resnet18", choices=["resnet18", "vgg16", "smallcnn"])
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--size", type=int, default=32, help="image side (pixels)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=7, help="PGD steps")
    p.add_argument("--density", type=float, default=0.1)
    p.add_argument("--pruning", default="irregular", choices=["irregular", "channel"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--reps", type=int, default=15)
    p.add_argument("--no-write", action="store_true", help="do not append to RESULTS.md")
    args = p.parse_args(argv)
    if args.device == "cpu":
        torch.set_num_threads(args.threads)
    built = build(args)
    device = built["device"]
    times = _common.interleaved(built["fns"], args.reps, device)
    med = {k: _common.median(v) for k, v in times.items()}
    parts = _common.interleaved(built["components"], 50, device)
    parts_med = {k: _common.median(v) for k, v in parts.items()}
    result = {
        "benchmark": "step_overhead",
        "machine": _common.machine(device),
        "settings": {k: v for k, v in vars(args).items() if k != "no_write"},
        "timing": "interleaved repetitions in one process (order alternated), medians; the machine may be shared",
        "median_s": med,
        "ratio_dnr_to_dense": _common.ratio_median(times["dnr"], times["dense"]),
        "ratio_engine_to_dense": _common.ratio_median(times["engine"], times["dense"]),
        "components_median_s": parts_med,
        "components_fraction_of_dense": sum(parts_med.values()) / med["dense"],
        "goal": "<= 1.05",
        "times_s": times,
    }
    summary = (
        f"{args.arch} w{args.width} {args.size}px batch {args.batch} PGD-{args.steps} {args.precision}, "
        f"{args.threads} thr, {args.reps} interleaved reps: dense {med['dense'] * 1e3:.0f} ms, "
        f"DNR pieces {med['dnr'] * 1e3:.0f} ms, engine {med['engine'] * 1e3:.0f} ms; median ratio "
        f"DNR/dense {result['ratio_dnr_to_dense']:.3f}, engine/dense {result['ratio_engine_to_dense']:.3f} (goal <= 1.05); "
        f"DNR-only work (L2 penalty fwd+bwd {parts_med['l2_penalty_fwd_bwd'] * 1e3:.2f} ms + masks {parts_med['apply_masks'] * 1e3:.2f} ms) "
        f"= {result['components_fraction_of_dense'] * 100:.2f}% of a dense step"
    )
    _common.report("bench_step_overhead", result, summary, write=not args.no_write)
    return result


if __name__ == "__main__":
    main()
