"""``build_report``: a run directory -> Parquet tables, figures, tables and ``report/index.html``.

Settings come, in rising priority, from the schema's defaults, the ``report:`` block of the run's
``config.yaml`` and the function's arguments (the CLI's flags): :mod:`reports.settings`. The report's
choice (:func:`reports.chooser.choose_run`: one joint Pareto set per pruning type and the dense
baseline, Table 2's configuration per method at matched compression, all chosen on validation
figures over seed-aggregated configurations) is made once, before anything is drawn, and every
figure and table shows it; the terminal summary of ``dnr-sweep run`` reads the same choice. Only
figures that have data are drawn.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib as mpl
import pandas as pd
from matplotlib.figure import Figure

from dnr_sweep.foundation.files import atomic_write_handle
from dnr_sweep.foundation.run_contract import REPORT_DIR, TEST_SELECTION_METRICS, VAL_METRICS, selection_metrics

from . import figure_data as data
from . import figures as figs
from . import methods as method_report
from .chooser import FrontChoice, MethodChoice, RunChoice, choose_run
from .html import FINAL, FigureEntry, PageStatus, TableEntry, write_index
from .labels import GROUP
from .load import EPOCHS_FILE, RESULTS_FILE, Run, layer_columns, load_attack_strength, load_run, write_parquet_atomic
from .report_folder import claim, is_own_report_folder, table_files
from .seeds import N_SEEDS
from .settings import DEFAULT_FORMATS, FORMATS
from .style import DENSE, RC
from .tables import display_table, pareto_table, write_tables

__all__ = ["DEFAULT_FORMATS", "FORMATS", "build_report", "trials_table"]


def _save(fig: Figure, out_dir: Path, stem: str, formats: Sequence[str]) -> list[Path]:
    paths = []
    with mpl.rc_context(RC):
        for fmt in formats:
            save = lambda handle, fmt=fmt: fig.savefig(handle, format=fmt, dpi=200 if fmt == "png" else None)  # noqa: E731
            paths.append(atomic_write_handle(out_dir / f"{stem}.{fmt}", save))
    return paths


#: columns of the page's "Trials" table (those present), after the swept parameters
TRIAL_COLUMNS = ("trial_id", "status", "epochs_completed", "selected_epoch")


def trials_table(results: pd.DataFrame, total_epochs: int | None) -> pd.DataFrame:
    """Every trial so far: status (running ones marked), epochs done, and its selected figures."""
    params = [c for c in results.columns if "." in c and not c.startswith("layer_density/")
              and results[c].nunique(dropna=False) > 1]  # fmt: skip
    figures = [c for c in (*VAL_METRICS, *TEST_SELECTION_METRICS, "compression", "clean_acc", "pgd_acc")
               if c in results.columns]  # fmt: skip
    table = results[[c for c in TRIAL_COLUMNS if c in results.columns] + params + figures].copy()
    if total_epochs and "epochs_completed" in table:
        table["epochs_completed"] = [f"{int(e)}/{total_epochs}" for e in table["epochs_completed"]]
    return table


def build_report(
    run_dir: str | os.PathLike[str],
    *,
    out_dir: str | os.PathLike[str] | None = None,
    formats: Sequence[str] | None = None,
    x: str | None = None,
    y: Sequence[str] | None = None,
    objectives: Mapping[str, str] | None = None,
    group_by: str | None = None,
    table2_compression: float | None = None,
    status: PageStatus = FINAL,
    force: bool = False,
) -> list[Path]:
    """Load ``run_dir``, (re)write its Parquet tables when rebuilt, draw every figure that has data,
    write the Pareto table (CSV, LaTeX), Table 2 when methods other than DNR ran, and ``index.html``
    into ``out_dir`` (default ``run_dir/report``). Returns every file written, in writing order.

    ``formats`` defaults to ``("pdf", "png")`` (or ``report.formats``); PNG is always written too,
    because ``index.html`` shows it. ``status`` marks a live page (the sweep still runs; the page
    reloads itself) or the final one. Every file is replaced atomically. What the report may write over
    in ``out_dir`` (``force``: any earlier report there) is :func:`reports.report_folder.claim`'s to say.

    Raises:
        FileNotFoundError: ``run_dir`` does not exist or holds neither Parquet tables nor result.json.
        ValueError: the results table is empty, a setting is invalid, or ``x``/``y`` name a column no
            trial reports; :class:`~reports.report_folder.ReportFolderError` (also a ValueError): the
            folder holds something the report may not write over (all raised before anything is written).
    """
    run: Run = load_run(run_dir)
    if run.results.empty:
        raise ValueError(f"{run.path / RESULTS_FILE} holds no trials; run a sweep into {run.path} first")
    choice = choose_run(run.results, run.epochs, run.config, formats=formats, x=x, y=y, objectives=objectives,
                        group_by=group_by, table2_compression=table2_compression)  # fmt: skip
    selection = choice.selection
    plans = _figure_plans(choice, run.path)  # every figure's data, computed first
    out = Path(out_dir) if out_dir is not None else run.path / REPORT_DIR
    formats_out = tuple(dict.fromkeys([*choice.settings.formats, "png"]))
    names = [f"{plan.stem}.{fmt}" for plan in plans for fmt in formats_out] + [*table_files("pareto"), "index.html"]
    names += list(table_files("table2")) if choice.methods is not None else []
    claim(out, kind="report", runs=[run.path], names=names, force=force, own=is_own_report_folder(out, run.path))

    written: list[Path] = []
    if run.rebuilt:
        written.append(write_parquet_atomic(run.results, run.path / RESULTS_FILE))
        written.append(write_parquet_atomic(run.epochs, run.path / EPOCHS_FILE))
    entries: list[FigureEntry] = []
    for plan in plans:
        written.extend(_save(plan.draw(), out, plan.stem, formats_out))
        entries.append(FigureEntry(plan.title, plan.caption, f"{plan.stem}.png"))

    table = pareto_table(selection)
    written.extend(write_tables(table, out))
    tables = [TableEntry("Pareto-optimal models", display_table(table), _table_note(selection))]
    if choice.methods is not None:
        paths, entry = write_table2(choice.methods, choice.epochs, out)
        written.extend(paths)
        tables.append(entry)
    links = [(p.name, p.name) for p in written if p.parent == out and p.suffix != ".png"]
    epochs_total = (
        (run.config.get("train") or {}).get("epochs") if isinstance(run.config.get("train"), Mapping) else None
    )
    trials_note = "Selected figures so far; test accuracy only for finished trials (measured once, at the end)."
    tables.append(TableEntry("Trials", trials_table(choice.results, epochs_total), trials_note))
    written.append(
        write_index(
            out,
            f"DNR sweep report: {run.path.name}",
            entries,
            tables,
            meta=_meta(run.path.name, choice.results, selection),
            links=links,
            status=status,
        )
    )
    return written


def write_table2(methods: MethodChoice, epochs: pd.DataFrame, out: Path) -> tuple[list[Path], TableEntry]:
    """``table2.csv``/``table2.tex`` into ``out`` and the page's Table 2."""
    table = method_report.table2(methods, epochs)
    entry = TableEntry("Table 2: methods at matched compression", method_report.display_table2(table),
                       method_report.caption(methods))  # fmt: skip
    return method_report.write_table2(table, methods, out), entry


