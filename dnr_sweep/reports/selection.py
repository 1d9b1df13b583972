"""Which configurations the report shows: only validation chooses, test figures are only shown.

:func:`select` makes the one choice every figure and table of a report draws from:

* only **finished** trials count (``status == "TERMINATED"`` and not ``early_stopped``);
* trials that differ only in ``train.seed`` are one **configuration** (:mod:`reports.seeds`): its
  figures are the means over its seeds, with a 95% confidence interval;
* per pruning type (``group_by``), one **joint Pareto set**: the configurations not dominated on the
  *selection* versions of the report's objectives (default: ``x`` max and every ``y`` accuracy max).
  A test figure maps to its selection twin (``pgd_acc`` -> ``val_pgd_acc``; with ``select_on: test``,
  the paper's protocol, ``test_pgd_acc``); sparsity figures (``compression``) stay as they are. Every
  panel (clean, FGSM, PGD) then shows the **test** figures of those same configurations;
* the **dense baseline**: the dense configuration with the best selection twin of the first ``y``;
* a sweep over ``model.arch``/``data.dataset`` gets one **scope** per model and dataset: fronts and
  baselines are chosen within a scope, never across.

>>> import pandas as pd
>>> df = pd.DataFrame({
...     "trial_id": ["a", "b"], "dnr.pruning": ["irregular"] * 2, "dnr.density": [0.1, 0.1],
...     "dnr.beta": [0.3, 0.7], "compression": [10.0, 10.0],
...     "val_clean_acc": [80.0, 81.0], "clean_acc": [82.0, 79.0]})
>>> select(df, y=["clean_acc"]).fronts[("", "irregular")]["trial_id"].tolist()   # chosen on validation
['b']

Size (over ~400 lines) on purpose: one choice (finished trials -> configurations -> the joint Pareto set ->
baselines) whose steps share the selection rules.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from dnr_sweep.foundation.run_contract import (
    SELECTION_SPLITS,
    TEST_METRICS,
    TEST_SELECTION_METRICS,
    VAL_METRICS,
    attack_metric,
    is_attack_metric,
    selection_metrics,
    validation_twin,
)

from .pareto import DIRECTIONS, Direction, pareto_front
from .seeds import aggregate_seeds
from .style import DENSE, group_order

DEFAULT_Y = TEST_METRICS
DEFAULT_GROUP_BY = "dnr.pruning"
#: the group of every row when there is no ``group_by`` column
SINGLE_GROUP = "DNR"
FINISHED = "TERMINATED"
#: columns :func:`select` adds to its trials and configurations
GROUP = "group"
SCOPE = "scope"
#: one scope per value of these (only the ones that vary within the table)
SCOPE_COLUMNS = ("model.arch", "data.dataset")
SCOPE_SEPARATOR = " · "

_KIND_INDEX = {name: i for names in (TEST_METRICS, VAL_METRICS, TEST_SELECTION_METRICS) for i, name in enumerate(names)}


# ----------------------------------------------------------------------------------- which trials count


def finished_mask(df: pd.DataFrame) -> pd.Series:
    """Trials that finished: ``status == "TERMINATED"`` (when the column exists) and not stopped early."""
    ok = pd.Series(True, index=df.index)
    if "status" in df.columns:
        ok &= df["status"].astype(str) == FINISHED
    if "early_stopped" in df.columns:
        ok &= ~df["early_stopped"].fillna(True).astype(bool)
    return ok


def dense_mask(df: pd.DataFrame) -> pd.Series:
    """Rows of the unpruned baseline.

    Per row: the target ``dnr.density`` equals 1 when the row has one (it was swept); else the
    measured ``density`` is within 1e-6 of 1; rows with neither fall back to ``compression`` within
    0.1 % of 1.
    """
    target = _numeric(df, "dnr.density")
    measured = _numeric(df, "density")
    compression = _numeric(df, "compression")
    by_target = np.isclose(target, 1.0, rtol=0, atol=1e-9)
    by_measured = np.isclose(measured, 1.0, rtol=0, atol=1e-6)
    by_compression = np.isclose(compression, 1.0, rtol=1e-3, atol=0)
    dense = np.where(target.notna(), by_target, np.where(measured.notna(), by_measured, by_compression))
    return pd.Series(dense, index=df.index, dtype=bool)


def _numeric(df: pd.DataFrame, column: str) -> pd.Series:
    if column not in df.columns:
        return pd.Series(np.nan, index=df.index, dtype="float64")
    return pd.to_numeric(df[column], errors="coerce").astype("float64")


def is_channel_mode(group: str) -> bool:
    """Channel pruning modes (``channel``, ``channel_group``, ...): whole input channels removed."""
    return str(group).startswith("channel")


def group_labels(df: pd.DataFrame, group_by: str | None) -> pd.Series:
    """Each row's group: the ``group_by`` value as a string, ``"dense"`` for baseline rows."""
    if group_by is None:
        groups = pd.Series(SINGLE_GROUP, index=df.index, dtype=object)
    else:
        if group_by not in df.columns:
            raise ValueError(
                f"group_by column {group_by!r} is not in the table; valid columns: {', '.join(map(str, df.columns))}"
            )
        groups = df[group_by].astype(str).astype(object)
    groups[dense_mask(df)] = DENSE
    return groups


