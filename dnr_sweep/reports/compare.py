"""Reports that compare runs: ``dnr-sweep report RUN_DIR RUN_DIR ... --labels a,b --out DIR``.

The figures a paper needs side by side (searched vs the paper's defaults, DNR vs DNR-C, irregular vs
channel vs ``channel_group``), by the single report's rule: only validation chooses
(:mod:`reports.chooser`), test figures are only shown.

* Every run's trials join one table with a ``report.run`` column, so two runs' trials are never seeds
  of one configuration; each run and pruning type has its own Pareto set.
* With per-epoch records, the hypervolume of each run's validation front against the trial-epochs it
  consumed (:mod:`reports.hypervolume`, reference point :data:`REFERENCE`).
* Runs whose numbers are not comparable are refused: a different selection split, objectives, report
  axes, data set or evaluation attacks.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dnr_sweep.foundation.files import atomic_write_handle
from dnr_sweep.foundation.run_contract import LAYER_PREFIX

from . import figure_data
from .cell_choice import proposal_order
from .chooser import FrontChoice, MethodChoice, choose_methods, finished_mask, has_methods, select, selection_split
from .html import FigureEntry, TableEntry, write_index
from .hypervolume import hypervolume_history
from .labels import DEFAULT_GROUP_BY
from .load import Run, flatten, load_run
from .protocol import selection_objectives
from .report_folder import claim, table_files
from .settings import LABEL_COLUMNS, resolve_settings, with_config_columns, with_selected_figures
from .tables import display_table, pareto_table, write_tables

#: the column holding each trial's run label (dotted, so it is part of a configuration's identity)
RUN_COLUMN = "report.run"
#: the column of the comparison's groups, ``"<pruning> · <label>"``
GROUP_COLUMN = "report.group"
#: the hypervolume's reference point per objective column: the worst value that still counts
REFERENCE = {"compression": 1.0, "density": 1.0, "mask_density": 1.0, "channels_present": 1.0}
ACCURACY_REFERENCE = 0.0  # any ``*_acc`` column, %


class IncomparableRunsError(ValueError):
    """The runs' numbers cannot be put side by side; the message names what differs."""


def default_labels(paths: Sequence[Path]) -> list[str]:
    """The runs' folder names, made unique with their parent's name where they collide."""
    names = [p.name for p in paths]
    return [f"{p.parent.name}/{p.name}" if names.count(p.name) > 1 else p.name for p in paths]


def parse_labels(text: str | None, runs: int) -> list[str] | None:
    """``--labels a,b``: one non-empty, unique label per run (``None``: the folder names)."""
    if text is None:
        return None
    labels = [item.strip() for item in text.split(",")]
    if len(labels) != runs or not all(labels) or len(set(labels)) != runs:
        raise ValueError(f"--labels {text!r}: give {runs} unique, non-empty labels separated by commas, one per run")
    return labels


def _reference(column: str, direction: str) -> float | None:
    if column.endswith("_acc") and direction == "max":
        return ACCURACY_REFERENCE
    return REFERENCE.get(column)


def _eval_attacks(config: Mapping[str, Any]) -> dict[str, Any]:
    flat = flatten(config.get("attack") or {}) if isinstance(config.get("attack"), Mapping) else {}
    return {k: v for k, v in flat.items() if k.startswith("eval.")}


def check_comparable(runs: Mapping[str, Run], settings: Mapping[str, Any]) -> None:
    """Refuse runs whose figures mean different things (see the module docstring)."""
    labels = list(runs)

    def differ(what: str, values: Mapping[str, Any], fix: str) -> None:
        if len({repr(v) for v in values.values()}) > 1:
            shown = "; ".join(f"{label}: {values[label]}" for label in labels)
            raise IncomparableRunsError(f"the runs differ in {what} ({shown}); {fix}")

    differ("the split that chose their epochs and fronts",
           {k: selection_split(r.results) for k, r in runs.items()},
           "compare runs chosen on validation only with each other (select_on: test is the paper's protocol)")  # fmt: skip
    differ("data set", {k: (r.config.get("data") or {}).get("dataset") for k, r in runs.items()},
           "compare runs on the same data set")  # fmt: skip
    differ("evaluation attacks", {k: _eval_attacks(r.config) for k, r in runs.items()},
           "compare runs whose accuracies were measured under the same attack.eval settings")  # fmt: skip
    differ("report axes", {k: (s.x, s.y) for k, s in settings.items()},
           "pass the same --x/--y for all, or align their report: blocks")  # fmt: skip
    objectives = {}
    for label, run in runs.items():
        s = settings[label]
        chosen, _ = selection_objectives(run.results, s.x, s.y, s.objectives, selection_split(run.results))
        objectives[label] = dict(chosen)
    differ("objectives", objectives, "pass the same --objectives for all runs")


