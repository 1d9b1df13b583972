"""What each results row is called: its pruning group, its scope (model and dataset), its method.

Labels only name rows; :mod:`reports.chooser` decides which rows count and which are chosen.

* **group**: the ``group_by`` value (``irregular``, ``channel``, ...), ``"dense"`` for the unpruned
  baseline (:func:`dense_mask`);
* **scope**: ``"vgg16 · cifar10"``, from the :data:`SCOPE_COLUMNS` that vary (``""`` when none do):
  fronts, baselines and Table 2 rows are chosen within a scope, never across;
* **method label**: the method's name as the paper's Table 2 spells it (``DNR``, ``ADMM``, ``ADMM
  naive`` for ``admm.layer_ratios: naive``, ``L1 Lasso``, ``HYDRA``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .style import DENSE

DEFAULT_GROUP_BY = "dnr.pruning"
#: the group of every row when there is no ``group_by`` column
SINGLE_GROUP = "DNR"
#: columns the chooser adds to its trials and configurations
GROUP = "group"
SCOPE = "scope"
METHOD_LABEL = "method_label"
#: one scope per value of these (only the ones that vary within the table)
SCOPE_COLUMNS = ("model.arch", "data.dataset")
SCOPE_SEPARATOR = " · "
#: ``method`` -> Table 2's name; ``admm`` with ``admm.layer_ratios: naive`` is :data:`ADMM_NAIVE`
METHOD_NAMES = {"dnr": "DNR", "admm": "ADMM", "lasso": "L1 Lasso", "hydra": "HYDRA"}
ADMM_NAIVE = "ADMM naive"
#: Table 2's row order (other labels follow by name)
METHOD_ORDER = ("DNR", "ADMM", ADMM_NAIVE, "L1 Lasso", "HYDRA")
LAYER_RATIOS = "admm.layer_ratios"
#: the schema's default ``admm.layer_ratios`` (dnr_sweep/config/methods.py)
DEFAULT_LAYER_RATIOS = "naive"


def _numeric(df: pd.DataFrame, column: str) -> pd.Series:
    if column not in df.columns:
        return pd.Series(np.nan, index=df.index, dtype="float64")
    return pd.to_numeric(df[column], errors="coerce").astype("float64")


def dense_mask(df: pd.DataFrame) -> pd.Series:
    """Rows of the unpruned baseline.

    Per row: the target ``dnr.density`` equals 1 when the row has one and was trained by DNR (no
    ``method``, or ``dnr``; another method's target is its own block's); else the measured ``density``
    is within 1e-6 of 1; rows with neither fall back to ``compression`` within 0.1 % of 1.
    """
    target = _numeric(df, "dnr.density")
    if "method" in df.columns:
        target = target.where(df["method"].isna() | (df["method"].astype(str) == "dnr"))
    measured = _numeric(df, "density")
    compression = _numeric(df, "compression")
    by_target = np.isclose(target, 1.0, rtol=0, atol=1e-9)
    by_measured = np.isclose(measured, 1.0, rtol=0, atol=1e-6)
    by_compression = np.isclose(compression, 1.0, rtol=1e-3, atol=0)
    dense = np.where(target.notna(), by_target, np.where(measured.notna(), by_measured, by_compression))
    return pd.Series(dense, index=df.index, dtype=bool)


def is_channel_mode(group: str) -> bool:
    """Channel pruning modes (``channel``, ``channel_group``, ...): whole input channels removed."""
    return str(group).startswith("channel")


def method_labels(df: pd.DataFrame) -> pd.Series:
    """Each row's method as Table 2 names it; ``None`` where the row has no ``method``.

    ``admm`` is ``ADMM naive`` when its ``admm.layer_ratios`` is ``naive`` (or unset, the schema's
    default, and no per-layer ``admm.layer_ratios.<layer>`` column is set), else ``ADMM``.
    """
    if "method" not in df.columns:
        return pd.Series(None, index=df.index, dtype=object)
    ratios = df[LAYER_RATIOS] if LAYER_RATIOS in df.columns else pd.Series(None, index=df.index, dtype=object)
    per_layer = [c for c in df.columns if str(c).startswith(LAYER_RATIOS + ".")]
    has_per_layer = df[per_layer].notna().any(axis=1) if per_layer else pd.Series(False, index=df.index)
    labels = []
    for method, ratio, layered in zip(df["method"], ratios, has_per_layer, strict=True):
        if method is None or (isinstance(method, float) and np.isnan(method)):
            labels.append(None)
            continue
        label = METHOD_NAMES.get(str(method), str(method))
        unset = ratio is None or (isinstance(ratio, float) and np.isnan(ratio))
        naive = ratio == DEFAULT_LAYER_RATIOS or (unset and not layered)
        labels.append(ADMM_NAIVE if method == "admm" and naive else label)
    return pd.Series(labels, index=df.index, dtype=object)


def group_labels(df: pd.DataFrame, group_by: str | None) -> pd.Series:
    """Each row's group: the ``group_by`` value as a string, ``"dense"`` for baseline rows.

    When the rows were trained by more than one method, a pruned row's group also names its method
    (``"irregular · ADMM naive"``): each method gets fronts of its own.
    """
    if group_by is None:
        groups = pd.Series(SINGLE_GROUP, index=df.index, dtype=object)
    else:
        if group_by not in df.columns:
            raise ValueError(
                f"group_by column {group_by!r} is not in the table; valid columns: {', '.join(map(str, df.columns))}"
            )
        groups = df[group_by].astype(str).astype(object)
    methods = method_labels(df)
    if methods.dropna().nunique() > 1:
        named = methods.notna()
        groups[named] = groups[named] + SCOPE_SEPARATOR + methods[named]
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
