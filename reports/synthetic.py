"""A fake but realistic run directory, for tests, demos and trying the report without a sweep.

:func:`synthetic_tables` makes the ground-truth tables of a small irregular-vs-channel density sweep
(plausible DNR trends, seeded noise); :func:`write_synthetic_run` writes them the way a sweep does:
``config.yaml``, Ray Tune trial folders with ``result.json`` JSON lines (and ``attack_strength.json``
for two trials) and, optionally, ``results.parquet``/``epochs.parquet`` written from the same truth.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from dnr_sweep import run_contract as rc

LAYERS = ("conv1", "layer1.0.conv1", "layer1.0.conv2", "layer2.0.conv1", "layer2.0.conv2", "layer3.0.conv1")
DENSITIES = (1.0, 0.5, 0.2, 0.1, 0.05, 0.02)
PRUNINGS = ("irregular", "channel")
EPOCHS = 4
CONFIG = {
    "name": "synthetic_resnet18_dnr",
    "data": {"dataset": "cifar10"},
    "model": {"arch": "resnet18"},
    "train": {"epochs": EPOCHS},
    "search": {
        "dnr.density": {"grid": list(DENSITIES)},
        "dnr.pruning": {"grid": list(PRUNINGS)},
        "dnr.beta": {"uniform": [0.3, 0.7]},
    },
    "report": {"x": "compression", "y": ["clean_acc", "fgsm_acc", "pgd_acc"], "group_by": "dnr.pruning"},
}


def synthetic_tables(seed: int = 0, incomplete: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Ground-truth ``(results, epochs)`` tables of a 12-trial sweep (+1 unfinished trial)."""
    rng = np.random.default_rng(seed)
    results, epochs = [], []
    trials = [(d, p) for p in PRUNINGS for d in DENSITIES]
    if incomplete:
        trials.append((0.1, "irregular"))
    for i, (density, pruning) in enumerate(trials):
        trial_id = f"t{i:03d}"
        finished = i < len(PRUNINGS) * len(DENSITIES)
        n_epochs = EPOCHS if finished else 2
        beta = round(float(rng.uniform(0.3, 0.7)), 4)
        conv_share = 0.95
        compression = 1.0 / (density * conv_share + (1 - conv_share))
        if pruning == "channel":
            channels = density**0.5
            drop = 30 * (1 - density) ** 3
        else:
            channels = min(1.0, 1 - (1 - density) ** 6 + 0.01) if density < 1 else 1.0
            drop = 6 * (1 - density) ** 8
        layer = (
            np.clip(density * np.array([2.5, 1.3, 1.1, 0.95, 0.85, 0.7]), 0, 1) if density < 1 else np.ones(6)
        )
        params = {"dnr.density": density, "dnr.pruning": pruning, "dnr.beta": beta}
        base = {"density": density, "compression": compression, "channels_present": channels}
        base.update({f"layer_density/{name}": float(v) for name, v in zip(LAYERS, layer, strict=True)})
        for epoch in range(1, n_epochs + 1):
            progress = epoch / EPOCHS
            row = {"trial_id": trial_id, "epoch": epoch}
            row.update(
                {
                    "loss": round(2.3 * (1.15 - progress) + rng.normal(0, 0.02), 4),
                    "loss_clean": round(1.6 * (1.15 - progress), 4),
                    "loss_adv": round(2.9 * (1.15 - progress), 4),
                    "loss_l2": round(0.01 * progress, 5),
                    "train_acc": round(50 + 40 * progress - drop / 2, 2),
                    "val_clean_acc": round(60 + 30 * progress - drop + rng.normal(0, 0.3), 2),
                    "val_fgsm_acc": round(30 + 25 * progress - drop / 1.5, 2),
                    "val_pgd_acc": round(25 + 22 * progress - drop / 1.4, 2),
                    **base,
                    "lr": 0.1 * (0.2 if epoch > 2 else 1.0),
                    "epoch_time_s": round(float(rng.uniform(10, 12)), 3),
                }
            )
            row.update(params)
            row.update({"model.arch": "resnet18", "data.dataset": "cifar10"})
            epochs.append(row)
        trial_epochs = [r for r in epochs if r["trial_id"] == trial_id]
        chosen = max(trial_epochs, key=lambda r: r["val_clean_acc"])  # the first best, like the engine
        noise = rng.normal(0, 0.4, 4)
        result = {
            "trial_id": trial_id,
            "status": "TERMINATED" if finished else "INCOMPLETE",
            "early_stopped": not finished,
            "epochs_completed": n_epochs,
            "selected_epoch": chosen["epoch"],
            **params,
            "model.arch": "resnet18",
            "data.dataset": "cifar10",
            "clean_acc": round(90 - drop + noise[0], 2) if finished else np.nan,
            "fgsm_acc": round(55 - drop / 1.5 + noise[1], 2) if finished else np.nan,
            "pgd_acc": round(47 - drop / 1.4 + noise[2], 2) if finished else np.nan,
            "autoattack_acc": round(43 - drop / 1.3 + noise[3], 2) if finished else np.nan,
            **{k: chosen[k] for k in ("val_clean_acc", "val_fgsm_acc", "val_pgd_acc")},
            "selected_on": "val",
            "select_metric": "val_clean_acc",
            **({"epochs": n_epochs} if finished else {}),
        }
        result.update(base)
        results.append(result)
    return pd.DataFrame(results), pd.DataFrame(epochs)