@dataclass(frozen=True)
class HypervolumeCurve:
    """One run's hypervolume after each trial, against the trial-epochs spent so far."""

    label: str
    trial_epochs: tuple[float, ...]
    hypervolume: tuple[float, ...]


@dataclass(frozen=True)
class HypervolumeData:
    """What the hypervolume-vs-compute figure draws, and the reference it was measured from."""

    objectives: dict[str, str]
    reference: dict[str, float]
    curves: tuple[HypervolumeCurve, ...]


def hypervolume_data(runs: Mapping[str, Run], objectives: Mapping[str, str]) -> HypervolumeData | None:
    """Each run's validation hypervolume per trial-epoch; ``None`` when an objective has no fixed
    reference or no run carries per-epoch records."""
    reference = {c: _reference(c, d) for c, d in objectives.items()}
    if any(v is None for v in reference.values()) or not any(not r.epochs.empty for r in runs.values()):
        return None
    columns = list(objectives)
    curves = []
    for label, run in runs.items():
        if run.epochs.empty:
            continue
        trials = creation_order(run)
        points = np.array(trials[columns].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float))
        points[~finished_mask(trials).to_numpy()] = np.nan  # stopped or failed: cost only
        costs = pd.to_numeric(trials["epochs_completed"], errors="coerce").fillna(0).to_numpy(dtype=float)
        history = hypervolume_history(points, costs, [reference[c] for c in columns], [objectives[c] for c in columns])
        curves.append(HypervolumeCurve(label, tuple(map(float, history.cost)), tuple(map(float, history.hypervolume))))
    return HypervolumeData(dict(objectives), {k: float(v) for k, v in reference.items()}, tuple(curves))


def creation_order(run: Run) -> pd.DataFrame:
    """The run's trials in the order the sweep created them: Tune numbers each trial folder
    (:func:`reports.cell_choice.proposal_order`); trial ids order them only where the folders are
    gone or not Tune's (a grid's ids are sequential, a searcher's are random)."""
    try:
        order = proposal_order(run.path)
    except (OSError, ValueError, KeyError, TypeError):  # unreadable or foreign folders: fall back
        order = {}
    number = run.results["trial_id"].astype(str).map(order)
    if number.isna().any():
        return run.results.sort_values("trial_id", kind="mergesort")
    return run.results.assign(_n=number).sort_values(["_n", "trial_id"], kind="mergesort").drop(columns="_n")


def combined_results(runs: Mapping[str, Run], group_by: str | None) -> pd.DataFrame:
    """Every run's results in one table, with the run label and the comparison group per trial."""
    parts = []
    for label, run in runs.items():
        results = with_config_columns(run.results, run.config, [*LABEL_COLUMNS, group_by]).copy()
        if group_by is not None and group_by not in results.columns:
            results[group_by] = None
        results["trial_id"] = label + ":" + results["trial_id"].astype(str)
        results[RUN_COLUMN] = label
        kind = results[group_by].astype(str) if group_by is not None else pd.Series("DNR", index=results.index)
        results[GROUP_COLUMN] = kind + " · " + label
        parts.append(results)
    table = pd.concat(parts, ignore_index=True, sort=False)
    layers = [c for c in table.columns if c.startswith(LAYER_PREFIX)]
    return table[[c for c in table.columns if c not in layers] + layers]


@dataclass(frozen=True)
class Comparison:
    """The runs compared, their combined choice (Table 2's when methods other than DNR ran) and the
    hypervolume curves (``None`` without epochs)."""

    runs: dict[str, Run]
    selection: FrontChoice
    methods: MethodChoice | None
    hypervolume: HypervolumeData | None


