"""A fake but realistic run directory for the report's tests: a sweep's files without a sweep.

:func:`synthetic_tables` makes the ground-truth tables of a small irregular-vs-channel density sweep
(plausible DNR trends, seeded noise); :func:`write_synthetic_run` writes them the way a sweep does:
``config.yaml``, Ray Tune trial folders with ``result.json`` JSON lines (and ``attack_strength.json``
for some trials) and, optionally, ``results.parquet``/``epochs.parquet`` written from the same truth.

What it exercises:

* validation figures that disagree a little with the test figures (so choosing on one or the other
  gives different fronts), ``selected_on``/``select_metric``, and with ``select_on="test"`` the paper
  protocol's ``test_*_acc`` selection figures instead of ``val_*_acc``;
* three seeds (``train.seed``) for the configurations at :data:`SEEDED_DENSITIES`, one elsewhere;
* robust accuracies evaluated on every epoch but the first (NaN there), a post-training
  ``autoattack_acc`` (test only) and, for channel pruning, ``speedup_cpu``;
* an unfinished trial: its row holds the selected figures so far and no test figures.

:func:`synthetic_method_tables` and :func:`write_synthetic_method_run` make a Table 2 sweep instead:
DNR, ADMM naive, L1 Lasso and HYDRA at several compressions, three seeds each, with each method's
training cost (``train_fwd_equiv``, ``train_adv_epochs``, ``epochs_<phase>``) and a dense DNR baseline.

A ``result.json`` line (the run contract, :mod:`dnr_sweep.foundation.run_contract`): the epoch's own figures
under ``this_epoch/``; at the top level the selected epoch's figures so far (``selected_epoch``,
``selected_on``, ``select_metric``, the selection accuracies, sparsity and layer densities); on the
final line also ``final: true``, the test figures, ``epochs`` and post-training metrics.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from dnr_sweep.foundation import files
from dnr_sweep.foundation.run_contract import (
    CONFIG_FILE,
    EPOCHS_FILE,
    LAYER_PREFIX,
    RESULTS_FILE,
    TUNE_RESULT_FILE,
    epoch_key,
    selection_metrics,
)

LAYERS = ("conv1", "layer1.0.conv1", "layer1.0.conv2", "layer2.0.conv1", "layer2.0.conv2", "layer3.0.conv1")
DENSITIES = (1.0, 0.5, 0.2, 0.1, 0.05, 0.02)
PRUNINGS = ("irregular", "channel")
#: configurations at these target densities run three seeds; the others one
SEEDED_DENSITIES = (1.0, 0.1)
SEEDS = (0, 1, 2)
EPOCHS = 4
CONFIG: dict[str, Any] = {
    "name": "synthetic_resnet18_dnr",
    "data": {"dataset": "cifar10"},
    "model": {"arch": "resnet18"},
    "train": {"epochs": EPOCHS, "select_on": "val"},
    "search": {
        "dnr.density": {"grid": list(DENSITIES)},
        "dnr.pruning": {"grid": list(PRUNINGS)},
        "dnr.beta": {"uniform": [0.3, 0.7]},
        "train.seed": {"grid": list(SEEDS)},
    },
    "report": {"x": "compression", "y": ["clean_acc", "fgsm_acc", "pgd_acc"], "group_by": "dnr.pruning"},
}
FINISHED, INCOMPLETE = "TERMINATED", "INCOMPLETE"


def _trials(incomplete: bool) -> list[tuple[float, str, int, bool]]:
    """``(density, pruning, seed, finished)`` of every trial, in trial-id order."""
    trials = []
    for pruning in PRUNINGS:
        for density in DENSITIES:
            for seed in SEEDS if density in SEEDED_DENSITIES else SEEDS[:1]:
                trials.append((density, pruning, seed, True))
    if incomplete:
        trials.append((0.05, "irregular", 1, False))
    return trials


def synthetic_tables(
    seed: int = 0, incomplete: bool = True, select_on: str = "val"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Ground-truth ``(results, epochs)`` tables: one row per trial, one row per trial-epoch.

    ``select_on="test"`` names the per-epoch selection figures ``test_*_acc`` (the paper protocol).
    """
    clean_name, fgsm_name, pgd_name = selection_metrics(select_on)
    rng = np.random.default_rng(seed)
    results, epochs = [], []
    betas: dict[tuple[float, str], float] = {}
    for i, (density, pruning, trial_seed, finished) in enumerate(_trials(incomplete)):
        trial_id = f"t{i:03d}"
        n_epochs = EPOCHS if finished else 2
        beta = betas.setdefault((density, pruning), round(float(rng.uniform(0.3, 0.7)), 4))
        conv_share = 0.95
        compression = 1.0 / (density * conv_share + (1 - conv_share))
        if pruning == "channel":
            channels = density**0.5
            drop = 30 * (1 - density) ** 3
        else:
            channels = min(1.0, 1 - (1 - density) ** 6 + 0.01) if density < 1 else 1.0
            drop = 6 * (1 - density) ** 8
        seed_shift = rng.normal(0, 0.5)  # a seed moves every figure of its trial a little
        layer = np.clip(density * np.array([2.5, 1.3, 1.1, 0.95, 0.85, 0.7]), 0, 1) if density < 1 else np.ones(6)
        params = {"model.arch": "resnet18", "data.dataset": "cifar10", "dnr.density": density,
                  "dnr.pruning": pruning, "dnr.beta": beta, "train.seed": trial_seed}  # fmt: skip
        sparsity = {"density": density, "mask_density": density, "compression": compression,
                    "channels_present": channels}  # fmt: skip
        layers = {f"{LAYER_PREFIX}{name}": float(v) for name, v in zip(LAYERS, layer, strict=True)}
        trial_epochs = []
        for epoch in range(1, n_epochs + 1):
            progress = epoch / EPOCHS
            robust = epoch > 1  # robust accuracy is not evaluated on the first epoch
            row: dict[str, Any] = {"trial_id": trial_id, "epoch": epoch}
            row.update(
                {
                    "phase": "warmup" if epoch == 1 else "hybrid",
                    "lr": 0.1 * (0.2 if epoch > 2 else 1.0),
                    "loss": round(2.3 * (1.15 - progress) + rng.normal(0, 0.02), 4),
                    "loss_clean": round(1.6 * (1.15 - progress), 4),
                    "loss_adv": round(2.9 * (1.15 - progress), 4),
                    "loss_l2": round(0.01 * progress, 5),
                    "train_acc": round(50 + 40 * progress - drop / 2, 2),
                    clean_name: round(60.4 + 30 * progress - drop + seed_shift + rng.normal(0, 0.6), 2),
                    fgsm_name: round(30.3 + 25 * progress - drop / 1.5 + seed_shift + rng.normal(0, 0.6), 2)
                    if robust else np.nan,
                    pgd_name: round(25.2 + 22 * progress - drop / 1.4 + seed_shift + rng.normal(0, 0.6), 2)
                    if robust else np.nan,
                    **sparsity,
                    "prune_rate": 0.5 * (1 - progress),
                    "train_time_s": round(float(rng.uniform(9, 11)), 3),
                    "epoch_time_s": round(float(rng.uniform(10, 12)), 3),
                    **layers,
                }
            )  # fmt: skip
            row.update(params)
            trial_epochs.append(row)
        epochs.extend(trial_epochs)
        best = max(trial_epochs, key=lambda r: r[clean_name])  # the selection rule: the first best clean figure
        noise = rng.normal(0, 0.4, 4)
        result: dict[str, Any] = {
            "trial_id": trial_id,
            "status": FINISHED if finished else INCOMPLETE,
            "early_stopped": not finished,
            "epochs_completed": n_epochs,
            "selected_epoch": best["epoch"],  # so far, for an unfinished trial
            **params,
            "clean_acc": round(90 - drop + seed_shift + noise[0], 2) if finished else np.nan,
            "fgsm_acc": round(55 - drop / 1.5 + seed_shift + noise[1], 2) if finished else np.nan,
            "pgd_acc": round(47 - drop / 1.4 + seed_shift + noise[2], 2) if finished else np.nan,
            "autoattack_acc": round(43 - drop / 1.3 + seed_shift + noise[3], 2) if finished else np.nan,
            clean_name: best[clean_name],
            fgsm_name: best[fgsm_name],
            pgd_name: best[pgd_name],
            **sparsity,
            "selected_on": select_on,
            "select_metric": clean_name,
            "epochs": n_epochs if finished else np.nan,
            "speedup_cpu": round(1 / (0.15 + 0.85 * channels**2), 2) if finished and pruning == "channel" else np.nan,
            **layers,
        }
        results.append(result)
    return pd.DataFrame(results), pd.DataFrame(epochs)


