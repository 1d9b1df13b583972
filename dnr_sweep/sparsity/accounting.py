"""Density accounting: what fraction of a network's weights is really there.

Pure functions over a model, following the metric definitions of docs/RESULTS.md exactly. They count the
*actual nonzeros of the weights*, not mask entries, so they measure what a checkpoint holds
regardless of how it was pruned (and an accidentally un-masked weight shows up here).

- **prunable weights**: the ``weight`` of every ``nn.Conv2d`` (and every ``nn.Linear`` when
  ``prune_linear=True``), in ``model.named_modules()`` order. Biases, BatchNorm and buffers are
  never counted.
- :func:`density` = nonzero prunable weights / all prunable weights.
- :func:`compression` = all weights / nonzero weights over EVERY Conv2d and Linear weight tensor
  (the paper's "total weights of the model to the non-zero weights"), whatever ``prune_linear``.
  A model whose counted weights are all zero has infinite compression (``math.inf``); a model with
  no Conv2d/Linear layer at all raises ``ValueError``.
- :func:`channels_present` = input channels of prunable layers whose slice ``W[:, c]`` has a nonzero
  Frobenius norm / all their input channels (the paper's Fig. 3c). With ``prune_linear=True`` the
  input columns of Linear layers count as channels too (a Linear layer is a 1x1 convolution).
- :func:`layer_density`: per prunable layer, its own density (Fig. 2b), in network order.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["prunable_layers", "density", "compression", "channels_present", "layer_density"]


def prunable_layers(model: nn.Module, prune_linear: bool = False) -> list[tuple[str, nn.Module]]:
    """Return ``(module name, module)`` of every prunable layer in ``model.named_modules()`` order.

    Prunable: ``nn.Conv2d`` always, ``nn.Linear`` only when ``prune_linear`` is true.
    """
    kinds: tuple[type[nn.Module], ...] = (nn.Conv2d, nn.Linear) if prune_linear else (nn.Conv2d,)
    return [(name, m) for name, m in model.named_modules() if isinstance(m, kinds)]


def _nonzero(t: torch.Tensor) -> int:
    return int(torch.count_nonzero(t).item())


def _require_layers(layers: list[tuple[str, nn.Module]], what: str) -> None:
    if not layers:
        raise ValueError(f"model has no {what} layer; nothing to count")


def density(model: nn.Module, prune_linear: bool = False) -> float:
    """Nonzero prunable weights / all prunable weights (1.0 = dense)."""
    layers = prunable_layers(model, prune_linear)
    _require_layers(layers, "prunable (Conv2d" + (" or Linear)" if prune_linear else ")"))
    with torch.no_grad():
        nonzero = sum(_nonzero(m.weight) for _, m in layers)
        total = sum(m.weight.numel() for _, m in layers)
    return nonzero / total


def compression(model: nn.Module) -> float:
    """All weights / nonzero weights over every Conv2d and Linear weight (``math.inf`` if all zero)."""
    layers = prunable_layers(model, prune_linear=True)
    _require_layers(layers, "Conv2d or Linear")
    with torch.no_grad():
        nonzero = sum(_nonzero(m.weight) for _, m in layers)
        total = sum(m.weight.numel() for _, m in layers)
    return math.inf if nonzero == 0 else total / nonzero


def channels_present(model: nn.Module, prune_linear: bool = False) -> float:
    """Input channels with a nonzero slice ``W[:, c]`` / all input channels, over prunable layers."""
    layers = prunable_layers(model, prune_linear)
    _require_layers(layers, "prunable (Conv2d" + (" or Linear)" if prune_linear else ")"))
    present = 0
    total = 0
    with torch.no_grad():
        for _, m in layers:
            w = m.weight
            per_channel = w.transpose(0, 1).reshape(w.shape[1], -1)
            present += int((torch.linalg.vector_norm(per_channel, dim=1) > 0).sum().item())
            total += w.shape[1]
    return present / total


def layer_density(model: nn.Module, prune_linear: bool = False) -> dict[str, float]:
    """Per prunable layer (network order): its nonzero weights / its weights."""
    with torch.no_grad():
        return {name: _nonzero(m.weight) / m.weight.numel() for name, m in prunable_layers(model, prune_linear)}
