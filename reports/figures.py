"""The paper's figures from a results table: compute the data first (pure functions), then draw it.

Each ``*_data`` function returns a small frozen object holding exactly what its figure draws; tests
assert those objects and the drawn artists (found by their ``gid``, e.g. ``"front:clean_acc:irregular"``).
Each figure function returns a :class:`matplotlib.figure.Figure` built without pyplot, so nothing global
changes and it can be shown in a notebook or saved with ``fig.savefig``.

* :func:`compression_accuracy` - Fig. 3(a/b): accuracy vs compression, Pareto front per pruning type.
* :func:`channels_present` - Fig. 3(c): % channels present vs compression.
* :func:`layer_density` - Fig. 2(b): per-layer density of chosen trials.
* :func:`training_curves` - Fig. 2(a): loss and validation accuracy per epoch.
* :func:`attack_strength` - Fig. 4: accuracy vs PGD steps and vs eps.

*Dense* rows (``density`` or ``dnr.density`` equal to 1, or ``compression`` within 0.1 % of 1) form
their own group, ``"dense"``: they are the unpruned baseline, drawn as a dashed reference line rather
than as a point of a pruning type's front.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

from .load import LAYER_PREFIX, layer_columns
from .pareto import Direction, ParetoFront, eligible_mask, pareto_front
from .style import (
    DENSE,
    METRIC_LINESTYLES,
    METRIC_MARKERS,
    PANEL_HEIGHT_IN,
    PANEL_WIDTH_IN,
    RC,
    group_order,
    group_styles,
    metric_label,
)

DEFAULT_Y = ("clean_acc", "fgsm_acc", "pgd_acc")
DEFAULT_GROUP_BY = "dnr.pruning"
SINGLE_GROUP = "DNR"
_TICK_LADDER = tuple(m * 10.0**e for e in range(-1, 5) for m in (1, 2, 5))

P = ParamSpec("P")
R = TypeVar("R")


def _styled(fn: Callable[P, R]) -> Callable[P, R]:
    """Build the figure under the report's rc settings (fonts, line widths) without touching globals."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with mpl.rc_context(RC):
            return fn(*args, **kwargs)

    return wrapper


# ---------------------------------------------------------------------------------------------- helpers


