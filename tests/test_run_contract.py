"""The run contract: one vocabulary, and every place that writes a run's result agrees with it."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pandas as pd
import pytest
import torch
import yaml

from dnr_sweep import cli
from dnr_sweep.foundation import run_contract as rc
from dnr_sweep.models.architectures import get_model
from dnr_sweep.sparsity import accounting
from dnr_sweep.sweep import trainable
from tests.test_sweep import BASE, write_config


def test_the_contract_is_standard_library_only():
    """The contract imports nothing but the standard library; the report loader (which validates what it reads with
    the one JSON reader's pydantic schemas) no torch and no Ray."""
    code = ("import sys, dnr_sweep.foundation.run_contract; "
            "print([m for m in ('torch', 'ray', 'pandas', 'pydantic') if m in sys.modules]); "
            "import dnr_sweep.reports.load; print([m for m in ('torch', 'ray') if m in sys.modules])")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[:2] == ["[]", "[]"]


def test_metrics_json_round_trips_and_refuses_unknown_keys():
    result = {"selected_epoch": 3, "selected_on": "val", "clean_acc": 90.0, "fgsm_acc": 60.0, "pgd_acc": 50.0,
              "val_pgd_acc": 51.0, "density": 0.1, "layer_density/conv1": 1.0, "layer_density/fc": 0.5,
              "pgd50x10_acc": 48.0, "val_pgd20_acc": 49.0, "speedup_cpu": 2.0}  # fmt: skip
    written = rc.metrics_json(result)
    assert list(written)[:3] == ["selected_epoch", "selected_on", "clean_acc"]
    assert written["layer_density"] == {"conv1": 1.0, "fc": 0.5}
    assert rc.flat_metrics(json.loads(json.dumps(written))) == result
    with pytest.raises(ValueError, match="register them"):
        rc.metrics_json({**result, "my_new_metric": 1.0})
    with pytest.raises(ValueError, match="unknown key"):
        rc.flat_metrics({**written, "loss": 1.0})
    with pytest.raises(ValueError, match="missing key 'clean_acc'"):
        rc.flat_metrics({k: v for k, v in written.items() if k != "clean_acc"})


def test_names_by_split():
    assert rc.validation_twin("pgd_acc") == "val_pgd_acc" and rc.validation_twin("test_clean_acc") == "val_clean_acc"
    assert rc.validation_twin("compression") is None
    assert all(rc.is_test_metric(m) for m in ("clean_acc", "test_pgd_acc", "autoattack_acc", "pgd20x5_acc"))
    assert not any(rc.is_test_metric(m) for m in ("val_clean_acc", "val_pgd20_acc", "density"))
    assert rc.attack_metric("pgd50x10", "val") == "val_pgd50x10_acc"
    assert not rc.is_run_metric("pgd_x_acc") and not rc.is_run_metric("layer_density/")
    result = rc.tune_result(2, {"loss": 1.0, "layer_density/a": 0.5}, {"val_clean_acc": 80.0}, None)
    assert result == {"epoch": 2, "this_epoch/loss": 1.0, "this_epoch/layer_density/a": 0.5, "val_clean_acc": 80.0,
                      "final": False}  # fmt: skip
    assert rc.split_epoch_result(result) == ({"loss": 1.0, "layer_density/a": 0.5},
                                             {"epoch": 2, "val_clean_acc": 80.0, "final": False})  # fmt: skip


@pytest.fixture
def one_trial_config(tmp_path):
    train = {**BASE["train"], "epochs": 2, "num_threads": 1, "seed": 3}
    return write_config(tmp_path, train=train, dnr={"pruning": "channel", "density": 0.3})


def test_a_sweep_trial_writes_the_same_metrics_json_as_train(ray_session, tmp_path, one_trial_config, capsys):
    assert cli.main(["train", str(one_trial_config), "--out", str(tmp_path / "train")]) == 0
    code = cli.main(["run", str(one_trial_config), "--storage", str(tmp_path), "--name", "sweep", "--no-dashboard",
                     "--no-report"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    [trial] = [p.parent for p in (tmp_path / "sweep").glob(f"*/{rc.MODEL_FILE}")]
    trained = json.loads((tmp_path / "train" / rc.METRICS_FILE).read_text())
    swept = json.loads((trial / rc.METRICS_FILE).read_text())
    assert swept == trained
    # ... and they describe the model.pt beside them: sparsity counted again from its weights
    config = yaml.safe_load((trial / rc.CONFIG_FILE).read_text())
    model = get_model(config["model"]["arch"], num_classes=10, in_channels=1, width=config["model"]["width"])
    model.load_state_dict(torch.load(trial / rc.MODEL_FILE, weights_only=True))
    assert swept["density"] == accounting.density(model)
    assert swept["compression"] == accounting.compression(model)
    assert swept["channels_present"] == accounting.channels_present(model)
    # ... and so does its results.parquet row (the final Tune result)
    row = pd.read_parquet(tmp_path / "sweep" / rc.RESULTS_FILE).iloc[0]
    for key, value in rc.flat_metrics(swept).items():
        # metrics.json writes NaN (a method's figure it does not have, e.g. DNR's ADMM residual) as null
        assert row[key] == value or (value is None and pd.isna(row[key])), key
    assert all(swept[name] is None for name in rc.METHOD_RUN_METRICS)  # DNR has none: in every result, empty


def contract_metric_trainable() -> type:
    """A test-only trainable whose workers register a new post-training metric and produce it."""

    class WithToyMetric(trainable.SweepTrainable):
        def setup(self, config, base=None):
            from dnr_sweep.foundation import run_contract
            from dnr_sweep.training import finish

            if "toy_score" not in run_contract.POST_TRAINING_METRICS:
                run_contract.register_post_training("toy_score", "a metric added by a test")
                produce = finish.after_training
                finish.after_training = lambda run, folder: {**produce(run, folder), "toy_score": 0.25}
            super().setup(config, base)

    return WithToyMetric


def test_a_metric_registered_in_the_contract_reaches_results_parquet(
    ray_session, tmp_path, one_trial_config, monkeypatch, capsys
):
    monkeypatch.setattr(trainable, "SweepTrainable", contract_metric_trainable())
    monkeypatch.setitem(rc.POST_TRAINING_METRICS, "toy_score", rc.PostTrainingMetric("toy_score", "test"))
    code = cli.main(["run", str(one_trial_config), "--storage", str(tmp_path), "--name", "toy", "--no-dashboard"])
    assert code == 0, capsys.readouterr().err
    results = pd.read_parquet(tmp_path / "toy" / rc.RESULTS_FILE)
    assert results["toy_score"].tolist() == [0.25]
    [metrics] = list((tmp_path / "toy").glob(f"*/{rc.METRICS_FILE}"))
    assert json.loads(metrics.read_text())["toy_score"] == 0.25


def test_the_default_selection_figure_and_its_tie_break():
    """Validation chooses on PGD accuracy, ties to clean; the paper's protocol chooses on clean test accuracy."""
    assert rc.default_select_metric("val") == "val_pgd_acc"
    assert rc.default_select_metric("test") == "test_clean_acc"
    assert rc.tie_break_metric("val_pgd_acc") == "val_clean_acc"
    assert rc.tie_break_metric("val_fgsm_acc") == "val_clean_acc"
    assert rc.tie_break_metric("val_clean_acc") == "val_pgd_acc"
    assert rc.tie_break_metric("test_clean_acc") == "test_pgd_acc"
    with pytest.raises(ValueError, match="not a per-epoch selection figure"):
        rc.tie_break_metric("pgd_acc")


def test_the_method_figures_and_adversarial_epochs_are_contract_names_every_reader_accepts(tmp_path):
    """A run's result with the methods' own figures (NaN where a method has none) and train_adv_epochs passes
    metrics.json both ways; an epoch record holding ADMM's per-epoch figures is read, not refused."""
    from dnr_sweep.reports import trial_files
    from dnr_sweep.reports.load import RESULT_METRICS

    assert rc.TRAIN_ADV_EPOCHS in rc.COST_METRICS and set(rc.METHOD_EPOCH_METRICS) <= set(rc.EPOCH_METRICS)
    result = {"selected_epoch": 3, "clean_acc": 90.0, "fgsm_acc": 60.0, "pgd_acc": 50.0, "train_adv_epochs": 7,
              "prune_energy_removed": 0.1, "magnitude_energy_removed": float("nan")}  # fmt: skip
    assert rc.flat_metrics(json.loads(json.dumps(rc.metrics_json(result))))["train_adv_epochs"] == 7
    assert all(name in RESULT_METRICS for name in (*rc.COST_METRICS, *rc.METHOD_RUN_METRICS))
    figures = {"phase": "admm", "loss": 1.0, "admm_residual": 2.5, "admm_rho": 1.3e-3}
    (tmp_path / rc.TRIAL_EPOCHS_FILE).write_text(json.dumps([{"epoch": 1, **figures}, {"epoch": 2, "phase": "retrain",
                                                              "admm_residual": float("nan")}]))  # fmt: skip
    record, notes = trial_files.read_epoch_record(tmp_path)
    assert notes == [] and record[1] == figures and math.isnan(record[2]["admm_residual"])