#: top-level keys of every result line: the selected epoch's figures so far (besides the accuracies)
_SELECTED_KEYS = ("density", "mask_density", "compression", "channels_present")
#: final-line-only keys
_FINAL_KEYS = ("clean_acc", "fgsm_acc", "pgd_acc", "autoattack_acc", "epochs", "speedup_cpu")


def _result_lines(result: pd.Series, rows: pd.DataFrame, config: dict[str, Any], select_on: str) -> list[dict]:
    """The trial's ``result.json`` lines (one per epoch), as the trainable reports them."""
    selection = selection_metrics(select_on)
    metric = selection[0]
    lines = []
    best: pd.Series | None = None
    for n, (_, row) in enumerate(rows.iterrows(), start=1):
        if best is None or row[metric] > best[metric]:
            best = row  # the selected epoch so far
        line: dict[str, Any] = {}
        for key, value in row.items():
            if key in ("trial_id", "epoch") or ("." in key and not key.startswith(LAYER_PREFIX)):
                continue
            line[epoch_key(key)] = value
        line.update(
            {
                "epoch": int(row["epoch"]),
                "final": False,
                "selected_epoch": int(best["epoch"]),
                "selected_on": select_on,
                "select_metric": metric,
                **{k: best[k] for k in (*selection, *_SELECTED_KEYS)},
                **{k: best[k] for k in rows.columns if k.startswith(LAYER_PREFIX)},
                "trial_id": str(result["trial_id"]),
                "training_iteration": int(row["epoch"]),
                "done": False,
                "timestamp": 1_700_000_000 + n,
                "time_this_iter_s": row["epoch_time_s"],
                "pid": 4242,
                "hostname": "synthetic",
                "node_ip": "127.0.0.1",
                "config": config,
            }
        )
        if n == len(rows) and result["status"] == FINISHED:
            line.update({k: result[k] for k in _FINAL_KEYS if pd.notna(result[k])})
            line.update({"final": True, "done": True, "epochs": int(result["epochs"])})
        lines.append(line)
    return lines


