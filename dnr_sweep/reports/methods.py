"""Methods side by side: the paper's Table 2 and a Fig. 3-style figure with one colour per method.

From one run (a sweep over ``method``) or several (one per method), rows of ``results.parquet``
carry ``method`` and ``pruning_type`` (run contract). A row's *label* is its method's name as Table 2
spells it (``ADMM naive`` for ``admm.layer_ratios: naive``).

- :func:`method_fronts`: per label, the Pareto set of (compression, validation accuracy): chosen on
  validation figures only; the figure draws those trials' *test* figures, measured once.
- :func:`table2`: per label, the one trial with the best validation ``select_metric`` (default
  ``val_clean_acc``, the paper's criterion moved to validation); its test clean/FGSM/PGD accuracy,
  compression, training epochs (and per phase), forward-equivalents per image and wall time (the
  sum of its epochs' ``epoch_time_s``). Lasso's compression is where it landed, not a target.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib as mpl
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

from dnr_sweep.foundation import run_contract as rc
from dnr_sweep.foundation.files import atomic_write_handle, make_folder

from .pareto import pareto_front

LABELS = {"dnr": "DNR", "admm": "ADMM", "lasso": "L1 Lasso", "hydra": "HYDRA"}
COLORS = {"DNR": "#1f77b4", "ADMM": "#d62728", "ADMM naive": "#ff9896", "L1 Lasso": "#2ca02c", "HYDRA": "#9467bd"}
ACCURACIES = (("clean_acc", "val_clean_acc", "Clean"), ("fgsm_acc", "val_fgsm_acc", "FGSM"),
              ("pgd_acc", "val_pgd_acc", "PGD"))  # fmt: skip


def labelled(results: pd.DataFrame, config: Mapping[str, object] | None = None) -> pd.DataFrame:
    """``results`` with a ``label`` column (Table 2's method names), finished trials with a method only."""
    if "method" not in results.columns:
        return results.iloc[0:0].assign(label=pd.Series(dtype=str))
    df = results[results["method"].notna()].copy()
    if "early_stopped" in df.columns:
        df = df[~df["early_stopped"].fillna(True).astype(bool)]
    ratios = df["admm.layer_ratios"] if "admm.layer_ratios" in df.columns else None
    default = ((config or {}).get("admm") or {}).get("layer_ratios", "naive") if config else "naive"
    labels = []
    for k, (_, row) in enumerate(df.iterrows()):
        label = LABELS.get(row["method"], str(row["method"]))
        value = ratios.iloc[k] if ratios is not None and pd.notna(ratios.iloc[k]) else default
        if row["method"] == "admm" and value == "naive":
            label = "ADMM naive"
        labels.append(label)
    return df.assign(label=labels)


def method_fronts(df: pd.DataFrame, y_val: str = "val_pgd_acc") -> dict[str, pd.DataFrame]:
    """Per label, the trials on the validation Pareto front of (compression, ``y_val``), by compression."""
    fronts = {}
    for label, rows in df.groupby("label", sort=False):
        rows = rows.dropna(subset=["compression", y_val])
        if not rows.empty:
            fronts[str(label)] = pareto_front(rows, {"compression": "max", y_val: "max"}).rows
    return fronts


def wall_times(epochs: pd.DataFrame) -> pd.Series:
    """Seconds per trial: the sum of its epochs' ``epoch_time_s`` (:data:`run_contract.TRAIN_WALL_S`)."""
    if epochs.empty or "epoch_time_s" not in epochs.columns:
        return pd.Series(dtype=float)
    last = epochs.drop_duplicates(["trial_id", "epoch"], keep="last")
    return last.groupby("trial_id")["epoch_time_s"].sum()


def table2(df: pd.DataFrame, epochs: pd.DataFrame, select_metric: str = "val_clean_acc") -> pd.DataFrame:
    """One row per label: the trial with the best validation ``select_metric`` and its reported figures."""
    if not rc.is_validation_metric(select_metric):
        raise ValueError(f"Table 2 chooses on validation figures; {select_metric!r} is not one (e.g. val_clean_acc)")
    walls = wall_times(epochs)
    rows = []
    for label, group in df.groupby("label", sort=False):
        group = group.dropna(subset=[select_metric])
        if group.empty:
            continue
        best = group.loc[group[select_metric].idxmax()]
        phases = [p for p in rc.PHASES if pd.notna(best.get(rc.phase_epochs_metric(p)))]
        rows.append({
            "Method": label,
            "Pruning type": best.get("pruning_type"),
            "Compression": best["compression"],
            "Clean": best["clean_acc"], "FGSM": best["fgsm_acc"], "PGD": best["pgd_acc"],
            "Training epochs": best.get("epochs"),
            "Epochs per phase": " + ".join(f"{p} {int(best[rc.phase_epochs_metric(p)])}" for p in phases),
            "FE per image": best.get(rc.TRAIN_FWD_EQUIV),
            "Wall time (s)": walls.get(str(best["trial_id"])),
            "Chosen on": select_metric,
            "trial_id": best["trial_id"],
        })  # fmt: skip
    order = {name: k for k, name in enumerate(COLORS)}
    table = pd.DataFrame(rows)
    return table.sort_values("Method", key=lambda s: s.map(lambda v: order.get(v, 99))) if rows else table


def figure(df: pd.DataFrame) -> Figure:
    """Compression vs test clean/FGSM/PGD accuracy, one colour per method, each method's trials on its
    validation front (chosen per panel on that panel's validation accuracy) joined by a line."""
    fig = Figure(figsize=(11, 3.4), layout="constrained")
    axes = fig.subplots(1, 3)
    for ax, (test, val, title) in zip(axes, ACCURACIES, strict=True):
        for label, rows in method_fronts(df, val).items():
            color = COLORS.get(label, "#555555")
            everyone = df[df["label"] == label]
            ax.scatter(everyone["compression"], everyone[test], color=color, alpha=0.25, s=14)
            ax.plot(rows["compression"], rows[test], "-o", color=color, label=label, ms=4)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}×"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("Compression (×)")
        ax.set_title(f"{title} (test; fronts chosen on validation)", fontsize=9)
    axes[0].set_ylabel("Accuracy (%)")
    handles, names = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, names, loc="outside lower center", ncol=len(names), frameon=False)
    return fig


