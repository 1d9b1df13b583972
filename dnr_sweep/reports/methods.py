"""Methods side by side: the paper's Table 2 and the methods figure, from the chooser's :class:`MethodChoice`.

Nothing is chosen here (:func:`reports.chooser.choose_methods` chooses); this module lays the choice
out. Table 2 has one row per scope and method label (``ADMM naive`` for ``admm.layer_ratios: naive``):
the configuration chosen on its ``select_metric`` at matched compression, its test clean/FGSM/PGD
accuracy (and every post-training attack such as AutoAttack) as mean and 95% CI over seeds, the seed
count, its training cost (adversarial epochs, epochs, epochs per phase, forward-equivalents per image,
wall time: the mean over seeds of the sum of its epochs' ``epoch_time_s``), what chose it, and its
configuration and trial ids. ``table2.csv`` keeps means and CI half-widths in separate columns;
``table2.tex`` and ``index.html`` show "mean ± ci". Lasso's compression is where it landed, not a target.

The methods figure (:func:`methods_figure_data`): compression vs test clean/FGSM/PGD accuracy, one
colour per method (:data:`reports.style.METHOD_COLORS`); per method its front chosen on validation
over seed-aggregated configurations, with 95% CI error bars where a configuration has seeds.
Imports no plotting library (:func:`reports.figures.methods` draws).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dnr_sweep.foundation import run_contract as rc
from dnr_sweep.foundation.files import atomic_write_handle

from .chooser import CHOSEN_ON, COMPRESSION, MATCHED, REFERENCE, FrontChoice, MethodChoice
from .figure_data import Line, Points, line_of
from .labels import GROUP, METHOD_LABEL, SCOPE
from .load import is_test_accuracy
from .protocol import Protocol, selection_column
from .seeds import N_SEEDS, TRIAL_IDS, ci_column
from .style import DENSE, metric_label
from .tables import ci_label, latex_escape

METHOD, PRUNING, SEEDS_COLUMN = "Method", "Pruning type", "Seeds"
COMPRESSION_COLUMN = "Compression (×)"
MATCHED_COLUMN = "Matched compression"
REFERENCE_COLUMN = "Reference compression (×)"
CHOSEN_COLUMN = "Chosen on"
CONFIGURATION, TRIALS = "Configuration", "Trials"
COST_COLUMNS = ("Adversarial epochs", "Training epochs", "Epochs per phase", "FE per image", "Wall time (s)")


def table2_metrics(choice: MethodChoice) -> list[str]:
    """The test accuracies Table 2 shows: clean, FGSM, PGD, then every post-training attack (AutoAttack, ...)."""
    columns = choice.rows.columns
    extra = sorted(c for c in columns if rc.is_attack_metric(str(c)) and is_test_accuracy(str(c)))
    return [m for m in (*rc.TEST_METRICS, *extra) if m in columns]


def wall_times(epochs: pd.DataFrame) -> pd.Series:
    """Seconds per trial: the sum of its epochs' ``epoch_time_s`` (:data:`run_contract.TRAIN_WALL_S`)."""
    if epochs.empty or not {"trial_id", "epoch", "epoch_time_s"} <= set(epochs.columns):
        return pd.Series(dtype=float)
    last = epochs.drop_duplicates(["trial_id", "epoch"], keep="last")
    return last.groupby(last["trial_id"].astype(str))["epoch_time_s"].sum()


