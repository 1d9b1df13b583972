"""The report's Pareto sets in the shape of the paper's Tables 1-2, as a DataFrame, CSV and LaTeX.

One row per dense baseline (per model and dataset) followed by the Pareto-optimal configurations of
each pruning type, exactly the ones the figures draw (:func:`reports.chooser.select`: chosen on
validation figures, test figures shown): model, dataset, pruning type, number of seeds, compression
(x), channels present (%), clean / FGSM / PGD accuracy (%) and any extra test-attack column
(``autoattack_acc``, ``pgd50x10_acc``, ...), each a mean with its 95% CI half-width over seeds.

Imports no plotting library: tables are written without matplotlib.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dnr_sweep.foundation.files import atomic_write_handle
from dnr_sweep.foundation.run_contract import is_attack_metric

from .chooser import FrontChoice, select
from .protocol import Protocol
from .seeds import N_SEEDS, TRIAL_IDS, ci_column
from .style import DENSE, metric_label

TRIAL = "Trial"
SEEDS = "Seeds"
CHOSEN_ON = "Chosen on"
SHOWN = "Shown"
CI_SUFFIX = " ±95% CI"
LEAD_COLUMNS = ("Model", "Dataset", "Pruning type", SEEDS, "Compression (×)", "Channels present (%)")


def ci_label(metric_column: str) -> str:
    """The column holding a table column's 95% CI half-width: ``"Clean ±95% CI"``."""
    return metric_column + CI_SUFFIX


def chosen_on(protocol: Protocol) -> str:
    """The table's ``Chosen on`` value: ``"validation"`` or ``"test (paper protocol)"``."""
    return "test (paper protocol)" if protocol.paper else "validation"


def table_metrics(selection: FrontChoice) -> list[str]:
    """The accuracies a table shows: the report's ``y``, then extra test-attack columns by name."""
    extra = sorted(
        c for c in selection.configurations.columns if is_attack_metric(str(c)) and not str(c).startswith("val_")
    )
    metrics = list(dict.fromkeys([*selection.metrics, *extra]))
    return [m for m in metrics if m in selection.configurations.columns]


def pareto_table(selection: FrontChoice | pd.DataFrame, **select_args: Any) -> pd.DataFrame:
    """The dense baseline and the Pareto-optimal configurations per model, dataset and pruning type.

    Args:
        selection: the report's :class:`~reports.chooser.FrontChoice`, or a results table to pass to
            :func:`~reports.chooser.select` with ``select_args`` (``x``, ``y``, ``objectives``,
            ``group_by``).

    Columns: ``Trial`` (the configuration's trial ids), ``Model``, ``Dataset``, ``Pruning type``,
    ``Seeds``, ``Compression (×)``, ``Channels present (%)``, then per accuracy its mean (named by
    :func:`reports.style.metric_label`: ``Clean``, ``FGSM``, ``PGD``, ...) and ``<name> ±95% CI``
    (NaN for one seed), values rounded to 2 places; then ``Chosen on`` (``validation`` or ``test
    (paper protocol)``) and ``Shown`` (``test``). Rows: per scope, the dense baseline first, then
    each pruning type's Pareto set by ``x``.
    """
    if isinstance(selection, pd.DataFrame):
        selection = select(selection, **select_args)
    elif select_args:
        raise TypeError(f"pareto_table got a FrontChoice and select arguments {sorted(select_args)}")
    metrics = table_metrics(selection)
    picked: list[tuple[pd.Series, str]] = []
    for scope in selection.scopes:
        if scope in selection.baselines:
            picked.append((selection.baselines[scope], DENSE))
        for group in selection.groups:
            if (scope, group) in selection.fronts:
                picked.extend((row, group) for _, row in selection.fronts[(scope, group)].iterrows())
    records = []
    for row, group in picked:
        record: dict[str, Any] = {
            TRIAL: " ".join(row[TRIAL_IDS]),
            "Model": row.get("model.arch", ""),
            "Dataset": row.get("data.dataset", ""),
            "Pruning type": "unpruned baseline" if group == DENSE else group,
            SEEDS: int(row[N_SEEDS]),
            "Compression (×)": _num(row.get("compression"), 2),
            "Channels present (%)": _num(row.get("channels_present"), 2, scale=100.0),
        }
        for m in metrics:
            record[metric_label(m)] = _num(row.get(m), 2)
            record[ci_label(metric_label(m))] = _num(row.get(ci_column(m)), 2)
        record[CHOSEN_ON] = chosen_on(selection.protocol)
        record[SHOWN] = "test"
        records.append(record)
    columns = [TRIAL, *LEAD_COLUMNS]
    for m in metrics:
        columns += [metric_label(m), ci_label(metric_label(m))]
    return pd.DataFrame(records, columns=[*columns, CHOSEN_ON, SHOWN])


