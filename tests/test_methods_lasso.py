"""L1 Lasso against hand values: the penalty, its gradient, the thresholding."""

import math

import pytest
import torch

from dnr_sweep.methods import lasso


def test_l1_penalty_and_gradient_by_hand():
    w1 = torch.tensor([0.5, -2.0, 0.0], requires_grad=True)
    w2 = torch.tensor([[1.0, -0.25]], requires_grad=True)
    penalty = lasso.l1_penalty([w1, w2], lam=0.1)
    # 0.1 * (0.5 + 2 + 0 + 1 + 0.25) = 0.375
    assert torch.isclose(penalty, torch.tensor(0.375))
    penalty.backward()
    assert torch.equal(w1.grad, torch.tensor([0.1, -0.1, 0.0]))  # lam * sign(w), 0 at 0
    assert torch.equal(w2.grad, torch.tensor([[0.1, -0.1]]))


def test_threshold_zeroes_weights_under_it():
    w = torch.tensor([0.001, -0.02, 0.5, -0.0099, 0.01])
    assert torch.equal(lasso.threshold_mask(w, 0.01), torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0]))


def test_threshold_keeps_the_largest_weight_of_a_layer_it_would_empty():
    w = torch.tensor([0.001, -0.003, 0.002])
    assert torch.equal(lasso.threshold_mask(w, 0.5), torch.tensor([0.0, 1.0, 0.0]))


def test_the_lasso_term_is_on_in_the_lasso_phase_only():
    """Through the method on a model: lam * sum |w| over the prunable weights (summed here), none at retrain."""
    import pytest

    from dnr_sweep.methods.base import EpochPlan
    from dnr_sweep.training.engine import TrainingRun
    from tests.test_engine import digits_config

    run = TrainingRun(digits_config(method="lasso", lasso__lam=0.003, train__batch_size=128))
    expected = sum(abs(v) for _, w in run.method.prunable() for v in w.detach().flatten().tolist())
    value = run.method.regulariser(EpochPlan("lasso", 1.0, False, 0))
    assert float(value.detach()) == pytest.approx(0.003 * expected, rel=1e-5)
    assert run.method.regulariser(EpochPlan("retrain", 1.0, True, 0)) is None


def test_the_baselines_loss_is_beta_clean_plus_one_minus_beta_adversarial_plus_the_regulariser():
    from dnr_sweep import methods
    from tests.test_engine import digits_config

    for name, changes in (("admm", {}), ("lasso", {}), ("hydra", {"hydra__loss": "pgd"})):  # HYDRA's default: TRADES
        method = methods.build(digits_config(method=name, **changes))
        value = method.objective(torch.tensor(2.0), torch.tensor(3.0), torch.tensor(0.5), beta=0.25)
        assert float(value) == 0.25 * 2.0 + 0.75 * 3.0 + 0.5, name


# -- the density mode: one global threshold chosen to keep lasso.density of the prunable weights


def test_global_keep_masks_by_hand_ties_to_the_lower_index():
    # a's largest (0.5) and b's largest (0.02) first; the one slot left: 0.3 at a[2] and a[3] tie -> a[2]
    weights = {"a": torch.tensor([0.5, -0.1, 0.3, -0.3]), "b": torch.tensor([0.01, -0.02])}
    masks = lasso.global_keep_masks(weights, 3)
    assert torch.equal(masks["a"], torch.tensor([1.0, 0.0, 1.0, 0.0]))
    assert torch.equal(masks["b"], torch.tensor([0.0, 1.0]))


def test_global_keep_masks_ties_across_layers_go_to_the_earlier_layer():
    weights = {"a": torch.tensor([0.2, 0.9]), "b": torch.tensor([[0.8, 0.2]])}
    masks = lasso.global_keep_masks(weights, 3)
    assert torch.equal(masks["a"], torch.tensor([1.0, 1.0])) and torch.equal(masks["b"], torch.tensor([[1.0, 0.0]]))


