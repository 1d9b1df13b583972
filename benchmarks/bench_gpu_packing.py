"""GPU packing: throughput of 1, 2 and 4 concurrent small-CIFAR trials per GPU (fractional GPUs).

Goal (issue 9): packing >= 2x the throughput of one trial per GPU. For each k in ``--packs``
(default 1 2 4) a sweep of ``k * --trials-per-slot`` trials runs through ``dnr-sweep run`` (a
subprocess, ``--no-report --no-dashboard``) with ``tune.resources_per_trial`` =
``{gpu: 1/k, cpu: cpus/k}`` and ``max_concurrent_trials: k``; throughput = trial-epochs per second
of wall clock (subprocess start to end, Ray start-up included), and the figure is its ratio to k=1.

Trials are small CIFAR-shaped runs: ``--dataset synthetic`` (the bundled 32x32 RGB synthetic set,
no download; the default, since GPU machines may have no network) or ``cifar10`` (from
``--data-root``), ``--arch`` at ``--width``, ``--epochs`` epochs, a grid over density.

Without CUDA this prints a JSON object with ``"skipped": true``; ``--dry-run`` only builds and
prints the YAML and resources of every k (no GPU needed; used by a test).

    PYTHONPATH=. python benchmarks/bench_gpu_packing.py [--packs 1 2 4 --epochs 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

from dnr_sweep.config import validate_sweep

DENSITIES = [0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 0.02, 0.03, 0.15, 0.25, 0.35]


def sweep_yaml(k: int, args: argparse.Namespace) -> dict:
    """The sweep of ``k * trials_per_slot`` trials packed ``k`` to a GPU."""
    n = k * args.trials_per_slot
    if n > len(DENSITIES):
        raise ValueError(f"at most {len(DENSITIES)} trials; lower --trials-per-slot or --packs")
    data = {"dataset": args.dataset, "val_size": 64 if args.dataset == "synthetic" else 5000}
    if args.dataset != "synthetic":
        data["root"] = args.data_root
    raw = {
        "name": f"bench_gpu_packing_{k}",
        "data": data,
        "model": {"arch": args.arch, "width": args.width},
        "train": {
            "epochs": args.epochs, "batch_size": 128, "lr": 0.1, "lr_milestones": [max(1, args.epochs - 1)],
            "warmup_epochs": 0, "select_on": "val", "device": "cuda",
        },
        "dnr": {"pruning": "irregular", "density": 0.1, "beta": 0.5, "rho": 1.0e-4},
        "attack": {"train": {"kind": "pgd", "eps": 8 / 255, "alpha": 0.01, "steps": 7, "random_start": True}},
        "search": {"dnr.density": {"grid": DENSITIES[:n]}},
        "tune": {
            "num_samples": 1, "metric": "val_clean_acc", "mode": "max", "max_concurrent_trials": k,
            "resources_per_trial": {"cpu": args.cpus / k, "gpu": 1.0 / k}, "max_failures": 0,
        },
    }  # fmt: skip
    validate_sweep(raw, f"bench_gpu_packing k={k}")  # fail here, not inside Ray
    return raw


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--packs", type=int, nargs="+", default=[1, 2, 4], help="concurrent trials per GPU")
    p.add_argument("--trials-per-slot", type=int, default=2, help="trials per concurrent slot (sweep size = k x this)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--arch", default="resnet18", choices=["resnet18", "vgg16", "smallcnn"])
    p.add_argument("--width", type=float, default=0.5)
    p.add_argument("--dataset", default="synthetic", choices=["synthetic", "cifar10"])
    p.add_argument("--data-root", default="~/.cache/dnr-sweep/data")
    p.add_argument("--cpus", type=float, default=float(os.cpu_count() or 1), help="CPUs shared by the packed trials")
    p.add_argument("--dry-run", action="store_true", help="print the YAML and resources per k, run nothing")
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    configs = {k: sweep_yaml(k, args) for k in args.packs}
    settings = {k: v for k, v in vars(args).items() if k != "no_write"}
    if args.dry_run:
        result = {
            "benchmark": "gpu_packing", "dry_run": True, "skipped": False, "settings": settings,
            "resources": {str(k): c["tune"]["resources_per_trial"] for k, c in configs.items()},
            "trials": {str(k): len(c["search"]["dnr.density"]["grid"]) for k, c in configs.items()},
            "configs": {str(k): yaml.safe_dump(c, sort_keys=False) for k, c in configs.items()},
        }  # fmt: skip
        _common.report("bench_gpu_packing", result, "", write=False)
        return result
    if not torch.cuda.is_available():
        message = "bench_gpu_packing: skipped, no CUDA device is visible (--dry-run prints the configs)"
        print(message, file=sys.stderr)
        result = {"benchmark": "gpu_packing", "skipped": True, "reason": message}
        _common.report("bench_gpu_packing", result, "", write=False)
        return result

    rows = []
    with tempfile.TemporaryDirectory(prefix="dnr-bench-packing-") as tmp:
        for k, raw in configs.items():
            path = Path(tmp) / f"pack{k}.yaml"
            path.write_text(yaml.safe_dump(raw, sort_keys=False))
            wall = _common.run_sweep(path, Path(tmp) / "runs", f"pack{k}")
            n = len(raw["search"]["dnr.density"]["grid"])
            rows.append({"per_gpu": k, "trials": n, "epochs": args.epochs, "wall_s": wall,
                         "trial_epochs_per_s": n * args.epochs / wall,
                         "resources": raw["tune"]["resources_per_trial"]})  # fmt: skip
            print(f"k={k}: {n} trials in {wall:.1f} s", file=sys.stderr)
    base = next((r for r in rows if r["per_gpu"] == 1), rows[0])
    for r in rows:
        r["throughput_vs_1"] = r["trial_epochs_per_s"] / base["trial_epochs_per_s"]
    result = {
        "benchmark": "gpu_packing",
        "skipped": False,
        "machine": _common.machine("cuda"),
        "settings": settings,
        "timing": "one sweep per k, subprocess wall clock incl. Python and Ray start-up",
        "results": rows,
        "goal": "throughput_vs_1 >= 2 for some k > 1",
    }
    summary = f"{args.arch} w{args.width} {args.dataset}, {args.epochs} epochs/trial: " + "; ".join(
        f"{r['per_gpu']}/GPU {r['trials']} trials {r['wall_s']:.0f} s ({r['throughput_vs_1']:.2f}x)" for r in rows
    )
    _common.report("bench_gpu_packing", result, summary, write=not args.no_write)
    return result


if __name__ == "__main__":
    main()
