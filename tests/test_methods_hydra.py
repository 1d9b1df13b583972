"""HYDRA against references: top-k masks by brute force, score init by its formula, gradients to scores only."""

import math

import pytest
import torch
from torch import nn

from dnr_sweep.methods import hydra, pruning


@pytest.mark.parametrize("k", [1, 5, 11])
def test_mask_is_the_top_k_of_the_scores(k):
    scores = torch.randn(3, 4, generator=torch.Generator().manual_seed(k))
    mask = hydra.TopKStraightThrough.apply(scores.abs(), k)
    order = sorted(range(12), key=lambda i: -abs(float(scores.flatten()[i])))
    expected = torch.zeros(12)
    expected[order[:k]] = 1.0
    assert torch.equal(mask.flatten(), expected)


def test_scaled_score_init_formula():
    w = torch.tensor([[[[0.5]], [[-2.0]]], [[[1.0]], [[0.25]]]])  # conv 2x2x1x1: fan_in 2
    expected = math.sqrt(6 / 2) * w / 2.0
    assert torch.allclose(hydra.scaled_score_init(w), expected)
    small = w / 8  # max |W| 0.25: below 1, still divided by it
    assert torch.allclose(hydra.scaled_score_init(small), math.sqrt(6 / 2) * small / 0.25)


def test_gradients_flow_to_the_scores_not_to_the_frozen_weights():
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, 3)
    conv.weight.requires_grad_(False)
    conv.bias.requires_grad_(False)
    scores = nn.Parameter(hydra.scaled_score_init(conv.weight))
    k = 10
    conv.forward = hydra.masked_forward(conv, scores, k)
    x = torch.randn(4, 2, 5, 5)
    out = conv(x)
    mask = pruning.topk_mask(scores, k)
    reference = nn.functional.conv2d(x, conv.weight * mask, conv.bias)
    assert torch.allclose(out, reference)
    out.sum().backward()
    assert conv.weight.grad is None and conv.bias.grad is None
    assert scores.grad is not None and scores.grad.abs().sum() > 0
    # straight through: d sum(out) / d s = G * W * sign(s) with G = d sum(out) / d (W * m), also where m = 0
    g = torch.nn.grad.conv2d_weight(x, conv.weight.shape, torch.ones_like(out))
    assert torch.allclose(scores.grad, g * conv.weight * scores.sign(), atol=1e-5)


def test_scaled_score_init_of_an_all_zero_layer_is_the_scale_not_nan():
    w = torch.zeros(4, 2, 3, 3)
    scores = hydra.scaled_score_init(w)
    assert torch.equal(scores, torch.full_like(w, (6.0 / (2 * 3 * 3)) ** 0.5))
