"""Every training method through the engine on digits: targets met exactly (Lasso: its outcome
reported exactly), the compression reported equals the nonzeros of the saved model.pt, selection
within the final phase, frozen weights in HYDRA's score phase, costs by hand, exact resume."""

from __future__ import annotations

import json

import pytest
import torch

from dnr_sweep.artifacts import checkpoint
from dnr_sweep.foundation import run_contract as rc
from dnr_sweep.training.engine import TrainingRun
from dnr_sweep.training.single_run import train_to_dir
from tests.test_engine import digits_config

SMALL = {"train__batch_size": 128, "train__eval_subset": 60}
ADMM = {"method": "admm", "admm__pretrain_epochs": 1, "admm__admm_epochs": 2, "admm__retrain_epochs": 1,
        "admm__density": 0.1, "admm__pretrain_lr": 0.05, "admm__admm_lr": 0.02, "admm__retrain_lr": 0.02}  # fmt: skip
LASSO = {"method": "lasso", "lasso__lasso_epochs": 2, "lasso__retrain_epochs": 1, "lasso__lam": 1e-3,
         "lasso__threshold": 2e-2, "lasso__lasso_lr": 0.05}  # fmt: skip
HYDRA = {"method": "hydra", "hydra__pretrain_epochs": 1, "hydra__prune_epochs": 2, "hydra__finetune_epochs": 1,
         "hydra__density": 0.1, "hydra__pretrain_lr": 0.05}  # fmt: skip


def model_counts(state: dict[str, torch.Tensor], names: list[str]) -> dict[str, tuple[int, int]]:
    """(nonzero, all) of each named layer's weight in a saved state_dict, counted here."""
    return {n: (int((state[f"{n}.weight"] != 0).sum()), state[f"{n}.weight"].numel()) for n in names}


