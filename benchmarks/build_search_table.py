"""Train every configuration of the discretised digits search space once: the table the searchers are
simulated on (``bench_search_efficiency.py``), as tabular HPO benchmarks (NAS-Bench, LCBench) do.

    python benchmarks/build_search_table.py --workers 2              # resumable: rows already there are kept
    python benchmarks/build_search_table.py --fidelities full short2 --limit 4

One row (JSON line) per (fidelity, configuration, training seed), written by the real engine
(:class:`dnr_sweep.training.engine.TrainingRun`, what ``dnr-sweep train`` and every sweep trial run), no
Ray: the digits smallcnn w0.5 run of the old live benchmark (eps-0.1 PGD-7 hybrid loss, 180 validation
images, selection on val_pgd_acc), evaluated on validation every epoch. A row holds each epoch's own
and selected-so-far validation figures, the selected epoch's final validation figures and the test
figures of the selected weights (reported, never read by a searcher), and the wall time.

Fidelities: ``full`` (6 epochs: 1 clean warm-up, lr 0.05, x0.2 after epoch 4), ``short3`` and ``short2``
(the schedule's shape in 3 / 2 epochs: lr 0.05, x0.2 for the last third / half, no warm-up),
``short3_half`` (``short3`` on a fixed half of the training images). Cost of a row in trial-epochs: its
epochs times its share of the training data. Seed 1 retrains the grid's 40 full runs only.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

DENSITIES = (0.05, 0.1, 0.2)
PRUNING = ("irregular", "channel")
BETAS = (0.2, 0.3, 0.5, 0.75)
RHOS = (1.0e-4, 1.0e-3, 1.0e-2)
PRUNE_RATES = (0.1, 0.3, 0.5, 0.7)
#: fidelity -> (epochs, warmup epochs, lr milestones, share of the training images)
FIDELITIES: dict[str, tuple[int, int, list[int], float]] = {
    "full": (6, 1, [4], 1.0),
    "short3": (3, 0, [2], 1.0),
    "short3_half": (3, 0, [2], 0.5),
    "short2": (2, 0, [1], 1.0),
}
#: the grid's values (beta, rho, prune rate): retrained with a second training seed to measure its noise
GRID_VALUES = ((0.5, 0.3), (1.0e-4, 1.0e-3), (0.5, 0.3))

BASE: dict[str, Any] = {
    "name": "search_table",
    "data": {"dataset": "digits", "val_size": 180},
    "model": {"arch": "smallcnn", "width": 0.5},
    "train": {"epochs": 6, "batch_size": 64, "lr": 0.05, "momentum": 0.9, "weight_decay": 5.0e-4,
              "lr_milestones": [4], "lr_gamma": 0.2, "warmup_epochs": 1, "select_on": "val",
              "eval_every": 1, "device": "cpu", "num_threads": 1, "seed": 0},
    "dnr": {"pruning": "irregular", "density": 0.1, "beta": 0.5, "rho": 1.0e-4, "prune_rate": 0.5},
    "attack": {"train": {"kind": "pgd", "eps": 0.1, "alpha": 0.025, "steps": 7, "random_start": True},
               "eval": {"fgsm": {"eps": 0.1}, "pgd": {"eps": 0.1, "alpha": 0.025, "steps": 7, "random_start": True}}},
}  # fmt: skip


#: the engine refuses channel pruning below 8.6% density for smallcnn w0.5 (a dense first layer and one
#: input channel per layer kept: 504 of 5,832 prunable weights), so that cell is left out
REFUSED_CELLS = {(0.05, "channel")}


def configurations() -> list[dict[str, Any]]:
    """Every configuration, cells outermost, the paper's grid values included."""
    return [
        {"density": d, "pruning": k, "beta": b, "rho": r, "prune_rate": p}
        for k, d, b, r, p in itertools.product(PRUNING, DENSITIES, BETAS, RHOS, PRUNE_RATES)
        if (d, k) not in REFUSED_CELLS
    ]


def key(row: dict[str, Any]) -> tuple:
    return (row["fidelity"], row["seed"], row["density"], row["pruning"], row["beta"], row["rho"], row["prune_rate"])


