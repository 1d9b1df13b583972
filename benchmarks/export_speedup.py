"""Measured CPU speedup of physically shrinking a channel-pruned ResNet18 (CIFAR shape, 3x32x32).

Three models at 50% channels, each checked against the masked model's outputs (<= 1e-5):

* ``aligned``: in every channel space (residual streams included, the image input excepted) the same
  random half of the channels is zero in every consumer, the head included. This is the best case
  channel pruning can reach at 50% channels: every layer is physically halved.
* ``dnr_init``: the masks ``dnr_sweep.sparsity.Masking`` draws for channel DNR at density 0.5 (each
  layer's channels independently; a residual-stream channel is removable only when all its readers
  dropped it, so most of the streams stay).
* ``channel_group``: ``dnr.pruning: channel_group`` trained by the engine (``TrainingRun``, clean loss,
  ``--train-epochs`` epochs on the synthetic CIFAR-shaped data, rewiring after every epoch but the
  last) at the density that keeps half of every channel space (computed from the model's groups,
  about 0.25 of the conv weights). Its masks are the trained ones: capacity has moved between spaces
  by momentum importance, so its MACs differ from ``aligned``'s. Every pruned group is removable.
  Goal (issue 18): speedup >= 3.5x at batch 128, 1 thread (``aligned`` measured 4.10x).

Latency: median of ``--repeats`` forward passes (eval, ``torch.inference_mode``) at batch 128 and 1,
with 1 thread and with all cores; the masked and the shrunk model of a case are timed back to back.
Prints one JSON object and appends a dated line to ``benchmarks/RESULTS.md``.
Run: ``PYTHONPATH=. python benchmarks/export_speedup.py [--cases aligned channel_group]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
from pathlib import Path

import torch

from dnr_sweep.config import RunConfig
from dnr_sweep.export import find_channel_spaces, measure_latency, shrink
from dnr_sweep.models.architectures import get_model
from dnr_sweep.sparsity.channel_groups import ChannelGroups
from dnr_sweep.sparsity.masks import Masking
from dnr_sweep.training.engine import TrainingRun

INPUT = (3, 32, 32)
RESULTS = Path(__file__).with_name("RESULTS.md")
HEADER = ("# Benchmark results\n\nOne dated line per benchmark run, with the machine it ran on. "
          "Ratios are the figures to compare; absolute times depend on the machine and its load.\n\n")  # fmt: skip


CASES = ("aligned", "dnr_init", "channel_group")


def half_channels_density() -> float:
    """The channel_group density that keeps half of every channel space of ResNet18 (exact count)."""
    model = get_model("resnet18", num_classes=10, width=1.0)
    groups = ChannelGroups(model, prune_linear=False, example_input=torch.rand(2, *INPUT))
    total = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    return groups.count([s.channels // 2 for s in groups.spaces]) / total


def trained_channel_group(seed: int, epochs: int, threads: int) -> tuple[torch.nn.Module, dict]:
    """ResNet18 trained by the engine with channel_group DNR on synthetic CIFAR-shaped data."""
    density = half_channels_density()
    config = RunConfig.model_validate({
        "data": {"dataset": "synthetic", "val_size": 32},
        "model": {"arch": "resnet18", "width": 1.0},
        "train": {"epochs": epochs, "batch_size": 64, "lr": 0.05, "lr_milestones": [], "warmup_epochs": epochs,
                  "device": "cpu", "num_threads": threads, "seed": seed},
        "dnr": {"pruning": "channel_group", "density": density, "beta": 1.0},
        "attack": {"eval": {"pgd": {"steps": 1}}},
    })  # fmt: skip
    run = TrainingRun(config)
    while not run.finished:
        run.train_epoch()
    groups = run.masking.groups
    info = {"density": round(density, 5), "mask_density": round(run.masking.mask_density(), 5), "epochs": epochs,
            "channels_kept": round(sum(int(m.sum()) for m in groups.group_masks) / sum(s.channels for s in groups.spaces), 4),
            "dead_groups": sum(int((~m).sum()) for m in groups.group_masks)}  # fmt: skip
    return run.model.eval(), info


def masked_models(seed: int) -> dict[str, torch.nn.Module]:
    torch.manual_seed(seed)
    dense = get_model("resnet18", num_classes=10, width=1.0).eval()
    aligned = get_model("resnet18", num_classes=10, width=1.0).eval()
    aligned.load_state_dict(dense.state_dict())
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for space in find_channel_spaces(aligned, torch.rand(2, *INPUT)):
            if space.fixed:
                continue
            dead = torch.randperm(space.channels, generator=g)[: space.channels // 2]
            for name in space.consumers:
                aligned.get_submodule(name).weight[:, dead] = 0
    dnr = get_model("resnet18", num_classes=10, width=1.0).eval()
    dnr.load_state_dict(dense.state_dict())
    Masking(dnr, torch.optim.SGD(dnr.parameters(), lr=0.1), density=0.5, pruning="channel", prune_rate=0.5,
            total_epochs=2, generator=torch.Generator().manual_seed(seed))  # fmt: skip
    return {"aligned": aligned, "dnr_init": dnr.eval()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per batch size (median)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-record", action="store_true", help="do not append to benchmarks/RESULTS.md")
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--train-epochs", type=int, default=3, help="engine epochs of the channel_group case")
    args = parser.parse_args(argv)

    cores = os.cpu_count() or 1
    thread_counts = sorted({1, cores})
    x = torch.rand(16, *INPUT)
    result: dict = {
        "benchmark": "export_speedup", "date": dt.date.today().isoformat(), "model": "resnet18 width 1, 10 classes",
        "input": list(INPUT), "repeats": args.repeats, "statistic": "median",
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpu_count": cores, "torch": torch.__version__, "load_avg_1m": os.getloadavg()[0]},
        "cases": {},
    }  # fmt: skip
    models = {k: v for k, v in masked_models(args.seed).items() if k in args.cases}
    trained: dict = {}
    if "channel_group" in args.cases:
        models["channel_group"], trained = trained_channel_group(args.seed, args.train_epochs, threads=1)
    for name, masked in models.items():
        report = shrink(masked, torch.rand(2, *INPUT))
        with torch.inference_mode():
            diff = float((report.model(x) - masked(x)).abs().max())
        case = {"params": [report.params_before, report.params_after], "macs": [report.macs_before, report.macs_after],
                "mac_ratio": report.macs_before / report.macs_after, "channels_removed": report.channels_removed,
                "max_abs_diff": diff, "speedup": {}, "latency_ms": {}}  # fmt: skip
        if name == "channel_group":
            case["trained"] = trained
        for threads in thread_counts:
            # timed right before the shrunk one, so a change in machine load hits both alike
            before = measure_latency(masked, INPUT, (128, 1), repeats=args.repeats, threads=threads)
            after = measure_latency(report.model, INPUT, (128, 1), repeats=args.repeats, threads=threads)
            key = f"{threads}_thread" + ("s" if threads > 1 else "")
            case["latency_ms"][key] = {f"batch_{b}": [round(before[b]["latency_ms"], 3), round(after[b]["latency_ms"], 3)]
                                       for b in before}  # fmt: skip
            case["speedup"][key] = {
                f"batch_{b}": round(before[b]["latency_ms"] / after[b]["latency_ms"], 3) for b in before
            }
        result["cases"][name] = case
    result["machine"]["load_avg_1m_end"] = os.getloadavg()[0]
    print(json.dumps(result, indent=2))

    if not args.no_record:
        m, parts = result["machine"], []
        for name, case in result["cases"].items():
            speed = "; ".join(
                f"{k}: b128 {v['batch_128']:.2f}x, b1 {v['batch_1']:.2f}x" for k, v in case["speedup"].items()
            )
            how = ""
            if "trained" in case:
                t = case["trained"]
                how = (f"trained {t['epochs']} epochs at density {t['density']:.4f} (mask {t['mask_density']:.4f}), "
                       f"{t['channels_kept'] * 100:.1f}% of channels kept, ")  # fmt: skip
            parts.append(f"{name} ({how}MACs /{case['mac_ratio']:.2f}, {case['channels_removed']} channels removed, "
                         f"max diff {case['max_abs_diff']:.1e}): {speed}")  # fmt: skip
        line = (f"- {result['date']} export_speedup: ResNet18 CIFAR 3x32x32 at 50% channels, CPU speedup of the shrunk "
                f"over the masked model (median of {args.repeats}): " + " | ".join(parts)
                + f". Machine: {m['platform']}, {m['cpu_count']} CPUs, torch {m['torch']}, "
                f"load avg {m['load_avg_1m']:.1f}->{m['load_avg_1m_end']:.1f}.\n")  # fmt: skip
        if not RESULTS.exists():
            RESULTS.write_text(HEADER)
        with RESULTS.open("a") as handle:
            handle.write(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
