"""What each of the paper's figures shows, computed without drawing (no matplotlib here).

Each ``*_data`` function returns a small frozen object holding exactly the numbers its figure draws;
:mod:`reports.figures` only draws those objects, and tables import this side only. Anchor: optuna's
``visualization/_pareto_front.py`` (a pure function returns the front, the plot function draws it).

The accuracy figures draw from one :class:`reports.chooser.FrontChoice`, so every panel shows the
same configurations: the joint Pareto set chosen on validation figures, drawn with their test
figures (means over seeds with 95% confidence intervals).

* :func:`compression_accuracy_data` - Fig. 3(a/b): accuracy vs compression.
* :func:`channels_present_data` - Fig. 3(c): % channels present vs compression.
* :func:`layer_density_data` - Fig. 2(b): per-layer density of chosen configurations.
* :func:`training_curves_data` - Fig. 2(a): loss and selection-split accuracy per epoch.
* :func:`attack_strength_data` - Fig. 4: accuracy vs PGD steps and vs eps.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .chooser import FrontChoice, ranked
from .labels import DEFAULT_GROUP_BY, GROUP, SCOPE, SCOPE_SEPARATOR, group_labels, is_channel_mode
from .load import LAYER_PREFIX, layer_columns
from .protocol import VALIDATION, Protocol, tie_breaks
from .seeds import ci_column
from .style import DENSE, group_order

# ------------------------------------------------------------------------------------------ building blocks


@dataclass(frozen=True)
class Line:
    """One group's chosen configurations in one panel, in ``x`` order (means over seeds).

    ``ci[i]`` is the half-width of ``y[i]``'s 95% confidence interval over ``n_seeds[i]`` seeds,
    ``None`` for a configuration with a single seed (no interval drawn).
    """

    group: str
    configurations: tuple[str, ...]
    x: tuple[float, ...]
    y: tuple[float, ...]
    ci: tuple[float | None, ...]
    n_seeds: tuple[int, ...]

    @property
    def has_ci(self) -> bool:
        return any(c is not None for c in self.ci)


@dataclass(frozen=True)
class Points:
    """Every finished trial (one point per seed), drawn faintly behind the fronts."""

    x: tuple[float, ...]
    y: tuple[float, ...]
    groups: tuple[str, ...]


@dataclass(frozen=True)
class Reference:
    """The dense baseline's value in one panel: mean, 95% CI half-width (None: one seed), seeds."""

    configuration: str
    x: float
    value: float
    ci: float | None
    n_seeds: int


def _ci(value: Any) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def line_of(rows: pd.DataFrame, group: str, x: str, y: str, scale: float = 1.0) -> Line:
    """The configurations ``rows`` (means over seeds, in their order) as one :class:`Line` of ``y`` vs ``x``."""
    ok = rows[[x, y]].apply(pd.to_numeric, errors="coerce").notna().all(axis=1)
    rows = rows[ok]
    ci = rows[ci_column(y)] if ci_column(y) in rows.columns else pd.Series(np.nan, index=rows.index)
    return Line(
        group=group,
        configurations=tuple(str(v) for v in rows["configuration"]),
        x=tuple(float(v) for v in rows[x]),
        y=tuple(float(v) * scale for v in rows[y]),
        ci=tuple(None if pd.isna(c) else float(c) * scale for c in ci),
        n_seeds=tuple(int(n) for n in rows["n_seeds"]),
    )


def _points(trials: pd.DataFrame, x: str, y: str, scale: float = 1.0) -> Points:
    ok = trials[[x, y]].apply(pd.to_numeric, errors="coerce").notna().all(axis=1)
    rows = trials[ok]
    return Points(
        tuple(float(v) for v in rows[x]),
        tuple(float(v) * scale for v in rows[y]),
        tuple(str(g) for g in rows[GROUP]),
    )


def _reference(row: pd.Series | None, x: str, y: str, scale: float = 1.0) -> Reference | None:
    if row is None or y not in row.index or pd.isna(row[y]):
        return None
    ci = row.get(ci_column(y))
    return Reference(
        configuration=str(row["configuration"]),
        x=float(row[x]) if x in row.index and pd.notna(row[x]) else float("nan"),
        value=float(row[y]) * scale,
        ci=None if ci is None or pd.isna(ci) else float(ci) * scale,
        n_seeds=int(row["n_seeds"]),
    )


