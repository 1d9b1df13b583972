"""Choosing from a search: one configuration per (density, pruning) cell, on validation figures only.

A DNR search samples the target density and the pruning type along with beta, rho and the pruning
rate, and its searcher optimises a validation front (``val_pgd_acc`` vs ``compression``). Within one
(density, pruning) cell the compression is fixed by the target, so the cell's piece of that front is
its trial with the best validation PGD accuracy: that is the configuration the search chooses for
the cell (:func:`reports.chooser.ranked`; ties: the better validation clean accuracy, then the smaller
trial id). Only trials that ran every epoch compete (a trial a scheduler stopped early reports partial figures). Test figures are
never looked at here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from dnr_sweep.foundation import run_contract as rc
from dnr_sweep.reports import trial_files
from dnr_sweep.reports.chooser import finished_mask, ranked

#: the dimensions that make a cell of a DNR search
CELL: tuple[str, ...] = ("dnr.density", "dnr.pruning")
VAL_CLEAN, _, VAL_PGD = rc.VAL_METRICS


def finished_trials(results: pd.DataFrame) -> pd.DataFrame:
    """Trials that ran all their epochs (not failed, not stopped early by a scheduler)."""
    return results[finished_mask(results)]


def choose_per_cell(results: pd.DataFrame, cell: Sequence[str] = CELL, metric: str = VAL_PGD,
                    tie_break: str = VAL_CLEAN) -> pd.DataFrame:  # fmt: skip
    """One row per cell: its finished trial with the best validation ``metric`` (max).

    Raises:
        ValueError: ``metric`` or ``tie_break`` is a test figure (only validation chooses), or a
            column is missing.
    """
    for name in (metric, tie_break):
        if rc.is_test_metric(name):
            raise ValueError(f"{name!r} is a test figure; only validation chooses (use its val_ twin)")
    missing = [c for c in (*cell, metric, tie_break) if c not in results.columns]
    if missing:
        raise ValueError(f"results have no column {missing}; a search's results.parquet has them")
    ordered = ranked(finished_trials(results), metric, ties=(tie_break,))
    return ordered.groupby(list(cell), sort=True).head(1).sort_values(list(cell), kind="mergesort")


def proposal_order(run_dir: str | Path) -> dict[str, int]:
    """``trial_id -> n``: the order in which the searcher proposed a run's trials (0 first).

    Searcher trial ids are random (Optuna's are hex), so they say nothing of the order; Tune numbers
    each trial folder instead, ``<trainable>_<trial_id>_<n>_<sampled values>_<date>``.
    """
    order: dict[str, int] = {}
    for folder in trial_files.trial_folders(run_dir):
        trial_id = trial_files.first_trial_id(folder)
        if trial_id is None:
            continue
        _, sep, rest = folder.name.partition(f"_{trial_id}_")
        number = rest.split("_", 1)[0]
        if not sep or not number.isdigit():
            raise ValueError(f"{folder}: not a Tune trial folder <trainable>_{trial_id}_<n>_...")
        order[trial_id] = int(number)
    return order