def write_synthetic_run(
    run_dir: str | os.PathLike[str], *, parquet: bool = True, seed: int = 0, select_on: str = "val"
) -> Path:
    """Write a synthetic run directory (see the module docstring); return its path."""
    run_dir = files.make_folder(run_dir)
    config = {**CONFIG, "train": {**CONFIG["train"], "select_on": select_on}}
    files.write_text(run_dir / CONFIG_FILE, yaml.safe_dump(config, sort_keys=False))
    results, epochs = synthetic_tables(seed, select_on=select_on)
    for i, result in results.iterrows():
        trial_id = result["trial_id"]
        trial_config = {
            "dnr": {"density": float(result["dnr.density"]), "pruning": str(result["dnr.pruning"]),
                    "beta": float(result["dnr.beta"])},
            "train": {"seed": int(result["train.seed"])},
        }  # fmt: skip
        folder = run_dir / (
            f"DNRTrainable_{trial_id}_{i}_density={result['dnr.density']},pruning={result['dnr.pruning']},"
            f"seed={result['train.seed']}"
        )
        files.make_folder(folder)
        rows = epochs[epochs["trial_id"] == trial_id]
        lines = _result_lines(result, rows, trial_config, select_on)
        files.write_text(folder / TUNE_RESULT_FILE, "\n".join(json.dumps(_plain(line)) for line in lines) + "\n")
        if result["status"] == FINISHED and result["dnr.density"] in (0.05, 0.5) and result["train.seed"] == 0:
            acc = float(result["pgd_acc"])  # PGD-7 at eps 8/255; curves pass through it
            scale = -8 / np.log(acc / float(result["clean_acc"]))
            curves = {
                "steps": {
                    str(s): round(acc + 8 * (1 - (s / 7) ** 0.5) * (s < 7) - 0.6 * np.log(s / 7) * (s >= 7), 2)
                    for s in (1, 2, 3, 5, 7, 10, 20, 50, 100)
                },
                "eps": {
                    f"{e / 255:.6f}": round(float(result["clean_acc"]) * np.exp(-e / scale), 2)
                    for e in (0, 1, 2, 4, 6, 8, 10, 12, 16)
                },
            }
            files.write_text(folder / "attack_strength.json", json.dumps(curves))
    if parquet:
        _write_tables(run_dir, results, epochs)
    return run_dir


def _write_tables(run_dir: Path, results: pd.DataFrame, epochs: pd.DataFrame) -> None:
    for name, table in ((RESULTS_FILE, results), (EPOCHS_FILE, epochs)):
        files.write_file(run_dir / name, lambda handle, table=table: table.to_parquet(handle, index=False))