def _require(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(
            f"{what} needs column(s) {missing}; the table has: {', '.join(map(str, df.columns))}"
        )


def dense_mask(df: pd.DataFrame) -> pd.Series:
    """Rows of the unpruned baseline: density 1 (measured or target) or compression within 0.1 % of 1."""
    dense = pd.Series(False, index=df.index)
    for column in ("density", "dnr.density"):
        if column in df.columns:
            dense |= np.isclose(pd.to_numeric(df[column], errors="coerce"), 1.0, rtol=0, atol=1e-9)
    if "compression" in df.columns:
        dense |= np.isclose(pd.to_numeric(df["compression"], errors="coerce"), 1.0, rtol=1e-3, atol=0)
    return dense


def group_labels(df: pd.DataFrame, group_by: str | None) -> pd.Series:
    """Each row's group: the ``group_by`` value as a string, ``"dense"`` for baseline rows."""
    if group_by is None:
        groups = pd.Series(SINGLE_GROUP, index=df.index, dtype=object)
    else:
        _require(df, [group_by], "group_by")
        groups = df[group_by].astype(str).astype(object)
    groups[dense_mask(df)] = DENSE
    return groups


def compression_ticks(lo: float, hi: float) -> tuple[list[float], list[str]]:
    """Ticks 1x, 2x, 5x, 10x, ... that lie within ``[lo, hi]``, labelled ``"10×"``."""
    ticks = [t for t in _TICK_LADDER if lo * (1 - 1e-9) <= t <= hi * (1 + 1e-9)]
    return ticks, [f"{t:g}×" for t in ticks]


def compression_limits(values: np.ndarray) -> tuple[float, float]:
    """Log-axis limits around ``values`` with a little margin, wide enough for two ladder ticks."""
    finite = values[np.isfinite(values) & (values > 0)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (1.0, 10.0)
    while len(compression_ticks(lo, hi)[0]) < 2:
        below = [t for t in _TICK_LADDER if t < lo * (1 - 1e-9)]
        above = [t for t in _TICK_LADDER if t > hi * (1 + 1e-9)]
        if below and (not above or lo / below[-1] <= above[0] / hi):
            lo = below[-1]
        elif above:
            hi = above[0]
        else:
            break
    pad = (hi / lo) ** 0.05 if hi > lo else 1.1
    return lo / pad, hi * pad


def _set_compression_axis(ax: Any, values: np.ndarray, label: str = "Compression (×)") -> None:
    ax.set_xscale("log")
    lo, hi = compression_limits(values)
    ax.set_xlim(lo, hi)
    ticks, labels = compression_ticks(lo, hi)
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.set_xticklabels(labels)
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(label)


def _x_label(x: str) -> str:
    return {
        "compression": "Compression (×)",
        "density": "Density",
        "channels_present": "Channels present",
    }.get(x, x)


def _tint(color: str, amount: float) -> tuple[float, float, float]:
    """``color`` mixed with white: ``amount`` 1 is the colour, 0 is white."""
    rgb = np.array(to_rgb(color))
    return tuple(1 - amount * (1 - rgb))  # type: ignore[return-value]


# --------------------------------------------------------------------------- Fig. 3(a/b): accuracy vs x


@dataclass(frozen=True, eq=False)
class CompressionAccuracyData:
    """What Fig. 3(a/b) draws.

    Attributes:
        x: the x column (``compression``).
        metrics: the accuracy columns, one panel (or line style) each.
        groups: the pruning groups with a front, in display order (``"dense"`` excluded).
        fronts: ``(metric, group) -> ParetoFront`` over ``{x: x_direction, metric: "max"}``.
        points: ``metric -> DataFrame[x, metric, "group"]``: every trial with finite values (faint).
        baseline: ``metric -> accuracy`` of the dense baseline trial (best dense trial by the first
            metric); empty when the table has no dense trial.
        baseline_trial: that trial's ``trial_id`` (None without one).
    """

    x: str
    metrics: tuple[str, ...]
    groups: tuple[str, ...]
    fronts: dict[tuple[str, str], ParetoFront]
    points: dict[str, pd.DataFrame]
    baseline: dict[str, float]
    baseline_trial: str | None


def dense_baseline(df: pd.DataFrame, metric: str) -> pd.Series | None:
    """The dense trial with the best ``metric`` among eligible ones (finished, finite), or None."""
    eligible = df[dense_mask(df) & eligible_mask(df, [metric])]
    if eligible.empty:
        return None
    return eligible.loc[pd.to_numeric(eligible[metric]).idxmax()]


def compression_accuracy_data(
    df: pd.DataFrame,
    *,
    x: str = "compression",
    y: Sequence[str] = DEFAULT_Y,
    group_by: str | None = DEFAULT_GROUP_BY,
    x_direction: Direction = "max",
) -> CompressionAccuracyData:
    """Pareto fronts (per group and metric), all trial points and the dense baseline of ``df``."""
    metrics = tuple(y)
    if not metrics:
        raise ValueError("y must name at least one accuracy column, e.g. ('clean_acc', 'pgd_acc')")
    _require(df, [x, *metrics], "compression_accuracy")
    groups = group_labels(df, group_by)
    order = tuple(g for g in group_order(groups.unique()) if g != DENSE)
    fronts: dict[tuple[str, str], ParetoFront] = {}
    points: dict[str, pd.DataFrame] = {}
    for metric in metrics:
        for group in order:
            fronts[(metric, group)] = pareto_front(df[groups == group], {x: x_direction, metric: "max"})
        finite = df[[x, metric]].apply(pd.to_numeric, errors="coerce").notna().all(axis=1)
        pts = df.loc[finite, [x, metric]].astype(float)
        pts["group"] = groups[finite]
        points[metric] = pts
    best = dense_baseline(df, metrics[0])
    baseline: dict[str, float] = {}
    if best is not None:
        baseline = {m: float(best[m]) for m in metrics if pd.notna(best[m])}
    trial = None if best is None or "trial_id" not in df.columns else str(best["trial_id"])
    return CompressionAccuracyData(x, metrics, order, fronts, points, baseline, trial)


def _draw_baseline(ax: Any, value: float, metric: str, linestyle: str = "--") -> None:
    ax.axhline(
        value,
        color=group_styles([DENSE])[DENSE][0],
        linestyle=linestyle,
        linewidth=0.9,
        zorder=1,
        gid=f"baseline:{metric}",
    )


@_styled
def compression_accuracy(
    df: pd.DataFrame,
    *,
    x: str = "compression",
    y: Sequence[str] = DEFAULT_Y,
    group_by: str | None = DEFAULT_GROUP_BY,
    combined: bool = False,
    x_direction: Direction = "max",
) -> Figure:
    """Fig. 3(a/b): accuracy (%) vs compression (log x, 1x/2x/5x... ticks), one panel per accuracy.

    Per pruning type: the Pareto-front line (compression max, accuracy max) with markers, over all
    trials as faint points; the dense baseline as a dashed horizontal line. ``combined=True`` draws all
    accuracies on one axes, told apart by line style and marker (the colour stays the pruning type).
    """
    data = compression_accuracy_data(df, x=x, y=y, group_by=group_by, x_direction=x_direction)
    styles = group_styles(list(data.groups) + [DENSE])
    n_panels = 1 if combined else len(data.metrics)
    fig = Figure(figsize=(PANEL_WIDTH_IN * n_panels, PANEL_HEIGHT_IN), layout="constrained")
    axes = fig.subplots(1, n_panels, squeeze=False)[0]
    all_x = np.concatenate([p[data.x].to_numpy() for p in data.points.values()] + [np.array([1.0])])
    for i, metric in enumerate(data.metrics):
        ax = axes[0 if combined else i]
        pts = data.points[metric]
        ax.scatter(
            pts[data.x],
            pts[metric],
            s=9,
            c=[styles[g][0] for g in pts["group"]],
            alpha=0.25,
            linewidths=0,
            zorder=2,
            gid=f"trials:{metric}",
        )
        linestyle = METRIC_LINESTYLES[i % len(METRIC_LINESTYLES)] if combined else "-"
        for group in data.groups:
            front = data.fronts[(metric, group)].rows
            color, marker = styles[group]
            ax.plot(
                front[data.x].to_numpy(dtype=float),
                front[metric].to_numpy(dtype=float),
                color=color,
                linestyle=linestyle,
                marker=METRIC_MARKERS[i % len(METRIC_MARKERS)] if combined else marker,
                markersize=3.5,
                markeredgecolor="white",
                markeredgewidth=0.4,
                zorder=3,
                label=group,
                gid=f"front:{metric}:{group}",
            )
        if metric in data.baseline:
            _draw_baseline(ax, data.baseline[metric], metric, linestyle="--" if not combined else linestyle)
        if data.x == "compression":
            _set_compression_axis(ax, all_x)
        else:
            ax.set_xlabel(_x_label(data.x))
        ax.set_ylabel("Accuracy (%)")
        if not combined:
            ax.set_title(metric_label(metric))
        ax.grid(True, axis="y")
    _compression_legend(axes[0], data, styles, combined)
    return fig


def _compression_legend(
    ax: Any, data: CompressionAccuracyData, styles: Mapping[str, tuple[str, str]], combined: bool
) -> None:
    handles = [
        Line2D(
            [],
            [],
            color=styles[g][0],
            marker=None if combined else styles[g][1],
            markersize=3.5,
            markeredgecolor="white",
            markeredgewidth=0.4,
            label=g,
        )
        for g in data.groups
    ]
    if combined:
        handles += [
            Line2D(
                [],
                [],
                color="black",
                linestyle=METRIC_LINESTYLES[i % len(METRIC_LINESTYLES)],
                marker=METRIC_MARKERS[i % len(METRIC_MARKERS)],
                markersize=3.5,
                label=metric_label(m),
            )
            for i, m in enumerate(data.metrics)
        ]
    if data.baseline:
        handles.append(
            Line2D([], [], color=styles[DENSE][0], linestyle="--", linewidth=0.9, label="dense baseline")
        )
    if handles:
        ax.legend(handles=handles, loc="lower left", handlelength=2.2)


# ------------------------------------------------------------------------- Fig. 3(c): channels present


@dataclass(frozen=True, eq=False)
class ChannelsPresentData:
    """What Fig. 3(c) draws: per group the models on the ``front_on`` front (line) and all trials.

    ``lines[group]`` and ``points`` are DataFrames with columns ``compression`` and ``channels_pct``
    (``channels_present`` x 100); ``points`` also has ``group``. ``baseline`` is the dense trial's
    ``(compression, channels_pct)`` or None. ``speedups`` holds ``(compression, channels_pct,
    speedup)`` of the front models whose measured CPU speedup is known (``export: true`` runs).
    """

    groups: tuple[str, ...]
    lines: dict[str, pd.DataFrame]
    points: pd.DataFrame
    baseline: tuple[float, float] | None
    speedups: tuple[tuple[float, float, float], ...] = ()


def channels_present_data(
    df: pd.DataFrame, *, group_by: str | None = DEFAULT_GROUP_BY, front_on: str = "clean_acc"
) -> ChannelsPresentData:
    """Channels present (%) of each group's ``(compression max, front_on max)`` front, and of all trials.

    The line joins the same models that Fig. 3(a/b) shows on its front, so the two panels read together.
    """
    _require(df, ["compression", "channels_present", front_on], "channels_present")
    groups = group_labels(df, group_by)
    order = tuple(g for g in group_order(groups.unique()) if g != DENSE)

    def frame(rows: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "compression": rows["compression"].astype(float),
                "channels_pct": rows["channels_present"].astype(float) * 100.0,
            },
            index=rows.index,
        )

    lines = {}
    for group in order:
        front = pareto_front(df[groups == group], {"compression": "max", front_on: "max"}).rows
        lines[group] = frame(front[front["channels_present"].notna()])
    finite = df[["compression", "channels_present"]].apply(pd.to_numeric, errors="coerce").notna().all(axis=1)
    points = frame(df[finite])
    points["group"] = groups[finite]
    best = dense_baseline(df, front_on)
    baseline = None
    if best is not None and pd.notna(best["channels_present"]):
        baseline = (float(best["compression"]), float(best["channels_present"]) * 100.0)
    speedups: list[tuple[float, float, float]] = []
    if "speedup_cpu" in df.columns:
        for line in lines.values():
            measured = pd.to_numeric(df.loc[line.index, "speedup_cpu"], errors="coerce")
            speedups += [(float(line.at[i, "compression"]), float(line.at[i, "channels_pct"]), float(v))
                         for i, v in measured.items() if pd.notna(v)]  # fmt: skip
    return ChannelsPresentData(order, lines, points, baseline, tuple(speedups))


@_styled
def channels_present(
    df: pd.DataFrame, *, group_by: str | None = DEFAULT_GROUP_BY, front_on: str = "clean_acc"
) -> Figure:
    """Fig. 3(c): % of input channels present vs compression (log x), one line per pruning type."""
    data = channels_present_data(df, group_by=group_by, front_on=front_on)
    styles = group_styles(list(data.groups) + [DENSE])
    fig = Figure(figsize=(PANEL_WIDTH_IN, PANEL_HEIGHT_IN), layout="constrained")
    ax = fig.subplots()
    ax.scatter(
        data.points["compression"],
        data.points["channels_pct"],
        s=9,
        alpha=0.25,
        linewidths=0,
        zorder=2,
        c=[styles[g][0] for g in data.points["group"]],
        gid="trials:channels_present",
    )
    for group in data.groups:
        line = data.lines[group]
        color, marker = styles[group]
        ax.plot(
            line["compression"].to_numpy(),
            line["channels_pct"].to_numpy(),
            color=color,
            marker=marker,
            markersize=3.5,
            markeredgecolor="white",
            markeredgewidth=0.4,
            zorder=3,
            label=group,
            gid=f"front:channels_present:{group}",
        )
    if data.baseline is not None:
        ax.plot(
            [data.baseline[0]],
            [data.baseline[1]],
            linestyle="none",
            color=styles[DENSE][0],
            marker=styles[DENSE][1],
            markersize=4,
            zorder=4,
            label="dense baseline",
            gid="baseline:channels_present",
        )
    for x, y, speedup in data.speedups:  # measured after physically removing the dead channels
        ax.annotate(f"{speedup:.1f}× CPU", (x, y), xytext=(3, 4), textcoords="offset points", fontsize=6.5,
                    color="0.25", gid="speedup")  # fmt: skip
    _set_compression_axis(ax, np.append(data.points["compression"].to_numpy(dtype=float), 1.0))
    ax.set_ylim(0, 105)
    ax.set_ylabel("Channels present (%)")
    ax.grid(True, axis="y")
    ax.legend(loc="lower left")
    return fig


# ------------------------------------------------------------------------ Fig. 2(b): per-layer density


@dataclass(frozen=True)
class LayerSeries:
    """One trial's per-layer densities (fractions 0-1, in network order) and its legend label."""

    trial_id: str
    label: str
    densities: tuple[float, ...]


@dataclass(frozen=True)
class LayerDensityData:
    """What Fig. 2(b) draws: layer names (network order) and, per group (one panel each), bar series."""

    layers: tuple[str, ...]
    panels: tuple[tuple[str, tuple[LayerSeries, ...]], ...]


def _target_of(row: pd.Series) -> float:
    if "dnr.density" in row.index and pd.notna(row["dnr.density"]):
        return float(row["dnr.density"])
    return round(float(row["density"]), 3)


def layer_density_data(
    df: pd.DataFrame,
    trial_id: str | Sequence[str] | None = None,
    *,
    group_by: str | None = DEFAULT_GROUP_BY,
    select_by: str = "clean_acc",
) -> LayerDensityData:
    """Per-layer densities of chosen trials, grouped into one panel per pruning type.

    ``trial_id`` picks trials explicitly. By default, for each pruning type and each target density
    (``dnr.density``, else the measured ``density`` rounded to 3 places) the trial with the best
    ``select_by`` among finished, pruned trials; series ordered from the highest target density down.
    """
    layers = layer_columns(df.columns)
    if not layers:
        raise ValueError(f"layer_density needs '{LAYER_PREFIX}<layer>' columns; the table has none")
    _require(df, ["trial_id"], "layer_density")
    if not ("dnr.density" in df.columns or "density" in df.columns):
        raise ValueError("layer_density needs a 'dnr.density' or 'density' column to label trials")
    groups = group_labels(df, group_by)
    if trial_id is not None:
        wanted = [trial_id] if isinstance(trial_id, str) else list(trial_id)
        unknown = [t for t in wanted if t not in set(df["trial_id"].astype(str))]
        if unknown:
            raise ValueError(f"unknown trial_id(s) {unknown}; valid: {', '.join(df['trial_id'].astype(str))}")
        chosen = df[df["trial_id"].astype(str).isin(wanted)]
    else:
        _require(df, [select_by], "layer_density")
        ok = eligible_mask(df, [select_by, *layers]) & (groups != DENSE)
        candidates = df[ok]
        targets = candidates.apply(_target_of, axis=1) if len(candidates) else pd.Series(dtype=float)
        best = []
        for _, part in candidates.groupby([groups[ok], targets], sort=False):
            best.append(pd.to_numeric(part[select_by]).idxmax())
        chosen = df.loc[best]
    panels = []
    for group in group_order(groups[chosen.index].unique()):
        rows = chosen[groups[chosen.index] == group]
        rows = rows.assign(_target=[_target_of(r) for _, r in rows.iterrows()])
        rows = rows.sort_values(["_target", "trial_id"], ascending=[False, True], kind="mergesort")
        series = []
        for _, row in rows.iterrows():
            label = f"{row['_target'] * 100:g}% target"
            if "compression" in row.index and pd.notna(row["compression"]):
                label += f" ({row['compression']:.1f}×)"
            series.append(LayerSeries(str(row["trial_id"]), label, tuple(float(v) for v in row[layers])))
        panels.append((group, tuple(series)))
    names = tuple(c.removeprefix(LAYER_PREFIX) for c in layers)
    return LayerDensityData(names, tuple(panels))


@_styled
def layer_density(
    df: pd.DataFrame,
    trial_id: str | Sequence[str] | None = None,
    *,
    group_by: str | None = DEFAULT_GROUP_BY,
    select_by: str = "clean_acc",
) -> Figure:
    """Fig. 2(b): per-layer density (%) bars in network order, one panel per pruning type.

    Series within a panel are shades of the pruning type's colour, darker for sparser targets.
    """
    data = layer_density_data(df, trial_id, group_by=group_by, select_by=select_by)
    if not data.panels:
        raise ValueError("layer_density found no finished pruned trial to draw")
    n_layers = len(data.layers)
    width = float(np.clip(0.9 + 0.22 * n_layers, PANEL_WIDTH_IN, 2 * PANEL_WIDTH_IN))
    fig = Figure(figsize=(width, 1.9 * len(data.panels) + 0.5), layout="constrained")
    axes = fig.subplots(len(data.panels), 1, sharex=True, squeeze=False)[:, 0]
    styles = group_styles([g for g, _ in data.panels])
    positions = np.arange(n_layers)
    for ax, (group, series) in zip(axes, data.panels, strict=True):
        n = len(series)
        bar_w = 0.8 / max(n, 1)
        for j, s in enumerate(series):
            amount = 1.0 if n == 1 else 0.3 + 0.7 * j / (n - 1)
            ax.bar(
                positions - 0.4 + bar_w * (j + 0.5),
                np.array(s.densities) * 100.0,
                width=bar_w,
                color=_tint(styles[group][0], amount),
                edgecolor="none",
                label=s.label,
                gid=f"layer_density:{group}:{s.trial_id}",
            )
        ax.set_ylim(0, 105)
        ax.set_ylabel("Layer density (%)")
        ax.set_title(group, loc="left")
        ax.grid(True, axis="y")
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), title=None)
    axes[-1].set_xticks(positions)
    rotate = max(len(n) for n in data.layers) > 3
    axes[-1].set_xticklabels(data.layers, rotation=90 if rotate else 0, fontsize=6.5 if rotate else None)
    axes[-1].set_xlabel("Layer (network order)")
    axes[-1].set_xlim(-0.6, n_layers - 0.4)
    return fig