def scope_columns(df: pd.DataFrame) -> list[str]:
    """The :data:`SCOPE_COLUMNS` whose value varies between the rows of ``df``."""
    return [c for c in SCOPE_COLUMNS if c in df.columns and df[c].astype(str).nunique() > 1]


def scope_labels(df: pd.DataFrame, columns: Sequence[str]) -> pd.Series:
    """Each row's scope, ``"vgg16 · cifar10"`` (the values of ``columns``), ``""`` when none vary."""
    if not columns:
        return pd.Series("", index=df.index, dtype=object)
    return df[list(columns)].astype(str).agg(SCOPE_SEPARATOR.join, axis=1).astype(object)


# --------------------------------------------------------------------------------- which split chooses


@dataclass(frozen=True)
class Protocol:
    """The split that chose the selected epoch, and so the report's fronts and baselines.

    ``val`` is the default; ``test`` is the paper's protocol (``train.select_on: test``), an explicit
    opt-in that is labelled wherever its numbers appear (:attr:`label`).
    """

    split: str = "val"

    def __post_init__(self) -> None:
        if self.split not in SELECTION_SPLITS:
            raise ValueError(f"unknown selection split {self.split!r}; valid: {', '.join(SELECTION_SPLITS)}")

    @property
    def paper(self) -> bool:
        return self.split == "test"

    @property
    def label(self) -> str:
        """``"selected on validation"`` or ``"selected on test (paper protocol)"``."""
        return "selected on test (paper protocol)" if self.paper else "selected on validation"

    @property
    def split_name(self) -> str:
        return "test" if self.paper else "validation"

    def chosen(self, what: str = "Pareto set") -> str:
        """``"Pareto set chosen on validation accuracy; test accuracy shown"`` (and the test variant)."""
        if self.paper:
            return f"{what} chosen on test accuracy, selected on test (paper protocol); test accuracy shown"
        return f"{what} chosen on validation accuracy; test accuracy shown"


#: the default protocol: validation chooses
VALIDATION = Protocol("val")


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


def selection_column(metric: str, split: str = "val") -> str:
    """The figure that chooses in place of ``metric``: its twin on the selection split.

    ``pgd_acc``/``val_pgd_acc``/``test_pgd_acc`` -> ``val_pgd_acc`` (``split="val"``, via
    :func:`dnr_sweep.foundation.run_contract.validation_twin`) or ``test_pgd_acc`` (``split="test"``); a
    post-training attack ``autoattack_acc`` -> ``val_autoattack_acc`` (val) or itself (test); anything
    else (``compression``, ``density``, a parameter) is itself.
    """
    if split not in SELECTION_SPLITS:
        raise ValueError(f"unknown selection split {split!r}; valid: {', '.join(SELECTION_SPLITS)}")
    if metric in _KIND_INDEX:
        if split == "val":
            return metric if metric in VAL_METRICS else validation_twin(metric) or metric
        return selection_metrics(split)[_KIND_INDEX[metric]]
    if is_attack_metric(metric):
        attack = metric.removeprefix("val_").removesuffix("_acc")
        return attack_metric(attack, "val" if split == "val" else "test")
    return metric


# ------------------------------------------------------------------------------------- column checks


def _reported(df: pd.DataFrame, column: str) -> bool:
    return column in df.columns and bool(pd.to_numeric(df[column], errors="coerce").notna().any())


def accuracy_columns(df: pd.DataFrame) -> list[str]:
    """Accuracy columns (``*_acc``, no parameters) some trial reports, test figures first."""
    columns = [c for c in df.columns if str(c).endswith("_acc") and "." not in str(c) and "/" not in str(c)]
    reported = [c for c in columns if _reported(df, c)]
    rank = {c: i for i, c in enumerate((*TEST_METRICS, *VAL_METRICS, *TEST_SELECTION_METRICS))}
    return sorted(reported, key=lambda c: (rank.get(c, len(rank)), c))


def check_report_columns(df: pd.DataFrame, x: str, y: Sequence[str]) -> None:
    """Raise ``ValueError`` when ``x`` or a ``y`` metric is a column no trial reports.

    A column that exists but is empty only counts as missing once some trial finished (a live report
    of a running sweep has no test figures yet).
    """
    any_finished = bool(finished_mask(df).any())

    def missing(column: str) -> bool:
        return column not in df.columns or (any_finished and not _reported(df, column))

    bad = [m for m in y if missing(m)]
    if bad:
        valid = accuracy_columns(df)
        raise ValueError(
            f"report y (report.y / --y) names {', '.join(map(repr, bad))}, which no trial reports; "
            f"valid: {', '.join(valid) if valid else '(no trial reports an accuracy yet)'}"
        )
    if missing(x):
        numeric = [c for c in df.columns if _reported(df, c) and "." not in str(c)]
        raise ValueError(
            f"report x (report.x / --x) names {x!r}, which no trial reports; valid: {', '.join(map(str, numeric))}"
        )


