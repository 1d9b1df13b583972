"""``build_report``: a run directory -> Parquet tables, figures, tables and ``report/index.html``.

Settings come, in rising priority, from the defaults here, the ``report:`` block of the run's
``config.yaml`` (``x``, ``y``, ``group_by``, ``objectives``, ``formats``) and the function's arguments
(the CLI's flags). The report's choice (:func:`reports.selection.select`: one joint Pareto set per
pruning type and the dense baseline, chosen on validation figures, seeds aggregated) is made once,
before anything is drawn, and every figure and table shows it. Only figures that have data are drawn.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib as mpl
import pandas as pd
from matplotlib.figure import Figure

from dnr_sweep.foundation.files import atomic_write_handle, make_folder
from dnr_sweep.foundation.run_contract import TEST_SELECTION_METRICS, VAL_METRICS, selection_metrics

from . import figure_data as data
from . import figures as figs
from .html import FINAL, FigureEntry, PageStatus, TableEntry, write_index
from .load import (
    EPOCHS_FILE,
    RESULTS_FILE,
    Run,
    flatten,
    layer_columns,
    load_attack_strength,
    load_run,
    write_parquet_atomic,
)
from .pareto import DIRECTIONS, Direction
from .seeds import N_SEEDS
from .selection import DEFAULT_GROUP_BY, DEFAULT_Y, GROUP, Selection, select
from .style import DENSE, RC
from .tables import display_table, pareto_table, write_tables

FORMATS = ("pdf", "png", "svg")
REPORT_KEYS = ("x", "y", "group_by", "objectives", "formats", "live", "live_every_s")  # the last two: the sweep
DEFAULT_FORMATS = ("pdf", "png")


@dataclass(frozen=True)
class ReportSettings:
    """Resolved report settings (see the module docstring for where each comes from).

    ``objectives=None`` means the default: ``x`` max and every ``y`` max, each chosen on its
    validation twin (:func:`reports.selection.selection_objectives`).
    """

    x: str = "compression"
    y: tuple[str, ...] = DEFAULT_Y
    group_by: str | None = DEFAULT_GROUP_BY
    objectives: dict[str, Direction] | None = None
    formats: tuple[str, ...] = DEFAULT_FORMATS


def resolve_settings(
    config: Mapping[str, Any],
    *,
    formats: Sequence[str] | None = None,
    x: str | None = None,
    y: Sequence[str] | None = None,
    objectives: Mapping[str, str] | None = None,
    group_by: str | None = None,
) -> ReportSettings:
    """Merge defaults, ``config['report']`` and explicit arguments (non-None wins); validate once."""
    block = config.get("report") or {}
    if not isinstance(block, Mapping):
        raise ValueError(f"config.yaml 'report:' must be a mapping with keys {', '.join(REPORT_KEYS)}")
    unknown = sorted(set(block) - set(REPORT_KEYS))
    if unknown:
        raise ValueError(f"config.yaml 'report:' has unknown key(s) {unknown}; valid keys: {', '.join(REPORT_KEYS)}")

    def pick(arg: Any, key: str, default: Any) -> Any:
        return arg if arg is not None else block.get(key, default)

    x_ = str(pick(x, "x", "compression"))
    y_raw = pick(y, "y", DEFAULT_Y)
    y_ = (y_raw,) if isinstance(y_raw, str) else tuple(str(m) for m in y_raw)
    if not y_:
        raise ValueError("report y must name at least one accuracy column, e.g. [clean_acc, pgd_acc]")
    group = pick(group_by, "group_by", DEFAULT_GROUP_BY)
    fmts_raw = pick(formats, "formats", DEFAULT_FORMATS)
    fmts = (fmts_raw,) if isinstance(fmts_raw, str) else tuple(str(f).lower().lstrip(".") for f in fmts_raw)
    bad = [f for f in fmts if f not in FORMATS]
    if bad or not fmts:
        raise ValueError(f"unknown figure format(s) {bad or fmts}; valid formats: {', '.join(FORMATS)}")
    raw_objectives = pick(objectives, "objectives", None)
    if raw_objectives is not None and not isinstance(raw_objectives, Mapping):
        raise ValueError(f"report objectives must map columns to max or min, got {raw_objectives!r}")
    objs = None if raw_objectives is None else {str(k): v for k, v in raw_objectives.items()}
    for name, direction in (objs or {}).items():
        if direction not in DIRECTIONS:
            raise ValueError(f"objective {name!r} has unknown direction {direction!r}; valid: {', '.join(DIRECTIONS)}")
    return ReportSettings(x_, y_, None if group is None else str(group), objs, fmts)


def _with_config_columns(df: pd.DataFrame, config: Mapping[str, Any], columns: Sequence[str | None]) -> pd.DataFrame:
    """Add constant columns from ``config.yaml`` (e.g. ``dnr.pruning`` when it was not swept)."""
    flat = flatten({k: v for k, v in config.items() if k not in ("search", "report")})
    extra = {c: flat[c] for c in columns if c and c not in df.columns and c in flat}
    return df.assign(**extra) if extra else df


def with_selected_figures(results: pd.DataFrame, epochs: pd.DataFrame) -> pd.DataFrame:
    """Fill selection figures (``val_*_acc``/``test_*_acc``) a results table lacks from its epochs table.

    Runs written before ``results.parquet`` carried the selected epoch's validation figures still
    have them in ``epochs.parquet``: they are taken from each trial's row at its ``selected_epoch``.
    Columns the results table already has are left alone.
    """
    wanted = [c for c in (*VAL_METRICS, *TEST_SELECTION_METRICS) if c in epochs.columns and c not in results.columns]
    if not wanted or "selected_epoch" not in results.columns or not {"trial_id", "epoch"} <= set(epochs.columns):
        return results
    at = epochs[["trial_id", "epoch", *wanted]].drop_duplicates(["trial_id", "epoch"], keep="last")
    keys = results[["trial_id", "selected_epoch"]].rename(columns={"selected_epoch": "epoch"})
    keys["epoch"] = pd.to_numeric(keys["epoch"], errors="coerce").astype("float64")
    at = at.assign(epoch=pd.to_numeric(at["epoch"], errors="coerce").astype("float64"))
    filled = keys.merge(at, on=["trial_id", "epoch"], how="left")
    return results.assign(**{c: filled[c].to_numpy() for c in wanted})


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
    status: PageStatus = FINAL,
) -> list[Path]:
    """Load ``run_dir``, (re)write its Parquet tables when rebuilt, draw every figure that has data,
    write the Pareto table (CSV, LaTeX) and ``index.html`` into ``out_dir`` (default
    ``run_dir/report``). Returns every file written, in writing order.

    ``formats`` defaults to ``("pdf", "png")`` (or ``report.formats``); PNG is always written too,
    because ``index.html`` shows it. ``status`` marks a live page (the sweep still runs; the page
    reloads itself) or the final one. Every file is replaced atomically.

    Raises:
        FileNotFoundError: ``run_dir`` does not exist or holds neither Parquet tables nor result.json.
        ValueError: the results table is empty, a setting is invalid, or ``x``/``y`` name a column no
            trial reports (raised before anything is drawn or written).
    """
    run: Run = load_run(run_dir)
    if run.results.empty:
        raise ValueError(f"{run.path / RESULTS_FILE} holds no trials; run a sweep into {run.path} first")
    settings = resolve_settings(run.config, formats=formats, x=x, y=y, objectives=objectives, group_by=group_by)
    results = _with_config_columns(run.results, run.config, [settings.group_by])
    epochs = _with_config_columns(run.epochs, run.config, [settings.group_by])
    group = settings.group_by if settings.group_by in results.columns else None
    results = with_selected_figures(results, epochs)
    selection = select(results, x=settings.x, y=settings.y, objectives=settings.objectives, group_by=group)
    plans = _figure_plans(selection, results, epochs, run.path, group)  # every figure's data, computed first

    written: list[Path] = []
    if run.rebuilt:
        written.append(write_parquet_atomic(run.results, run.path / RESULTS_FILE))
        written.append(write_parquet_atomic(run.epochs, run.path / EPOCHS_FILE))
    out = Path(out_dir) if out_dir is not None else run.path / "report"
    make_folder(out, "--out")
    formats_out = tuple(dict.fromkeys([*settings.formats, "png"]))
    entries: list[FigureEntry] = []
    for plan in plans:
        written.extend(_save(plan.draw(), out, plan.stem, formats_out))
        entries.append(FigureEntry(plan.title, plan.caption, f"{plan.stem}.png"))

    table = pareto_table(selection)
    written.extend(write_tables(table, out))
    from . import methods as method_report  # Table 2 and one colour per method, when baselines ran

    labelled, labelled_epochs = method_report.from_runs([(results, epochs, run.config)])
    if method_report.worth_writing(labelled):
        written.extend(method_report.write(labelled, labelled_epochs, out, formats=formats_out,
                                           select_metric=method_report.select_metric_of(run.config)))  # fmt: skip
    links = [(p.name, p.name) for p in written if p.parent == out and p.suffix != ".png"]
    epochs_total = (
        (run.config.get("train") or {}).get("epochs") if isinstance(run.config.get("train"), Mapping) else None
    )
    trials_note = "Selected figures so far; test accuracy only for finished trials (measured once, at the end)."
    written.append(
        write_index(
            out,
            f"DNR sweep report: {run.path.name}",
            entries,
            [
                TableEntry("Pareto-optimal models", display_table(table), _table_note(selection)),
                TableEntry("Trials", trials_table(results, epochs_total), trials_note),
            ],
            meta=_meta(run.path.name, results, selection),
            links=links,
            status=status,
        )
    )
    return written


@dataclass(frozen=True)
class FigurePlan:
    """A figure to write: file stem, page title and caption, and how to draw its computed data."""

    stem: str
    title: str
    caption: str
    draw: Callable[[], Figure]


def _figure_plans(
    selection: Selection, results: pd.DataFrame, epochs: pd.DataFrame, run_path: Path, group: str | None
) -> list[FigurePlan]:
    """Compute every figure's data (no drawing yet); a figure without data gets no plan."""
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
    return plans