# ------------------------------------------------------------------------- Fig. 2(a): training curves


@dataclass(frozen=True)
class TrialCurve:
    """One trial's curves: ``series[column] = (epochs, values)`` (accuracies in %).

    Epochs where a column is NaN (e.g. robust accuracy evaluated only every few epochs) are left out, so
    the line joins the evaluations that exist instead of breaking into isolated points.
    """

    trial_id: str
    group: str
    series: Mapping[str, tuple[tuple[int, ...], tuple[float, ...]]]


@dataclass(frozen=True)
class TrainingCurvesData:
    """What Fig. 2(a) draws: the loss column, the accuracy columns and one curve per trial."""

    loss: str | None
    accuracies: tuple[str, ...]
    curves: tuple[TrialCurve, ...]


def training_curves_data(
    epochs_df: pd.DataFrame,
    *,
    group_by: str | None = DEFAULT_GROUP_BY,
    loss: str = "loss",
    accuracies: Sequence[str] = ("val_clean_acc", "val_pgd_acc"),
) -> TrainingCurvesData:
    """Per-trial loss and validation accuracy by epoch; a trial is dense when its last epoch is."""
    _require(epochs_df, ["trial_id", "epoch"], "training_curves")
    loss_col = loss if loss in epochs_df.columns else None
    accs = tuple(a for a in accuracies if a in epochs_df.columns)
    if loss_col is None and not accs:
        raise ValueError(
            f"training_curves needs {loss!r} or one of {list(accuracies)}; the table has: "
            f"{', '.join(map(str, epochs_df.columns))}"
        )
    ordered = epochs_df.sort_values(["trial_id", "epoch"], kind="mergesort")
    groups = group_labels(ordered, group_by if group_by in ordered.columns else None)
    curves = []
    for trial, part in ordered.groupby("trial_id", sort=True):
        group = str(groups[part.index[-1]])
        series = {}
        for c in ([loss_col] if loss_col else []) + list(accs):
            finite = part[part[c].notna()]  # epochs without that evaluation are skipped, not gaps
            series[c] = (tuple(int(e) for e in finite["epoch"]), tuple(finite[c].astype(float)))
        curves.append(TrialCurve(str(trial), group, series))
    return TrainingCurvesData(loss_col, accs, tuple(curves))


