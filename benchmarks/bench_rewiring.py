"""Rewiring cost: one end-of-epoch rewiring as a fraction of one training epoch's time.

Goal (issue 9): <= 1% of an epoch. The rewiring is what the engine does after an epoch:
``Masking.rewire(epoch=0)`` (the largest prune rate, ``p = prune_rate = 0.5``) followed by
``DynamicL2.snapshot()``, on full-width CIFAR ResNet-18 shapes (11.2M weights), for irregular,
channel and channel_group pruning at densities 0.05 and 0.5 (issue 18: channel_group too <= 1%). The optimizer's momentum buffers are filled with random
values first (as after an epoch of SGD), and weights are random, so the sorts see realistic data.
Each case is timed ``--reps`` times (cases interleaved), median.

Epoch time, the denominator: one DNR PGD-7 hybrid training step (the engine's
``_train_one_epoch`` over a one-batch loader) at ``--step-batch`` and model width ``--step-width``
is measured (median of ``--step-reps``), then scaled to an epoch of CIFAR-10 at batch 128:

    epoch_s = step_s * (128 / step_batch) * (flops(width 1.0) / flops(step_width)) * 391

``flops`` is the multiply-accumulate count of every Conv2d and Linear for one 32x32 image (forward
hooks). The defaults measure the real thing (width 1.0, batch 128), so both scale factors are 1;
smaller widths or batches are cheaper to measure but less efficient per FLOP on a CPU, so their
scaled estimate overstates the epoch and understates the fraction: the JSON says which was used.

    PYTHONPATH=. python benchmarks/bench_rewiring.py [--step-width 1.0 --step-batch 128]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import TensorDataset  # noqa: E402

from dnr_sweep.config import RunConfig
from dnr_sweep.data.loaders import DataSplits
from dnr_sweep.models.architectures import get_model
from dnr_sweep.sparsity import DynamicL2, Masking  # noqa: E402
from dnr_sweep.training.engine import TrainingRun

STEPS_PER_EPOCH = 391  # ceil(50,000 / 128)


def macs(model: nn.Module, size: int = 32) -> int:
    """Multiply-accumulates of all Conv2d and Linear layers for one ``size``x``size`` image."""
    total = 0

    def hook(module: nn.Module, inputs, output) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            total += (
                output.numel() * (module.in_channels // module.groups) * module.kernel_size[0] * module.kernel_size[1]
            )
        elif isinstance(module, nn.Linear):
            total += output.numel() * module.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    was = model.training
    model.eval()
    with torch.no_grad():
        model(torch.rand(1, 3, size, size, device=next(model.parameters()).device))
    model.train(was)
    for h in handles:
        h.remove()
    return total


def make_rewiring_case(pruning: str, density: float, device: torch.device):
    model = get_model("resnet18", num_classes=10, width=1.0).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    g = torch.Generator(device=device).manual_seed(0)
    masking = Masking(model, opt, density=density, pruning=pruning, prune_rate=0.5, total_epochs=200,
                      generator=torch.Generator().manual_seed(1))  # fmt: skip
    l2 = DynamicL2(masking, rho=1e-4)

    def refill() -> None:
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.randn(p.shape, generator=g, device=device) * 0.05)
                opt.state[p]["momentum_buffer"] = torch.randn(p.shape, generator=g, device=device) * 1e-3
        masking.apply_masks()

    def rewire() -> None:
        masking.rewire(0)
        l2.snapshot()

    return refill, rewire


def time_step(args: argparse.Namespace, device: torch.device) -> float:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(args.step_batch, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (args.step_batch,), generator=g)
    splits = DataSplits(
        train=TensorDataset(x, y), val=TensorDataset(x[:8], y[:8]), test=TensorDataset(x[:8], y[:8]),
        num_classes=10, in_channels=3, image_size=32, mean=(0.5,) * 3, std=(0.25,) * 3,
    )  # fmt: skip
    config = RunConfig.model_validate({
        "data": {"dataset": "synthetic", "val_size": 8},
        "model": {"arch": "resnet18", "width": args.step_width},
        "train": {"epochs": 10, "batch_size": args.step_batch, "warmup_epochs": 0, "device": device.type,
                  "num_threads": args.threads if device.type == "cpu" else None},
        "dnr": {"pruning": "irregular", "density": 0.05},
        "attack": {"train": {"kind": "pgd", "eps": 8 / 255, "alpha": 0.01, "steps": 7}},
    })  # fmt: skip
    run = TrainingRun(config, data=splits, device=device)
    xd, yd = x.to(device), y.to(device)
    if run.channels_last:
        xd = xd.contiguous(memory_format=torch.channels_last)
    run.train_loader = [(xd, yd)]
    times = _common.interleaved({"step": lambda: run._train_one_epoch(None)}, args.step_reps, device, warmup=1)
    return _common.median(times["step"])


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--densities", type=float, nargs="+", default=[0.05, 0.5])
    p.add_argument("--prunings", nargs="+", default=["irregular", "channel", "channel_group"])
    p.add_argument("--reps", type=int, default=5, help="timed rewirings per case")
    p.add_argument("--step-width", type=float, default=1.0, help="ResNet-18 width for the step timing")
    p.add_argument("--step-batch", type=int, default=128)
    p.add_argument("--step-reps", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (rewiring and step alike)")
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    load_start = os.getloadavg()[0]

    cases = {}
    for pruning in args.prunings:
        for density in args.densities:
            cases[f"{pruning}@{density:g}"] = make_rewiring_case(pruning, density, device)
    times: dict[str, list[float]] = {k: [] for k in cases}
    for rep in range(args.reps + 1):  # rep 0 is a warm-up
        order = list(cases) if rep % 2 == 0 else list(cases)[::-1]
        for key in order:
            refill, rewire = cases[key]
            refill()
            t = _common.timed(rewire, device)
            if rep > 0:
                times[key].append(t)
    rewire_s = {k: _common.median(v) for k, v in times.items()}

    step_s = time_step(args, device)
    full = macs(get_model("resnet18", num_classes=10, width=1.0))
    measured = macs(get_model("resnet18", num_classes=10, width=args.step_width))
    flop_scale = full / measured
    batch_scale = 128 / args.step_batch
    epoch_s = step_s * batch_scale * flop_scale * STEPS_PER_EPOCH
    fractions = {k: v / epoch_s for k, v in rewire_s.items()}
    result = {
        "benchmark": "rewiring",
        "machine": _common.machine(device),
        "settings": {k: v for k, v in vars(args).items() if k != "no_write"},
        "timing": "rewire cases interleaved, medians of reps (after one warm-up); step median of step_reps; shared machine",
        "rewire_s": rewire_s,
        "step_s": step_s,
        "epoch_estimate": {
            "formula": "epoch_s = step_s * (128 / step_batch) * (macs(width 1) / macs(step_width)) * 391",
            "step": f"one DNR PGD-7 hybrid step of TrainingRun._train_one_epoch, resnet18 width {args.step_width}, batch {args.step_batch}, 32x32, fp32",
            "batch_scale": batch_scale,
            "flop_scale": flop_scale,
            "macs_per_image_full_width": full,
            "steps_per_epoch": STEPS_PER_EPOCH,
            "epoch_s": epoch_s,
        },
        "fraction_of_epoch": fractions,
        "max_fraction": max(fractions.values()),
        "goal": "<= 0.01",
        "times_s": times,
    }
    summary = (
        f"resnet18 full width, {args.threads} thr: rewire+snapshot "
        + ", ".join(f"{k} {v * 1e3:.0f} ms" for k, v in rewire_s.items())
        + f"; DNR PGD-7 step (w{args.step_width}, b{args.step_batch}) {step_s:.2f} s -> epoch est. {epoch_s:.0f} s; "
        + f"max fraction {result['max_fraction'] * 100:.3f}% (goal <= 1%); "
        + f"load avg {load_start:.1f}->{os.getloadavg()[0]:.1f} (other workers share the cores)"
    )
    result["load_avg_1m"] = [load_start, os.getloadavg()[0]]
    _common.report("bench_rewiring", result, summary, write=not args.no_write)
    return result


if __name__ == "__main__":
    main()