def write(df: pd.DataFrame, epochs: pd.DataFrame, out_dir: str | os.PathLike[str], *,
          formats: Sequence[str] = ("pdf", "png"), select_metric: str = "val_clean_acc") -> list[Path]:  # fmt: skip
    """``methods.{pdf,png}`` and ``table2.{csv,tex}`` into ``out_dir``; nothing when no row has a method."""
    if df.empty or df["label"].nunique() == 0:
        return []
    out = Path(out_dir)
    make_folder(out, "--out")
    written = []
    fig = figure(df)
    with mpl.rc_context({"font.size": 9}):
        for fmt in dict.fromkeys([*formats, "png"]):
            written.append(atomic_write_handle(out / f"methods.{fmt}", lambda h, fmt=fmt: fig.savefig(h, format=fmt)))
    table = table2(df, epochs, select_metric)
    text = table.to_csv(index=False)
    written.append(atomic_write_handle(out / "table2.csv", lambda h: h.write(text.encode())))
    latex = table.drop(columns=["trial_id"]).to_latex(index=False, float_format="%.2f", na_rep="-")
    written.append(atomic_write_handle(out / "table2.tex", lambda h: h.write(latex.encode())))
    return written


def from_runs(
    runs: Sequence[tuple[pd.DataFrame, pd.DataFrame, Mapping[str, object]]],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Labelled results and epochs of one or several runs ((results, epochs, config) each); trial ids
    prefixed by the run's position when there are several, so they stay unique."""
    results, epochs = [], []
    for k, (res, ep, config) in enumerate(runs):
        prefix = f"{k}:" if len(runs) > 1 else ""
        results.append(labelled(res, config).assign(trial_id=lambda d, p=prefix: p + d["trial_id"].astype(str)))
        if not ep.empty and "trial_id" in ep.columns:
            epochs.append(ep.assign(trial_id=lambda d, p=prefix: p + d["trial_id"].astype(str)))
    return pd.concat(results, ignore_index=True), (pd.concat(epochs, ignore_index=True) if epochs else pd.DataFrame())


def worth_writing(df: pd.DataFrame) -> bool:
    """Table 2 and the methods figure are written when some trial ran a method other than DNR."""
    return not df.empty and "method" in df.columns and bool((df["method"] != "dnr").any())


def select_metric_of(config: Mapping[str, object]) -> str:
    """The run's ``tune.metric`` when it is a validation figure, else ``val_clean_acc`` (the paper's criterion)."""
    metric = ((config.get("tune") or {}) if isinstance(config.get("tune"), Mapping) else {}).get("metric")
    return metric if isinstance(metric, str) and rc.is_validation_metric(metric) else "val_clean_acc"
