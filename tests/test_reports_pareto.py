"""pareto_front against an independent brute-force definition, plus hand examples."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dnr_sweep.reports import pareto
from dnr_sweep.reports.pareto import ParetoFront, pareto_front


def brute_force_front(rows: list[dict], objectives: dict[str, str]) -> set[int]:
    """The most obvious O(n^2) definition: keep row i unless some row j dominates it (rows with a
    missing objective cannot compete; any other column, ``early_stopped`` included, is not read)."""
    candidates = []
    for i, row in enumerate(rows):
        if any(row[c] is None or (isinstance(row[c], float) and math.isnan(row[c])) for c in objectives):
            continue
        candidates.append(i)

    def better_or_equal(a: float, b: float, direction: str) -> bool:
        return a >= b if direction == "max" else a <= b

    def strictly_better(a: float, b: float, direction: str) -> bool:
        return a > b if direction == "max" else a < b

    keep = set()
    for i in candidates:
        dominated = False
        for j in candidates:
            if i == j:
                continue
            all_ge = all(better_or_equal(rows[j][c], rows[i][c], d) for c, d in objectives.items())
            any_gt = any(strictly_better(rows[j][c], rows[i][c], d) for c, d in objectives.items())
            if all_ge and any_gt:
                dominated = True
                break
        if not dominated:
            keep.add(i)
    return keep


value = st.one_of(st.sampled_from([0.0, 1.0, 2.0, 3.0]), st.just(float("nan")))


@st.composite
def frames(draw):
    k = draw(st.integers(2, 4))
    n = draw(st.integers(0, 30))
    columns = [f"m{i}" for i in range(k)]
    directions = draw(st.lists(st.sampled_from(["max", "min"]), min_size=k, max_size=k))
    with_nan = draw(st.booleans())
    cell = value if with_nan else st.sampled_from([0.0, 1.0, 2.0, 3.0])
    rows = []
    for _ in range(n):
        row = {c: draw(cell) for c in columns}
        rows.append(row)
    if draw(st.booleans()):
        for row in rows:
            row["early_stopped"] = draw(st.booleans())
    return rows, dict(zip(columns, directions, strict=True))


@settings(max_examples=300, deadline=None)
@given(frames())
def test_matches_brute_force(case):
    rows, objectives = case
    df = pd.DataFrame(
        rows, columns=list(objectives) + (["early_stopped"] if rows and "early_stopped" in rows[0] else [])
    )
    df.index = pd.Index([10 * i + 7 for i in range(len(df))])  # non-default labels: the index must be kept
    front = pareto_front(df, objectives)
    expected = {10 * i + 7 for i in brute_force_front(rows, objectives)}
    assert set(front.rows.index) == expected
    assert len(front.rows.index) == len(expected)  # no row twice
    first = list(objectives)[0]
    assert front.rows[first].is_monotonic_increasing
    pd.testing.assert_frame_equal(front.rows, df.loc[front.rows.index])  # rows unchanged


@settings(max_examples=50, deadline=None)
@given(frames())
def test_chunking_does_not_change_the_answer(case):
    rows, objectives = case
    values = pd.DataFrame(rows, columns=list(objectives)).dropna().to_numpy(dtype=float)
    whole = pareto.non_dominated_mask(values)
    old = pareto._CHUNK_CELLS
    try:
        pareto._CHUNK_CELLS = 1  # one row per chunk
        chunked = pareto.non_dominated_mask(values)
    finally:
        pareto._CHUNK_CELLS = old
    np.testing.assert_array_equal(whole, chunked)


def test_identical_rows_all_kept():
    df = pd.DataFrame({"a": [1.0, 1.0, 0.0], "b": [2.0, 2.0, 1.0]})
    front = pareto_front(df, {"a": "max", "b": "max"})
    assert front.rows.index.tolist() == [0, 1]


def test_nan_rows_left_out():
    df = pd.DataFrame({"a": [1.0, np.nan, 5.0], "b": [2.0, 9.0, np.nan]})
    assert pareto_front(df, {"a": "max", "b": "max"}).rows.index.tolist() == [0]


def test_other_columns_are_not_read_even_early_stopped():
    """Which rows may compete is the chooser's decision (reports.chooser.finished_mask), made before."""
    df = pd.DataFrame({"a": [1.0, 9.0], "b": [1.0, 9.0], "early_stopped": [False, True]})
    assert pareto_front(df, {"a": "max", "b": "max"}).rows.index.tolist() == [1]


def test_single_objective_returns_all_rows_equal_to_best():
    df = pd.DataFrame({"loss": [0.3, 0.1, 0.2, 0.1]})
    front = pareto_front(df, {"loss": "min"})
    assert front.rows.index.tolist() == [1, 3]
    assert front.objectives == {"loss": "min"}


def test_sorted_by_first_objective_and_typed():
    df = pd.DataFrame({"compression": [20.0, 1.0, 10.0, 5.0], "acc": [80.0, 90.0, 85.0, 70.0]})
    front = pareto_front(df, {"compression": "max", "acc": "max"})
    assert isinstance(front, ParetoFront)
    assert front.rows["compression"].tolist() == [1.0, 10.0, 20.0]
    assert front.rows["acc"].tolist() == [90.0, 85.0, 80.0]
    assert len(front) == 3


def test_min_and_max_mixed():
    df = pd.DataFrame({"density": [0.1, 0.1, 0.5], "acc": [80.0, 70.0, 90.0]})
    assert pareto_front(df, {"density": "min", "acc": "max"}).rows.index.tolist() == [0, 2]


def test_unknown_direction_names_it():
    df = pd.DataFrame({"a": [1.0]})
    with pytest.raises(ValueError, match=r"'a'.*'maximise'.*max, min"):
        pareto_front(df, {"a": "maximise"})  # type: ignore[dict-item]


def test_missing_column_lists_valid_ones():
    df = pd.DataFrame({"clean_acc": [1.0], "compression": [2.0]})
    with pytest.raises(ValueError, match=r"'pgd_acc'.*clean_acc, compression"):
        pareto_front(df, {"pgd_acc": "max"})


def test_no_objectives_rejected():
    with pytest.raises(ValueError, match="non-empty"):
        pareto_front(pd.DataFrame({"a": [1.0]}), {})


def test_empty_frame_gives_empty_front():
    df = pd.DataFrame({"a": pd.Series([], dtype=float), "b": pd.Series([], dtype=float)})
    assert pareto_front(df, {"a": "max", "b": "min"}).rows.empty


def test_input_not_modified():
    df = pd.DataFrame({"a": [3.0, 1.0, 2.0], "b": [1.0, 3.0, 2.0], "early_stopped": [False, False, True]})
    before = df.copy()
    pareto_front(df, {"a": "max", "b": "max"})
    pd.testing.assert_frame_equal(df, before)


def test_large_frame_matches_chunked_small_frames():
    rng = np.random.default_rng(0)
    values = rng.integers(0, 20, size=(3000, 3)).astype(float)
    mask = pareto.non_dominated_mask(values)
    # every kept row is not dominated by any row; every dropped row is dominated by a kept row
    kept = values[mask]
    for row in values[~mask][:200]:
        assert ((kept >= row).all(axis=1) & (kept > row).any(axis=1)).any()
    for row in kept:
        assert not ((values >= row).all(axis=1) & (values > row).any(axis=1)).any()
