"""Draw the paper's figures from the objects of :mod:`reports.figure_data` and :mod:`reports.methods`.

Every function here takes one data object and only draws it: no choice of trials, no aggregation.
Drawn artists carry a ``gid`` (e.g. ``"front:clean_acc:irregular"``, ``"ci:pgd_acc:channel"``,
``"baseline:clean_acc"``; with several models or datasets the scope follows the metric,
``"front:clean_acc:vgg16:irregular"``) so tests can find and assert them. Each function returns a
:class:`matplotlib.figure.Figure` built without pyplot, so nothing global changes.

* :func:`compression_accuracy` - Fig. 3(a/b): test accuracy vs compression of the Pareto sets.
* :func:`channels_present` - Fig. 3(c): % channels present vs compression.
* :func:`layer_density` - Fig. 2(b): per-layer density of chosen configurations.
* :func:`training_curves` - Fig. 2(a): loss and selection-split accuracy per epoch.
* :func:`attack_strength` - Fig. 4: accuracy vs PGD steps and vs eps.
* :func:`methods` - Table 2's methods side by side: accuracy vs compression, one colour per method.

Configurations with several seeds are drawn at their mean with a 95% confidence interval (error
bars; a shaded band for the dense baseline); a single seed is drawn as a plain point. Figures of a
``select_on: test`` run say "selected on test (paper protocol)".
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ParamSpec, TypeVar

import matplotlib as mpl
import numpy as np
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

from dnr_sweep.foundation.run_contract import is_test_metric

from .figure_data import (
    AttackStrengthData,
    ChannelsPresentData,
    CompressionAccuracyData,
    LayerDensityData,
    Line,
    Points,
    Reference,
    TrainingCurvesData,
)
from .labels import SCOPE_SEPARATOR
from .methods import MethodsFigureData
from .protocol import Protocol
from .style import (
    DENSE,
    METRIC_LINESTYLES,
    METRIC_MARKERS,
    PANEL_HEIGHT_IN,
    PANEL_WIDTH_IN,
    RC,
    group_order,
    group_styles,
    method_styles,
    metric_label,
)

_TICK_LADDER = tuple(m * 10.0**e for e in range(-1, 5) for m in (1, 2, 5))
CI_LABEL = "95% CI over seeds"

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


def _gid(*parts: str) -> str:
    """``"front:clean_acc:irregular"``; empty parts (a single scope) are left out."""
    return ":".join(p for p in parts if p)


def _label_protocol(fig: Figure, protocol: Protocol) -> None:
    """The paper protocol's numbers are labelled wherever they appear (a validation run needs no label)."""
    if protocol.paper:
        fig.suptitle(protocol.label, fontsize=7.5, color="0.25", gid="protocol")


def _draw_points(ax: Any, points: Points, styles: Mapping[str, tuple[str, str]], gid: str) -> None:
    ax.scatter(points.x, points.y, s=9, c=[styles[g][0] for g in points.groups] or None, alpha=0.25,
               linewidths=0, zorder=2, gid=gid)  # fmt: skip


def _draw_line(ax: Any, line: Line, color: str, marker: str, gid: str, ci_gid: str, linestyle: str = "-") -> None:
    """The configurations joined in ``x`` order; error bars (95% CI) where a configuration has seeds."""
    ax.plot(line.x, line.y, color=color, linestyle=linestyle, marker=marker, markersize=3.5,
            markeredgecolor="white", markeredgewidth=0.4, zorder=3, label=line.group, gid=gid)  # fmt: skip
    with_ci = [i for i, c in enumerate(line.ci) if c is not None]
    if with_ci:
        bars = ax.errorbar(
            [line.x[i] for i in with_ci],
            [line.y[i] for i in with_ci],
            yerr=[line.ci[i] for i in with_ci],
            fmt="none",
            ecolor=color,
            elinewidth=0.8,
            capsize=1.8,
            capthick=0.8,
            zorder=3,
        )
        bars.lines[2][0].set_gid(ci_gid)