def _has_seeds(selection: Selection) -> bool:
    return bool(len(selection.configurations) and (selection.configurations[N_SEEDS] > 1).any())


def _has_pruned(selection: Selection) -> bool:
    configs = selection.configurations
    if not len(configs) or selection.baseline_on is None:
        return False
    return bool(
        ((configs[GROUP] != DENSE) & pd.to_numeric(configs[selection.baseline_on], errors="coerce").notna()).any()
    )


def _table_note(selection: Selection) -> str:
    parts = [_selection_sentence(selection)]
    if _has_seeds(selection):
        parts.append("Accuracies are means ± 95% CI (Student t) over the seeds of a configuration.")
    if selection.shown_only:
        parts.append(f"{', '.join(selection.shown_only)}: no {selection.protocol.split_name} figure, shown only.")
    return " ".join(parts)


def _selection_sentence(selection: Selection) -> str:
    """The sentence saying which split chose and which is shown, with the joint objectives."""
    return f"{selection.protocol.chosen()} (objectives: {selection.chosen_on_text})."


def _meta(name: str, results: pd.DataFrame, selection: Selection) -> str:
    n_configs = len(selection.configurations)
    text = (
        f"{name}: {len(results)} trials, {len(selection.trials)} finished, in {n_configs} configuration"
        f"{'' if n_configs == 1 else 's'}. {_selection_sentence(selection)}"
    )
    if selection.protocol.paper:
        text += f" All numbers {selection.protocol.label}."
    return text
