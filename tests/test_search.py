"""The shipped search (issue #14): digits_search.yaml end to end on Optuna, the per-cell choice on
validation, and the confirmation sweep with its test mean +- 95% CI over seeds."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pandas as pd
import pytest

from dnr_sweep import cli
from dnr_sweep.config import load_sweep_config, validate_sweep
from dnr_sweep.reports.cell_choice import choose_per_cell, proposal_order

REPO = Path(__file__).resolve().parents[1]
SEARCH = REPO / "search_spaces" / "digits_search.yaml"
DEFAULTS = {"dnr.beta": 0.5, "dnr.rho": 1e-4, "dnr.prune_rate": 0.5}


def confirm_search():
    spec = importlib.util.spec_from_file_location("confirm_search", REPO / "scripts" / "confirm_search.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def shrink(config_path: Path) -> list[str]:
    """--set overrides that make the shipped search a 4-trial, 2-epoch CI run (same searcher, same space)."""
    config = load_sweep_config(config_path)
    default_point = {"dnr.density": 0.05, "dnr.pruning": "irregular", **DEFAULTS}
    overrides = ["train.epochs=2", "train.warmup_epochs=1", "train.lr_milestones=[]",
                 "tune.num_samples=4", f"tune.points_to_evaluate=[{default_point}]"]  # fmt: skip
    if config.tune.search_alg.optuna.sampler == "nsga2":
        overrides.append("tune.search_alg.optuna.population_size=2")
    if config.tune.scheduler is not None:
        overrides.append("tune.scheduler.asha.grace_period=1")
    return overrides


@pytest.mark.slow
def test_digits_search_runs_end_to_end_and_feeds_the_confirmation_sweep(ray_session, tmp_path, capsys):
    overrides = shrink(SEARCH)
    argv = ["run", str(SEARCH), "--storage", str(tmp_path), "--name", "search", "--no-dashboard", "--no-report"]
    for item in overrides:
        argv += ["--set", item]
    assert cli.main(argv) == 0, capsys.readouterr().err
    run_dir = tmp_path / "search"
    results = pd.read_parquet(run_dir / "results.parquet")
    results = results.assign(order=results["trial_id"].map(proposal_order(run_dir))).sort_values("order")
    assert len(results) == 4 and set(results["status"]) <= {"TERMINATED", "EARLY_STOPPED"}
    # the enqueued paper default ran first; every other trial was sampled inside the space
    first = results.iloc[0]
    assert (first["dnr.density"], first["dnr.pruning"]) == (0.05, "irregular")
    assert {k: first[k] for k in DEFAULTS} == DEFAULTS
    assert results["dnr.density"].isin([0.05, 0.1, 0.2]).all()
    assert results["dnr.pruning"].isin(["irregular", "channel"]).all()
    assert results["dnr.beta"].between(0.2, 1.0).all() and results["dnr.prune_rate"].between(0.1, 0.9).all()
    assert results["dnr.rho"].between(1e-6, 1e-2).all()
    assert results[["val_pgd_acc", "compression"]].notna().all().all()

    # stage 2: a plain seed grid over the chosen configurations and the defaults, written from this run
    module = confirm_search()
    config = module.confirmation_config(run_dir, [0, 1, 2])
    sweep = validate_sweep(config)
    assert sweep.tune.search_alg is None and sweep.tune.scheduler is None and sweep.tune.metric is None
    assert sweep.search["train.seed"].rule == ("grid", [0, 1, 2])
    chosen = choose_per_cell(results)
    assert len(chosen) >= 1
    points = sweep.tune.points_to_evaluate
    for _, row in chosen.iterrows():
        assert {k: row[k] for k in ("dnr.density", "dnr.pruning", *DEFAULTS)} in points
        assert {"dnr.density": row["dnr.density"], "dnr.pruning": row["dnr.pruning"], **DEFAULTS} in points
    assert sweep.grid_size() == 3 * len(points)
    assert (sweep.train.epochs, sweep.train.warmup_epochs) == (2, 1)  # the search run's --set values carry over
    # the command line writes a runnable file, with fresh seeds by default (the search trained with seed 0)
    assert module.main(["write", str(run_dir), "--out", str(tmp_path / "confirm.yaml")]) == 0
    written = load_sweep_config(tmp_path / "confirm.yaml")
    assert written.search["train.seed"].rule == ("grid", [1, 2, 3])
    assert written.tune.points_to_evaluate == points
    assert "stage 2" in (tmp_path / "confirm.yaml").read_text().split("\nname:")[0]


def _trial(i, density, pruning, beta, val_pgd, status="TERMINATED", early=False, **extra):
    return {"trial_id": f"t{i:02d}", "status": status, "early_stopped": early, "dnr.density": density,
            "dnr.pruning": pruning, "dnr.beta": beta, "dnr.rho": 1e-4, "dnr.prune_rate": 0.5,
            "val_pgd_acc": val_pgd, "val_clean_acc": 90.0, "pgd_acc": 0.0, "clean_acc": 0.0, **extra}  # fmt: skip


def test_the_choice_per_cell_uses_validation_and_finished_trials_only():
    results = pd.DataFrame([
        _trial(0, 0.05, "irregular", 0.5, 60.0, pgd_acc=99.0),  # best on test: irrelevant
        _trial(1, 0.05, "irregular", 0.3, 70.0),
        _trial(2, 0.05, "irregular", 0.2, 90.0, status="TERMINATED", early=True),  # stopped early
        _trial(3, 0.05, "irregular", 0.9, 95.0, status="ERROR"),
        _trial(4, 0.1, "channel", 0.4, 50.0, val_clean_acc=80.0),
        _trial(5, 0.1, "channel", 0.6, 50.0, val_clean_acc=85.0),  # tie on PGD: clean decides
    ])  # fmt: skip
    chosen = choose_per_cell(results)
    assert chosen["trial_id"].tolist() == ["t01", "t05"]
    with pytest.raises(ValueError, match="only validation chooses"):
        choose_per_cell(results, metric="pgd_acc")


def test_confirmation_analysis_gives_student_t_intervals_and_paired_differences(tmp_path):
    rows = []
    for seed, (searched, default) in enumerate([(70.0, 66.0), (72.0, 67.0), (74.0, 71.0)]):
        for beta, pgd in ((0.3, searched), (0.5, default)):
            rows.append({"trial_id": f"{beta}_{seed}", "status": "TERMINATED", "early_stopped": False,
                         "dnr.density": 0.05, "dnr.pruning": "irregular", "dnr.beta": beta, "dnr.rho": 1e-4,
                         "dnr.prune_rate": 0.5, "train.seed": seed, "pgd_acc": pgd, "clean_acc": 90.0})  # fmt: skip
    pd.DataFrame(rows).to_parquet(tmp_path / "results.parquet")
    table = confirm_search().analyse(tmp_path, DEFAULTS)
    searched, default = [line for line in table.splitlines() if line.startswith("| 0.05")]
    # searched 70, 72, 74: mean 72, sd 2, t(0.975, 2) = 4.303 (tables) -> 4.303 * 2 / sqrt(3) = 4.97
    assert "searched: 0.3, 0.0001, 0.5" in searched and "72.0 ± 5.0" in searched
    # default 66, 67, 71: mean 68, sd 2.646 -> 4.303 * 2.646 / sqrt(3) = 6.57
    assert "paper default" in default and "68.0 ± 6.6" in default
    # paired differences 4, 5, 3: mean 4, sd 1 -> 4.303 / sqrt(3) = 2.48
    assert "4.0 ± 2.5" in searched
    assert "90.0 ± 0.0" in searched  # clean accuracy identical over seeds: zero-width interval
    # pooled over cells (one cell here): the same paired difference
    pooled = table.splitlines()[-1]
    assert pooled.startswith("| all | all | searched - default, mean over the 1 cells") and "4.0 ± 2.5" in pooled
    assert math.isclose(confirm_search().t_interval(pd.Series([70.0, 72.0, 74.0]))[1], 4.303 * 2 / math.sqrt(3),
                        rel_tol=1e-3)  # fmt: skip


def test_proposal_order_reads_tune_folder_counters(tmp_path):
    for name, trial_id in (("DNRTrainable_0e4bff78_2_dnr_beta=0.7_2026", "0e4bff78"),
                           ("DNRTrainable_2da7cc61_1_dnr_beta=0.5_2026", "2da7cc61"),
                           ("DNRTrainable_87a4c_00010_10_dnr_beta=0.3_2026", "87a4c_00010")):  # fmt: skip
        (tmp_path / name).mkdir()
        (tmp_path / name / "result.json").write_text(f'{{"trial_id": "{trial_id}", "epoch": 1}}\n')
    assert proposal_order(tmp_path) == {"0e4bff78": 2, "2da7cc61": 1, "87a4c_00010": 10}
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "result.json").write_text('{"trial_id": "x"}\n')
    with pytest.raises(ValueError, match="not a Tune trial folder"):
        proposal_order(tmp_path)


def test_confirm_script_refuses_a_folder_that_is_not_a_finished_run(tmp_path, capsys):
    module = confirm_search()
    assert module.main(["write", str(tmp_path)]) == 2
    assert module.main(["analyse", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no config.yaml or results.parquet" in err and "Traceback" not in err