def train_one(job: tuple[str, int, dict[str, Any]]) -> dict[str, Any]:
    """One run of the engine; the row of the table."""
    import torch

    from dnr_sweep.config import run_config_from_flat, validate_sweep
    from dnr_sweep.training.engine import TrainingRun

    fidelity, seed, point = job
    epochs, warmup, milestones, share = FIDELITIES[fidelity]
    raw = json.loads(json.dumps(BASE))
    raw["train"].update(epochs=epochs, warmup_epochs=warmup, lr_milestones=milestones, seed=seed)
    base = validate_sweep(raw, "search_table").base_run()
    config = run_config_from_flat(base, {f"dnr.{name}": value for name, value in point.items()})
    torch.set_num_threads(1)
    start = time.perf_counter()
    run = TrainingRun(config)
    if share < 1.0:
        run.train_loader = _subset_loader(run, share, seed)
    per_epoch = []
    while not run.finished:
        report = run.train_epoch()
        m, s = report.metrics, report.selected
        per_epoch.append({
            "val_clean_acc": m.get("val_clean_acc"), "val_pgd_acc": m.get("val_pgd_acc"),
            "compression": m["compression"], "density": m["density"],
            "selected_val_pgd_acc": s.get("val_pgd_acc"), "selected_compression": s.get("compression"),
            "selected_epoch": s.get("selected_epoch"), "epoch_time_s": m["epoch_time_s"],
        })  # fmt: skip
    # the test split is evaluated (once, on the selected weights) for full runs only: nothing reads a short run's
    final = run.final_metrics() if fidelity == "full" else run.selected()
    keep = ("val_clean_acc", "val_fgsm_acc", "val_pgd_acc", "compression", "density", "channels_present",
            "clean_acc", "fgsm_acc", "pgd_acc", "selected_epoch")  # fmt: skip
    return {
        "fidelity": fidelity, "seed": seed, **point, "epochs": epochs, "data_share": share,
        "cost": epochs * share, "final": {k: _plain(final.get(k)) for k in keep},
        "per_epoch": [{k: _plain(v) for k, v in e.items()} for e in per_epoch],
        "wall_s": round(time.perf_counter() - start, 2),
    }  # fmt: skip


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _subset_loader(run: Any, share: float, seed: int) -> Any:
    """The run's training loader over a fixed random ``share`` of its training images (same per seed)."""
    import torch
    from torch.utils.data import DataLoader, Subset

    loader = run.train_loader
    n = len(loader.dataset)
    keep = torch.randperm(n, generator=torch.Generator().manual_seed(1000 + seed))[: int(n * share)].tolist()
    return DataLoader(Subset(loader.dataset, keep), batch_size=loader.batch_size, shuffle=True, drop_last=False,
                      generator=torch.Generator().manual_seed(seed), num_workers=0)  # fmt: skip


def _in_grid(point: dict[str, Any]) -> bool:
    return all(point[name] in values for name, values in zip(("beta", "rho", "prune_rate"), GRID_VALUES, strict=True))


def jobs(fidelities: list[str], seeds: list[int], done: set[tuple]) -> list[tuple[str, int, dict[str, Any]]]:
    found = []
    # most needed first (the last ones are the first to go when time runs short)
    order = [(f, 0) for f in ("full", "short3") if f in fidelities] + [("full", s) for s in seeds if s != 0]
    order += [(f, 0) for f in ("short3_half", "short2") if f in fidelities]
    for fidelity, seed in order:
        for point in configurations():
            if seed != 0 and not _in_grid(point):
                continue
            if key({"fidelity": fidelity, "seed": seed, **point}) not in done:
                found.append((fidelity, seed, point))
    return found


def export(source: Path, out: Path, note: str) -> int:
    """The rows of this space (fidelities, seeds) from ``source``, sorted, into ``out``; ``note`` into its
    ``.meta.json`` (when and where it was built). Returns the number of rows."""
    wanted = {key({"fidelity": f, "seed": s, **p}) for f, s, p in jobs(list(FIDELITIES), [0, 1], set())}
    rows = {key(r): r for r in map(json.loads, filter(str.strip, source.read_text().splitlines())) if key(r) in wanted}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(rows[k]) + "\n" for k in sorted(rows, key=str)))
    wall = sum(r["wall_s"] for r in rows.values())
    meta = {"built": note, "rows": len(rows), "sum_of_run_wall_s": round(wall), "space": {
        "density": DENSITIES, "pruning": PRUNING, "beta": BETAS, "rho": RHOS, "prune_rate": PRUNE_RATES,
        "refused_cells": sorted(REFUSED_CELLS), "fidelities": FIDELITIES}}  # fmt: skip
    out.with_suffix(".meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    return len(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/dnr_search_table/table.jsonl"))
    parser.add_argument("--fidelities", nargs="+", default=list(FIDELITIES), choices=list(FIDELITIES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None, help="train at most this many rows (a timing probe)")
    parser.add_argument("--export", type=Path, default=None, help="write this space's rows of --out here and stop")
    parser.add_argument("--note", default="", help="with --export: when and where the table was built")
    args = parser.parse_args(argv)
    if args.export:
        print(f"{export(args.out, args.export, args.note)} rows written to {args.export}")
        return
    args.out.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if args.out.is_file():
        done = {key(json.loads(line)) for line in args.out.read_text().splitlines() if line.strip()}
    todo = jobs(args.fidelities, args.seeds, done)[: args.limit]
    print(f"{len(done)} rows present, {len(todo)} to train", flush=True)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    start = time.perf_counter()
    with mp.get_context("spawn").Pool(args.workers, maxtasksperchild=50) as pool, args.out.open("a") as out:
        for i, row in enumerate(pool.imap_unordered(train_one, todo), 1):
            out.write(json.dumps(row) + "\n")
            out.flush()
            print(f"{i}/{len(todo)} {row['fidelity']} {row['pruning']} d{row['density']} b{row['beta']} "
                  f"r{row['rho']:g} p{row['prune_rate']}: val PGD {row['final']['val_pgd_acc']} "
                  f"{row['final']['compression']:.1f}x {row['wall_s']:.0f}s, {time.perf_counter() - start:.0f}s in",
                  flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
