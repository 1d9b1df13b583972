"""Hypervolume against a brute-force cell count (2-D and 3-D) and hand examples.

The brute force shares nothing with the implementation: it cuts space into the cells of the grid
spanned by every point's and the reference's coordinates and adds the volume of each cell that some
point dominates (for maximisation: the point is at least the cell's upper corner in every objective).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from dnr_sweep.reports.hypervolume import frame_hypervolume, hypervolume, hypervolume_history


def brute_force(points: np.ndarray, reference: np.ndarray, directions: list[str]) -> float:
    sign = np.array([1.0 if d == "max" else -1.0 for d in directions])
    pts, ref = points * sign, reference * sign  # now every objective is maximised
    pts = pts[(pts >= ref).all(axis=1)]
    axes = [np.unique(np.concatenate([pts[:, k], [ref[k]]])) for k in range(len(ref))]
    total = 0.0
    for cell in itertools.product(*(range(len(a) - 1) for a in axes)):
        upper = np.array([axes[k][i + 1] for k, i in enumerate(cell)])
        lower = np.array([axes[k][i] for k, i in enumerate(cell)])
        if (pts >= upper).all(axis=1).any():
            total += float(np.prod(upper - lower))
    return total


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("seed", range(12))
def test_random_fronts_match_brute_force(dims, seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 14))
    directions = list(rng.choice(["max", "min"], size=dims))
    # integer coordinates make ties and duplicate points common; some points miss the reference
    points = rng.integers(0, 10, size=(n, dims)).astype(float)
    reference = np.array([2.0 if d == "max" else 8.0 for d in directions])
    assert hypervolume(points, reference, directions) == pytest.approx(brute_force(points, reference, directions))


@pytest.mark.parametrize("seed", range(5))
def test_continuous_fronts_match_brute_force(seed):
    rng = np.random.default_rng(100 + seed)
    points = np.column_stack([rng.uniform(0, 100, 25), rng.uniform(1, 20, 25)])  # pgd %, compression x
    expected = brute_force(points, np.array([0.0, 1.0]), ["max", "max"])
    assert hypervolume(points, [0.0, 1.0], ["max", "max"]) == pytest.approx(expected, rel=1e-12)


def test_hand_examples():
    # one box: 60 % x (10 - 1)x
    assert hypervolume([[60.0, 10.0]], [0.0, 1.0], ["max", "max"]) == 540.0
    # two overlapping boxes: 60 x 9 + 80 x 4 - 60 x 4
    assert hypervolume([[60.0, 10.0], [80.0, 5.0]], [0.0, 1.0], ["max", "max"]) == 620.0
    # a dominated point adds nothing; a point behind the reference spans nothing
    assert hypervolume([[60.0, 10.0], [50.0, 9.0], [-5.0, 30.0]], [0.0, 1.0], ["max", "max"]) == 540.0
    # minimisation: loss 1 and 2 below a reference of (4, 4)
    assert hypervolume([[1.0, 2.0]], [4.0, 4.0], ["min", "min"]) == 6.0
    # 3-D unit cube corner
    assert hypervolume([[1.0, 1.0, 1.0]], [0.0, 0.0, 0.0], ["max"] * 3) == 1.0


def test_nan_rows_and_empty_sets_dominate_nothing():
    assert hypervolume([[math.nan, 10.0], [60.0, 10.0]], [0.0, 1.0], ["max", "max"]) == 540.0
    assert hypervolume(np.empty((0, 2)), [0.0, 1.0], ["max", "max"]) == 0.0
    assert hypervolume([[math.nan, math.nan]], [0.0, 1.0], ["max", "max"]) == 0.0


def test_bad_arguments_name_the_problem():
    with pytest.raises(ValueError, match="'up'"):
        hypervolume([[1.0, 2.0]], [0.0, 0.0], ["max", "up"])
    with pytest.raises(ValueError, match="one value per objective"):
        hypervolume([[1.0, 2.0]], [0.0], ["max", "max"])
    with pytest.raises(ValueError, match="finite"):
        hypervolume([[1.0, 2.0]], [0.0, math.inf], ["max", "max"])


def test_frame_hypervolume_uses_the_named_columns():
    df = pd.DataFrame({"val_pgd_acc": [60.0, 80.0], "compression": [10.0, 5.0], "other": [1.0, 2.0]})
    objectives = {"val_pgd_acc": "max", "compression": "max"}
    assert frame_hypervolume(df, objectives, {"val_pgd_acc": 0.0, "compression": 1.0}) == 620.0
    with pytest.raises(ValueError, match="compression"):
        frame_hypervolume(df, objectives, {"val_pgd_acc": 0.0})


def test_history_counts_costs_of_every_trial_and_points_of_counted_ones():
    points = [[60.0, 10.0], [math.nan, math.nan], [80.0, 5.0], [50.0, 9.0]]  # the 2nd was stopped early
    history = hypervolume_history(points, [6, 2, 6, 6], [0.0, 1.0], ["max", "max"])
    assert history.cost.tolist() == [6, 8, 14, 20]
    assert history.hypervolume.tolist() == [540.0, 540.0, 620.0, 620.0]
    assert history.at(5) == 0.0 and history.at(13) == 540.0 and history.at(100) == 620.0
    assert history.cost_to_reach(600.0) == 14 and history.cost_to_reach(700.0) == math.inf
