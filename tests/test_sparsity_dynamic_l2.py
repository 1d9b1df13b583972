"""Dynamic L2 (paper Eq. 4) against hand-computed values and gradients."""

import io

import pytest
import torch
from torch import nn

from dnr_sweep.sparsity import DynamicL2, Masking


def _setup(rho: float = 0.1):
    model = nn.Sequential(nn.Conv2d(1, 4, 1, bias=False), nn.Conv2d(4, 1, 1, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([1.0, 2.0, 3.0, 4.0]).view(4, 1, 1, 1))
        model[1].weight.copy_(torch.tensor([-1.0, 0.5, 2.0, 1.0]).view(1, 4, 1, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    masking = Masking(model, opt, density=1.0, pruning="irregular", prune_rate=0.5, total_epochs=10)
    masking.masks["0"] = torch.tensor([1.0, 0.0, 1.0, 1.0]).view(4, 1, 1, 1)
    masking.masks["1"] = torch.tensor([1.0, 1.0, 0.0, 1.0]).view(1, 4, 1, 1)
    masking.apply_masks()  # theta0 = [1, 0, 3, 4], theta1 = [-1, 0.5, 0, 1]
    return model, masking, DynamicL2(masking, rho)


def test_penalty_value_and_gradient_hand_example():
    model, _, dl2 = _setup(rho=0.1)
    assert torch.equal(dl2.z["0"].flatten(), torch.tensor([1.0, 0.0, 3.0, 4.0]))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([1.5, 2.0, 2.0, 4.0]).view(4, 1, 1, 1))  # pruned entry moved too
        model[1].weight.copy_(torch.tensor([-1.0, 1.5, 7.0, 1.0]).view(1, 4, 1, 1))
    pen = dl2.penalty()
    # layer 0: (1.5-1)^2 + 0 + (2-3)^2 + 0 = 1.25 ; layer 1: 0 + (1.5-0.5)^2 + 0 (pruned) + 0 = 1.0
    assert pen.item() == pytest.approx(0.1 / 2 * 2.25)
    g0, g1 = torch.autograd.grad(pen, [model[0].weight, model[1].weight])
    assert torch.allclose(g0.flatten(), torch.tensor([0.05, 0.0, -0.1, 0.0]))
    assert torch.allclose(g1.flatten(), torch.tensor([0.0, 0.1, 0.0, 0.0]))


def test_penalty_zero_with_zero_grad_right_after_snapshot():
    model, _, dl2 = _setup()
    pen = dl2.penalty()
    assert pen.item() == 0.0
    (g0,) = torch.autograd.grad(pen, [model[0].weight])
    assert torch.equal(g0, torch.zeros_like(g0))  # no NaN from the norm at 0


def test_snapshot_follows_weights_and_masks():
    model, masking, dl2 = _setup()
    with torch.no_grad():
        model[0].weight.add_(1.0)
    dl2.snapshot()
    assert torch.equal(dl2.z["0"].flatten(), torch.tensor([2.0, 0.0, 4.0, 5.0]))
    assert dl2.penalty().item() == 0.0


def test_disabled_or_rho_zero_is_free_and_zero():
    model, masking, _ = _setup()
    for dl2 in (DynamicL2(masking, 0.0), DynamicL2(masking, 0.1, enabled=False)):
        with torch.no_grad():
            model[0].weight.add_(1.0)
        assert dl2.penalty().item() == 0.0
        assert dl2.z == {}


def test_bad_rho_raises():
    _, masking, _ = _setup()
    with pytest.raises(ValueError, match="rho"):
        DynamicL2(masking, -1.0)


def test_state_dict_round_trip_weights_only():
    model, masking, dl2 = _setup(rho=0.1)
    buf = io.BytesIO()
    torch.save(dl2.state_dict(), buf)
    buf.seek(0)
    other = DynamicL2(masking, 0.5)
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([1.5, 2.0, 2.0, 4.0]).view(4, 1, 1, 1))
    other.load_state_dict(torch.load(buf, weights_only=True))
    assert other.rho == 0.1
    assert all(torch.equal(other.z[n], dl2.z[n]) for n in dl2.z)
    assert other.penalty().item() == pytest.approx(dl2.penalty().item())