def compare(run_dirs: Sequence[str | os.PathLike[str]], *, labels: Sequence[str] | None = None,
            x: str | None = None, y: Sequence[str] | None = None, objectives: Mapping[str, str] | None = None,
            group_by: str | None = None, table2_compression: float | None = None) -> Comparison:  # fmt: skip
    """Load the runs, check they are comparable and make the comparison's one choice."""
    paths = [Path(p) for p in run_dirs]
    if len(paths) < 2:
        raise ValueError("a comparison needs at least two run folders")
    labels = list(labels) if labels is not None else default_labels(paths)
    if len(labels) != len(paths) or len(set(labels)) != len(labels):
        raise ValueError(f"give one unique label per run; got {labels} for {len(paths)} runs")
    runs = {label: load_run(path) for label, path in zip(labels, paths, strict=True)}
    for run in runs.values():
        if run.results.empty:
            raise ValueError(f"{run.path} holds no trials; run a sweep into it first")
    settings = {
        label: resolve_settings(
            run.config, x=x, y=y, objectives=objectives, group_by=group_by, table2_compression=table2_compression
        )
        for label, run in runs.items()
    }
    runs = {label: Run(r.path, with_selected_figures(r.results, r.epochs), r.epochs, r.config, r.rebuilt)
            for label, r in runs.items()}  # fmt: skip
    check_comparable(runs, settings)
    first = settings[labels[0]]
    group = first.group_by if first.group_by is not None else DEFAULT_GROUP_BY
    table = combined_results(runs, group)
    selection = select(table, x=first.x, y=first.y, objectives=first.objectives, group_by=GROUP_COLUMN)
    methods = choose_methods(selection, compression=first.table2_compression) if has_methods(selection) else None
    return Comparison(runs, selection, methods, hypervolume_data(runs, selection.objectives))


def write_comparison(comparison: Comparison, out_dir: str | os.PathLike[str], *,
                     formats: Sequence[str] | None = None, force: bool = False) -> list[Path]:  # fmt: skip
    """Figures (Fig. 3 panels with every run's fronts, Fig. 3(c), hypervolume vs compute), the
    Pareto table, the hypervolume table and ``index.html`` into ``out_dir``; every file written.
    What it may write over there (``force``: any earlier report) is :func:`reports.report_folder.claim`'s
    to say, before anything is drawn."""
    from .build import DEFAULT_FORMATS, FORMATS, _save, write_table2  # lazy: build pulls matplotlib

    formats = tuple(formats or DEFAULT_FORMATS)
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise ValueError(f"unknown figure format(s) {bad}; valid formats: {', '.join(FORMATS)}")
    out = Path(out_dir)
    formats_out = tuple(dict.fromkeys([*formats, "png"]))
    selection = comparison.selection
    protocol = selection.protocol
    plans = _comparison_plans(comparison)  # every figure's data, computed first
    hv = comparison.hypervolume
    hv_table = hypervolume_table(hv) if hv is not None and hv.curves else None
    names = [f"{plan.stem}.{fmt}" for plan in plans for fmt in formats_out] + [*table_files("pareto"), "index.html"]
    names += list(table_files("table2")) if comparison.methods is not None else []
    names += ["hypervolume.csv"] if hv_table is not None else []
    claim(out, kind="comparison", runs=[run.path for run in comparison.runs.values()], names=names, force=force,
          own=False)  # fmt: skip

    written: list[Path] = []
    entries: list[FigureEntry] = []
    for plan in plans:
        written += _save(plan.draw(), out, plan.stem, formats_out)
        entries.append(FigureEntry(plan.title, plan.caption, f"{plan.stem}.png"))
    tables = [TableEntry("Pareto-optimal models, by run", display_table(pareto_table(selection)),
                         f"{protocol.chosen()} (objectives: {selection.chosen_on_text}).")]  # fmt: skip
    written += write_tables(pareto_table(selection), out)
    if comparison.methods is not None:  # Table 2 over every run's trials, one colour per method
        paths, entry = write_table2(comparison.methods, combined_epochs(comparison.runs), out)
        written += paths
        tables.append(entry)
    if hv is not None and hv_table is not None:
        text = hv_table.to_csv(index=False, float_format="%.6g").encode()
        written.append(atomic_write_handle(out / "hypervolume.csv", lambda handle: handle.write(text)))
        tables.append(TableEntry("Hypervolume", hv_table, "Reference point: " + ", ".join(
            f"{k} {v:g}" for k, v in hv.reference.items()) + "."))  # fmt: skip
    links = [(p.name, p.name) for p in written if p.suffix != ".png"]
    names_shown = ", ".join(f"{label} ({run.path.name})" for label, run in comparison.runs.items())
    written.append(write_index(out, f"DNR sweep comparison: {', '.join(comparison.runs)}", entries, tables,
                               meta=f"Runs: {names_shown}. {protocol.chosen()}.", links=links))  # fmt: skip
    return written


