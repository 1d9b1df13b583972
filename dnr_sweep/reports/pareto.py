"""Pareto fronts over a table: a pure computation, called only by :mod:`reports.chooser`.

A row is *dominated* when another row is at least as good in every objective and strictly better in at
least one. The front is exactly the rows that nobody dominates; identical rows therefore all stay.
Rows with NaN in any objective cannot compete and are left out before comparing. Which rows may
compete at all (finished trials, their seeds aggregated) is the chooser's decision, made before.

>>> import pandas as pd
>>> df = pd.DataFrame({"compression": [1.0, 10.0, 20.0, 20.0], "clean_acc": [90.0, 89.0, 80.0, 85.0]})
>>> front = pareto_front(df, {"compression": "max", "clean_acc": "max"})
>>> front.rows.index.tolist()
[0, 1, 3]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

Direction = Literal["max", "min"]
DIRECTIONS: tuple[str, ...] = ("max", "min")

#: Largest number of booleans one comparison chunk may hold (chunk rows x all rows x objectives).
_CHUNK_CELLS = 4_000_000


@dataclass(frozen=True, eq=False)
class ParetoFront:
    """The non-dominated rows of a table and the objectives they were chosen by.

    Attributes:
        rows: the non-dominated rows, every column of the input, original index kept, sorted ascending
            by the first objective (ties by the next objectives, then by index) so that, for two
            objectives, ``rows[x], rows[y]`` is ready to draw as a staircase line.
        objectives: objective column -> ``"max"`` or ``"min"``, in the order given.
    """

    rows: pd.DataFrame
    objectives: Mapping[str, Direction]

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def index(self) -> pd.Index:
        """Index labels of the front's rows in the input frame."""
        return self.rows.index


def _check_objectives(df: pd.DataFrame, objectives: Mapping[str, str]) -> dict[str, Direction]:
    if not isinstance(objectives, Mapping) or len(objectives) == 0:
        raise ValueError(f"objectives must be a non-empty mapping column -> 'max'|'min', got {objectives!r}")
    checked: dict[str, Direction] = {}
    for column, direction in objectives.items():
        if direction not in DIRECTIONS:
            raise ValueError(
                f"objective {column!r} has unknown direction {direction!r}; valid directions: {', '.join(DIRECTIONS)}"
            )
        if column not in df.columns:
            raise ValueError(
                f"objective column {column!r} is not in the table; valid columns: {', '.join(map(str, df.columns))}"
            )
        checked[column] = direction  # type: ignore[assignment]
    return checked


def non_dominated_mask(values: np.ndarray) -> np.ndarray:
    """Boolean mask of the rows of ``values`` (n x k, larger is better, no NaN) that no row dominates.

    Row ``i`` is dominated when some row ``j`` has ``values[j] >= values[i]`` everywhere and
    ``values[j] > values[i]`` somewhere. Compares in chunks of rows with numpy broadcasting, so memory
    stays bounded (about ``_CHUNK_CELLS`` booleans) while no Python loop runs over row pairs.
    """
    values = np.asarray(values, dtype=float)
    if values.ndim != 2:
        raise ValueError(f"values must be a 2-D array (rows x objectives), got shape {values.shape}")
    n, k = values.shape
    dominated = np.zeros(n, dtype=bool)
    if n == 0:
        return ~dominated
    chunk = max(1, _CHUNK_CELLS // max(1, n * k))
    for start in range(0, n, chunk):
        block = values[start : start + chunk, None, :]  # (c, 1, k): the rows being judged
        others = values[None, :, :]  # (1, n, k): every possible dominator
        at_least_as_good = (others >= block).all(axis=2)
        strictly_better = (others > block).any(axis=2)
        dominated[start : start + chunk] = (at_least_as_good & strictly_better).any(axis=1)
    return ~dominated


def eligible_mask(df: pd.DataFrame, columns: list[str]) -> pd.Series:
    """Rows that can be compared: a number in every objective column."""
    ok = pd.Series(True, index=df.index)
    for column in columns:
        ok &= pd.to_numeric(df[column], errors="coerce").notna()
    return ok


def pareto_front(df: pd.DataFrame, objectives: Mapping[str, Direction]) -> ParetoFront:
    """The rows of ``df`` not dominated under ``objectives``; ``df`` is not modified.

    Args:
        df: one row per candidate, with a numeric column per objective.
        objectives: column -> ``"max"`` or ``"min"``, one or more, e.g.
            ``{"compression": "max", "pgd_acc": "max"}``.

    Raises:
        ValueError: an objective column is missing or its direction is not ``max``/``min``; the message
            lists the valid ones.
    """
    checked = _check_objectives(df, objectives)
    columns = list(checked)
    candidates = df[eligible_mask(df, columns)]
    values = candidates[columns].to_numpy(dtype=float)
    signs = np.array([1.0 if checked[c] == "max" else -1.0 for c in columns])
    keep = non_dominated_mask(values * signs)
    rows = candidates[keep]
    if len(rows) > 1:
        # Sort by the objectives (ascending), ties by original position: a stable lexsort.
        keys = [np.arange(len(rows))] + [rows[c].to_numpy(dtype=float) for c in reversed(columns)]
        rows = rows.iloc[np.lexsort(keys)]
    return ParetoFront(rows=rows, objectives=dict(checked))
