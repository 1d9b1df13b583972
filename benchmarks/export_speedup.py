"""Measured CPU speedup of physically shrinking a channel-pruned ResNet18 (CIFAR shape, 3x32x32).

Two models at 50% channels, both checked against the masked model's outputs (<= 1e-5):

* ``aligned``: in every channel space (residual streams included, the image input excepted) the same
  random half of the channels is zero in every consumer, the head included. This is the best case
  channel pruning can reach at 50% channels: every layer is physically halved.
* ``dnr_init``: the masks ``dnr_sweep.sparsity.Masking`` draws for channel DNR at density 0.5 (each
  layer's channels independently; a residual-stream channel is removable only when all its readers
  dropped it, so most of the streams stay).

Latency: median of ``--repeats`` forward passes (eval, ``torch.inference_mode``) at batch 128 and 1,
with 1 thread and with all cores. Prints one JSON object and appends a dated line to
``benchmarks/RESULTS.md``. Run: ``PYTHONPATH=. python benchmarks/export_speedup.py``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
from pathlib import Path

import torch

from dnr_sweep.export import find_channel_spaces, measure_latency, shrink
from dnr_sweep.models import get_model
from dnr_sweep.sparsity.masks import Masking

INPUT = (3, 32, 32)
RESULTS = Path(__file__).with_name("RESULTS.md")
HEADER = ("# Benchmark results\n\nOne dated line per benchmark run, with the machine it ran on. "
          "Ratios are the figures to compare; absolute times depend on the machine and its load.\n\n")  # fmt: skip


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per batch size (median)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-record", action="store_true", help="do not append to benchmarks/RESULTS.md")
    args = parser.parse_args()

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
    for name, masked in masked_models(args.seed).items():
        report = shrink(masked, torch.rand(2, *INPUT))
        with torch.inference_mode():
            diff = float((report.model(x) - masked(x)).abs().max())
        case = {"params": [report.params_before, report.params_after], "macs": [report.macs_before, report.macs_after],
                "mac_ratio": report.macs_before / report.macs_after, "channels_removed": report.channels_removed,
                "max_abs_diff": diff, "speedup": {}, "latency_ms": {}}  # fmt: skip
        for threads in thread_counts:
            # timed right before the shrunk one, so a change in machine load hits both alike
            before = measure_latency(masked, INPUT, (128, 1), repeats=args.repeats, threads=threads)
            after = measure_latency(report.model, INPUT, (128, 1), repeats=args.repeats, threads=threads)
            key = f"{threads}_thread" + ("s" if threads > 1 else "")
            case["latency_ms"][key] = {f"batch_{b}": [round(before[b]["latency_ms"], 3), round(after[b]["latency_ms"], 3)]
                                       for b in before}  # fmt: skip
            case["speedup"][key] = {f"batch_{b}": round(before[b]["latency_ms"] / after[b]["latency_ms"], 3) for b in before}
        result["cases"][name] = case
    result["machine"]["load_avg_1m_end"] = os.getloadavg()[0]
    print(json.dumps(result, indent=2))

    if not args.no_record:
        m, parts = result["machine"], []
        for name, case in result["cases"].items():
            speed = "; ".join(f"{k}: b128 {v['batch_128']:.2f}x, b1 {v['batch_1']:.2f}x" for k, v in case["speedup"].items())
            parts.append(f"{name} (MACs /{case['mac_ratio']:.2f}, {case['channels_removed']} channels removed, "
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
