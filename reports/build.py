"""``build_report``: a run directory -> Parquet tables, figures, tables and ``report/index.html``.

Settings come, in rising priority, from the defaults here, the ``report:`` block of the run's
``config.yaml`` (``x``, ``y``, ``group_by``, ``objectives``, ``formats``) and the function's arguments
(the CLI's flags). Only figures that have data are drawn.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib as mpl
import pandas as pd
from matplotlib.figure import Figure

from . import figures as figs
from .html import FigureEntry, write_index
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
from .style import RC
from .tables import default_objectives, pareto_table, write_tables

FORMATS = ("pdf", "png", "svg")
REPORT_KEYS = ("x", "y", "group_by", "objectives", "formats")
DEFAULT_FORMATS = ("pdf", "png")


@dataclass(frozen=True)
class ReportSettings:
    """Resolved report settings (see the module docstring for where each comes from)."""

    x: str = "compression"
    y: tuple[str, ...] = figs.DEFAULT_Y
    group_by: str | None = figs.DEFAULT_GROUP_BY
    objectives: dict[str, Direction] = field(default_factory=dict)
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
        raise ValueError(
            f"config.yaml 'report:' has unknown key(s) {unknown}; valid keys: {', '.join(REPORT_KEYS)}"
        )

    def pick(arg: Any, key: str, default: Any) -> Any:
        return arg if arg is not None else block.get(key, default)

    x_ = str(pick(x, "x", "compression"))
    y_raw = pick(y, "y", figs.DEFAULT_Y)
    y_ = (y_raw,) if isinstance(y_raw, str) else tuple(str(m) for m in y_raw)
    if not y_:
        raise ValueError("report y must name at least one accuracy column, e.g. [clean_acc, pgd_acc]")
    group = pick(group_by, "group_by", figs.DEFAULT_GROUP_BY)
    fmts_raw = pick(formats, "formats", DEFAULT_FORMATS)
    fmts = (fmts_raw,) if isinstance(fmts_raw, str) else tuple(str(f).lower().lstrip(".") for f in fmts_raw)
    bad = [f for f in fmts if f not in FORMATS]
    if bad or not fmts:
        raise ValueError(f"unknown figure format(s) {bad or fmts}; valid formats: {', '.join(FORMATS)}")
    objs = dict(pick(objectives, "objectives", None) or default_objectives(x_, y_))
    for name, direction in objs.items():
        if direction not in DIRECTIONS:
            raise ValueError(
                f"objective {name!r} has unknown direction {direction!r}; valid: {', '.join(DIRECTIONS)}"
            )
    return ReportSettings(x_, y_, None if group is None else str(group), objs, fmts)


def _with_config_columns(
    df: pd.DataFrame, config: Mapping[str, Any], columns: Sequence[str | None]
) -> pd.DataFrame:
    """Add constant columns from ``config.yaml`` (e.g. ``dnr.pruning`` when it was not swept)."""
    flat = flatten({k: v for k, v in config.items() if k not in ("search", "report")})
    extra = {c: flat[c] for c in columns if c and c not in df.columns and c in flat}
    return df.assign(**extra) if extra else df


def _save(fig: Figure, out_dir: Path, stem: str, formats: Sequence[str]) -> list[Path]:
    paths = []
    with mpl.rc_context(RC):
        for fmt in formats:
            path = out_dir / f"{stem}.{fmt}"
            fig.savefig(path, format=fmt, dpi=200 if fmt == "png" else None)
            paths.append(path)
    return paths


def build_report(
    run_dir: str | os.PathLike[str],
    *,
    out_dir: str | os.PathLike[str] | None = None,
    formats: Sequence[str] | None = None,
    x: str | None = None,
    y: Sequence[str] | None = None,
    objectives: Mapping[str, str] | None = None,
    group_by: str | None = None,
) -> list[Path]:
    """Load ``run_dir``, (re)write its Parquet tables when rebuilt, draw every figure that has data,
    write the Pareto table (CSV, LaTeX) and ``index.html`` into ``out_dir`` (default
    ``run_dir/report``). Returns every file written, in writing order.

    ``formats`` defaults to ``("pdf", "png")`` (or ``report.formats``); PNG is always written too,
    because ``index.html`` shows it.

    Raises:
        FileNotFoundError: ``run_dir`` does not exist or holds neither Parquet tables nor result.json.
        ValueError: the results table is empty or a setting is invalid.
    """
    run: Run = load_run(run_dir)
    if run.results.empty:
        raise ValueError(f"{run.path / RESULTS_FILE} holds no trials; run a sweep into {run.path} first")
    settings = resolve_settings(
        run.config, formats=formats, x=x, y=y, objectives=objectives, group_by=group_by
    )
    written: list[Path] = []
    if run.rebuilt:
        written.append(write_parquet_atomic(run.results, run.path / RESULTS_FILE))
        written.append(write_parquet_atomic(run.epochs, run.path / EPOCHS_FILE))
    out = Path(out_dir) if out_dir is not None else run.path / "report"
    out.mkdir(parents=True, exist_ok=True)
    formats_out = tuple(dict.fromkeys([*settings.formats, "png"]))

    results = _with_config_columns(run.results, run.config, [settings.group_by])
    epochs = _with_config_columns(run.epochs, run.config, [settings.group_by])
    group = settings.group_by if settings.group_by in results.columns else None
    y_present = tuple(m for m in settings.y if m in results.columns)
    entries: list[FigureEntry] = []

    def draw(stem: str, title: str, caption: str, make: Callable[[], Figure]) -> None:
        fig = make()
        written.extend(_save(fig, out, stem, formats_out))
        entries.append(FigureEntry(title, caption, f"{stem}.png"))

    if y_present and settings.x in results.columns:
        draw(
            "compression_accuracy",
            "Compression vs accuracy (Fig. 3a/b)",
            "Pareto front per pruning type (lines), all trials (faint points), dense baseline (dashed).",
            lambda: figs.compression_accuracy(results, x=settings.x, y=y_present, group_by=group),
        )
    if {"compression", "channels_present", y_present[0] if y_present else "clean_acc"} <= set(
        results.columns
    ):
        draw(
            "channels_present",
            "Channels present (Fig. 3c)",
            f"% of input channels present for the models on the compression-{y_present[0]} front.",
            lambda: figs.channels_present(results, group_by=group, front_on=y_present[0]),
        )
    if layer_columns(results.columns) and "clean_acc" in results.columns and _has_pruned_finished(results):
        draw(
            "layer_density",
            "Per-layer density (Fig. 2b)",
            "Best trial by clean accuracy for each pruning type and target density.",
            lambda: figs.layer_density(results, group_by=group),
        )
    if not epochs.empty and ({"loss", "val_clean_acc", "val_pgd_acc"} & set(epochs.columns)):
        draw(
            "training_curves",
            "Training curves (Fig. 2a)",
            "Training loss and validation accuracy per epoch, one line per trial.",
            lambda: figs.training_curves(epochs, group_by=group if group in epochs.columns else None),
        )
    curves = load_attack_strength(run.path)
    if any(c.get("steps") or c.get("eps") for c in curves.values()):
        if len(curves) > MAX_STRENGTH_CURVES:  # many trials (seeds, betas): one mean curve per label
            curves, groups = _mean_strength_curves(curves, results, group)
            relabelled = curves
        else:
            labels, groups = _strength_labels(curves, results, group)
            relabelled = {labels[k]: v for k, v in curves.items()}
        draw(
            "attack_strength",
            "PGD attack strength (Fig. 4)",
            "Accuracy under PGD vs attack iterations and vs eps (in /255).",
            lambda: figs.attack_strength(relabelled, groups=groups),
        )

    table = pareto_table(
        results, y=y_present or settings.y, objectives=settings.objectives, group_by=group, x=settings.x
    )
    written.extend(write_tables(table, out))
    objective_text = ", ".join(f"{k} ({v})" for k, v in settings.objectives.items())
    meta = f"{run.path.name}: {len(results)} trials; Pareto objectives: {objective_text}."
    links = [(p.name, p.name) for p in written if p.parent == out and p.suffix != ".png"]
    written.append(
        write_index(
            out,
            f"DNR sweep report: {run.path.name}",
            entries,
            [("Pareto-optimal models", table)],
            meta=meta,
            links=links,
        )
    )
    return written


def _has_pruned_finished(results: pd.DataFrame) -> bool:
    from .pareto import eligible_mask

    return bool((eligible_mask(results, ["clean_acc"]) & ~figs.dense_mask(results)).any())


MAX_STRENGTH_CURVES = 8


def _mean_strength_curves(
    curves: Mapping[str, Any], results: pd.DataFrame, group: str | None
) -> tuple[dict[str, dict[str, dict[float, float]]], dict[str, str]]:
    """Average the curves of trials that share a label (pruning type, target density)."""
    labels, groups = _strength_labels(curves, results, group, unique=False)
    members: dict[str, list[Any]] = {}
    for key, curve in curves.items():
        members.setdefault(labels[key], []).append(curve)
    merged: dict[str, dict[str, dict[float, float]]] = {}
    for label, items in members.items():
        name = f"{label} (mean of {len(items)})" if len(items) > 1 else label
        merged[name] = {
            axis: {x: float(pd.Series([c[axis][x] for c in items if x in c.get(axis, {})]).mean())
                   for x in dict.fromkeys(x for c in items for x in c.get(axis, {}))}
            for axis in ("steps", "eps")
        }  # fmt: skip
        if label in groups:
            groups[name] = groups[label]
    return merged, groups


def _strength_labels(
    curves: Mapping[str, Any], results: pd.DataFrame, group: str | None, unique: bool = True
) -> tuple[dict[str, str], dict[str, str]]:
    """Label a trial's curve ``"<pruning>, <d>% density"`` and map the label to its pruning type."""
    by_id = results.set_index("trial_id") if "trial_id" in results.columns else pd.DataFrame()
    labels: dict[str, str] = {}
    groups: dict[str, str] = {}
    for key in curves:
        label = key
        if key in by_id.index:
            row = by_id.loc[key]
            kind = str(row[group]) if group else None
            density = row.get("dnr.density", row.get("density"))
            label = (
                ", ".join(
                    p
                    for p in (kind, f"{float(density) * 100:g}% density" if pd.notna(density) else None)
                    if p
                )
                or key
            )
            if unique and label in labels.values():
                label = f"{label} ({key})"
            if kind:
                groups[label] = kind
        labels[key] = label
    return labels, groups