def all_weight_layers(state: dict[str, torch.Tensor]) -> list[str]:
    return [k[: -len(".weight")] for k, v in state.items() if k.endswith(".weight") and v.dim() in (2, 4)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = {}
    for name, changes in (("admm", ADMM), ("lasso", LASSO), ("hydra", HYDRA)):
        folder = tmp_path_factory.mktemp(name)
        result = train_to_dir(digits_config(**SMALL, **changes), folder, log=lambda _: None)
        out[name] = (result, torch.load(folder / rc.MODEL_FILE, weights_only=True), folder)
    return out


@pytest.mark.parametrize("name", ["admm", "lasso", "hydra"])
def test_reported_compression_is_the_saved_models_nonzeros(runs, name):
    result, state, folder = runs[name]
    counts = model_counts(state, all_weight_layers(state))
    nonzero, total = sum(c[0] for c in counts.values()), sum(c[1] for c in counts.values())
    assert result["compression"] == pytest.approx(total / nonzero, rel=1e-12)
    convs = [n for n in counts if state[f"{n}.weight"].dim() == 4]
    assert result["density"] == pytest.approx(sum(counts[n][0] for n in convs) / sum(counts[n][1] for n in convs))
    assert json.loads((folder / rc.METRICS_FILE).read_text())["compression"] == result["compression"]
    assert result["method"] == name and result["pruning_type"] == "irregular"


def test_admm_naive_meets_its_target_exactly(runs):
    result, state, _ = runs["admm"]
    convs = [n for n in all_weight_layers(state) if state[f"{n}.weight"].dim() == 4]
    counts = model_counts(state, convs)
    total = sum(c[1] for c in counts.values())
    first = counts[convs[0]]
    assert first[0] == first[1]  # naive: the first layer dense
    assert sum(c[0] for c in counts.values()) == round(0.1 * total)


def test_hydra_keeps_round_k_of_every_layer(runs):
    _, state, _ = runs["hydra"]
    for nonzero, numel in model_counts(
        state, [n for n in all_weight_layers(state) if state[f"{n}.weight"].dim() == 4]
    ).values():
        assert nonzero == max(1, round(0.1 * numel))


def test_lasso_reports_its_outcome_exactly(runs):
    result, state, _ = runs["lasso"]
    convs = [n for n in all_weight_layers(state) if state[f"{n}.weight"].dim() == 4]
    counts = model_counts(state, convs)
    assert result["density"] == sum(c[0] for c in counts.values()) / sum(c[1] for c in counts.values())
    assert 0.0 < result["density"] < 1.0  # an outcome of lambda and the threshold, neither target nor dense


@pytest.mark.parametrize("name,final_phase_start", [("admm", 4), ("lasso", 3), ("hydra", 4)])
def test_selection_only_in_the_final_phase(runs, name, final_phase_start):
    result, _, _ = runs[name]
    assert result["selected_epoch"] >= final_phase_start


@pytest.mark.parametrize(("name", "dense_phases", "pruned_phases"), [
    ("admm", ["pretrain", "admm"], ["retrain"]),  # ADMM trains dense under its penalty; the hard prune is at retrain
    ("lasso", ["lasso"], ["retrain"]),
    ("hydra", ["pretrain"], ["prune", "finetune"]),  # the score phase computes with weight * top-k(scores)
])  # fmt: skip
def test_each_phase_is_dense_or_pruned_as_the_method_says_and_rewires_nothing(runs, name, dense_phases, pruned_phases):
    import pandas as pd

    result, _, folder = runs[name]
    epochs = pd.read_csv(folder / rc.EPOCHS_CSV)
    for phase in dense_phases:
        assert (epochs.loc[epochs["phase"] == phase, "mask_density"] == 1.0).all(), phase
    for phase in pruned_phases:
        rows = epochs.loc[epochs["phase"] == phase]
        assert len(rows) and (rows["density"] == result["density"]).all(), phase
        assert (rows["mask_density"] == rows["density"]).all(), phase  # the masks are what the weights show
    assert (epochs["prune_rate"] == 0.0).all()  # prune_rate is DNR's rewiring; no baseline rewires


@pytest.mark.parametrize("changes,zero,expected", [
    (ADMM, "admm__pretrain_epochs", ["admm", "retrain"]),
    (HYDRA, "hydra__pretrain_epochs", ["prune", "finetune"]),
])  # fmt: skip
def test_a_phase_of_zero_epochs_is_left_out(changes, zero, expected):
    from dnr_sweep import methods

    config = digits_config(**{**changes, zero: 0})
    phases = methods.build(config).phases()
    assert [p.name for p in phases] == expected
    assert config.train.epochs == sum(p.epochs for p in phases)


def test_costs_by_hand(runs):
    # HYDRA's default TRADES with 3 KL steps: the attack's clean target forward (1) + 3 * (forward + input
    # backward) (9) + the loss's clean and adversarial forwards (2) and their backward (4) = 16 FE per image-step
    result, _, _ = runs["hydra"]
    assert result[rc.TRAIN_FWD_EQUIV] == pytest.approx(4 * 16)
    assert (result["epochs_pretrain"], result["epochs_prune"], result["epochs_finetune"]) == (1, 2, 1)
    # beta 0 throughout: every epoch of every phase generates adversarial examples
    assert {name: runs[name][0][rc.TRAIN_ADV_EPOCHS] for name in runs} == {"admm": 4, "lasso": 3, "hydra": 4}
    dnr = TrainingRun(digits_config(**SMALL, train__epochs=3, train__warmup_epochs=1))
    assert [dnr.train_epoch().metrics["fwd_equiv"] for _ in range(3)] == [3.0, 15.0, 15.0]  # clean-only, then hybrid
    assert dnr.final_metrics()[rc.TRAIN_ADV_EPOCHS] == 2  # the warmup generates no adversarial examples


@pytest.mark.parametrize("changes", [
    {"train__epochs": 2, "train__warmup_epochs": 0, "dnr__beta": 1.0},  # DNR-C
    {**ADMM, "admm__beta": 1.0},  # a baseline trained clean
])  # fmt: skip
def test_clean_training_counts_no_adversarial_epoch(changes):
    run = TrainingRun(digits_config(**SMALL, **changes))
    while not run.finished:
        assert run.train_epoch().metrics["fwd_equiv"] == 3.0
    assert run.final_metrics()[rc.TRAIN_ADV_EPOCHS] == 0


def test_the_method_figures_are_in_every_result_nan_where_a_method_has_none(runs):
    reported = {"admm": [True, True], "lasso": [True, False], "hydra": [False, False]}  # (prune, magnitude)
    for name, (result, _, folder) in runs.items():
        figures = [result[k] for k in ("prune_energy_removed", "magnitude_energy_removed")]
        assert [0 < v < 1 for v in figures] == reported[name], name
        assert all(v != v for v, r in zip(figures, reported[name], strict=True) if not r), name  # NaN, not absent
        written = json.loads((folder / rc.METRICS_FILE).read_text())
        assert set(rc.METHOD_RUN_METRICS) <= set(written) and written[rc.TRAIN_ADV_EPOCHS] == result["epochs"]


@pytest.mark.parametrize("freeze_bn", [False, True])
def test_hydra_score_phase_moves_scores_and_batchnorm_not_weights(freeze_bn):
    # the authors' utils/model.py freezes every weight and bias outside BatchNorm2d, BatchNorm too with --freeze-bn
    run = TrainingRun(digits_config(**SMALL, **HYDRA, hydra__freeze_bn=freeze_bn))
    run.train_epoch()  # pretrain
    bn = {f"{name}.{p}" for name, m in run.model.named_modules() if isinstance(m, torch.nn.BatchNorm2d)
          for p in ("weight", "bias")}  # fmt: skip
    assert len(bn) == 6  # smallcnn: three BatchNorm2d
    moving = set() if freeze_bn else bn
    before = {
        k: v.clone()
        for k, v in run.model.state_dict().items()
        if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))
    }
    stats = {k: v.clone() for k, v in run.model.state_dict().items() if k.endswith("running_mean")}
    run.method.start_epoch(1)
    scores_at_start = {n: s.detach().clone() for n, s in run.method.scores.items()}
    run.method.current = None  # let train_epoch enter the phase as usual (fresh scores from the same weights)
    run.train_epoch()
    after = {k: v.clone() for k, v in run.model.state_dict().items()}
    assert {k for k in before if not torch.equal(before[k], after[k])} == moving  # the rest bit-identical
    assert any(not torch.equal(scores_at_start[n], s) for n, s in run.method.scores.items())
    assert {n for n, p in run.model.named_parameters() if p.requires_grad} == moving  # frozen: no gradient
    assert all(not torch.equal(v, after[k]) for k, v in stats.items())  # running statistics: train mode either way
    run.train_epoch()  # the second score epoch
    run.train_epoch()  # finetune: the kept weights train again
    assert all(p.requires_grad for p in run.model.parameters())
    trained = run.model.state_dict()
    assert any(not torch.equal(after[k], trained[k]) for k in before if k.endswith(".weight"))


