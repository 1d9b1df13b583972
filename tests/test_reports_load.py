"""Loading a run directory: Parquet and the result.json rebuild give the same tables."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dnr_sweep import reports
from dnr_sweep.foundation.errors import DataRecoveryWarning
from dnr_sweep.reports.load import load_attack_strength, load_run, rebuild_tables
from tests.synthetic_runs import synthetic_tables, write_synthetic_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return write_synthetic_run(tmp_path_factory.mktemp("run") / "exp", parquet=True)


def test_rebuild_from_result_json_equals_parquet(run_dir):
    from_parquet = reports.load(run_dir)
    from_json, epochs_from_json = rebuild_tables(run_dir)
    pd.testing.assert_frame_equal(from_json, from_parquet)  # same columns, order, dtypes and values
    pd.testing.assert_frame_equal(epochs_from_json, reports.load_epochs(run_dir))


def test_rebuild_equals_the_ground_truth(run_dir):
    truth_results, truth_epochs = synthetic_tables()
    rebuilt, epochs = rebuild_tables(run_dir)
    assert len(rebuilt) == len(truth_results) == 21  # 20 finished (12 configurations, 4 with 3 seeds) + 1
    truth = truth_results.set_index("trial_id").loc[rebuilt["trial_id"]]
    for column in ("clean_acc", "pgd_acc", "autoattack_acc", "compression", "layer_density/conv1"):
        np.testing.assert_array_equal(rebuilt[column].to_numpy(), truth[column].to_numpy())
    assert len(epochs) == len(truth_epochs)


def test_canonical_columns(run_dir):
    df = reports.load(run_dir)
    assert list(df.columns[:5]) == [
        "trial_id",
        "status",
        "early_stopped",
        "epochs_completed",
        "selected_epoch",
    ]
    assert list(df.columns[5:7]) == ["model.arch", "data.dataset"]
    layers = [c for c in df.columns if c.startswith("layer_density/")]
    assert layers == [
        "layer_density/conv1",
        "layer_density/layer1.0.conv1",
        "layer_density/layer1.0.conv2",
        "layer_density/layer2.0.conv1",
        "layer_density/layer2.0.conv2",
        "layer_density/layer3.0.conv1",
    ]  # network order, not sorted
    assert df["trial_id"].is_monotonic_increasing
    assert df["selected_epoch"].dtype == "Int64"
    epochs = reports.load_epochs(run_dir)
    from dnr_sweep.foundation.run_contract import EPOCH_METRICS

    known = [c for c in EPOCH_METRICS if c in epochs.columns]
    assert list(epochs.columns[: 2 + len(known)]) == ["trial_id", "epoch", *known]  # the contract's order
    assert {"dnr.density", "dnr.pruning", "model.arch"} <= set(epochs.columns)
    assert not {"pid", "hostname", "config", "training_iteration", "clean_acc", "final"} & set(epochs.columns)


def test_unfinished_trial_is_incomplete_and_early_stopped(run_dir):
    df, _ = rebuild_tables(run_dir)
    row = df[df["trial_id"] == "t020"].iloc[0]
    assert row["status"] == "INCOMPLETE"
    assert bool(row["early_stopped"]) is True
    assert row["epochs_completed"] == 2
    # an unfinished trial keeps its selected figures so far, and has no test figures
    assert row["selected_epoch"] >= 1 and not np.isnan(row["val_clean_acc"]) and np.isnan(row["clean_acc"])
    assert (df.loc[df["trial_id"] != "t020", "status"] == "TERMINATED").all()


def test_missing_parquet_rebuilds(tmp_path, run_dir):
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    (copy / "epochs.parquet").unlink()
    run = load_run(copy)
    assert run.rebuilt
    pd.testing.assert_frame_equal(run.results, reports.load(run_dir))
    assert run.config["model"]["arch"] == "resnet18"


def test_restored_trial_keeps_last_line_per_epoch_and_nested_config(tmp_path):
    folder = tmp_path / "exp" / "trial_a"
    folder.mkdir(parents=True)
    lines = [
        {"trial_id": "a", "training_iteration": 1, "this_epoch/loss": 2.0, "config": {"dnr": {"density": 0.1}}},
        {"trial_id": "a", "training_iteration": 2, "this_epoch/loss": 1.5, "config": {"dnr": {"density": 0.1}}},
        # restored from the epoch-1 checkpoint: epoch 2 is reported again
        {
            "trial_id": "a",
            "training_iteration": 2,
            "this_epoch/loss": 1.4,
            "config": {"dnr": {"density": 0.1}},
            "final": True,
            "done": True,
            "clean_acc": 80.0,
            "fgsm_acc": 40.0,
            "pgd_acc": 30.0,
            "selected_epoch": 2,
            "compression": 5.0,
            "density": 0.2,
            "channels_present": 0.9,
        },
    ]
    (folder / "result.json").write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    results, epochs = rebuild_tables(tmp_path / "exp")
    assert epochs["loss"].tolist() == [2.0, 1.4]
    assert results.loc[0, "dnr.density"] == 0.1
    assert results.loc[0, "status"] == "TERMINATED"
    assert pd.isna(results.loc[0, "model.arch"])  # neither in the trial config nor in a config.yaml


def _trial_line(epoch: int, loss: float, *, final: bool = False) -> dict:
    line = {"trial_id": "a", "epoch": epoch, "this_epoch/loss": loss, "config": {"dnr": {"density": 0.1}},
            "selected_epoch": epoch, "val_clean_acc": 50.0 + epoch, "final": final}  # fmt: skip
    return {**line, "clean_acc": 80.0, "compression": 5.0} if final else line


def test_epochs_a_killed_driver_lost_come_from_the_trials_own_record(tmp_path):
    # Tune stages result.json on the driver: the killed driver's copy on storage had epoch 1 only, and the
    # trial, restored from its epoch-2 checkpoint, appended epoch 3; its record holds all three
    folder = tmp_path / "exp" / "trial_a"
    folder.mkdir(parents=True)
    lines = [_trial_line(1, 2.0), _trial_line(3, 1.0, final=True)]
    (folder / "result.json").write_text("".join(json.dumps(line) + "\n" for line in lines))
    record = [{"epoch": 1, "loss": 2.0}, {"epoch": 2, "loss": 1.5}, {"epoch": 3, "loss": 1.0}]
    (folder / "epochs.json").write_text(json.dumps(record))
    results, epochs = rebuild_tables(tmp_path / "exp")
    assert epochs["epoch"].tolist() == [1, 2, 3] and epochs["loss"].tolist() == [2.0, 1.5, 1.0]
    assert epochs["dnr.density"].tolist() == [0.1] * 3
    assert results["status"].tolist() == ["TERMINATED"] and results["epochs_completed"].tolist() == [3]
    # where both hold an epoch, the record wins (the trial continued from it)
    (folder / "epochs.json").write_text(json.dumps([{"epoch": 1, "loss": 1.9}]))
    assert rebuild_tables(tmp_path / "exp")[1]["loss"].tolist() == [1.9, 1.0]


@pytest.mark.parametrize("damage", ["{cut", "[1, 2]", '{"epoch": 1}', '[{"epoch": "1"}]', '[{"epoch": true}]'])
def test_an_unreadable_epoch_record_is_named_and_result_json_used(tmp_path, damage):
    folder = tmp_path / "exp" / "trial_a"
    folder.mkdir(parents=True)
    (folder / "result.json").write_text(json.dumps(_trial_line(1, 2.0)) + "\n")
    (folder / "epochs.json").write_text(damage)
    with pytest.warns(DataRecoveryWarning, match=r"trial_a/epochs\.json: .*come from result\.json alone"):
        _, epochs = rebuild_tables(tmp_path / "exp")
    assert epochs["loss"].tolist() == [2.0]


def test_missing_run_dir_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.*results.parquet"):
        reports.load(tmp_path / "nowhere")


def test_empty_run_dir_says_what_is_expected(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"result\.json"):
        reports.load(tmp_path)


def test_bad_json_line_is_skipped_with_a_warning_naming_file_and_line(tmp_path):
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "result.json").write_text('{"trial_id": "x", "training_iteration": 1}\n{oops\n')
    with pytest.warns(DataRecoveryWarning, match=r"result\.json:2 .*skipped"):
        results, epochs = rebuild_tables(tmp_path)
    assert results["trial_id"].tolist() == ["x"] and epochs["epoch"].tolist() == [1]


def test_attack_strength_curves(run_dir):
    curves = load_attack_strength(run_dir)
    assert len(curves) == 4  # irregular/channel at 5 % and 50 % density
    any_curve = next(iter(curves.values()))
    assert sorted(any_curve) == ["eps", "steps"]
    assert all(isinstance(k, float) for k in any_curve["eps"])
    assert set(curves) <= set(reports.load(run_dir)["trial_id"])


def test_reports_imports_no_ray_or_torch():
    code = (
        "import sys, dnr_sweep.reports.build, dnr_sweep.reports.figures, dnr_sweep.reports.figure_data, "
        "dnr_sweep.reports.chooser, dnr_sweep.reports.methods, dnr_sweep.reports.seeds, dnr_sweep.reports.tables, dnr_sweep.reports.html;"
        "bad = {'ray', 'torch', 'dnr_sweep.sweep', 'matplotlib.pyplot'} & set(sys.modules);"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])
