"""Accounting functions against hand-counted values on a model with planted zeros."""

import math

import pytest
import torch
from torch import nn

from dnr_sweep.sparsity import channels_present, compression, density, layer_density, prunable_layers


class Planted(nn.Module):
    """conv1 (2,1,2,2): 3 nonzeros; conv2 (3,2,1,1): 2 nonzeros, all in input channel 0;
    fc (2,3): 4 nonzeros, in input columns 0 and 1; biases and BN are nonzero and must be ignored."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 2, 2)
        self.bn = nn.BatchNorm2d(2)
        self.block = nn.Sequential(nn.Conv2d(2, 3, 1))
        self.fc = nn.Linear(3, 2)
        with torch.no_grad():
            for p in self.parameters():
                p.fill_(0.5)
            self.conv1.weight.zero_()
            self.conv1.weight[0, 0, 0, 0] = 1.0
            self.conv1.weight[0, 0, 1, 1] = -2.0
            self.conv1.weight[1, 0, 0, 1] = 3.0
            self.block[0].weight.zero_()
            self.block[0].weight[0, 0] = 1.0
            self.block[0].weight[2, 0] = -1.0
            self.fc.weight.zero_()
            self.fc.weight[0, 0] = 1.0
            self.fc.weight[1, 0] = 1.0
            self.fc.weight[0, 1] = 1.0
            self.fc.weight[1, 1] = -1.0


def test_prunable_layers_order_and_kinds():
    m = Planted()
    assert [n for n, _ in prunable_layers(m)] == ["conv1", "block.0"]
    assert [n for n, _ in prunable_layers(m, prune_linear=True)] == ["conv1", "block.0", "fc"]


def test_density_hand_counted():
    m = Planted()
    assert density(m) == pytest.approx(5 / 14)
    assert density(m, prune_linear=True) == pytest.approx(9 / 20)


def test_compression_hand_counted_over_every_conv_and_linear():
    assert compression(Planted()) == pytest.approx(20 / 9)


def test_compression_all_zero_is_inf_and_no_layers_raises():
    m = Planted()
    with torch.no_grad():
        for _, layer in prunable_layers(m, prune_linear=True):
            layer.weight.zero_()
    assert compression(m) == math.inf
    with pytest.raises(ValueError, match="Conv2d"):
        compression(nn.Sequential(nn.ReLU()))


def test_channels_present_hand_counted():
    m = Planted()
    assert channels_present(m) == pytest.approx(2 / 3)  # conv1: 1/1, conv2: 1/2
    assert channels_present(m, prune_linear=True) == pytest.approx(4 / 6)  # fc: columns 0, 1 of 3


def test_layer_density_hand_counted_in_order():
    m = Planted()
    got = layer_density(m, prune_linear=True)
    assert list(got) == ["conv1", "block.0", "fc"]
    assert got == pytest.approx({"conv1": 3 / 8, "block.0": 2 / 6, "fc": 4 / 6})