def _comparison_plans(comparison: Comparison) -> list[Any]:
    """The comparison's figures (:class:`reports.build.FigurePlan`), their data computed, none drawn."""
    # lazy: figures and build pull matplotlib; comparing runs without drawing does not need it
    from . import figures as figs
    from .build import FigurePlan, methods_plan

    selection = comparison.selection
    protocol = selection.protocol
    chosen = (f"{protocol.chosen('Pareto set per run and pruning type')} (joint objectives: "
              f"{selection.chosen_on_text}); the same configurations in every panel.")  # fmt: skip
    plans = []
    if len(selection.configurations):
        accuracy = figure_data.compression_accuracy_data(selection)
        plans.append(FigurePlan("compression_accuracy", "Compression vs accuracy (Fig. 3a/b), by run", chosen,
                                lambda: figs.compression_accuracy(accuracy)))  # fmt: skip
        if {"compression", "channels_present"} <= set(selection.trials.columns):
            channels = figure_data.channels_present_data(selection)
            plans.append(FigurePlan("channels_present", "Channels present (Fig. 3c), by run",
                                    "% of input channels present for the configurations of the Pareto sets.",
                                    lambda: figs.channels_present(channels)))  # fmt: skip
    if comparison.methods is not None:
        plans.append(methods_plan(comparison.methods, selection))
    hv = comparison.hypervolume
    if hv is not None and hv.curves:
        plans.append(FigurePlan("hypervolume", "Front found per compute", "Hypervolume of each run's front on the "
                                f"{protocol.split_name} objectives after each trial, against the trial-epochs "
                                "consumed (a trial stopped early costs its epochs and adds no point).",
                                lambda: figs.hypervolume_curves(hv)))  # fmt: skip
    return plans


def combined_epochs(runs: Mapping[str, Run]) -> pd.DataFrame:
    """Every run's epochs in one table, trial ids prefixed with the run label as :func:`combined_results` does."""
    parts = [run.epochs.assign(trial_id=label + ":" + run.epochs["trial_id"].astype(str))
             for label, run in runs.items() if not run.epochs.empty and "trial_id" in run.epochs.columns]  # fmt: skip
    return pd.concat(parts, ignore_index=True, sort=False) if parts else pd.DataFrame()


def hypervolume_table(hv: HypervolumeData) -> pd.DataFrame:
    """Per run: trials, trial-epochs consumed, final hypervolume, and the trial-epochs at which it first
    reached the largest final hypervolume of the runs compared (``inf``: never)."""
    best = max((c.hypervolume[-1] for c in hv.curves if c.hypervolume), default=0.0)
    rows = []
    for curve in hv.curves:
        reached = [
            cost for cost, v in zip(curve.trial_epochs, curve.hypervolume, strict=True) if v >= best * (1 - 1e-9)
        ]
        rows.append({"Run": curve.label, "Trials": len(curve.trial_epochs),
                     "Trial-epochs": curve.trial_epochs[-1] if curve.trial_epochs else 0.0,
                     "Hypervolume": curve.hypervolume[-1] if curve.hypervolume else 0.0,
                     "Trial-epochs to the best final hypervolume": reached[0] if reached else float("inf")})  # fmt: skip
    return pd.DataFrame(rows)