@pytest.mark.parametrize("changes", [ADMM, HYDRA], ids=["admm", "hydra"])
def test_resume_inside_a_phase_continues_exactly(tmp_path, changes):
    config = digits_config(**SMALL, **changes)
    straight = train_to_dir(config, tmp_path / "straight", log=lambda _: None)
    run = TrainingRun(config)
    rows = [{"epoch": r.epoch, **r.metrics} for r in (run.train_epoch() for _ in range(2))]  # inside admm / prune
    out = tmp_path / "run"
    out.mkdir()
    checkpoint.save(
        {"config": config.model_dump(mode="json"), "run": run.state_dict(), "rows": rows}, out / rc.CHECKPOINT_FILE
    )
    resumed = train_to_dir(config, out, resume=True, log=lambda _: None)
    assert resumed == straight
    assert resumed[rc.TRAIN_ADV_EPOCHS] == 4


def test_a_trial_of_a_method_sweep_reads_its_block_from_the_base_config():
    from dnr_sweep.config import RunConfig, run_config_from_flat, to_yaml_dict, validate_sweep

    sweep = validate_sweep({"train": {"epochs": 5, "warmup_epochs": 1, "lr_milestones": [3]},
                            "admm": {"pretrain_epochs": 1, "admm_epochs": 2, "retrain_epochs": 3},
                            "search": {"method": {"grid": ["dnr", "admm"]}}})  # fmt: skip
    base = RunConfig.model_validate(to_yaml_dict(sweep.base_run()))  # what the trainable is given
    trial = run_config_from_flat(base, {"method": "admm"})
    assert trial.train.epochs == 6 and trial.admm.retrain_epochs == 3
    assert set(to_yaml_dict(RunConfig())) == {"name", "data", "model", "train", "dnr", "attack", "evaluate", "export"}


def test_hydra_scores_follow_the_prune_phases_cosine_learning_rate():
    from dnr_sweep.methods.base import cosine_lr

    run = TrainingRun(digits_config(**SMALL, **{**HYDRA, "hydra__prune_epochs": 3, "hydra__prune_lr": 0.2}))
    run.train_epoch()  # pretrain
    seen = []
    for _ in range(3):
        run.train_epoch()
        seen.append(run.method.score_optimizer.param_groups[0]["lr"])
    assert seen == [cosine_lr(0.2, index, 3) for index in range(3)]
    assert seen[1] < seen[0]  # the schedule really moved


def test_method_figures_keep_the_contracts_names_and_refuse_others():
    import math

    from dnr_sweep.training.engine import method_figures

    names = rc.METHOD_EPOCH_METRICS
    assert method_figures({"admm_rho": 2}, names, "epoch_metrics", fill=False) == {"admm_rho": 2.0}
    filled = method_figures({"admm_rho": 2}, names, "epoch_metrics", fill=True)
    assert list(filled) == list(names) and math.isnan(filled["admm_residual"]) and filled["admm_rho"] == 2.0
    with pytest.raises(ValueError, match=r"epoch_metrics\(\) reported \['my_figure'\].*register them"):
        method_figures({"my_figure": 1.0}, names, "epoch_metrics", fill=False)


def test_admms_residual_and_rho_land_in_the_epoch_rows_of_its_admm_phase(runs):
    import pandas as pd

    _, _, folder = runs["admm"]
    epochs = pd.read_csv(folder / rc.EPOCHS_CSV)
    admm = epochs["phase"] == "admm"
    assert (epochs.loc[admm, "admm_residual"] > 0).all() and (epochs.loc[admm, "admm_rho"] == 1e-3).all()
    assert epochs.loc[~admm, ["admm_residual", "admm_rho"]].isna().all().all()  # pretrain, retrain: none
