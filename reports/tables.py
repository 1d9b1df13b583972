"""Pareto-optimal trials in the shape of the paper's Tables 1-2, as a DataFrame, CSV and LaTeX.

One row per dense baseline (per model and dataset) followed by the Pareto-optimal trials of each
pruning type: model, dataset, pruning type, compression (x), channels present (%), clean / FGSM /
PGD accuracy (%) and any extra test-attack columns (``autoattack_acc``, ``pgd50x10_acc``, ...).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .figures import DEFAULT_GROUP_BY, DEFAULT_Y, dense_baseline, group_labels
from .load import extra_attack_columns
from .pareto import Direction, pareto_front
from .style import DENSE, group_order, metric_label

ACCURACY_HEADER = "Accuracy (%)"
TRIAL = "Trial"


def default_objectives(x: str, y: Sequence[str]) -> dict[str, Direction]:
    """``{x: "max", y_1: "max", ...}``: every accuracy and the compression."""
    return {x: "max", **{metric: "max" for metric in y}}


def pareto_table(
    df: pd.DataFrame,
    *,
    y: Sequence[str] = DEFAULT_Y,
    objectives: Mapping[str, Direction] | None = None,
    group_by: str | None = DEFAULT_GROUP_BY,
    x: str = "compression",
) -> pd.DataFrame:
    """The dense baseline and the Pareto-optimal trials per model, dataset and pruning type.

    Columns: ``Trial``, ``Model``, ``Dataset``, ``Pruning type``, ``Compression (×)``,
    ``Channels present (%)``, then one accuracy column per ``y`` and extra attack column, named by
    :func:`reports.style.metric_label` (``Clean``, ``FGSM``, ``PGD``, ...), values rounded to 2 places.
    Rows: per model/dataset, the dense baseline first, then each pruning type's front by compression.
    """
    objectives = dict(objectives or default_objectives(x, y))
    metrics = list(dict.fromkeys([*y, *extra_attack_columns(df.columns)]))
    metrics = [m for m in metrics if m in df.columns]
    groups = group_labels(df, group_by)
    keys = [c for c in ("model.arch", "data.dataset") if c in df.columns]
    parts = [df] if not keys else [part for _, part in df.groupby(keys, sort=True, dropna=False)]
    picked: list[tuple[pd.Series, str]] = []
    for part in parts:
        part_groups = groups[part.index]
        best = dense_baseline(part, y[0]) if y and y[0] in part.columns else None
        if best is not None:
            picked.append((best, DENSE))
        for group in group_order(part_groups.unique()):
            if group == DENSE:
                continue
            front = pareto_front(part[part_groups == group], objectives).rows
            front = front.sort_values(x, kind="mergesort") if x in front.columns else front
            picked.extend((row, group) for _, row in front.iterrows())
    records = []
    for row, group in picked:
        record = {
            TRIAL: str(row.get("trial_id", row.name)),
            "Model": row.get("model.arch", ""),
            "Dataset": row.get("data.dataset", ""),
            "Pruning type": "unpruned baseline" if group == DENSE else group,
            "Compression (×)": _num(row.get("compression"), 2),
            "Channels present (%)": _num(row.get("channels_present"), 2, scale=100.0),
        }
        record.update({metric_label(m): _num(row.get(m), 2) for m in metrics})
        records.append(record)
    columns = [TRIAL, "Model", "Dataset", "Pruning type", "Compression (×)", "Channels present (%)"]
    return pd.DataFrame(records, columns=columns + [metric_label(m) for m in metrics])


def _num(value: object, places: int, scale: float = 1.0) -> float:
    try:
        number = float(value) * scale  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return float("nan")
    return round(number, places) if np.isfinite(number) else float("nan")


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def latex_escape(text: str) -> str:
    """Escape LaTeX's special characters in plain text."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))


def to_latex(table: pd.DataFrame, *, caption: str | None = None, label: str | None = None) -> str:
    """A booktabs ``table`` of :func:`pareto_table`'s output in the paper's layout (no Trial column).

    The accuracy columns sit under one spanning ``Accuracy (%)`` header, compression is written
    ``20.63$\\times$``, missing values as ``--``. Needs ``\\usepackage{booktabs}``.
    """
    lead = ["Model", "Dataset", "Pruning type", "Compression (×)", "Channels present (%)"]
    lead = [c for c in lead if c in table.columns]
    accs = [c for c in table.columns if c not in lead and c != TRIAL]
    header_lead = [
        {
            "Model": "Model",
            "Dataset": "Dataset",
            "Pruning type": "Pruning type",
            "Compression (×)": "Compression",
            "Channels present (%)": r"Channels (\%)",
        }[c]
        for c in lead
    ]
    spec = "l" * sum(c in ("Model", "Dataset", "Pruning type") for c in lead)
    spec += "r" * (len(lead) - len(spec)) + "r" * len(accs)
    lines = [r"\begin{table}[t]", r"\centering"]
    if caption:
        lines.append(rf"\caption{{{latex_escape(caption)}}}")
    if label:
        lines.append(rf"\label{{{label}}}")
    lines += [rf"\begin{{tabular}}{{{spec}}}", r"\toprule"]
    if accs:
        first = len(lead) + 1
        lines.append(" & " * len(lead) + rf"\multicolumn{{{len(accs)}}}{{c}}{{Accuracy (\%)}} \\")
        lines.append(rf"\cmidrule(lr){{{first}-{first + len(accs) - 1}}}")
    lines.append(" & ".join(header_lead + [latex_escape(a) for a in accs]) + r" \\")
    lines.append(r"\midrule")
    previous_model = None
    for _, row in table.iterrows():
        model = (row.get("Model"), row.get("Dataset"))
        if previous_model is not None and model != previous_model:
            lines.append(r"\midrule")
        previous_model = model
        cells = []
        for c in lead + accs:
            value = row[c]
            if c in ("Model", "Dataset", "Pruning type"):
                cells.append(latex_escape(value))
            elif pd.isna(value):
                cells.append("--")
            elif c == "Compression (×)":
                cells.append(f"{value:.2f}$\\times$")
            else:
                cells.append(f"{value:.2f}")
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def write_tables(table: pd.DataFrame, out_dir: str | os.PathLike[str], stem: str = "pareto") -> list[Path]:
    """Write ``<stem>.csv`` and ``<stem>.tex`` into ``out_dir``; return both paths."""
    out_dir = Path(out_dir)
    csv_path, tex_path = out_dir / f"{stem}.csv", out_dir / f"{stem}.tex"
    table.to_csv(csv_path, index=False, float_format="%.2f")
    tex_path.write_text(
        to_latex(table, caption="Pareto-optimal DNR models (compression and accuracy).", label=f"tab:{stem}")
    )
    return [csv_path, tex_path]