def selection_sentence(table: pd.DataFrame) -> str:
    """``"Pareto set chosen on validation accuracy; test accuracy shown."`` from a table's ``Chosen on``."""
    values = set(table[CHOSEN_ON]) if CHOSEN_ON in table.columns and len(table) else {"validation"}
    protocol = Protocol("test" if any(v.startswith("test") for v in values) else "val")
    return protocol.chosen() + "."


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


def accuracy_columns(table: pd.DataFrame) -> list[str]:
    """The accuracy (mean) columns of a :func:`pareto_table`, in order."""
    fixed = {TRIAL, *LEAD_COLUMNS, CHOSEN_ON, SHOWN}
    return [c for c in table.columns if c not in fixed and not c.endswith(CI_SUFFIX)]


def _mean_ci(mean: Any, ci: Any, pm: str) -> str | None:
    if pd.isna(mean):
        return None
    return f"{mean:.2f}" if pd.isna(ci) else f"{mean:.2f}{pm}{ci:.2f}"


def display_table(table: pd.DataFrame) -> pd.DataFrame:
    """A :func:`pareto_table` for reading: ``"86.74 ± 0.31"`` cells, without ``Chosen on``/``Shown``."""
    out = table.drop(columns=[c for c in table.columns if c.endswith(CI_SUFFIX) or c in (CHOSEN_ON, SHOWN)])
    for column in accuracy_columns(table):
        ci = table[ci_label(column)] if ci_label(column) in table.columns else pd.Series(np.nan, index=table.index)
        out[column] = [_mean_ci(m, c, " ± ") for m, c in zip(table[column], ci, strict=True)]
    return out


def to_latex(table: pd.DataFrame, *, caption: str | None = None, label: str | None = None) -> str:
    """A booktabs ``table`` of :func:`pareto_table`'s output in the paper's layout (no Trial column).

    The accuracy columns sit under one spanning ``Accuracy (%)`` header, each cell the mean and, for
    several seeds, ``$\\pm$`` its 95% CI half-width; a ``Seeds`` column appears when some row has
    more than one. Compression is written ``20.63$\\times$``, missing values as ``--``. The caption
    ends with which split chose and which is shown. Needs ``\\usepackage{booktabs}``.
    """
    lead = ["Model", "Dataset", "Pruning type", "Compression (×)", "Channels present (%)"]
    lead = [c for c in lead if c in table.columns]
    several_seeds = SEEDS in table.columns and bool((pd.to_numeric(table[SEEDS]) > 1).any())
    if several_seeds:
        lead.insert(lead.index("Pruning type") + 1 if "Pruning type" in lead else 0, SEEDS)
    accs = accuracy_columns(table)
    header_lead = [
        {
            "Model": "Model",
            "Dataset": "Dataset",
            "Pruning type": "Pruning type",
            SEEDS: "Seeds",
            "Compression (×)": "Compression",
            "Channels present (%)": r"Channels (\%)",
        }[c]
        for c in lead
    ]
    spec = "l" * sum(c in ("Model", "Dataset", "Pruning type") for c in lead)
    spec += "r" * (len(lead) - len(spec)) + "r" * len(accs)
    note = selection_sentence(table) + (" Mean $\\pm$ 95\\% CI over seeds." if several_seeds else "")
    lines = [r"\begin{table}[t]", r"\centering"]
    text = f"{latex_escape(caption)} {note}" if caption else note
    lines.append(rf"\caption{{{text}}}")
    if label:
        lines.append(rf"\label{{{label}}}")
    lines += [rf"\begin{{tabular}}{{{spec}}}", r"\toprule"]
    if accs:
        first = len(lead) + 1
        lines.append(" & " * len(lead) + rf"\multicolumn{{{len(accs)}}}{{c}}{{Test accuracy (\%)}} \\")
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
            elif c == SEEDS:
                cells.append(f"{int(value)}")
            elif c == "Compression (×)":
                cells.append(f"{value:.2f}$\\times$")
            elif c in accs:
                cells.append(_mean_ci(value, row.get(ci_label(c)), " $\\pm$ ") or "--")
            else:
                cells.append(f"{value:.2f}")
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def write_tables(table: pd.DataFrame, out_dir: str | os.PathLike[str], stem: str = "pareto") -> list[Path]:
    """Write ``<stem>.csv`` and ``<stem>.tex`` into ``out_dir``; return both paths."""
    out_dir = Path(out_dir)
    csv_text = table.to_csv(index=False, float_format="%.2f").encode()
    tex_text = to_latex(table, caption="Pareto-optimal DNR models (compression and accuracy).", label=f"tab:{stem}")
    return [
        atomic_write_handle(out_dir / f"{stem}.csv", lambda handle: handle.write(csv_text)),
        atomic_write_handle(out_dir / f"{stem}.tex", lambda handle: handle.write(tex_text.encode())),
    ]
