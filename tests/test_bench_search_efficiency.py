"""benchmarks/bench_search_efficiency.py: the analysis of finished runs (files only, no training).

Fake run folders stand in for real ones (a results.parquet and one Tune trial folder per trial);
the hypervolume itself is checked against brute force in test_reports_hypervolume.py.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
CELLS = [(0.05, "irregular", 10.8), (0.1, "irregular", 7.0), (0.2, "irregular", 4.2),
         (0.05, "channel", 7.5), (0.1, "channel", 7.4), (0.2, "channel", 4.4)]  # fmt: skip


@pytest.fixture
def bench():
    sys.path.insert(0, str(BENCH))
    yield importlib.import_module("bench_search_efficiency")
    sys.path.remove(str(BENCH))


def fake_run(run_dir: Path, trials: int, epochs: list[int], seed: int, shift: float = 0.0) -> pd.DataFrame:
    """A run folder whose trials were proposed in the order of their numbers (ids deliberately shuffled)."""
    rng = np.random.default_rng(seed)
    ids = [f"{rng.integers(16**8):08x}" for _ in range(trials)]
    rows = []
    for n, trial_id in enumerate(ids):
        density, pruning, compression = CELLS[n % len(CELLS)]
        ran = epochs[n % len(epochs)]
        val = float(rng.uniform(10, 70) + shift + 20 * density)
        rows.append({"trial_id": trial_id, "status": "TERMINATED", "early_stopped": ran < 6, "epochs_completed": ran,
                     "dnr.density": density, "dnr.pruning": pruning, "dnr.beta": 0.5, "dnr.rho": 1e-4,
                     "dnr.prune_rate": 0.5, "val_pgd_acc": val, "val_clean_acc": 90.0, "compression": compression,
                     "pgd_acc": val - 2.0, "clean_acc": 89.0})  # fmt: skip
        folder = run_dir / f"DNRTrainable_{trial_id}_{n + 1}_dnr_beta=0.5_2026"
        folder.mkdir(parents=True)
        (folder / "result.json").write_text(json.dumps({"trial_id": trial_id, "epoch": 1}) + "\n")
    results = pd.DataFrame(rows)
    results.to_parquet(run_dir / "results.parquet")
    return results


def test_analysis_of_finished_runs(bench, tmp_path, capsys):
    from dnr_sweep.reports.hypervolume import frame_hypervolume

    grid = fake_run(tmp_path / "grid", 48, [6], seed=0)
    fake_run(tmp_path / "tpe_s0", 48, [6], seed=1, shift=10.0)
    fake_run(tmp_path / "tpe_asha_s0", 100, [6, 2, 2], seed=2)  # queued past the budget: cut at 288
    out = bench.main(["--analyse-only", "--no-write", "--storage", str(tmp_path), "--methods", "tpe", "tpe_asha",
                      "--seeds", "0"])  # fmt: skip
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == json.loads(json.dumps(out))
    assert out["budget_trial_epochs"] == 288
    grid_hv = frame_hypervolume(grid, {"val_pgd_acc": "max", "compression": "max"},
                                {"val_pgd_acc": 0.0, "compression": 1.0})  # fmt: skip
    assert out["grid_final_val_hv"] == pytest.approx(grid_hv)
    methods = out["methods"]
    # the grid reaches its own final hypervolume with the trial that last grew it (6 epochs each)
    objectives, reference = {"val_pgd_acc": "max", "compression": "max"}, {"val_pgd_acc": 0.0, "compression": 1.0}
    last = next(k for k in range(1, 49) if frame_hypervolume(grid.iloc[:k], objectives, reference) >= grid_hv)
    assert methods["grid"]["trial_epochs_to_reach_grid_hv"] == [6.0 * last]
    assert methods["grid"]["trials_within_budget"] == [48] and methods["tpe"]["trials_within_budget"] == [48]
    # 6 + 2 + 2 epochs per 3 trials: 86 trials fit 288 trial-epochs (cumulative 286), a third of them finished
    assert methods["tpe_asha"]["trials_within_budget"] == [86]
    assert methods["tpe_asha"]["finished_trials"] == [29]
    reach = methods["tpe"]["trial_epochs_to_reach_grid_hv"][0]
    assert reach is None or reach % 6 == 0
    assert set(methods["tpe"]) >= {"val_hv_at_fraction_of_budget", "test_hv_of_final_front", "chosen_per_cell_test_pgd"}