def _in_scope(df: pd.DataFrame, scope: str) -> pd.DataFrame:
    return df[df[SCOPE] == scope]


# --------------------------------------------------------------------------- Fig. 3(a/b): accuracy vs x


@dataclass(frozen=True)
class AccuracyPanel:
    """One panel of Fig. 3(a/b): one scope (model and dataset) and one test accuracy.

    ``fronts[group]`` are the group's joint-Pareto configurations (the same in every panel of the
    scope), ``points`` every finished trial, ``baseline`` the dense baseline's test value.
    """

    scope: str
    metric: str
    fronts: Mapping[str, Line]
    points: Points
    baseline: Reference | None


@dataclass(frozen=True)
class CompressionAccuracyData:
    """What Fig. 3(a/b) draws: a panel per (scope, metric), rows of scopes, columns of metrics.

    Attributes:
        x: the x column (``compression``).
        metrics: the test accuracies shown, one panel column each.
        scopes: one panel row each (``("",)`` for a single model and dataset).
        groups: the pruning groups, display order (``"dense"`` excluded).
        panels: ``(scope, metric) -> AccuracyPanel``.
        protocol: the split that chose (labelled on the figure for the paper protocol).
        chosen_on: what chose the Pareto sets, e.g. ``"compression (max), val_clean_acc (max)"``.
    """

    x: str
    metrics: tuple[str, ...]
    scopes: tuple[str, ...]
    groups: tuple[str, ...]
    panels: Mapping[tuple[str, str], AccuracyPanel]
    protocol: Protocol
    chosen_on: str


def compression_accuracy_data(selection: FrontChoice) -> CompressionAccuracyData:
    """Every panel's fronts, points and baseline, all from ``selection``'s one choice."""
    x = selection.x
    panels = {}
    for scope in selection.scopes:
        trials = _in_scope(selection.trials, scope)
        for metric in selection.metrics:
            fronts = {
                group: line_of(selection.fronts[(scope, group)], group, x, metric)
                for group in selection.groups
                if (scope, group) in selection.fronts
            }
            panels[(scope, metric)] = AccuracyPanel(
                scope, metric, fronts, _points(trials, x, metric),
                _reference(selection.baselines.get(scope), x, metric),
            )  # fmt: skip
    return CompressionAccuracyData(
        x, selection.metrics, selection.scopes, selection.groups, panels, selection.protocol,
        selection.chosen_on_text,
    )  # fmt: skip


# ------------------------------------------------------------------------- Fig. 3(c): channels present


@dataclass(frozen=True)
class ChannelsPanel:
    """One scope's Fig. 3(c): channels present (%) of each group's Pareto set, and of every trial.

    ``fronts[group]`` has ``x`` = compression and ``y`` = channels present in % (CI in %);
    ``baseline`` is the dense baseline; ``speedups`` holds ``(compression, channels %, speedup)`` of
    the channel-mode front configurations whose measured CPU speedup is known (``export: true``).
    """

    scope: str
    fronts: Mapping[str, Line]
    points: Points
    baseline: Reference | None
    speedups: tuple[tuple[float, float, float], ...] = ()


@dataclass(frozen=True)
class ChannelsPresentData:
    """What Fig. 3(c) draws: one panel per scope, the same configurations as Fig. 3(a/b)."""

    groups: tuple[str, ...]
    panels: Mapping[str, ChannelsPanel]
    protocol: Protocol
    chosen_on: str