@_styled
def training_curves(
    epochs_df: pd.DataFrame,
    *,
    group_by: str | None = DEFAULT_GROUP_BY,
    loss: str = "loss",
    accuracies: Sequence[str] = ("val_clean_acc", "val_pgd_acc"),
) -> Figure:
    """Fig. 2(a): training loss and validation accuracy (%) per epoch, one line per trial.

    Lines are coloured by pruning type; their opacity falls with the number of trials so that many
    trials still read as a band. Accuracies are told apart by line style.
    """
    data = training_curves_data(epochs_df, group_by=group_by, loss=loss, accuracies=accuracies)
    panels = (["loss"] if data.loss else []) + (["acc"] if data.accuracies else [])
    fig = Figure(figsize=(PANEL_WIDTH_IN * len(panels), PANEL_HEIGHT_IN), layout="constrained")
    axes = dict(zip(panels, fig.subplots(1, len(panels), squeeze=False)[0], strict=True))
    order = group_order(c.group for c in data.curves)
    styles = group_styles(order)
    alpha = float(np.clip(4.0 / max(len(data.curves), 1), 0.15, 0.9))
    for curve in data.curves:
        color = styles[curve.group][0]
        if data.loss:
            axes["loss"].plot(
                *curve.series[data.loss],
                color=color,
                alpha=alpha,
                linewidth=1.0,
                gid=f"loss:{curve.trial_id}",
            )
        for i, acc in enumerate(data.accuracies):
            axes["acc"].plot(
                *curve.series[acc],
                color=color,
                alpha=alpha,
                linewidth=1.0,
                linestyle=METRIC_LINESTYLES[i % len(METRIC_LINESTYLES)],
                gid=f"acc:{acc}:{curve.trial_id}",
            )
    handles = [Line2D([], [], color=styles[g][0], label=g) for g in order]
    if data.loss:
        axes["loss"].set_xlabel("Epoch")
        axes["loss"].set_ylabel("Training loss")
        axes["loss"].legend(handles=handles, loc="upper right")
    if data.accuracies:
        axes["acc"].set_xlabel("Epoch")
        axes["acc"].set_ylabel("Validation accuracy (%)")
        style_handles = [
            Line2D(
                [],
                [],
                color="black",
                linestyle=METRIC_LINESTYLES[i % len(METRIC_LINESTYLES)],
                label=metric_label(a),
            )
            for i, a in enumerate(data.accuracies)
        ]
        axes["acc"].legend(handles=style_handles + ([] if data.loss else handles), loc="lower right")
    for ax in axes.values():
        ax.grid(True, axis="y")
        ax.xaxis.get_major_locator().set_params(integer=True)
    return fig


