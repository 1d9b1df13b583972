"""L1 Lasso against hand values: the penalty, its gradient, the thresholding."""

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
    from dnr_sweep.training.engine import DNRRun
    from tests.test_engine import digits_config

    run = DNRRun(digits_config(method="lasso", lasso__lam=0.003, train__batch_size=128))
    expected = sum(abs(v) for _, w in run.method.prunable() for v in w.detach().flatten().tolist())
    value = run.method.regulariser(EpochPlan("lasso", 1.0, False, 0))
    assert float(value.detach()) == pytest.approx(0.003 * expected, rel=1e-5)
    assert run.method.regulariser(EpochPlan("retrain", 1.0, True, 0)) is None


def test_the_baselines_loss_is_beta_clean_plus_one_minus_beta_adversarial_plus_the_regulariser():
    from dnr_sweep import methods
    from tests.test_engine import digits_config

    for name in ("admm", "lasso", "hydra"):
        method = methods.build(digits_config(method=name))
        value = method.objective(torch.tensor(2.0), torch.tensor(3.0), torch.tensor(0.5), beta=0.25)
        assert float(value) == 0.25 * 2.0 + 0.75 * 3.0 + 0.5, name