def channels_present_data(selection: FrontChoice) -> ChannelsPresentData:
    """Channels present (%) of the report's Pareto sets (the ones Fig. 3(a/b) draws) and of all trials.

    Speedup labels are kept for channel modes (``channel``, ``channel_group``, ...): only they remove
    whole channels, so only their measured ``speedup_cpu`` means what the label says.
    """
    for column in ("compression", "channels_present"):
        if column not in selection.configurations.columns:
            raise ValueError(
                f"channels_present needs column {column!r}; the table has: "
                f"{', '.join(map(str, selection.configurations.columns))}"
            )
    panels = {}
    for scope in selection.scopes:
        fronts, speedups = {}, []
        for group in selection.groups:
            if (scope, group) not in selection.fronts:
                continue
            rows = selection.fronts[(scope, group)]
            line = line_of(rows, group, "compression", "channels_present", scale=100.0)
            fronts[group] = line
            if is_channel_mode(group) and "speedup_cpu" in rows.columns:
                by_config = dict(zip(rows["configuration"].astype(str), rows["speedup_cpu"], strict=True))
                speedups += [(x, y, float(by_config[c])) for c, x, y in zip(line.configurations, line.x, line.y,
                             strict=True) if pd.notna(by_config[c])]  # fmt: skip
        trials = _in_scope(selection.trials, scope)
        panels[scope] = ChannelsPanel(
            scope, fronts, _points(trials, "compression", "channels_present", scale=100.0),
            _reference(selection.baselines.get(scope), "compression", "channels_present", scale=100.0),
            tuple(speedups),
        )  # fmt: skip
    return ChannelsPresentData(selection.groups, panels, selection.protocol, selection.chosen_on_text)


# ------------------------------------------------------------------------ Fig. 2(b): per-layer density


@dataclass(frozen=True)
class LayerSeries:
    """One configuration's per-layer densities (fractions 0-1, network order; seed means) and label."""

    configuration: str
    label: str
    densities: tuple[float, ...]
    n_seeds: int = 1


@dataclass(frozen=True)
class LayerPanel:
    """One panel of Fig. 2(b): a pruning group (in a scope) and its layers in network order."""

    title: str
    group: str
    layers: tuple[str, ...]
    series: tuple[LayerSeries, ...]


@dataclass(frozen=True)
class LayerDensityData:
    """What Fig. 2(b) draws: one bar panel per pruning group (and scope)."""

    panels: tuple[LayerPanel, ...]
    protocol: Protocol


def _target_of(row: pd.Series) -> float:
    if "dnr.density" in row.index and pd.notna(row["dnr.density"]):
        return float(row["dnr.density"])
    return round(float(row["density"]), 3)


def layer_density_data(selection: FrontChoice, trial_id: str | Sequence[str] | None = None) -> LayerDensityData:
    """Per-layer densities of chosen configurations, one panel per pruning group and scope.

    ``trial_id`` picks finished trials explicitly (each drawn on its own). By default, for each group
    and each target density (``dnr.density``, else the measured ``density`` rounded to 3 places) the
    pruned configuration with the best :attr:`FrontChoice.baseline_on` figure (validation: only
    validation chooses); series ordered from the highest target density down.
    """
    table = selection.configurations
    layers_all = layer_columns(table.columns)
    if not layers_all:
        raise ValueError(f"layer_density needs '{LAYER_PREFIX}<layer>' columns; the table has none")
    if not ("dnr.density" in table.columns or "density" in table.columns):
        raise ValueError("layer_density needs a 'dnr.density' or 'density' column to label trials")
    if trial_id is not None:
        wanted = [trial_id] if isinstance(trial_id, str) else list(trial_id)
        trials = selection.trials
        known = set(trials["trial_id"].astype(str))
        unknown = [t for t in wanted if t not in known]
        if unknown:
            raise ValueError(f"unknown or unfinished trial_id(s) {unknown}; valid: {', '.join(sorted(known))}")
        chosen = trials[trials["trial_id"].astype(str).isin(wanted)].assign(
            configuration=lambda d: d["trial_id"].astype(str), n_seeds=1
        )
    else:
        select_by = selection.baseline_on
        if select_by is None:
            raise ValueError("layer_density needs a selection figure (e.g. val_clean_acc) to choose trials by")
        candidates = table[(table[GROUP] != DENSE) & pd.to_numeric(table[select_by], errors="coerce").notna()]
        best = []
        if len(candidates):
            targets = candidates.apply(_target_of, axis=1)
            for _, part in candidates.groupby([candidates[SCOPE], candidates[GROUP], targets], sort=False):
                best.append(ranked(part, select_by, ties=tie_breaks(select_by, selection.protocol.split)).index[0])
        chosen = table.loc[best]
    panels = []
    for scope in selection.scopes:
        in_scope = chosen[chosen[SCOPE] == scope]
        for group in group_order(in_scope[GROUP].unique()):
            rows = in_scope[in_scope[GROUP] == group]
            layers = [c for c in layers_all if rows[c].notna().any()]
            rows = rows[rows[layers].notna().all(axis=1)] if layers else rows.iloc[:0]
            if rows.empty:
                continue
            rows = rows.assign(_target=[_target_of(r) for _, r in rows.iterrows()])
            rows = rows.sort_values(["_target", "configuration"], ascending=[False, True], kind="mergesort")
            series = []
            for _, row in rows.iterrows():
                label = f"{row['_target'] * 100:g}% target"
                if "compression" in row.index and pd.notna(row["compression"]):
                    label += f" ({row['compression']:.1f}×)"
                n = int(row["n_seeds"])
                if n > 1:
                    label += f", {n} seeds"
                densities = tuple(float(v) for v in row[layers])
                series.append(LayerSeries(str(row["configuration"]), label, densities, n))
            title = group if not scope else f"{group}{SCOPE_SEPARATOR}{scope}"
            names = tuple(c.removeprefix(LAYER_PREFIX) for c in layers)
            panels.append(LayerPanel(title, group, names, tuple(series)))
    return LayerDensityData(tuple(panels), selection.protocol)


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
    """What Fig. 2(a) draws: the loss column, the accuracy columns, one curve per trial, the split."""

    loss: str | None
    accuracies: tuple[str, ...]
    curves: tuple[TrialCurve, ...]
    protocol: Protocol = VALIDATION