def methods_plan(methods: MethodChoice, selection: FrontChoice) -> FigurePlan:
    """The methods figure's plan: its data computed now, drawn later."""
    figure = method_report.methods_figure_data(methods, selection)
    seeds = " Error bars: 95% CI over seeds." if (methods.candidates[N_SEEDS] > 1).any() else ""
    paper = f" Numbers {methods.protocol.label}." if methods.protocol.paper else ""
    return FigurePlan(
        "methods", "Methods side by side (Table 2)",
        f"Per method, its {methods.protocol.split_name} front of compression and each panel's accuracy (seed "
        f"means), drawn with test accuracy; faint points: every finished trial.{seeds}{paper}",
        lambda: figs.methods(figure),
    )  # fmt: skip


@dataclass(frozen=True)
class FigurePlan:
    """A figure to write: file stem, page title and caption, and how to draw its computed data."""

    stem: str
    title: str
    caption: str
    draw: Callable[[], Figure]


def _figure_plans(choice: RunChoice, run_path: Path) -> list[FigurePlan]:
    """Compute every figure's data (no drawing yet); a figure without data gets no plan."""
    selection, results, epochs, group = choice.selection, choice.results, choice.epochs, choice.group_by
    plans: list[FigurePlan] = []
    protocol = selection.protocol
    paper = f" Numbers {protocol.label}." if protocol.paper else ""
    seeds = " Mean ± 95% CI over seeds where a configuration has several." if _has_seeds(selection) else ""
    chosen = (
        f"{protocol.chosen('Pareto set per pruning type')} (joint objectives: {selection.chosen_on_text}); "
        "the same configurations in every panel."
    )
    if len(selection.configurations):
        accuracy = data.compression_accuracy_data(selection)
        baseline = f" Dashed: dense baseline, chosen on {selection.baseline_on}." if selection.baselines else ""
        plans.append(FigurePlan(
            "compression_accuracy", "Compression vs accuracy (Fig. 3a/b)",
            f"{chosen} Faint points: every finished trial.{baseline}{seeds}{paper}",
            lambda: figs.compression_accuracy(accuracy),
        ))  # fmt: skip
        if {"compression", "channels_present"} <= set(results.columns):
            channels = data.channels_present_data(selection)
            plans.append(FigurePlan(
                "channels_present", "Channels present (Fig. 3c)",
                f"% of input channels present for the configurations of Fig. 3(a/b)'s Pareto sets (chosen on "
                f"{protocol.split_name}).{seeds}{paper}",
                lambda: figs.channels_present(channels),
            ))  # fmt: skip
    if layer_columns(results.columns) and selection.baseline_on and _has_pruned(selection):
        layers = data.layer_density_data(selection)
        if layers.panels:
            plans.append(FigurePlan(
                "layer_density", "Per-layer density (Fig. 2b)",
                f"Per pruning type and target density, the configuration with the best {selection.baseline_on} "
                f"(chosen on {protocol.split_name}).{paper}",
                lambda: figs.layer_density(layers),
            ))  # fmt: skip
    clean, _, pgd = selection_metrics(protocol.split)
    if not epochs.empty and ({"loss", clean, pgd} & set(epochs.columns)):
        curves = data.training_curves_data(
            epochs, group_by=group if group in epochs.columns else None, accuracies=(clean, pgd), protocol=protocol
        )
        plans.append(FigurePlan(
            "training_curves", "Training curves (Fig. 2a)",
            f"Training loss and {protocol.split_name} accuracy per epoch, one line per trial.{paper}",
            lambda: figs.training_curves(curves),
        ))  # fmt: skip
    raw = load_attack_strength(run_path)
    if any(c.get("steps") or c.get("eps") for c in raw.values()):
        labelled, groups = data.labelled_strength_curves(raw, results, group)
        strength = data.attack_strength_data(labelled, groups)
        plans.append(FigurePlan(
            "attack_strength", "PGD attack strength (Fig. 4)",
            "Accuracy under PGD vs attack iterations and vs eps (in /255).",
            lambda: figs.attack_strength(strength),
        ))  # fmt: skip
    if choice.methods is not None:
        plans.append(methods_plan(choice.methods, selection))
    return plans


