"""A report's settings and the tables it is made from, resolved the same way for every output.

Settings come, in rising priority, from the defaults (the schema's :class:`ReportConfig`), the
``report:`` block of the run's ``config.yaml`` (``x``, ``y``, ``group_by``, ``objectives``,
``formats``, ``table2_compression``) and explicit arguments (the CLI's flags). :func:`prepare` adds
what the choice needs to the tables: constant columns from ``config.yaml`` (the ``group_by`` column
when it was not swept, ``method`` and ``admm.layer_ratios`` for Table 2's labels) and, for runs that
lack them in ``results.parquet``, each trial's selected validation figures from ``epochs.parquet``.
The terminal summary, ``dnr-sweep report`` and the live report all go through :func:`prepare`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from dnr_sweep.config.sweep import ReportConfig
from dnr_sweep.foundation.run_contract import TEST_SELECTION_METRICS, VAL_METRICS

from .labels import DEFAULT_GROUP_BY, LAYER_RATIOS
from .load import flatten
from .pareto import DIRECTIONS, Direction
from .protocol import DEFAULT_Y

FORMATS = ("pdf", "png", "svg")
#: the keys of a ``report:`` block (the schema's; ``live`` and ``live_every_s`` are the sweep's)
REPORT_KEYS = tuple(ReportConfig.model_fields)
DEFAULT_FORMATS = ("pdf", "png")
#: ``admm.layer_ratios`` given per layer (a mapping) is labelled with this value
PER_LAYER = "per-layer"


@dataclass(frozen=True)
class ReportSettings:
    """Resolved report settings (see the module docstring for where each comes from).

    ``objectives=None`` means the default: ``x`` max and every ``y`` max, each chosen on its
    validation twin (:func:`reports.protocol.selection_objectives`). ``table2_compression=None``:
    Table 2's reference compression is DNR's chosen configuration's (:func:`reports.chooser.choose_methods`).
    """

    x: str = "compression"
    y: tuple[str, ...] = DEFAULT_Y
    group_by: str | None = DEFAULT_GROUP_BY
    objectives: dict[str, Direction] | None = None
    formats: tuple[str, ...] = DEFAULT_FORMATS
    table2_compression: float | None = None


def resolve_settings(
    config: Mapping[str, Any],
    *,
    formats: Sequence[str] | None = None,
    x: str | None = None,
    y: Sequence[str] | None = None,
    objectives: Mapping[str, str] | None = None,
    group_by: str | None = None,
    table2_compression: float | None = None,
) -> ReportSettings:
    """Merge defaults, ``config['report']`` and explicit arguments (non-None wins); validate once."""
    block = config.get("report") or {}
    if not isinstance(block, Mapping):
        raise ValueError(f"config.yaml 'report:' must be a mapping with keys {', '.join(REPORT_KEYS)}")
    unknown = sorted(set(block) - set(REPORT_KEYS))
    if unknown:
        raise ValueError(f"config.yaml 'report:' has unknown key(s) {unknown}; valid keys: {', '.join(REPORT_KEYS)}")

    def pick(arg: Any, key: str, default: Any) -> Any:
        return arg if arg is not None else block.get(key, default)

    x_ = str(pick(x, "x", "compression"))
    y_raw = pick(y, "y", DEFAULT_Y)
    y_ = (y_raw,) if isinstance(y_raw, str) else tuple(str(m) for m in y_raw)
    if not y_:
        raise ValueError("report y must name at least one accuracy column, e.g. [clean_acc, pgd_acc]")
    group = pick(group_by, "group_by", DEFAULT_GROUP_BY)
    fmts_raw = pick(formats, "formats", DEFAULT_FORMATS)
    fmts = (fmts_raw,) if isinstance(fmts_raw, str) else tuple(str(f).lower().lstrip(".") for f in fmts_raw)
    bad = [f for f in fmts if f not in FORMATS]
    if bad or not fmts:
        raise ValueError(f"unknown figure format(s) {bad or fmts}; valid formats: {', '.join(FORMATS)}")
    raw_objectives = pick(objectives, "objectives", None)
    if raw_objectives is not None and not isinstance(raw_objectives, Mapping):
        raise ValueError(f"report objectives must map columns to max or min, got {raw_objectives!r}")
    objs = None if raw_objectives is None else {str(k): v for k, v in raw_objectives.items()}
    for name, direction in (objs or {}).items():
        if direction not in DIRECTIONS:
            raise ValueError(f"objective {name!r} has unknown direction {direction!r}; valid: {', '.join(DIRECTIONS)}")
    reference = pick(table2_compression, "table2_compression", None)
    if reference is not None:
        if isinstance(reference, bool) or not isinstance(reference, int | float) or not reference > 0:
            raise ValueError(f"report table2_compression must be a compression > 0 (e.g. 20.0), got {reference!r}")
        reference = float(reference)
    return ReportSettings(x_, y_, None if group is None else str(group), objs, fmts, reference)


def with_config_columns(df: pd.DataFrame, config: Mapping[str, Any], columns: Sequence[str | None]) -> pd.DataFrame:
    """Add constant columns from ``config.yaml`` (e.g. ``dnr.pruning`` when it was not swept).

    ``admm.layer_ratios`` given per layer (a mapping) becomes the value :data:`PER_LAYER`.
    """
    body = {k: v for k, v in config.items() if k not in ("search", "report")}
    flat = flatten(body)
    admm = body.get("admm")
    if isinstance(admm, Mapping) and isinstance(admm.get("layer_ratios"), Mapping):
        flat[LAYER_RATIOS] = PER_LAYER
    extra = {c: flat[c] for c in columns if c and c not in df.columns and c in flat}
    return df.assign(**extra) if extra else df


def with_selected_figures(results: pd.DataFrame, epochs: pd.DataFrame) -> pd.DataFrame:
    """Fill selection figures (``val_*_acc``/``test_*_acc``) a results table lacks from its epochs table.

    Runs written before ``results.parquet`` carried the selected epoch's validation figures still
    have them in ``epochs.parquet``: they are taken from each trial's row at its ``selected_epoch``.
    Columns the results table already has are left alone.
    """
    wanted = [c for c in (*VAL_METRICS, *TEST_SELECTION_METRICS) if c in epochs.columns and c not in results.columns]
    if not wanted or "selected_epoch" not in results.columns or not {"trial_id", "epoch"} <= set(epochs.columns):
        return results
    at = epochs[["trial_id", "epoch", *wanted]].drop_duplicates(["trial_id", "epoch"], keep="last")
    keys = results[["trial_id", "selected_epoch"]].rename(columns={"selected_epoch": "epoch"})
    keys["epoch"] = pd.to_numeric(keys["epoch"], errors="coerce").astype("float64")
    at = at.assign(epoch=pd.to_numeric(at["epoch"], errors="coerce").astype("float64"))
    filled = keys.merge(at, on=["trial_id", "epoch"], how="left")
    return results.assign(**{c: filled[c].to_numpy() for c in wanted})


#: the ``config.yaml`` values Table 2's method labels are read from (:func:`reports.labels.method_labels`)
LABEL_COLUMNS = ("method", LAYER_RATIOS)


def prepare(
    results: pd.DataFrame, epochs: pd.DataFrame, config: Mapping[str, Any], **overrides: Any
) -> tuple[ReportSettings, pd.DataFrame, pd.DataFrame, str | None]:
    """``(settings, results, epochs, group_by)`` of one run: settings resolved, the tables completed
    (see the module docstring), and the group column (``None`` when the tables lack it: one group)."""
    settings = resolve_settings(config, **overrides)
    results = with_config_columns(results, config, [settings.group_by, *LABEL_COLUMNS])
    epochs = with_config_columns(epochs, config, [settings.group_by])
    group = settings.group_by if settings.group_by in results.columns else None
    return settings, with_selected_figures(results, epochs), epochs, group