#: ``method -> (its density parameter, densities, phases (name, epochs, adversarial))``; Lasso's density is
#: where it lands (its ``lasso.lam`` is what is swept)
METHOD_RUNS: dict[str, tuple[str, tuple[float, ...], tuple[tuple[str, int, bool], ...]]] = {
    "dnr": ("dnr.density", (1.0, 0.125, 0.05), (("warmup", 1, False), ("hybrid", 3, True))),
    "admm": ("admm.density", (0.5, 0.125, 0.05), (("pretrain", 2, True), ("admm", 1, True), ("retrain", 1, True))),
    "lasso": ("lasso.lam", (1.0e-5, 1.0e-4), (("lasso", 2, True), ("retrain", 1, True))),
    "hydra": ("hydra.density", (0.125, 0.05), (("pretrain", 2, True), ("prune", 1, True), ("finetune", 1, True))),
}
METHOD_CONFIG: dict[str, Any] = {
    "name": "synthetic_table2",
    "data": {"dataset": "cifar10"},
    "model": {"arch": "vgg16"},
    "train": {"epochs": EPOCHS, "select_on": "val", "select_metric": "val_pgd_acc"},
    "dnr": {"pruning": "irregular"},
    "admm": {"layer_ratios": "naive"},
    "search": {"method": {"grid": list(METHOD_RUNS)}, "train.seed": {"grid": list(SEEDS)}},
    "report": {"x": "compression", "y": ["clean_acc", "fgsm_acc", "pgd_acc"], "group_by": "dnr.pruning"},
}
_LASSO_DENSITY = {1.0e-5: 0.5, 1.0e-4: 0.25}
#: DNR's beta (the clean share of its loss) trades clean for robust accuracy: (clean, FGSM, PGD) shifts;
#: at 0.8 a configuration is on the joint front (better clean) but not on a PGD-only one
_BETAS = {0.5: (0.0, 0.0, 0.0), 0.8: (2.5, -1.0, -2.5)}
_METHOD_SHIFT = {"dnr": -1.0, "admm": 1.5, "lasso": 0.5, "hydra": 0.0}  # accuracy lost beside pruning


def synthetic_method_tables(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Ground-truth ``(results, epochs)`` of a Table 2 sweep (see the module docstring); trial ids ``m000``..."""
    rng = np.random.default_rng(seed)
    results, epochs = [], []
    n = 0
    for method, (param, values, phases) in METHOD_RUNS.items():
        variants = [(v, b) for v in values for b in (_BETAS if method == "dnr" and v == 0.125 else (0.5,))]
        for value, beta in variants:
            density = _LASSO_DENSITY[value] if method == "lasso" else value
            clean_shift, fgsm_shift, pgd_shift = _BETAS[beta]
            compression = 1.0 / (density * 0.95 + 0.05)
            drop = 6 * (1 - density) ** 8 + _METHOD_SHIFT[method]
            for trial_seed in SEEDS:
                trial_id = f"m{n:03d}"
                n += 1
                shift = rng.normal(0, 0.5)
                test = {"clean_acc": 90 - drop + shift + clean_shift, "fgsm_acc": 55 - drop / 1.5 + shift + fgsm_shift,
                        "pgd_acc": 47 - drop / 1.4 + shift + pgd_shift,
                        "autoattack_acc": 43 - drop / 1.3 + shift + pgd_shift}  # fmt: skip
                test = {k: round(v + rng.normal(0, 0.4), 2) for k, v in test.items()}
                val = {f"val_{k}": round(v + rng.normal(0, 0.6), 2) for k, v in test.items() if k != "autoattack_acc"}
                epochs_total = sum(e for _, e, _ in phases)
                results.append({
                    "trial_id": trial_id, "status": FINISHED, "early_stopped": False,
                    "epochs_completed": epochs_total, "selected_epoch": epochs_total,
                    "model.arch": "vgg16", "data.dataset": "cifar10", "method": method, param: value,
                    **({"dnr.beta": beta} if method == "dnr" else {}),
                    "train.seed": trial_seed, **test, **val,
                    "density": density, "mask_density": density, "compression": compression,
                    "selected_on": "val", "select_metric": "val_pgd_acc", "epochs": epochs_total,
                    "pruning_type": "irregular", "train_fwd_equiv": 27.0 * epochs_total,
                    "train_adv_epochs": sum(e for _, e, adv in phases if adv),
                    **{f"epochs_{name}": e for name, e, _ in phases},
                })  # fmt: skip
                phase_of = [name for name, e, _ in phases for _ in range(e)]
                for epoch, phase in enumerate(phase_of, start=1):
                    epochs.append({"trial_id": trial_id, "epoch": epoch, "phase": phase,
                                   "loss": round(2.0 - 0.3 * epoch, 3),
                                   "epoch_time_s": round(float(rng.uniform(10, 12)), 3)})  # fmt: skip
    return pd.DataFrame(results), pd.DataFrame(epochs)


def write_synthetic_method_run(run_dir: str | os.PathLike[str], *, seed: int = 0) -> Path:
    """A Table 2 run directory: ``config.yaml`` and the Parquet tables of :func:`synthetic_method_tables`."""
    run_dir = files.make_folder(run_dir)
    files.write_text(run_dir / CONFIG_FILE, yaml.safe_dump(METHOD_CONFIG, sort_keys=False))
    _write_tables(run_dir, *synthetic_method_tables(seed))
    return run_dir


def _plain(obj: dict) -> dict:
    """numpy scalars -> Python and NaN -> None, so ``json.dumps`` writes valid JSON."""
    out = {}
    for k, v in obj.items():
        if isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, float) and np.isnan(v):
            v = None
        out[k] = v
    return out