def test_global_keep_masks_keep_each_layers_largest_and_exactly_keep_weights():
    # a global threshold alone would keep a's 4 and 3; b keeps its largest, so a keeps only 4
    weights = {"a": torch.tensor([1.0, 2.0, 3.0, 4.0]), "b": torch.tensor([0.001, -0.002])}
    masks = lasso.global_keep_masks(weights, 2)
    assert torch.equal(masks["a"], torch.tensor([0.0, 0.0, 0.0, 1.0]))
    assert torch.equal(masks["b"], torch.tensor([0.0, 1.0]))
    gen = torch.Generator().manual_seed(0)
    weights = {"a": torch.randn(7, 3, generator=gen), "b": torch.randn(40, generator=gen), "c": torch.randn(5)}
    for keep in (3, 10, 31, 52):
        masks = lasso.global_keep_masks(weights, keep)
        assert sum(int(m.sum()) for m in masks.values()) == keep
        assert all(m.any() for m in masks.values())
        # a global threshold: outside each layer's reserved largest, every kept |w| >= every dropped |w|
        kept = [abs(v) for n in weights for v, m in zip(weights[n].flatten().tolist(), masks[n].flatten().tolist(),
                                                        strict=True) if m and abs(v) != weights[n].abs().max()]  # fmt: skip
        dropped = [abs(v) for n in weights for v, m in zip(weights[n].flatten().tolist(),
                                                           masks[n].flatten().tolist(), strict=True) if not m]  # fmt: skip
        assert not kept or not dropped or min(kept) >= max(dropped)


@pytest.mark.parametrize("keep", [1, 53])
def test_global_keep_masks_refuse_what_cannot_be_met(keep):
    weights = {"a": torch.ones(50), "b": torch.ones(2)}
    with pytest.raises(ValueError, match=r"keep must be in \[2, 52\]"):
        lasso.global_keep_masks(weights, keep)


def test_density_and_threshold_together_are_refused_naming_both():
    from pydantic import ValidationError

    from dnr_sweep.config import RunConfig

    with pytest.raises(ValidationError, match=r"lasso\.density and lasso\.threshold are both given.*give one"):
        RunConfig(method="lasso", lasso={"density": 0.1, "threshold": 0.01})
    assert RunConfig(method="lasso").lasso.fixed_threshold == 1e-3  # neither: the fixed threshold's default
    assert RunConfig(method="lasso", lasso={"threshold": 0.02}).lasso.fixed_threshold == 0.02
    assert RunConfig(method="lasso", lasso={"density": 0.1}).lasso.fixed_threshold is None


def test_a_density_below_one_weight_per_layer_is_refused_at_validation():
    from dnr_sweep import methods
    from dnr_sweep.models.architectures import get_model
    from tests.test_engine import digits_config

    config = digits_config(method="lasso", lasso__density=1e-4)
    model = get_model("smallcnn", num_classes=10, in_channels=1, width=0.5)
    [problem] = methods.get("lasso").check(config, model)
    assert problem.startswith("lasso.density: 0.0001 keeps") and "raise it to at least" in problem
    assert methods.get("lasso").check(digits_config(method="lasso", lasso__density=0.1), model) == []


SMALL = {"train__batch_size": 128, "train__eval_subset": 60}
LASSO = {"method": "lasso", "lasso__lasso_epochs": 2, "lasso__retrain_epochs": 1, "lasso__lam": 1e-3,
         "lasso__density": 0.1, "lasso__lasso_lr": 0.05}  # fmt: skip


def test_density_mode_lands_at_the_compression_of_dnr_and_admm_at_that_density(tmp_path):
    """On digits, Lasso at lasso.density 0.1 keeps exactly round(0.1 * prunable) weights (counted in the
    saved model.pt here) and its compression is within 10% of what DNR and ADMM reach at density 0.1; its
    threshold step's energy is reported, and magnitude pruning of pre-trained weights is not (NaN)."""
    from dnr_sweep.foundation import run_contract as rc
    from dnr_sweep.training.single_run import train_to_dir
    from tests.test_engine import digits_config

    admm = {"method": "admm", "admm__pretrain_epochs": 1, "admm__admm_epochs": 1, "admm__retrain_epochs": 1,
            "admm__density": 0.1, "admm__beta": 1.0}  # fmt: skip
    runs = {name: (train_to_dir(digits_config(**SMALL, **changes), tmp_path / name, log=lambda _: None),
                   torch.load(tmp_path / name / rc.MODEL_FILE, weights_only=True))
            for name, changes in (("lasso", LASSO), ("admm", admm),
                                  ("dnr", {"train__epochs": 2, "dnr__density": 0.1}))}  # fmt: skip
    result, state = runs["lasso"]
    convs = [v for k, v in state.items() if k.endswith(".weight") and v.dim() == 4]
    assert sum(int((w != 0).sum()) for w in convs) == round(0.1 * sum(w.numel() for w in convs))
    for other in ("admm", "dnr"):
        assert result["compression"] == pytest.approx(runs[other][0]["compression"], rel=0.10), other
    assert 0 < result["prune_energy_removed"] < 1 and math.isnan(result["magnitude_energy_removed"])