def _has_seeds(selection: FrontChoice) -> bool:
    return bool(len(selection.configurations) and (selection.configurations[N_SEEDS] > 1).any())


def _has_pruned(selection: FrontChoice) -> bool:
    configs = selection.configurations
    if not len(configs) or selection.baseline_on is None:
        return False
    return bool(
        ((configs[GROUP] != DENSE) & pd.to_numeric(configs[selection.baseline_on], errors="coerce").notna()).any()
    )


def _table_note(selection: FrontChoice) -> str:
    parts = [_selection_sentence(selection)]
    if _has_seeds(selection):
        parts.append("Accuracies are means ± 95% CI (Student t) over the seeds of a configuration.")
    if selection.shown_only:
        parts.append(f"{', '.join(selection.shown_only)}: no {selection.protocol.split_name} figure, shown only.")
    return " ".join(parts)


def _selection_sentence(selection: FrontChoice) -> str:
    """The sentence saying which split chose and which is shown, with the joint objectives."""
    return f"{selection.protocol.chosen()} (objectives: {selection.chosen_on_text})."


def _meta(name: str, results: pd.DataFrame, selection: FrontChoice) -> str:
    n_configs = len(selection.configurations)
    text = (
        f"{name}: {len(results)} trials, {len(selection.trials)} finished, in {n_configs} configuration"
        f"{'' if n_configs == 1 else 's'}. {_selection_sentence(selection)}"
    )
    if selection.protocol.paper:
        text += f" All numbers {selection.protocol.label}."
    return text
