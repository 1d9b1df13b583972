"""Which split chooses and which column chooses in place of a reported one; no trial is picked here.

Only validation chooses (``val``, the default); ``test`` is the paper's protocol (``train.select_on:
test``), an explicit opt-in labelled wherever its numbers appear (:class:`Protocol`). A test figure
the report shows is chosen on its *selection twin* (:func:`selection_column`: ``pgd_acc`` ->
``val_pgd_acc``, or ``test_pgd_acc`` under the paper protocol); sparsity figures choose as themselves.
:func:`selection_objectives` turns a report's ``x``/``y``/``objectives`` into the selection columns a
joint Pareto set is chosen on. The choosing itself is :mod:`reports.chooser`'s.

>>> selection_column("pgd_acc"), selection_column("pgd_acc", "test"), selection_column("compression")
('val_pgd_acc', 'test_pgd_acc', 'compression')
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from dnr_sweep.foundation.run_contract import (
    SELECTION_SPLITS,
    TEST_METRICS,
    TEST_SELECTION_METRICS,
    VAL_METRICS,
    attack_metric,
    is_attack_metric,
    selection_metrics,
    tie_break_metric,
    validation_twin,
)

from .pareto import DIRECTIONS, Direction

DEFAULT_Y = TEST_METRICS
_KIND_INDEX = {name: i for names in (TEST_METRICS, VAL_METRICS, TEST_SELECTION_METRICS) for i, name in enumerate(names)}


@dataclass(frozen=True)
class Protocol:
    """The split that chose the selected epoch, and so the report's fronts, baselines and Table 2.

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


def tie_breaks(metric: str, split: str = "val") -> tuple[str, ...]:
    """The selection accuracies that break a tie on ``metric``, in order: the epoch selection's tie-break
    figure first (:func:`~dnr_sweep.foundation.run_contract.tie_break_metric`: clean accuracy, PGD when
    clean chooses), then the others (``val_pgd_acc`` -> ``val_clean_acc``, ``val_fgsm_acc``)."""
    names = selection_metrics(split)
    column = selection_column(metric, split)
    first = (tie_break_metric(column),) if column in names else ()
    return tuple(dict.fromkeys(c for c in (*first, *names) if c != column))


def reported(df: pd.DataFrame, column: str) -> bool:
    """Some row of ``df`` has a number in ``column``."""
    return column in df.columns and bool(pd.to_numeric(df[column], errors="coerce").notna().any())


def accuracy_columns(df: pd.DataFrame) -> list[str]:
    """Accuracy columns (``*_acc``, no parameters) some trial reports, test figures first."""
    columns = [c for c in df.columns if str(c).endswith("_acc") and "." not in str(c) and "/" not in str(c)]
    rank = {c: i for i, c in enumerate((*TEST_METRICS, *VAL_METRICS, *TEST_SELECTION_METRICS))}
    return sorted((c for c in columns if reported(df, c)), key=lambda c: (rank.get(c, len(rank)), c))


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
