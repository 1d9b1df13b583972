"""The search replay (benchmarks/search_sim.py) on hand-made tables, and the shipped table's shape."""

from __future__ import annotations

import itertools
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

#: the replay runs Optuna's samplers: a test environment without Optuna fails here rather than skipping
pytestmark = pytest.mark.needs_tune
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import search_sim as sim  # noqa: E402

CELLS = [(0.05, "irregular"), (0.1, "irregular")]
COMPRESSION = {0.05: 20.0, 0.1: 10.0}


def _row(fidelity: str, config: tuple, val: float, *, seed: int = 0, prefix: list[float] | None = None) -> dict:
    epochs, share = {"full": (6, 1.0), "short3": (3, 1.0), "short3_half": (3, 0.5)}[fidelity]
    density, pruning, beta, rho, p = config
    per_epoch = [{"selected_val_pgd_acc": v} for v in (prefix or [val] * epochs)]
    return {"fidelity": fidelity, "seed": seed, "density": density, "pruning": pruning, "beta": beta, "rho": rho,
            "prune_rate": p, "cost": epochs * share, "per_epoch": per_epoch,
            "final": {"val_pgd_acc": val, "compression": COMPRESSION[density], "pgd_acc": val - 1.0}}  # fmt: skip


def _configs() -> list[tuple]:
    return [(*cell, b, r, p) for cell in CELLS for b, r, p in itertools.product((0.3, 0.5), (1e-4, 1e-3), (0.3, 0.5))]


def _value(config: tuple) -> float:
    """A made-up full-run val PGD: lower beta and pruning rate are better, rho does not matter."""
    return 40.0 - 10 * config[2] - 10 * config[4] + (5.0 if config[0] == 0.1 else 0.0)


@pytest.fixture
def table(tmp_path: Path) -> sim.Table:
    rows = []
    for config in _configs():
        full = _value(config)
        rows.append(_row("full", config, full, prefix=[10, full - 20, full - 10, full - 5, full, full]))
        rows.append(_row("short3", config, -full))  # a short run that ranks them exactly backwards
    path = tmp_path / "table.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return sim.load_table(path)


def test_table_reads_its_rows(table: sim.Table) -> None:
    assert table.cells() == CELLS
    assert len(table.configs()) == 16 and len(table.configs(fidelity="short3")) == 16
    config = (0.05, "irregular", 0.3, 1e-4, 0.3)
    assert table.get(config).val_pgd_acc == _value(config) and table.get(config, "short3").cost == 3.0
    assert table.get(config).prefix_val_pgd_acc[1] == _value(config) - 20
    assert len(sim.grid_configs(table)) == 16


def test_successive_halving_with_retrained_rungs_charges_both_runs_and_promotes_by_the_short_run(
    table: sim.Table,
) -> None:
    spends = sim.successive_halving(table, np.random.default_rng(0), 1.0, rungs=("short3", "full"), candidates=6)
    first = spends[:12]
    assert [s.cost for s in first] == [3.0] * 12 and not any(s.counted for s in first)
    promoted = spends[12:16]
    assert [s.cost for s in promoted] == [6.0] * 4 and all(s.counted for s in promoted)  # retrained from scratch
    for cell in CELLS:
        screened = [s.config for s in first if s.config[:2] == cell]
        worst_full = sorted(screened, key=_value)[:2]  # the short run ranks backwards: the two worst go on
        assert sorted(s.config for s in promoted if s.config[:2] == cell) == sorted(worst_full)
    assert sum(s.cost for s in spends[:16]) == 2 * (6 * 3 + 2 * 6)


def test_successive_halving_on_prefix_rungs_continues_the_run(table: sim.Table) -> None:
    spends = sim.successive_halving(table, np.random.default_rng(1), 1.0, rungs=("prefix2", "full"), candidates=3,
                                    warm=True)  # fmt: skip
    assert [s.cost for s in spends[:6]] == [2.0] * 6
    assert [s.cost for s in spends[6:8]] == [4.0, 4.0]  # the 4 epochs left of the full run
    for cell in CELLS:
        screened = [s.config for s in spends[:6] if s.config[:2] == cell]
        assert screened[0] == (*cell, 0.5, 1e-4, 0.5)  # warm: the paper's default is a candidate
        best = max(screened, key=lambda c: _value(c) - 20)
        assert [s.config for s in spends[6:8] if s.config[:2] == cell] == [best]