def _draw_baseline(ax: Any, ref: Reference, color: str, gid: str, ci_gid: str, linestyle: str = "--") -> None:
    ax.axhline(ref.value, color=color, linestyle=linestyle, linewidth=0.9, zorder=1, gid=gid)
    if ref.ci is not None:
        ax.axhspan(ref.value - ref.ci, ref.value + ref.ci, color=color, alpha=0.12, linewidth=0, zorder=0,
                   gid=ci_gid)  # fmt: skip


def _legend_below(fig: Figure, handles: Sequence[Any], names: Sequence[str]) -> None:
    """A legend under the panels with as many columns as fit the figure's width.

    About 0.065 in per character at these font sizes, plus the line sample: long labels wrap into
    rows instead of running off the page.
    """
    entry_in = 0.065 * max(len(n) for n in names) + 0.5
    ncols = max(1, min(len(names), int(fig.get_size_inches()[0] // entry_in)))
    fig.legend(handles, names, loc="outside lower center", ncols=ncols, handlelength=2.2)


def _has_ci(lines: Sequence[Line], refs: Sequence[Reference | None]) -> bool:
    return any(line.has_ci for line in lines) or any(r is not None and r.ci is not None for r in refs)


def _ci_handle() -> Line2D:
    return Line2D([], [], color="0.35", marker="|", markersize=7, markeredgewidth=0.8, linestyle="none",
                  label=CI_LABEL)  # fmt: skip


# --------------------------------------------------------------------------- Fig. 3(a/b): accuracy vs x


@_styled
def compression_accuracy(data: CompressionAccuracyData, *, combined: bool = False) -> Figure:
    """Fig. 3(a/b): test accuracy (%) vs compression (log x, 1x/2x/5x... ticks), a panel per accuracy.

    Per pruning type: its Pareto set (chosen once, jointly, on validation figures) joined in
    compression order, the same configurations in every panel, over all finished trials as faint
    points; the dense baseline as a dashed line. A sweep over several models or datasets draws one
    row of panels each. ``combined=True`` draws all accuracies of a scope on one axes, told apart by
    line style and marker (the colour stays the pruning type).
    """
    styles = group_styles(list(data.groups) + [DENSE])
    n_cols = 1 if combined else len(data.metrics)
    n_rows = len(data.scopes)
    fig = Figure(figsize=(PANEL_WIDTH_IN * n_cols, PANEL_HEIGHT_IN * n_rows), layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    all_x = [1.0]
    for panel in data.panels.values():
        all_x += list(panel.points.x) + [v for line in panel.fronts.values() for v in line.x]
    shown_test = all(is_test_metric(m) for m in data.metrics)
    ci_drawn = False
    for row, scope in enumerate(data.scopes):
        for i, metric in enumerate(data.metrics):
            ax = axes[row, 0 if combined else i]
            panel = data.panels[(scope, metric)]
            _draw_points(ax, panel.points, styles, _gid("trials", metric, scope))
            linestyle = METRIC_LINESTYLES[i % len(METRIC_LINESTYLES)] if combined else "-"
            for group in data.groups:
                if group not in panel.fronts:
                    continue
                color, marker = styles[group]
                marker = METRIC_MARKERS[i % len(METRIC_MARKERS)] if combined else marker
                _draw_line(ax, panel.fronts[group], color, marker, _gid("front", metric, scope, group),
                           _gid("ci", metric, scope, group), linestyle)  # fmt: skip
            if panel.baseline is not None:
                _draw_baseline(ax, panel.baseline, styles[DENSE][0], _gid("baseline", metric, scope),
                               _gid("baseline_ci", metric, scope), linestyle="--" if not combined else linestyle)  # fmt: skip
            ci_drawn |= _has_ci(list(panel.fronts.values()), [panel.baseline])
            if data.x == "compression":
                _set_compression_axis(ax, np.array(all_x, dtype=float))
            else:
                ax.set_xlabel(_x_label(data.x))
            ax.set_ylabel("Test accuracy (%)" if shown_test else "Accuracy (%)")
            title = scope if combined else metric_label(metric)
            if scope and not combined:
                title = f"{scope}{SCOPE_SEPARATOR}{title}"
            if title:
                ax.set_title(title)
            ax.grid(True, axis="y")
    has_baseline = any(p.baseline is not None for p in data.panels.values())
    _compression_legend(fig, data, styles, combined, has_baseline, ci_drawn)
    _label_protocol(fig, data.protocol)
    return fig


def _compression_legend(
    fig: Figure,
    data: CompressionAccuracyData,
    styles: Mapping[str, tuple[str, str]],
    combined: bool,
    baseline: bool,
    ci: bool,
) -> None:
    handles = [
        Line2D([], [], color=styles[g][0], marker=None if combined else styles[g][1], markersize=3.5,
               markeredgecolor="white", markeredgewidth=0.4, label=g)
        for g in data.groups
    ]  # fmt: skip
    if combined:
        handles += [
            Line2D([], [], color="black", linestyle=METRIC_LINESTYLES[i % len(METRIC_LINESTYLES)],
                   marker=METRIC_MARKERS[i % len(METRIC_MARKERS)], markersize=3.5, label=metric_label(m))
            for i, m in enumerate(data.metrics)
        ]  # fmt: skip
    if baseline:
        handles.append(Line2D([], [], color=styles[DENSE][0], linestyle="--", linewidth=0.9, label="dense baseline"))
    if ci:
        handles.append(_ci_handle())
    if handles:  # below the panels: a joint Pareto set's lines zig-zag, a legend inside would cover them
        _legend_below(fig, handles, [str(h.get_label()) for h in handles])


# ------------------------------------------------------------------------- Fig. 3(c): channels present


@_styled
def channels_present(data: ChannelsPresentData) -> Figure:
    """Fig. 3(c): % of input channels present vs compression (log x), one line per pruning type.

    The lines join the same configurations as Fig. 3(a/b); channel modes' front configurations are
    labelled with their measured CPU speedup when ``export: true`` ran.
    """
    styles = group_styles(list(data.groups) + [DENSE])
    scopes = list(data.panels)
    fig = Figure(figsize=(PANEL_WIDTH_IN * len(scopes), PANEL_HEIGHT_IN), layout="constrained")
    axes = fig.subplots(1, len(scopes), squeeze=False)[0]
    for ax, scope in zip(axes, scopes, strict=True):
        panel = data.panels[scope]
        _draw_points(ax, panel.points, styles, _gid("trials", "channels_present", scope))
        for group, line in panel.fronts.items():
            color, marker = styles[group]
            _draw_line(ax, line, color, marker, _gid("front", "channels_present", scope, group),
                       _gid("ci", "channels_present", scope, group))  # fmt: skip
        if panel.baseline is not None:
            ax.plot([panel.baseline.x], [panel.baseline.value], linestyle="none", color=styles[DENSE][0],
                    marker=styles[DENSE][1], markersize=4, zorder=4, label="dense baseline",
                    gid=_gid("baseline", "channels_present", scope))  # fmt: skip
        for x, y, speedup in panel.speedups:  # measured after physically removing the dead channels
            ax.annotate(f"{speedup:.1f}× CPU", (x, y), xytext=(3, 4), textcoords="offset points", fontsize=6.5,
                        color="0.25", gid="speedup")  # fmt: skip
        xs = list(panel.points.x) + [v for line in panel.fronts.values() for v in line.x] + [1.0]
        _set_compression_axis(ax, np.array(xs, dtype=float))
        ax.set_ylim(0, 105)
        ax.set_ylabel("Channels present (%)")
        if scope:
            ax.set_title(scope)
        ax.grid(True, axis="y")
        handles, _ = ax.get_legend_handles_labels()
        if _has_ci(list(panel.fronts.values()), []):
            handles.append(_ci_handle())
        ax.legend(handles=handles, loc="lower left")
    _label_protocol(fig, data.protocol)
    return fig


# ------------------------------------------------------------------------ Fig. 2(b): per-layer density


@_styled
def layer_density(data: LayerDensityData) -> Figure:
    """Fig. 2(b): per-layer density (%) bars in network order, one panel per pruning type.

    Series within a panel are shades of the pruning type's colour, darker for sparser targets.
    """
    if not data.panels:
        raise ValueError("layer_density found no finished pruned trial to draw")
    n_layers = max(len(p.layers) for p in data.panels)
    shared = len({p.layers for p in data.panels}) == 1
    width = float(np.clip(0.9 + 0.22 * n_layers, PANEL_WIDTH_IN, 2 * PANEL_WIDTH_IN))
    fig = Figure(figsize=(width, 1.9 * len(data.panels) + 0.5), layout="constrained")
    axes = fig.subplots(len(data.panels), 1, sharex=shared, squeeze=False)[:, 0]
    styles = group_styles(group_order(p.group for p in data.panels))
    for k, (ax, panel) in enumerate(zip(axes, data.panels, strict=True)):
        positions = np.arange(len(panel.layers))
        n = len(panel.series)
        bar_w = 0.8 / max(n, 1)
        for j, s in enumerate(panel.series):
            amount = 1.0 if n == 1 else 0.3 + 0.7 * j / (n - 1)
            ax.bar(positions - 0.4 + bar_w * (j + 0.5), np.array(s.densities) * 100.0, width=bar_w,
                   color=_tint(styles[panel.group][0], amount), edgecolor="none", label=s.label,
                   gid=f"layer_density:{panel.title}:{s.configuration}")  # fmt: skip
        ax.set_ylim(0, 105)
        ax.set_ylabel("Layer density (%)")
        ax.set_title(panel.title, loc="left")
        ax.grid(True, axis="y")
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), title=None)
        if not shared or k == len(data.panels) - 1:
            ax.set_xticks(positions)
            rotate = max(len(name) for name in panel.layers) > 3
            ax.set_xticklabels(panel.layers, rotation=90 if rotate else 0, fontsize=6.5 if rotate else None)
            ax.set_xlim(-0.6, len(panel.layers) - 0.4)
    axes[-1].set_xlabel("Layer (network order)")
    _label_protocol(fig, data.protocol)
    return fig


# ------------------------------------------------------------------------- Fig. 2(a): training curves


@_styled
def training_curves(data: TrainingCurvesData) -> Figure:
    """Fig. 2(a): training loss and selection-split accuracy (%) per epoch, one line per trial.

    Lines are coloured by pruning type; their opacity falls with the number of trials so that many
    trials still read as a band. Accuracies are told apart by line style.
    """
    panels = (["loss"] if data.loss else []) + (["acc"] if data.accuracies else [])
    fig = Figure(figsize=(PANEL_WIDTH_IN * len(panels), PANEL_HEIGHT_IN), layout="constrained")
    axes = dict(zip(panels, fig.subplots(1, len(panels), squeeze=False)[0], strict=True))
    order = group_order(c.group for c in data.curves)
    styles = group_styles(order)
    alpha = float(np.clip(4.0 / max(len(data.curves), 1), 0.15, 0.9))
    for curve in data.curves:
        color = styles[curve.group][0]
        if data.loss:
            axes["loss"].plot(*curve.series[data.loss], color=color, alpha=alpha, linewidth=1.0,
                              gid=f"loss:{curve.trial_id}")  # fmt: skip
        for i, acc in enumerate(data.accuracies):
            axes["acc"].plot(*curve.series[acc], color=color, alpha=alpha, linewidth=1.0,
                             linestyle=METRIC_LINESTYLES[i % len(METRIC_LINESTYLES)],
                             gid=f"acc:{acc}:{curve.trial_id}")  # fmt: skip
    handles = [Line2D([], [], color=styles[g][0], label=g) for g in order]
    if data.loss:
        axes["loss"].set_xlabel("Epoch")
        axes["loss"].set_ylabel("Training loss")
        axes["loss"].legend(handles=handles, loc="upper right")
    if data.accuracies:
        axes["acc"].set_xlabel("Epoch")
        split = "Test" if all(a.startswith("test_") for a in data.accuracies) else "Validation"
        axes["acc"].set_ylabel(f"{split} accuracy (%)")
        style_handles = [
            Line2D([], [], color="black", linestyle=METRIC_LINESTYLES[i % len(METRIC_LINESTYLES)],
                   label=metric_label(a))
            for i, a in enumerate(data.accuracies)
        ]  # fmt: skip
        axes["acc"].legend(handles=style_handles + ([] if data.loss else handles), loc="lower right")
    for ax in axes.values():
        ax.grid(True, axis="y")
        ax.xaxis.get_major_locator().set_params(integer=True)
    _label_protocol(fig, data.protocol)
    return fig


# ---------------------------------------------------------------------------- Fig. 4: attack strength


@_styled
def attack_strength(data: AttackStrengthData) -> Figure:
    """Fig. 4: PGD accuracy (%) vs attack iterations and vs eps (/255), one line per model.

    Raises ValueError when ``data`` holds no points (the figure is only drawn when data exists).
    """
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
            ax.plot(c.x, c.accuracy, color=color, marker=marker, linestyle=linestyles[c.label], markersize=3.5,
                    markeredgecolor="white", markeredgewidth=0.4, label=c.label, gid=f"{kind}:{c.label}")  # fmt: skip
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
    _legend_below(fig, handles, names)
    return fig


# ----------------------------------------------------------------------- methods side by side (Table 2)


@_styled
def methods(data: MethodsFigureData) -> Figure:
    """Compression (log x) vs test accuracy, a panel per accuracy (a row per scope), one colour per
    method (:data:`reports.style.METHOD_COLORS`): each method's validation front joined in compression
    order with 95% CI error bars where a configuration has seeds, over its trials as faint points."""
    styles = method_styles(data.labels)
    n_rows, n_cols = len(data.scopes), len(data.metrics)
    fig = Figure(figsize=(PANEL_WIDTH_IN * n_cols, PANEL_HEIGHT_IN * n_rows), layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    all_x = [1.0] + [
        v for p in data.panels.values() for v in (*p.points.x, *(x for f in p.fronts.values() for x in f.x))
    ]
    ci_drawn = False
    for row, scope in enumerate(data.scopes):
        for col, metric in enumerate(data.metrics):
            ax, panel = axes[row, col], data.panels[(scope, metric)]
            _draw_points(ax, panel.points, styles, _gid("trials", metric, scope))
            for label, line in panel.fronts.items():
                color, marker = styles[label]
                _draw_line(
                    ax, line, color, marker, _gid("method", metric, scope, label), _gid("ci", metric, scope, label)
                )
            ci_drawn |= _has_ci(list(panel.fronts.values()), [])
            _set_compression_axis(ax, np.array(all_x, dtype=float))
            ax.set_ylabel("Test accuracy (%)")
            title = f"{metric_label(metric)} (fronts on {panel.chosen_on})"
            ax.set_title(f"{scope}{SCOPE_SEPARATOR}{title}" if scope else title)
            ax.grid(True, axis="y")
    handles: list[Any] = [Line2D([], [], color=styles[label][0], marker=styles[label][1], markersize=3.5,
                                 markeredgecolor="white", markeredgewidth=0.4, label=label) for label in data.labels]  # fmt: skip
    if ci_drawn:
        handles.append(_ci_handle())
    _legend_below(fig, handles, [str(h.get_label()) for h in handles])
    _label_protocol(fig, data.protocol)
    return fig


# ------------------------------------------------------------------- comparing runs: hypervolume curves


@_styled
def hypervolume_curves(data: Any) -> Figure:
    """Hypervolume of each run's validation front against the trial-epochs it consumed.

    ``data`` is a :class:`reports.compare.HypervolumeData`; one step line per run, ending at the
    run's total cost, so a search that finds the grid's front for a third of the compute shows it.
    """
    fig = Figure(figsize=(PANEL_WIDTH_IN * 1.4, PANEL_HEIGHT_IN), layout="constrained")
    ax = fig.subplots()
    styles = group_styles([c.label for c in data.curves])
    for curve in data.curves:
        color, marker = styles[curve.label]
        xs = (0.0, *curve.trial_epochs)
        ys = (0.0, *curve.hypervolume)
        ax.step(xs, ys, where="post", color=color, label=curve.label, gid=f"hypervolume:{curve.label}")
        ax.plot(xs[-1:], ys[-1:], marker=marker, color=color, linestyle="none")
    objectives = ", ".join(f"{k} ({v})" for k, v in data.objectives.items())
    reference = ", ".join(f"{k} {v:g}" for k, v in data.reference.items())
    ax.set_xlabel("Trial-epochs consumed")
    ax.set_ylabel("Validation hypervolume")
    ax.set_title(f"{objectives}\nreference: {reference}", fontsize="small")
    ax.grid(True, axis="y")
    ax.legend(loc="lower right")
    return fig