# ---------------------------------------------------------------------------------------- the choice


@dataclass(frozen=True, eq=False)
class Selection:
    """The report's one choice: what every figure and table shows.

    Attributes:
        protocol: the split that chose (``val``, or ``test`` for the labelled paper protocol).
        x: the x column (``compression``).
        metrics: the report's ``y`` columns: the test figures every panel shows.
        objectives: selection column -> direction, the joint Pareto set's objectives
            (``{"compression": "max", "val_clean_acc": "max", ...}``).
        shown_only: ``y`` metrics without a selection figure in the table: shown, never chosen on.
        trials: the finished trials (one row per seed), with :data:`GROUP` and :data:`SCOPE` columns.
        configurations: the finished configurations (:func:`reports.seeds.aggregate_seeds`: means,
            ``ci/<metric>``, ``n_seeds``, ...), with :data:`GROUP` and :data:`SCOPE` columns.
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


def selection_objectives(
    df: pd.DataFrame,
    x: str,
    y: Sequence[str],
    objectives: Mapping[str, str] | None,
    split: str,
) -> tuple[dict[str, Direction], tuple[str, ...]]:
    """The joint Pareto set's objectives on selection columns, and the ``y`` metrics left unchosen.

    ``objectives=None`` means the default: ``x`` max and every ``y`` max, a ``y`` metric without a
    selection column in ``df`` (e.g. ``autoattack_acc`` without ``val_autoattack_acc``) being shown
    only. Explicit objectives must all map to columns of ``df``.
    """
    if objectives is None:
        chosen: dict[str, Direction] = {selection_column(x, split): "max"}
        shown_only = []
        for metric in y:
            column = selection_column(metric, split)
            if column in df.columns:
                chosen.setdefault(column, "max")
            else:
                shown_only.append(metric)
        if len(shown_only) == len(y):
            wanted = ", ".join(selection_column(m, split) for m in y)
            raise ValueError(
                f"the results have none of the {Protocol(split).split_name} figures ({wanted}) that choose the "
                f"Pareto set for y = {', '.join(y)}; they come from a sweep that records them (selected_on, "
                "val_*_acc columns). Choose explicitly with report.objectives / --objectives to report it anyway"
            )
        return chosen, tuple(shown_only)
    if not objectives:
        raise ValueError("report objectives must name at least one column, e.g. {compression: max, pgd_acc: max}")
    chosen = {}
    for name, direction in objectives.items():
        if direction not in DIRECTIONS:
            raise ValueError(f"objective {name!r} has unknown direction {direction!r}; valid: {', '.join(DIRECTIONS)}")
        column = selection_column(name, split)
        if column not in df.columns:
            via = f" (chosen on its {split} twin {column!r})" if column != name else ""
            raise ValueError(
                f"objective {name!r}{via} is not a column of the results; valid: "
                f"{', '.join(c for c in map(str, df.columns) if '/' not in c)}"
            )
        chosen[column] = direction  # type: ignore[assignment]
    return chosen, ()


def select(
    df: pd.DataFrame,
    *,
    x: str = "compression",
    y: Sequence[str] = DEFAULT_Y,
    objectives: Mapping[str, str] | None = None,
    group_by: str | None = DEFAULT_GROUP_BY,
) -> Selection:
    """The report's choice for results table ``df`` (see the module docstring).

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
    trials = trials.assign(**{GROUP: group_labels(trials, group_by), SCOPE: scope_labels(trials, varying)})
    configurations = configurations.assign(
        **{GROUP: group_labels(configurations, group_by), SCOPE: scope_labels(configurations, varying)}
    )
    scopes = tuple(sorted(configurations[SCOPE].unique())) or ("",)
    groups = tuple(g for g in group_order(configurations[GROUP].unique()) if g != DENSE)

    fronts: dict[tuple[str, str], pd.DataFrame] = {}
    for scope in scopes:
        in_scope = configurations[configurations[SCOPE] == scope]
        for group in groups:
            members = in_scope[in_scope[GROUP] == group]
            if len(members):
                rows = pareto_front(members, chosen).rows
                fronts[(scope, group)] = rows.sort_values(x, kind="mergesort") if x in rows.columns else rows

    baseline_on = next(
        (c for c in (selection_column(m, protocol.split) for m in metrics) if c in configurations.columns), None
    )
    baselines: dict[str, pd.Series] = {}
    if baseline_on is not None:
        for scope in scopes:
            dense = configurations[(configurations[SCOPE] == scope) & (configurations[GROUP] == DENSE)]
            value = pd.to_numeric(dense[baseline_on], errors="coerce")
            if value.notna().any():
                baselines[scope] = dense.loc[value.idxmax()]
    return Selection(
        protocol, x, metrics, chosen, shown_only, trials, configurations, scopes, groups, fronts, baselines,
        baseline_on,
    )  # fmt: skip