def test_replay_cuts_at_the_budget_and_reaches_a_hand_computed_hypervolume(table: sim.Table) -> None:
    a = (0.05, "irregular", 0.5, 1e-4, 0.5)  # val 30, 20x: box 30 x 19 = 570
    b = (0.1, "irregular", 0.3, 1e-4, 0.3)  # val 39, 10x: adds (39 - 30) x 9 = 81
    c = (0.05, "irregular", 0.3, 1e-4, 0.3)  # val 34, 20x: dominates a, adds 4 x 19 = 76
    spends = [sim.Spend(a, 6.0, True), sim.Spend(a, 3.0, False), sim.Spend(b, 6.0, True), sim.Spend(c, 6.0, True)]
    outcome = sim.replay(table, spends, budget=15.0)
    assert list(outcome.history.cost) == [6.0, 9.0, 15.0] and len(outcome.spends) == 3
    assert list(outcome.history.hypervolume) == pytest.approx([570.0, 570.0, 651.0])
    assert outcome.history.cost_to_reach(651.0) == 15.0 and math.isinf(outcome.history.cost_to_reach(700.0))
    assert outcome.front_test_hv == pytest.approx(29 * 19 + 9 * 9)  # the test figures (val - 1) of the same front
    full = sim.replay(table, spends, budget=100.0)
    assert full.history.hypervolume[-1] == pytest.approx(34 * 19 + 5 * 9)


def test_optuna_search_runs_the_defaults_first_and_spends_the_budget(table: sim.Table) -> None:
    import optuna

    spends = sim.optuna_search(table, optuna.samplers.TPESampler(seed=0), 60.0, warm=True)
    assert [s.config[2:] for s in spends[:2]] == [(0.5, 1e-4, 0.5)] * 2
    assert sum(s.cost for s in spends) >= 60.0 and all(s.counted for s in spends)


def test_screening_spends_short_runs_then_full_runs_in_the_short_order(table: sim.Table) -> None:
    spends = sim.screening(table, np.random.default_rng(0), 1.0, fidelity="short3", screened=4)
    assert [s.cost for s in spends[:8]] == [3.0] * 8
    firsts = spends[8:10]
    for s in firsts:
        screened = [t.config for t in spends[:8] if t.config[:2] == s.config[:2]]
        assert s.config == min(screened, key=_value)  # ranked backwards: the worst full run comes first


def test_spearman_and_t_interval_by_hand() -> None:
    assert sim.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert sim.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert sim.spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.9486832980505138)  # scipy's, ties averaged
    mean, half = sim.t_interval([1.0, 2.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(4.302652729911275 * 1.0 / math.sqrt(3))


def test_the_shipped_table_holds_every_configuration() -> None:
    path = ROOT / "benchmarks" / "data" / "search_table_digits.jsonl"
    table = sim.load_table(path)
    assert len(table.configs()) == 240 and len(table.cells()) == 5  # channel pruning at 5% is refused (w0.5)
    assert len(sim.grid_configs(table)) == 40
    assert len(table.configs(fidelity="short3")) == 240 and len(table.configs(seed=1)) == 40
    assert all(math.isfinite(table.get(c).val_pgd_acc) and math.isfinite(table.get(c).test_pgd_acc)
               for c in table.configs())  # fmt: skip


def test_the_benchmark_reports_every_method_on_a_table(table: sim.Table, tmp_path: Path, capsys) -> None:
    import bench_search_efficiency as bench

    path = tmp_path / "t.jsonl"
    rows = []
    for (fidelity, seed, config), row in table.rows.items():
        rows.append(_row(fidelity, config, row.val_pgd_acc, seed=seed, prefix=list(row.prefix_val_pgd_acc)))
        if fidelity == "full":
            rows.append(_row("full", config, row.val_pgd_acc + 1.0, seed=1))
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = bench.main(["--table", str(path), "--seeds", "2", "--gp-seeds", "1", "--no-write", "--methods", "grid",
                      "random", "sh_short3", "oracle"])  # fmt: skip
    assert out["budget"] == 6 * 16 and out["grid_val_hv"] == pytest.approx(sim.hv_of(table, table.configs()))
    grid = out["methods"]["grid"]
    assert grid["reached_within_B"] == 2 and grid["val_hv_at"]["1"]["mean"] == pytest.approx(out["grid_val_hv"])
    assert out["methods"]["oracle"]["reach_mean"] == 12.0  # the best of each of the 2 cells
    assert out["rank_agreement"]["short3/all"]["mean"] == pytest.approx(-1.0)  # ranked exactly backwards
    assert out["rank_agreement"]["seed1/grid"]["mean"] == pytest.approx(1.0)
    assert out["seed_noise"]["val_pgd_sd_of_difference"] == pytest.approx(0.0)
    assert "| oracle |" in capsys.readouterr().err
