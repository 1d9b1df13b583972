"""The one chooser: which trials are finished, which configurations form a front, which represent a method.

Every output of a run reads what this module decides, and nothing else decides it: the terminal
summary of ``dnr-sweep run``, ``pareto.csv``/``pareto.tex``, ``index.html``, the figures,
``table2.csv``/``table2.tex`` and the methods figure, for one run or several compared.

* **finished** (:func:`finished_mask`): ``status == "TERMINATED"`` (when the column exists) and not
  ``early_stopped`` (a missing value counts as stopped); nothing else ever enters a choice;
* trials that differ only in ``train.seed`` are one **configuration** (:mod:`reports.seeds`: means,
  95% CI, seed count); every choice is among configurations, on their seed means;
* **fronts** (:func:`select`): per scope and group, the configurations no other dominates on the
  selection twins of the report's objectives (:mod:`reports.protocol`); the **dense baseline**: the
  dense configuration with the best selection twin of the first ``y``;
* **best** (:func:`ranked`): by one selection figure, ties by the other selection accuracies
  (:func:`reports.protocol.tie_breaks`), then more seeds, then the smallest trial id: never by order;
* **Table 2** (:func:`choose_methods`): per scope and method label, the best pruned configuration
  by the method's ``select_metric`` among those within :data:`MATCH_TOLERANCE` of a reference
  compression; a method with none there gets its best configuration, marked not matched.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from dnr_sweep.foundation.run_contract import (
    SELECTION_SPLITS,
    TEST_METRICS,
    TEST_SELECTION_METRICS,
    VAL_METRICS,
    default_select_metric,
)

from .labels import (
    GROUP,
    METHOD_LABEL,
    METHOD_ORDER,
    SCOPE,
    group_labels,
    method_labels,
    scope_columns,
    scope_labels,
)
from .pareto import Direction, pareto_front
from .protocol import (
    DEFAULT_Y,
    Protocol,
    accuracy_columns,
    reported,
    selection_column,
    selection_objectives,
    tie_breaks,
)
from .seeds import N_SEEDS, TRIAL_IDS, aggregate_seeds
from .settings import ReportSettings, prepare
from .style import DENSE, group_order

FINISHED = "TERMINATED"
#: Table 2's matched compression: within this fraction of the reference compression, either side
MATCH_TOLERANCE = 0.10
#: the compression column every method is matched on
COMPRESSION = "compression"
#: columns :func:`choose_methods` adds to its chosen rows
CHOSEN_ON = "chosen_on"
MATCHED = "matched"
REFERENCE = "reference_compression"

# ------------------------------------------------------------------------------------ which trials count


def finished_mask(df: pd.DataFrame) -> pd.Series:
    """Trials that finished: ``status == "TERMINATED"`` (when the column exists) and not stopped early."""
    ok = pd.Series(True, index=df.index)
    if "status" in df.columns:
        ok &= df["status"].astype(str) == FINISHED
    if "early_stopped" in df.columns:
        ok &= ~df["early_stopped"].fillna(True).astype(bool)
    return ok


def selection_split(df: pd.DataFrame) -> str:
    """The split the finished trials were selected on (their ``selected_on``), ``"val"`` by default.

    Without a ``selected_on`` column: ``"test"`` when the table has the paper protocol's
    ``test_*_acc`` figures and no ``val_*_acc`` ones.

    Raises:
        ValueError: the trials were selected on different splits, or on an unknown one.
    """
    if "selected_on" in df.columns:
        values = set(df.loc[finished_mask(df), "selected_on"].dropna().astype(str))
        unknown = sorted(values - set(SELECTION_SPLITS))
        if unknown:
            raise ValueError(f"unknown selected_on value(s) {unknown}; valid: {', '.join(SELECTION_SPLITS)}")
        if len(values) > 1:
            raise ValueError(
                "the finished trials were selected on different splits (selected_on: val and test); their "
                "figures cannot share a Pareto set: report the val and the test runs separately"
            )
        if values:
            return values.pop()
    has_test = any(c in df.columns for c in TEST_SELECTION_METRICS)
    has_val = any(c in df.columns for c in VAL_METRICS)
    return "test" if has_test and not has_val else "val"


def check_report_columns(df: pd.DataFrame, x: str, y: Sequence[str]) -> None:
    """Raise ``ValueError`` when ``x`` or a ``y`` metric is a column no trial reports.

    A column that exists but is empty only counts as missing once some trial finished (a live report
    of a running sweep has no test figures yet).
    """
    any_finished = bool(finished_mask(df).any())

    def missing(column: str) -> bool:
        return column not in df.columns or (any_finished and not reported(df, column))

    bad = [m for m in y if missing(m)]
    if bad:
        valid = accuracy_columns(df)
        raise ValueError(
            f"report y (report.y / --y) names {', '.join(map(repr, bad))}, which no trial reports; "
            f"valid: {', '.join(valid) if valid else '(no trial reports an accuracy yet)'}"
        )
    if missing(x):
        numeric = [c for c in df.columns if reported(df, c) and "." not in str(c)]
        raise ValueError(
            f"report x (report.x / --x) names {x!r}, which no trial reports; valid: {', '.join(map(str, numeric))}"
        )


# -------------------------------------------------------------------------------------- best and fronts


def _first_ids(rows: pd.DataFrame) -> pd.Series:
    if TRIAL_IDS in rows.columns:
        return rows[TRIAL_IDS].map(lambda ids: min(map(str, ids)))
    return rows["trial_id"].astype(str)


def ranked(rows: pd.DataFrame, metric: str, *, mode: Direction = "max", ties: Sequence[str] = ()) -> pd.DataFrame:
    """``rows`` with a number in ``metric``, best first: by ``metric`` (``mode``), then each of ``ties``
    (larger first, missing last), then more seeds, then the smallest trial id. The input order never
    decides."""
    value = pd.to_numeric(rows[metric], errors="coerce") if metric in rows.columns else pd.Series(np.nan, rows.index)
    rows = rows[value.notna()]
    sign = -1.0 if mode == "max" else 1.0
    keys = {"_k0": sign * pd.to_numeric(rows[metric], errors="coerce")}
    for k, column in enumerate(ties, start=1):
        tie = pd.to_numeric(rows[column], errors="coerce") if column in rows.columns else pd.Series(np.nan, rows.index)
        keys[f"_k{k}"] = (-tie).fillna(np.inf)
    keys["_seeds"] = -pd.to_numeric(rows[N_SEEDS], errors="coerce").fillna(1) if N_SEEDS in rows else 0
    keys["_id"] = _first_ids(rows)
    order = pd.DataFrame(keys, index=rows.index).sort_values(list(keys), kind="mergesort").index
    return rows.loc[order]


def front(rows: pd.DataFrame, objectives: Mapping[str, Direction], x: str | None = None) -> pd.DataFrame:
    """The rows of ``rows`` on the Pareto front of ``objectives`` (rows with a missing objective left
    out), sorted by ``x`` when given."""
    chosen = pareto_front(rows, objectives).rows
    return chosen.sort_values(x, kind="mergesort") if x is not None and x in chosen.columns else chosen


# ---------------------------------------------------------------------------------------- the report


@dataclass(frozen=True, eq=False)
class FrontChoice:
    """The report's fronts and baselines: what every Fig. 3 panel and ``pareto.csv`` show.

    Attributes:
        protocol: the split that chose (``val``, or ``test`` for the labelled paper protocol).
        x: the x column (``compression``).
        metrics: the report's ``y`` columns: the test figures every panel shows.
        objectives: selection column -> direction, the joint Pareto set's objectives
            (``{"compression": "max", "val_clean_acc": "max", ...}``).
        shown_only: ``y`` metrics without a selection figure in the table: shown, never chosen on.
        trials: the finished trials (one row per seed), with group, scope and method label columns.
        configurations: the finished configurations (:func:`reports.seeds.aggregate_seeds`: means,
            ``ci/<metric>``, ``n_seeds``, ...), with the same columns.
        scopes: the scopes in display order (``("",)`` when one model and dataset).
        groups: the pruning groups with configurations, display order, ``"dense"`` excluded.
        fronts: ``(scope, group) -> rows of configurations`` on the joint Pareto set, sorted by ``x``.
        baselines: ``scope -> the dense configuration`` chosen on :attr:`baseline_on`.
        baseline_on: the selection column the dense baseline is chosen on (twin of the first ``y``).
    """

    protocol: Protocol
    x: str
    metrics: tuple[str, ...]
    objectives: dict[str, Direction]
    shown_only: tuple[str, ...]
    trials: pd.DataFrame
    configurations: pd.DataFrame
    scopes: tuple[str, ...]
    groups: tuple[str, ...]
    fronts: dict[tuple[str, str], pd.DataFrame]
    baselines: dict[str, pd.Series]
    baseline_on: str | None

    @property
    def chosen_on_text(self) -> str:
        """``"compression (max), val_clean_acc (max), ..."``: what chose the Pareto sets."""
        return ", ".join(f"{k} ({v})" for k, v in self.objectives.items())


def select(
    df: pd.DataFrame,
    *,
    x: str = "compression",
    y: Sequence[str] = DEFAULT_Y,
    objectives: Mapping[str, str] | None = None,
    group_by: str | None = "dnr.pruning",
) -> FrontChoice:
    """The report's fronts and baselines for results table ``df`` (see the module docstring).

    Args:
        df: one row per trial (``results.parquet``).
        x: the x column of the figures (a sparsity figure, ``compression``).
        y: the accuracies shown (test figures), one panel each.
        objectives: column -> ``"max"``/``"min"`` for the joint Pareto set, named by test or
            selection figure; ``None``: ``x`` max and every ``y`` max.
        group_by: the column whose values are the pruning groups (``None``: one group).

    Raises:
        ValueError: ``x``/``y`` name a column no trial reports, an objective is unknown, the trials
            were selected on different splits, or ``group_by`` is not a column.

    >>> df = pd.DataFrame({
    ...     "trial_id": ["a", "b"], "dnr.pruning": ["irregular"] * 2, "dnr.density": [0.1, 0.1],
    ...     "dnr.beta": [0.3, 0.7], "compression": [10.0, 10.0],
    ...     "val_clean_acc": [80.0, 81.0], "clean_acc": [82.0, 79.0]})
    >>> select(df, y=["clean_acc"]).fronts[("", "irregular")]["trial_id"].tolist()   # chosen on validation
    ['b']
    """
    metrics = tuple(y)
    if not metrics:
        raise ValueError("report y must name at least one accuracy column, e.g. [clean_acc, pgd_acc]")
    check_report_columns(df, x, metrics)
    protocol = Protocol(selection_split(df))
    chosen, shown_only = selection_objectives(df, x, metrics, objectives, protocol.split)
    if group_by is not None and group_by not in df.columns:
        group_labels(df, group_by)  # raises, naming the valid columns

    trials = df[finished_mask(df)]
    configurations = aggregate_seeds(trials)
    varying = scope_columns(configurations)

    def labelled(rows: pd.DataFrame) -> pd.DataFrame:
        return rows.assign(**{GROUP: group_labels(rows, group_by), SCOPE: scope_labels(rows, varying),
                              METHOD_LABEL: method_labels(rows)})  # fmt: skip

    trials, configurations = labelled(trials), labelled(configurations)
    scopes = tuple(sorted(configurations[SCOPE].unique())) or ("",)
    groups = tuple(g for g in group_order(configurations[GROUP].unique()) if g != DENSE)

    fronts: dict[tuple[str, str], pd.DataFrame] = {}
    for scope in scopes:
        in_scope = configurations[configurations[SCOPE] == scope]
        for group in groups:
            members = in_scope[in_scope[GROUP] == group]
            if len(members):
                fronts[(scope, group)] = front(members, chosen, x)

    baseline_on = next(
        (c for c in (selection_column(m, protocol.split) for m in metrics) if c in configurations.columns), None
    )
    baselines: dict[str, pd.Series] = {}
    if baseline_on is not None:
        for scope in scopes:
            dense = configurations[(configurations[SCOPE] == scope) & (configurations[GROUP] == DENSE)]
            best = ranked(dense, baseline_on, ties=tie_breaks(baseline_on, protocol.split))
            if len(best):
                baselines[scope] = best.iloc[0]
    return FrontChoice(
        protocol, x, metrics, chosen, shown_only, trials, configurations, scopes, groups, fronts, baselines,
        baseline_on,
    )  # fmt: skip


def best_configuration(selection: FrontChoice, metric: str, mode: Direction = "max") -> pd.Series | None:
    """The finished configuration with the best ``metric`` (a selection or sparsity figure, e.g. the
    run's ``tune.metric``), ties as :func:`ranked`; ``None`` when none has it.

    Raises:
        ValueError: ``metric`` is a test figure (only validation chooses).
    """
    split = selection.protocol.split
    if selection_column(metric, split) != metric or metric in TEST_METRICS:
        raise ValueError(f"{metric!r} is not a {selection.protocol.split_name} figure; choose on "
                         f"{selection_column(metric, split)!r}")  # fmt: skip
    best = ranked(selection.configurations, metric, mode=mode, ties=tie_breaks(metric, split))
    return best.iloc[0] if len(best) else None


# ------------------------------------------------------------------------------------------- Table 2


@dataclass(frozen=True, eq=False)
class MethodChoice:
    """Table 2's choice and the methods figure's fronts (see :func:`choose_methods`).

    Attributes:
        protocol: the split that chose.
        tolerance: the matched-compression window, a fraction of the reference (0.1: +-10%).
        references: ``scope -> reference compression``.
        reference_from: ``scope -> where the reference came from`` (a sentence fragment).
        rows: per scope and method label (:data:`METHOD_LABEL`), the chosen configuration, with
            :data:`CHOSEN_ON` (the selection column it was chosen on), :data:`MATCHED` (within the
            window) and :data:`REFERENCE` columns; in scope, then method order.
        candidates: every pruned, method-labelled finished configuration (the methods' points).
        fronts: ``(scope, label, metric) -> configurations`` on the label's front of (compression,
            the selection twin of test ``metric``), sorted by compression.
    """

    protocol: Protocol
    tolerance: float
    references: dict[str, float]
    reference_from: dict[str, str]
    rows: pd.DataFrame
    candidates: pd.DataFrame
    fronts: dict[tuple[str, str, str], pd.DataFrame]

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.candidates[METHOD_LABEL]))


def method_select_metric(rows: pd.DataFrame, split: str) -> str:
    """The selection column a method's configurations are chosen on: their runs' ``select_metric``
    (when they record none, the split's default: validation PGD, or the paper protocol's test clean).

    Raises:
        ValueError: its configurations were selected on different metrics.
    """
    recorded = sorted(set(rows["select_metric"].dropna().astype(str))) if "select_metric" in rows.columns else []
    if len(recorded) > 1:
        raise ValueError(f"the {rows[METHOD_LABEL].iloc[0]} trials were selected on different metrics "
                         f"({', '.join(recorded)}); Table 2 chooses each method on one: report them separately")  # fmt: skip
    return selection_column(recorded[0], split) if recorded else default_select_metric(split)


def choose_methods(
    selection: FrontChoice,
    *,
    compression: float | None = None,
    tolerance: float = MATCH_TOLERANCE,
    reference_label: str = "DNR",
) -> MethodChoice:
    """Per scope and method label, the configuration Table 2 reports.

    The candidates are the selection's finished configurations with a method, the dense ones left out
    (they are the dense baseline, not a method's pruned model).
    Per method, :func:`ranked` on its :func:`method_select_metric` (ties by the other selection
    accuracies) orders them. The reference compression per scope: ``compression`` when given (the
    ``report.table2_compression`` setting), else the compression of ``reference_label``'s best
    configuration, else the median of every method's best configuration's compression. A method's row
    is its best configuration within ``tolerance`` of the reference (``matched``), or, when it has
    none there, its best configuration overall, marked not matched.
    """
    if compression is not None and not (np.isfinite(compression) and compression > 0):
        raise ValueError(f"report.table2_compression must be a compression > 0 (e.g. 20.0), got {compression!r}")
    configs = selection.configurations
    split = selection.protocol.split
    candidates = configs[configs[METHOD_LABEL].notna() & (configs[GROUP] != DENSE)]
    if COMPRESSION not in candidates.columns:
        raise ValueError("Table 2 matches methods on 'compression', which the results do not have")
    order = {label: k for k, label in enumerate(METHOD_ORDER)}
    labels = sorted(candidates[METHOD_LABEL].unique(), key=lambda label: (order.get(label, len(order)), label))
    chosen_rows, references, reference_from = [], {}, {}
    fronts: dict[tuple[str, str, str], pd.DataFrame] = {}
    for scope in selection.scopes:
        in_scope = candidates[candidates[SCOPE] == scope]
        best: dict[str, tuple[str, pd.DataFrame]] = {}
        for label in labels:
            rows = in_scope[in_scope[METHOD_LABEL] == label]
            if rows.empty:
                continue
            metric = method_select_metric(rows, split)
            ranking = ranked(rows, metric, ties=tie_breaks(metric, split))
            if len(ranking):
                best[label] = (metric, ranking)
            for test in TEST_METRICS:  # the methods figure's panels
                twin = selection_column(test, split)
                if test in rows.columns and twin in rows.columns:
                    fronts[(scope, label, test)] = front(rows, {COMPRESSION: "max", twin: "max"}, COMPRESSION)
        if not best:
            continue
        if compression is not None:
            references[scope], reference_from[scope] = float(compression), "report.table2_compression"
        elif reference_label in best:
            references[scope] = float(best[reference_label][1].iloc[0][COMPRESSION])
            reference_from[scope] = f"{reference_label}'s chosen configuration"
        else:
            references[scope] = float(np.median([r.iloc[0][COMPRESSION] for _, r in best.values()]))
            reference_from[scope] = "the median of the methods' chosen configurations"
        reference = references[scope]
        for metric, ranking in best.values():
            near = (pd.to_numeric(ranking[COMPRESSION], errors="coerce") - reference).abs() <= tolerance * reference
            row = ranking[near].iloc[0] if near.any() else ranking.iloc[0]
            chosen_rows.append(row.to_dict() | {CHOSEN_ON: metric, MATCHED: bool(near.any()), REFERENCE: reference})
    columns = [*configs.columns, CHOSEN_ON, MATCHED, REFERENCE]
    rows = pd.DataFrame(chosen_rows, columns=columns)
    return MethodChoice(selection.protocol, tolerance, references, reference_from, rows, candidates, fronts)


# ----------------------------------------------------------------------------------- a run's choice


@dataclass(frozen=True, eq=False)
class RunChoice:
    """Everything a run's outputs show: its settings, its prepared tables and the choices made on them."""

    settings: ReportSettings
    results: pd.DataFrame
    epochs: pd.DataFrame
    group_by: str | None
    selection: FrontChoice
    methods: MethodChoice | None


def has_methods(selection: FrontChoice) -> bool:
    """Table 2 is made when some finished configuration was trained by a method other than DNR."""
    labels = selection.configurations[METHOD_LABEL].dropna()
    return bool(len(labels)) and bool((labels != "DNR").any())


def choose_run(results: pd.DataFrame, epochs: pd.DataFrame, config: Mapping[str, Any], **overrides: Any) -> RunChoice:
    """The choice for one run's tables and ``config.yaml`` (as a mapping), with the report settings
    resolved as :func:`reports.settings.resolve_settings` does (``overrides``: the CLI's flags)."""
    settings, results, epochs, group = prepare(results, epochs, config, **overrides)
    selection = select(results, x=settings.x, y=settings.y, objectives=settings.objectives, group_by=group)
    methods = choose_methods(selection, compression=settings.table2_compression) if has_methods(selection) else None
    return RunChoice(settings, results, epochs, group, selection, methods)