def training_curves_data(
    epochs_df: pd.DataFrame,
    *,
    group_by: str | None = DEFAULT_GROUP_BY,
    loss: str = "loss",
    accuracies: Sequence[str] = ("val_clean_acc", "val_pgd_acc"),
    protocol: Protocol = VALIDATION,
) -> TrainingCurvesData:
    """Per-trial loss and selection-split accuracy by epoch; a trial is dense when its last epoch is."""
    for needed in ("trial_id", "epoch"):
        if needed not in epochs_df.columns:
            raise ValueError(
                f"training_curves needs column {needed!r}; the table has: {', '.join(map(str, epochs_df.columns))}"
            )
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
    return TrainingCurvesData(loss_col, accs, tuple(curves), protocol)


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
            raise ValueError(f"attack-strength curve {label!r} has unknown key(s) {sorted(unknown)}; valid: eps, steps")
        for kind in ("steps", "eps"):
            points = sorted((float(k), float(v)) for k, v in (kinds.get(kind) or {}).items())
            if not points:
                continue
            scale = 255.0 if kind == "eps" else 1.0
            xs = tuple(p[0] * scale for p in points)
            group = groups.get(label, label if label in ("irregular", "channel", DENSE) else None)
            out[kind].append(StrengthCurve(str(label), group, xs, tuple(p[1] for p in points)))
    return AttackStrengthData(tuple(out["steps"]), tuple(out["eps"]))


#: more curves than this (seeds, betas) are averaged per label
MAX_STRENGTH_CURVES = 8


def labelled_strength_curves(
    curves: Mapping[str, Any], results: pd.DataFrame, group_by: str | None
) -> tuple[dict[str, Any], dict[str, str]]:
    """Fig. 4's curves relabelled ``"<pruning>, <d>% density"`` (mean curves when there are many).

    Returns ``(curves by label, label -> pruning group)``. Beyond :data:`MAX_STRENGTH_CURVES` curves,
    the curves sharing a label are averaged and labelled ``"... (mean of n)"``.
    """
    if len(curves) <= MAX_STRENGTH_CURVES:
        labels, groups = _strength_labels(curves, results, group_by)
        return {labels[k]: v for k, v in curves.items()}, groups
    labels, groups = _strength_labels(curves, results, group_by, unique=False)
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
            parts = (kind, f"{float(density) * 100:g}% density" if pd.notna(density) else None)
            label = ", ".join(p for p in parts if p) or key
            if unique and label in labels.values():
                label = f"{label} ({key})"
            if kind:
                groups[label] = kind
        labels[key] = label
    return labels, groups