_FINAL_KEYS = ("clean_acc", "fgsm_acc", "pgd_acc", "autoattack_acc")


def write_synthetic_run(run_dir: str | os.PathLike[str], *, parquet: bool = True, seed: int = 0) -> Path:
    """Write a synthetic run directory (see the module docstring); return its path."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(CONFIG, sort_keys=False))
    results, epochs = synthetic_tables(seed)
    for i, result in results.iterrows():
        trial_id = result["trial_id"]
        config = {
            "dnr.density": float(result["dnr.density"]),
            "dnr.pruning": str(result["dnr.pruning"]),
            "dnr.beta": float(result["dnr.beta"]),
        }
        folder = (
            run_dir
            / f"DNRTrainable_{trial_id}_{i}_density={config['dnr.density']},pruning={config['dnr.pruning']}"
        )
        folder.mkdir(exist_ok=True)
        rows = epochs[epochs["trial_id"] == trial_id]
        lines = []
        best: dict | None = None
        for n, (_, row) in enumerate(rows.iterrows(), start=1):
            metrics = {k: v for k, v in row.items() if k not in ("trial_id", "epoch") and "." not in k}
            metrics.update({k: v for k, v in row.items() if k.startswith(rc.LAYER_PREFIX)})
            if best is None or row["val_clean_acc"] > best["val_clean_acc"]:
                best = dict(row)
            selected = {"selected_epoch": int(best["epoch"]), "selected_on": "val", "select_metric": "val_clean_acc"}
            selected.update({k: best[k] for k in (*rc.VAL_METRICS, "density", "compression", "channels_present")})
            selected.update({k: v for k, v in best.items() if k.startswith(rc.LAYER_PREFIX)})
            final = None
            if n == len(rows) and result["status"] == "TERMINATED":
                final = {k: result[k] for k in _FINAL_KEYS} | {"epochs": int(result["epochs"])}
            line = rc.tune_result(int(row["epoch"]), metrics, selected, final)
            line.update(
                {
                    "trial_id": trial_id,
                    "training_iteration": int(row["epoch"]),
                    "done": final is not None,
                    "timestamp": 1_700_000_000 + n,
                    "time_this_iter_s": row["epoch_time_s"],
                    "pid": 4242,
                    "hostname": "synthetic",
                    "node_ip": "127.0.0.1",
                    "config": config,
                }
            )
            lines.append(json.dumps(_plain(line)))
        (folder / "result.json").write_text("\n".join(lines) + "\n")
        if result["status"] == "TERMINATED" and result["dnr.density"] in (0.05, 0.5):
            acc = float(result["pgd_acc"])  # PGD-7 at eps 8/255; curves pass through it
            scale = -8 / np.log(acc / float(result["clean_acc"]))
            curves = {
                "steps": {
                    str(s): round(
                        acc + 8 * (1 - (s / 7) ** 0.5) * (s < 7) - 0.6 * np.log(s / 7) * (s >= 7), 2
                    )
                    for s in (1, 2, 3, 5, 7, 10, 20, 50, 100)
                },
                "eps": {
                    f"{e / 255:.6f}": round(float(result["clean_acc"]) * np.exp(-e / scale), 2)
                    for e in (0, 1, 2, 4, 6, 8, 10, 12, 16)
                },
            }
            (folder / "attack_strength.json").write_text(json.dumps(curves))
    if parquet:
        results.to_parquet(run_dir / "results.parquet", index=False)
        epochs.to_parquet(run_dir / "epochs.parquet", index=False)
    return run_dir


def _plain(obj: dict) -> dict:
    """numpy scalars -> Python, so ``json.dumps`` accepts them."""
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in obj.items()}