def _number(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return float("nan")
    return number if np.isfinite(number) else float("nan")


def _count(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


def _phases(row: pd.Series) -> str:
    parts = []
    for phase in rc.PHASES:
        epochs = _number(row.get(rc.phase_epochs_metric(phase)))
        if not np.isnan(epochs):
            parts.append(f"{phase} {_count(epochs)}")
    return " + ".join(parts)


def chosen_on_text(metric: str, protocol: Protocol) -> str:
    """``"val_pgd_acc"``, or ``"test_clean_acc (paper protocol)"``."""
    return f"{metric} (paper protocol)" if protocol.paper else metric


def table2(choice: MethodChoice, epochs: pd.DataFrame) -> pd.DataFrame:
    """Table 2 as numbers: one row per chosen configuration (see the module docstring), in the
    choice's order. Means and CI half-widths in separate columns (``Clean``, ``Clean ±95% CI``)."""
    metrics = table2_metrics(choice)
    rows = choice.rows
    walls = wall_times(epochs)
    adversarial = (
        rc.TRAIN_ADV_EPOCHS in choice.candidates.columns and choice.candidates[rc.TRAIN_ADV_EPOCHS].notna().any()
    )
    records = []
    for _, row in rows.iterrows():
        ids = tuple(str(t) for t in row[TRIAL_IDS])
        seconds = [float(walls[t]) for t in ids if t in walls.index]
        record: dict[str, Any] = {
            "Model": row.get("model.arch", ""),
            "Dataset": row.get("data.dataset", ""),
            METHOD: row[METHOD_LABEL],
            PRUNING: row.get("pruning_type") if pd.notna(row.get("pruning_type")) else row.get(GROUP),
            COMPRESSION_COLUMN: _number(row.get(COMPRESSION)),
            ci_label(COMPRESSION_COLUMN): _number(row.get(ci_column(COMPRESSION))),
            MATCHED_COLUMN: "yes" if row[MATCHED] else "no",
            REFERENCE_COLUMN: _number(row[REFERENCE]),
        }
        for metric in metrics:
            record[metric_label(metric)] = _number(row.get(metric))
            record[ci_label(metric_label(metric))] = _number(row.get(ci_column(metric)))
        record[SEEDS_COLUMN] = int(row[N_SEEDS])
        if adversarial:
            record["Adversarial epochs"] = _number(row.get(rc.TRAIN_ADV_EPOCHS))
        record["Training epochs"] = _number(row.get("epochs"))
        record["Epochs per phase"] = _phases(row)
        record["FE per image"] = _number(row.get(rc.TRAIN_FWD_EQUIV))
        record["Wall time (s)"] = float(np.mean(seconds)) if seconds else float("nan")
        record[CHOSEN_COLUMN] = chosen_on_text(str(row[CHOSEN_ON]), choice.protocol)
        record[CONFIGURATION] = row["configuration"]
        record[TRIALS] = " ".join(ids)
        records.append(record)
    columns = ["Model", "Dataset", METHOD, PRUNING, COMPRESSION_COLUMN, ci_label(COMPRESSION_COLUMN),
               MATCHED_COLUMN, REFERENCE_COLUMN]  # fmt: skip
    for metric in metrics:
        columns += [metric_label(metric), ci_label(metric_label(metric))]
    columns += [SEEDS_COLUMN, *(c for c in COST_COLUMNS if adversarial or c != "Adversarial epochs")]
    return pd.DataFrame(records, columns=[*columns, CHOSEN_COLUMN, CONFIGURATION, TRIALS])


def _accuracy_columns(table: pd.DataFrame) -> list[str]:
    return [c for c in table.columns if ci_label(c) in table.columns and c != COMPRESSION_COLUMN]


def _mean_ci(mean: Any, ci: Any, pm: str, missing: str) -> str:
    """``"86.74 ± 0.31"``; the mean alone without an interval (one seed, or a compression all seeds share)."""
    if pd.isna(mean):
        return missing
    return f"{mean:.2f}" if pd.isna(ci) or ci == 0 else f"{mean:.2f}{pm}{ci:.2f}"


def display_table2(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`table2` for reading (``index.html``, the terminal): ``"86.74 ± 0.31"`` cells."""
    out = table.drop(columns=[c for c in table.columns if c.endswith(ci_label(""))])
    for column in [COMPRESSION_COLUMN, *_accuracy_columns(table)]:
        cis = table[ci_label(column)]
        out[column] = [_mean_ci(m, c, " ± ", "") for m, c in zip(table[column], cis, strict=True)]
    return out


def caption(choice: MethodChoice) -> str:
    """What chose Table 2's rows, in words (plain text)."""
    references = "; ".join(
        f"{scope + ': ' if scope else ''}{value:.2f}x ({choice.reference_from[scope]})"
        for scope, value in choice.references.items()
    )
    metrics = ", ".join(dict.fromkeys(map(str, choice.rows[CHOSEN_ON]))) or "its select_metric"
    paper = f" Numbers {choice.protocol.label}." if choice.protocol.paper else ""
    return (
        f"Per method, the configuration with the best {metrics} (ties: the other {choice.protocol.split_name} "
        f"accuracies, then more seeds, then the smaller trial id) among those within ±{choice.tolerance:.0%} of the "
        f"reference compression {references}; a method with none there shows its best configuration, marked not "
        f"matched.{paper} Test accuracy shown: mean ± 95% CI (Student t) over seeds."
    )


def to_latex(table: pd.DataFrame, choice: MethodChoice) -> str:
    """A booktabs ``table`` of :func:`table2`: "mean $\\pm$ ci" cells, a dagger on rows not matched."""
    accs = _accuracy_columns(table)
    several_scopes = table["Model"].nunique() > 1 or table["Dataset"].nunique() > 1
    lead = (["Model", "Dataset"] if several_scopes else []) + [METHOD, PRUNING, COMPRESSION_COLUMN]
    tail = [SEEDS_COLUMN] + [c for c in ("Adversarial epochs", "FE per image", "Wall time (s)") if c in table]
    header = {COMPRESSION_COLUMN: "Compression", "Wall time (s)": "Wall time (h)", "FE per image": "FE/image",
              "Adversarial epochs": "Adv. epochs"}  # fmt: skip
    text = latex_escape(caption(choice)).replace("±", r"$\pm$")
    lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{text} "
             r"$^\dagger$: no configuration at matched compression.}", r"\label{tab:table2}",
             rf"\begin{{tabular}}{{{'l' * (len(lead) - 1)}r{'r' * (len(accs) + len(tail))}}}", r"\toprule"]  # fmt: skip
    first = len(lead) + 1
    lines.append(" & " * len(lead) + rf"\multicolumn{{{len(accs)}}}{{c}}{{Test accuracy (\%)}} \\")
    lines.append(rf"\cmidrule(lr){{{first}-{first + len(accs) - 1}}}")
    lines.append(" & ".join(latex_escape(header.get(c, c)) for c in [*lead, *accs, *tail]) + r" \\")
    lines.append(r"\midrule")
    for _, row in table.iterrows():
        cells = [latex_escape(row[c]) for c in lead if c != COMPRESSION_COLUMN]
        mark = "" if row[MATCHED_COLUMN] == "yes" else r"$^\dagger$"
        compression = _mean_ci(row[COMPRESSION_COLUMN], row[ci_label(COMPRESSION_COLUMN)], r" $\pm$ ", "--")
        cells.append(compression + r"$\times$" + mark)
        cells += [_mean_ci(row[c], row[ci_label(c)], r" $\pm$ ", "--") for c in accs]
        for c in tail:
            value = row[c]
            if pd.isna(value):
                cells.append("--")
            elif c == "Wall time (s)":
                cells.append(f"{value / 3600:.2f}")
            else:
                cells.append(_count(float(value)) if c != "FE per image" else f"{value:.0f}")
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def write_table2(table: pd.DataFrame, choice: MethodChoice, out_dir: str | os.PathLike[str]) -> list[Path]:
    """``table2.csv`` (numbers, separate CI columns) and ``table2.tex`` into ``out_dir``."""
    out = Path(out_dir)
    csv_text = table.to_csv(index=False, float_format="%.6g").encode()  # six significant digits
    tex_text = to_latex(table, choice).encode()
    return [atomic_write_handle(out / "table2.csv", lambda handle: handle.write(csv_text)),
            atomic_write_handle(out / "table2.tex", lambda handle: handle.write(tex_text))]  # fmt: skip


# ------------------------------------------------------------------------------------ the methods figure


@dataclass(frozen=True)
class MethodsPanel:
    """One panel: one scope and one test accuracy; per method its validation front and its trials."""

    scope: str
    metric: str
    chosen_on: str
    fronts: dict[str, Line]
    points: Points


@dataclass(frozen=True)
class MethodsFigureData:
    """What the methods figure draws: panels per scope (rows) and test accuracy (columns)."""

    protocol: Protocol
    labels: tuple[str, ...]
    scopes: tuple[str, ...]
    metrics: tuple[str, ...]
    panels: dict[tuple[str, str], MethodsPanel]


def methods_figure_data(choice: MethodChoice, selection: FrontChoice) -> MethodsFigureData:
    """Per scope and test accuracy (clean, FGSM, PGD), each method's front from ``choice`` (chosen on
    the accuracy's selection twin and compression, seed means) with its test figures, and every
    finished trial of the method as a faint point."""
    split = choice.protocol.split
    trials = selection.trials[selection.trials[METHOD_LABEL].notna() & (selection.trials[GROUP] != DENSE)]
    metrics = tuple(m for m in rc.TEST_METRICS if any(key[2] == m for key in choice.fronts))
    scopes = tuple(s for s in selection.scopes if s in set(choice.candidates[SCOPE]))
    panels = {}
    for scope in scopes:
        in_scope = trials[trials[SCOPE] == scope]
        for metric in metrics:
            fronts = {
                label: line_of(choice.fronts[(scope, label, metric)], label, COMPRESSION, metric)
                for label in choice.labels
                if (scope, label, metric) in choice.fronts
            }
            ok = in_scope[[COMPRESSION, metric]].apply(pd.to_numeric, errors="coerce").notna().all(axis=1)
            rows = in_scope[ok]
            points = Points(tuple(map(float, rows[COMPRESSION])), tuple(map(float, rows[metric])),
                            tuple(map(str, rows[METHOD_LABEL])))  # fmt: skip
            panels[(scope, metric)] = MethodsPanel(scope, metric, selection_column(metric, split), fronts, points)
    return MethodsFigureData(choice.protocol, choice.labels, scopes, metrics, panels)