# ---------------------------------------------------------------------------- Fig. 4: attack strength


@dataclass(frozen=True)
class StrengthCurve:
    """One model's accuracy (%) against attack strength ``x`` (PGD steps, or eps in /255 units)."""

    label: str
    group: str | None
    x: tuple[float, ...]
    accuracy: tuple[float, ...]


@dataclass(frozen=True)
class AttackStrengthData:
    """What Fig. 4 draws: curves vs PGD steps and vs eps (x already in /255 units)."""

    steps: tuple[StrengthCurve, ...]
    eps: tuple[StrengthCurve, ...]


def attack_strength_data(
    curves: Mapping[str, Mapping[str, Mapping[Any, float]]], groups: Mapping[str, str] | None = None
) -> AttackStrengthData:
    """Sort each curve by strength and convert eps to /255 units (``eps * 255``).

    ``curves``: ``{label: {"steps": {steps: acc %}, "eps": {eps: acc %}}}`` (keys may be strings, as in
    ``attack_strength.json``). ``groups`` maps a label to its pruning type for colouring.
    """
    groups = dict(groups or {})
    out: dict[str, list[StrengthCurve]] = {"steps": [], "eps": []}
    for label, kinds in curves.items():
        unknown = set(kinds) - {"steps", "eps"}
        if unknown:
            raise ValueError(
                f"attack-strength curve {label!r} has unknown key(s) {sorted(unknown)}; valid: eps, steps"
            )
        for kind in ("steps", "eps"):
            points = sorted((float(k), float(v)) for k, v in (kinds.get(kind) or {}).items())
            if not points:
                continue
            scale = 255.0 if kind == "eps" else 1.0
            xs = tuple(p[0] * scale for p in points)
            group = groups.get(label, label if label in ("irregular", "channel", DENSE) else None)
            out[kind].append(StrengthCurve(str(label), group, xs, tuple(p[1] for p in points)))
    return AttackStrengthData(tuple(out["steps"]), tuple(out["eps"]))


