"""Hypervolume of a Pareto front: how much of objective space a set of trials dominates.

The hypervolume of points ``P`` with respect to a reference point ``r`` is the volume of the union
of the boxes spanned between ``r`` and each point that is at least as good as ``r`` in every
objective. It grows whenever a point joins or moves the front, never otherwise, so it measures a
search by one number: the bigger, the more of the trade-off it found. A point that does not beat
the reference in every objective adds nothing (its box is empty).

The computation is Optuna's exact one (``optuna._hypervolume.compute_hypervolume``: a sweep in 2-D,
an O(n^2) scan in 3-D, WFG beyond), maintained by the sampler library the sweeps already use and
checked against a brute-force cell count in ``tests/test_reports_hypervolume.py``. Needs numpy and
optuna only (no torch, no Ray).

>>> hypervolume([[60.0, 10.0], [80.0, 5.0]], reference=[0.0, 1.0], directions=["max", "max"])
620.0
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

DIRECTIONS = ("max", "min")


def _as_losses(points: np.ndarray, reference: np.ndarray, directions: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Points and reference turned into minimisation (maximised objectives negated)."""
    sign = np.array([-1.0 if d == "max" else 1.0 for d in directions])
    return points * sign, reference * sign


def hypervolume(points: Sequence[Sequence[float]] | np.ndarray, reference: Sequence[float],
                directions: Sequence[str]) -> float:  # fmt: skip
    """The exact hypervolume dominated by ``points`` (rows) with respect to ``reference``.

    Args:
        points: one row per point, one column per objective. Rows with a NaN are ignored (a trial
            that never measured the objective dominates nothing).
        reference: the reference point, one value per objective (e.g. 0 % accuracy, 1x compression).
        directions: ``"max"`` or ``"min"`` per objective.

    Raises:
        ValueError: shapes disagree, a direction is unknown or the reference is not finite.
    """
    directions = list(directions)
    bad = [d for d in directions if d not in DIRECTIONS]
    if bad:
        raise ValueError(f"directions must be 'max' or 'min', got {bad!r}")
    ref = np.asarray(reference, dtype=float)
    if ref.ndim != 1 or ref.size != len(directions) or ref.size < 1:
        raise ValueError(f"reference {list(ref.ravel())} must hold one value per objective ({len(directions)})")
    if not np.all(np.isfinite(ref)):
        raise ValueError(f"reference must be finite, got {list(ref)}")
    pts = np.asarray(points, dtype=float).reshape(-1, ref.size) if np.size(points) else np.empty((0, ref.size))
    pts = pts[~np.isnan(pts).any(axis=1)]
    losses, ref_loss = _as_losses(pts, ref, directions)
    losses = losses[(losses <= ref_loss).all(axis=1)]  # a point not beating the reference spans nothing
    if len(losses) == 0:
        return 0.0
    # Optuna's private module: Optuna 5.1 has no public hypervolume function (its only public use is
    # plot_hypervolume_history, which needs a Study); pinned by pyproject's optuna range and checked against a
    # brute-force count in tests/test_reports_hypervolume.py, so an Optuna that moves it fails there.
    # lazy: importing optuna takes a quarter of a second; only a comparison's hypervolume needs it
    from optuna._hypervolume import compute_hypervolume

    return float(compute_hypervolume(losses, ref_loss))


def frame_hypervolume(df: pd.DataFrame, objectives: Mapping[str, str], reference: Mapping[str, float]) -> float:
    """:func:`hypervolume` of a table's rows over the ``objectives`` columns (``{column: direction}``)."""
    missing = [c for c in objectives if c not in df.columns] + [c for c in objectives if c not in reference]
    if missing:
        raise ValueError(f"objectives {missing} need a column in the table and a value in the reference")
    columns = list(objectives)
    return hypervolume(df[columns].to_numpy(dtype=float), [reference[c] for c in columns],
                       [objectives[c] for c in columns])  # fmt: skip


@dataclass(frozen=True)
class HypervolumeHistory:
    """The hypervolume a search had found after each trial, against what it had spent.

    Attributes:
        cost: cumulative cost after each trial (e.g. trial-epochs consumed, a stopped trial's
            epochs included), in the order the trials were given.
        hypervolume: hypervolume of every counted point among the trials so far.
    """

    cost: np.ndarray
    hypervolume: np.ndarray

    def at(self, budget: float) -> float:
        """The hypervolume once no more than ``budget`` was spent (0 before the first trial)."""
        within = self.cost <= budget
        return float(self.hypervolume[within][-1]) if within.any() else 0.0

    def cost_to_reach(self, target: float, *, rtol: float = 1e-9) -> float:
        """The first cumulative cost at which the hypervolume reached ``target`` (``inf`` if never)."""
        reached = self.hypervolume >= target * (1 - rtol)
        return float(self.cost[reached][0]) if reached.any() else float("inf")


def hypervolume_history(points: Sequence[Sequence[float]] | np.ndarray, costs: Sequence[float],
                        reference: Sequence[float], directions: Sequence[str]) -> HypervolumeHistory:  # fmt: skip
    """Hypervolume after each trial, in the order given (rows of NaN count their cost only).

    ``points[i]`` is trial ``i``'s objectives (NaN when it must not count, e.g. a trial a scheduler
    stopped early), ``costs[i]`` what it consumed.
    """
    pts = np.asarray(points, dtype=float).reshape(len(costs), -1) if len(costs) else np.empty((0, len(reference)))
    if len(pts) != len(costs):
        raise ValueError(f"{len(pts)} points but {len(costs)} costs")
    cumulative = np.cumsum(np.asarray(costs, dtype=float))
    volumes = np.array([hypervolume(pts[: i + 1], reference, directions) for i in range(len(pts))])
    return HypervolumeHistory(cumulative, volumes)
