"""Seeds: trials that differ only in ``train.seed`` are one configuration, reported as mean and 95% CI.

A configuration's identity is every parameter column (dotted names such as ``dnr.density``) except
``train.seed``, and the ``method`` that trained it. :func:`aggregate_seeds` turns a table of trials into a table of configurations: each
numeric metric becomes the mean over the configuration's seeds and gains a ``ci/<metric>`` column,
the half-width of the Student t interval ``t(0.975, n-1) * s / sqrt(n)`` (``s`` the sample standard
deviation of the ``n`` finite values), NaN where fewer than two seeds measured it.

>>> import pandas as pd
>>> trials = pd.DataFrame({"trial_id": ["a", "b", "c"], "dnr.density": [0.1, 0.1, 0.5],
...                        "train.seed": [0, 1, 0], "clean_acc": [80.0, 82.0, 90.0]})
>>> configs = aggregate_seeds(trials)
>>> configs[["configuration", "n_seeds", "clean_acc"]].values.tolist()
[['a', 2, 81.0], ['c', 1, 90.0]]
>>> round(float(configs.loc[0, "ci/clean_acc"]), 4)   # t(0.975, 1) * sqrt(2) / sqrt(2)
12.7062
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from .load import is_param

SEED_PARAM = "train.seed"
#: run keys that are part of a configuration's identity besides its parameters
IDENTITY_KEYS = ("method",)
CI_PREFIX = "ci/"
#: columns :func:`aggregate_seeds` adds: the label (first trial id), the seed count, all trial ids, the seeds
CONFIGURATION = "configuration"
N_SEEDS = "n_seeds"
TRIAL_IDS = "trial_ids"
SEEDS = "seeds"
CONFIDENCE = 0.95


def ci_column(metric: str) -> str:
    """The column holding ``metric``'s 95% CI half-width in an aggregated table (``ci/clean_acc``)."""
    return CI_PREFIX + metric


def t_quantile(n: int) -> float:
    """Student t quantile for a two-sided 95% interval from ``n`` values (``t(0.975, n-1)``)."""
    if n < 2:
        raise ValueError(f"a confidence interval needs at least 2 values, got {n}")
    from scipy import stats  # 0.5 s to import: only when some configuration has seeds

    return float(stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1))


def configuration_columns(columns: Sequence[str]) -> list[str]:
    """The columns that identify a configuration: every parameter except ``train.seed``, and ``method``."""
    return [c for c in columns if (is_param(c) and c != SEED_PARAM) or c in IDENTITY_KEYS]


def _key(values: Sequence[object]) -> str:
    """A hashable identity for one row's parameter values (lists, NaN and None included)."""

    def plain(v: object) -> object:
        if isinstance(v, np.generic):
            v = v.item()
        if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
            return None
        if isinstance(v, np.ndarray):
            return v.tolist()
        return v

    return json.dumps([plain(v) for v in values], default=str)


def _metric_columns(df: pd.DataFrame) -> list[str]:
    """Numeric, non-parameter, non-boolean columns: the ones averaged over seeds."""
    return [
        c
        for c in df.columns
        if not is_param(c)
        and c not in IDENTITY_KEYS
        and pd.api.types.is_numeric_dtype(df[c])
        and not pd.api.types.is_bool_dtype(df[c])
    ]


def aggregate_seeds(trials: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration of ``trials`` (see the module docstring), in order of first appearance.

    Columns: every input column except ``train.seed`` (parameters and non-numeric columns from the
    configuration's first trial, numeric metrics as the mean of their finite values), then one
    ``ci/<metric>`` per numeric metric, ``configuration`` (the first trial's id, the label),
    ``n_seeds`` (trials in the configuration), ``trial_ids`` and ``seeds`` (tuples). The index is
    the first trial's index label in ``trials``.

    Pass only the trials that may be reported (finished ones): every row counts as a seed.
    """
    if "trial_id" not in trials.columns:
        raise ValueError(f"aggregate_seeds needs a 'trial_id' column; the table has: {list(trials.columns)}")
    params = configuration_columns(list(trials.columns))
    keys = pd.Series(
        [_key(row) for row in trials[params].itertuples(index=False, name=None)] if params else [""] * len(trials),
        index=trials.index,
        dtype=object,
    )
    metrics = _metric_columns(trials)
    values = trials[metrics].apply(pd.to_numeric, errors="coerce").astype("float64")
    grouped = values.groupby(keys, sort=False)
    means, stds, counts = grouped.mean(), grouped.std(ddof=1), grouped.count()
    firsts = trials.groupby(keys, sort=False).head(1)  # first trial of each configuration, in order
    first_index = pd.Index(firsts.index)
    order = keys[first_index].to_numpy()

    out = firsts.drop(columns=[SEED_PARAM], errors="ignore").copy()
    for column in metrics:
        out[column] = means.loc[order, column].to_numpy()
    for column in metrics:
        n = counts.loc[order, column].to_numpy()
        s = stds.loc[order, column].to_numpy()
        t = np.array([t_quantile(int(k)) if k >= 2 else np.nan for k in n])
        with np.errstate(invalid="ignore", divide="ignore"):
            out[ci_column(column)] = np.where(n >= 2, t * s / np.sqrt(n), np.nan)
    members = trials.groupby(keys, sort=False)
    ids = members["trial_id"].agg(lambda s: tuple(str(v) for v in s))
    out[CONFIGURATION] = [ids[k][0] for k in order]
    out[N_SEEDS] = [len(ids[k]) for k in order]
    out[TRIAL_IDS] = [ids[k] for k in order]
    if SEED_PARAM in trials.columns:
        seeds = members[SEED_PARAM].agg(tuple)
        out[SEEDS] = [seeds[k] for k in order]
    else:
        out[SEEDS] = [() for _ in order]
    out.index = first_index
    return out