@_styled
def attack_strength(
    curves: Mapping[str, Mapping[str, Mapping[Any, float]]], *, groups: Mapping[str, str] | None = None
) -> Figure:
    """Fig. 4: PGD accuracy (%) vs attack iterations and vs eps (/255), one line per model.

    Raises ValueError when ``curves`` holds no points (the figure is only drawn when data exists).
    """
    data = attack_strength_data(curves, groups)
    panels = [(k, c) for k, c in (("steps", data.steps), ("eps", data.eps)) if c]
    if not panels:
        raise ValueError("attack_strength needs at least one curve with 'steps' or 'eps' points")
    fig = Figure(figsize=(PANEL_WIDTH_IN * len(panels), PANEL_HEIGHT_IN), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    labels = list(dict.fromkeys(c.label for _, cs in panels for c in cs))
    keyed = {c.label: (c.group or c.label) for _, cs in panels for c in cs}
    styles = group_styles(group_order(set(keyed.values())))
    linestyles = {}
    for label in labels:  # several models of one pruning type: same colour, different line style
        same = [lab for lab in labels if keyed[lab] == keyed[label]]
        linestyles[label] = METRIC_LINESTYLES[same.index(label) % len(METRIC_LINESTYLES)]
    for ax, (kind, cs) in zip(axes, panels, strict=True):
        for c in cs:
            color, marker = styles[keyed[c.label]]
            ax.plot(
                c.x,
                c.accuracy,
                color=color,
                marker=marker,
                linestyle=linestyles[c.label],
                markersize=3.5,
                markeredgecolor="white",
                markeredgewidth=0.4,
                label=c.label,
                gid=f"{kind}:{c.label}",
            )
        ax.set_xlabel("PGD iterations" if kind == "steps" else "ε (/255)")
        ax.set_ylabel("Accuracy under PGD (%)")
        ax.grid(True, axis="y")
        xs = np.array([v for c in cs for v in c.x])
        if kind == "steps" and xs.min() > 0 and xs.max() / xs.min() >= 20:  # 1..100 steps: log reads better
            ax.set_xscale("log")
            ticks = [t for t in _TICK_LADDER if xs.min() <= t <= xs.max()]
            ax.xaxis.set_major_locator(FixedLocator(ticks))
            ax.set_xticklabels([f"{t:g}" for t in ticks])
            ax.xaxis.set_minor_locator(NullLocator())
    handles, names = axes[0].get_legend_handles_labels()
    # as many columns as fit the figure's width (about 0.065 in per character at these font sizes,
    # plus the line sample), so long labels wrap into rows instead of running off the page
    entry_in = 0.065 * max(len(n) for n in names) + 0.5
    ncols = max(1, min(len(names), int(PANEL_WIDTH_IN * len(panels) // entry_in)))
    fig.legend(handles, names, loc="outside lower center", ncols=ncols)
    return fig
