"""Shrinking: a copy of a channel-pruned model with its removable channels physically gone.

Channel DNR zeroes whole channels, but a masked model costs as much as a dense one. :func:`shrink`
removes every channel that all its consumers ignore (see :mod:`dnr_sweep.sparsity.channel_spaces` for the
rule and why it is exact) from the producers' filters and biases, the BatchNorms and the consumers'
input slices, and counts parameters and MACs before and after.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from dnr_sweep.export.cost import count_macs, count_params
from dnr_sweep.sparsity.channel_spaces import ChannelSpace, find_channel_spaces

__all__ = ["ShrinkReport", "shrink"]


@dataclass
class ShrinkReport:
    """The shrunk model and what changed. Counts are per image (MACs) and over all parameters."""

    model: nn.Module
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int
    channels_removed: int  # feature-map channels removed, summed over channel spaces
    layers: dict[str, dict[str, list[int]]]  # conv/linear name -> {"in": [before, after], "out": [...]}
    spaces: list[ChannelSpace]

    def summary(self) -> dict[str, Any]:
        return {
            "params_before": self.params_before, "params_after": self.params_after,
            "macs_before": self.macs_before, "macs_after": self.macs_after,
            "channels_removed": self.channels_removed,
            "input_channels_removed": {n: v["in"][0] - v["in"][1] for n, v in self.layers.items()},
            "layers": self.layers,
        }  # fmt: skip


def _keep(module: nn.Module, name: str, index: torch.Tensor, dim: int) -> None:
    tensor = getattr(module, name)
    if tensor is None:
        return
    new = tensor.detach().index_select(dim, index).clone()
    if isinstance(tensor, nn.Parameter):
        setattr(module, name, nn.Parameter(new, requires_grad=tensor.requires_grad))
    else:
        setattr(module, name, new)


def shrink(model: nn.Module, example_input: torch.Tensor) -> ShrinkReport:
    """A copy of ``model`` with every removable channel physically removed, plus counts.

    The input model is not modified. In eval mode the shrunk model computes the same outputs (up to
    float rounding). Models without channel-zero slices (dense, irregular pruning) come back as an
    equal-size copy.
    """
    spaces = find_channel_spaces(model, example_input)
    input_size = tuple(example_input.shape[1:])
    shrunk = copy.deepcopy(model)
    for space in spaces:
        if not space.removable:
            continue
        gone = set(space.removable)
        keep = torch.tensor([c for c in range(space.channels) if c not in gone], dtype=torch.long)
        for name in space.producers:
            conv = shrunk.get_submodule(name)
            _keep(conv, "weight", keep, 0)
            _keep(conv, "bias", keep, 0)
            conv.out_channels = len(keep)
        for name in space.norms:
            bn = shrunk.get_submodule(name)
            for attr in ("weight", "bias", "running_mean", "running_var"):
                _keep(bn, attr, keep, 0)
            bn.num_features = len(keep)
        for name in space.consumers:
            layer = shrunk.get_submodule(name)
            _keep(layer, "weight", keep, 1)
            if isinstance(layer, nn.Conv2d):
                layer.in_channels = len(keep)
            else:
                layer.in_features = len(keep)
    layers = {}
    before = dict(model.named_modules())
    for name, module in shrunk.named_modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            old = before[name]
            layers[name] = {"in": [old.weight.shape[1], module.weight.shape[1]],
                            "out": [old.weight.shape[0], module.weight.shape[0]]}  # fmt: skip
    return ShrinkReport(
        model=shrunk,
        params_before=count_params(model), params_after=count_params(shrunk),
        macs_before=count_macs(model, input_size), macs_after=count_macs(shrunk, input_size),
        channels_removed=sum(len(s.removable) for s in spaces), layers=layers, spaces=spaces,
    )  # fmt: skip
