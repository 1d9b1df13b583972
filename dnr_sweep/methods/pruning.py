"""Shared pieces of the baselines' pruning: per-layer top-k masks, per-layer budgets, dense masks, the
weight energy a pruning removes.

A budget is a number of weights kept per prunable layer. Top-k keeps the ``k`` entries of largest
magnitude (``torch.topk``; ties go to the lower flat index, as ``topk`` orders them on CPU).
"""

from __future__ import annotations

import math
from fractions import Fraction

import torch
from torch import Tensor, nn

from dnr_sweep.sparsity import Masking


def topk_mask(values: Tensor, k: int) -> Tensor:
    """A 0/1 tensor of ``values``' shape and dtype with ones at the ``k`` entries of largest ``|values|``."""
    n = values.numel()
    if not 0 <= k <= n:
        raise ValueError(f"k must be in [0, {n}], got {k}")
    flat = torch.zeros(n, dtype=values.dtype, device=values.device)
    if k:
        flat[torch.topk(values.detach().abs().flatten(), k, sorted=False).indices] = 1.0
    return flat.reshape(values.shape)


def project(values: Tensor, k: int) -> Tensor:
    """The Euclidean projection onto ``{card <= k}``: ``values`` with all but its top-k magnitudes zeroed."""
    return values * topk_mask(values, k)


def masked(weights: dict[str, Tensor], masks: dict[str, Tensor]) -> dict[str, Tensor]:
    """``W_l * m_l`` per layer."""
    return {n: w * masks[n] for n, w in weights.items()}


def energy_removed(weights: dict[str, Tensor], kept: dict[str, Tensor]) -> float:
    """``sum_l ||W_l - kept_l||^2 / sum_l ||W_l||^2`` (float64 sums): the fraction of the weights' energy
    that pruning them to ``kept`` removes; NaN for all-zero weights."""
    total = sum(float(w.double().pow(2).sum()) for w in weights.values())
    removed = sum(float((w.double() - kept[n].double()).pow(2).sum()) for n, w in weights.items())
    return removed / total if total > 0 else math.nan


def kept(density: float, numel: int) -> int:
    """Weights a layer of ``numel`` keeps at ``density``: ``round``, at least one."""
    return min(numel, max(1, round(density * numel)))


def uniform_budget(numels: list[int], density: float) -> list[int]:
    return [kept(density, n) for n in numels]


def naive_budget(numels: list[int], density: float) -> list[int]:
    """The paper's "ADMM naive": the first layer dense, every other layer at one density, so that the
    total is ``round(density * all)`` exactly (largest remainders; each layer keeps at least one)."""
    total, first = sum(numels), numels[0]
    target = round(density * total)
    rest = numels[1:]
    if not rest:
        return [first]
    if target < first + len(rest):
        raise ValueError(
            f"density {density:g} keeps {target} weights, but naive ratios keep the first layer dense ({first} "
            f"weights) and one weight of each other layer: at least {math.ceil(Fraction(first + len(rest), total) * 10_000) / 10_000:g}; "
            "raise the density or use layer_ratios: uniform"
        )
    share = (target - first) / sum(rest)
    exact = [share * n for n in rest]
    counts = [max(1, math.floor(x)) for x in exact]
    order = sorted(range(len(rest)), key=lambda i: exact[i] - math.floor(exact[i]), reverse=True)
    for i in order:
        if sum(counts) >= target - first:
            break
        if counts[i] < rest[i]:
            counts[i] += 1
    return [first, *counts]


def dense_masking(model: nn.Module, optimizer: torch.optim.Optimizer, *, prune_linear: bool, total_epochs: int,
                  generator: torch.Generator) -> Masking:  # fmt: skip
    """All-ones masks over the prunable weights (a baseline starts dense and prunes later)."""
    return Masking(model, optimizer, density=1.0, pruning="irregular", prune_rate=0.0,
                   total_epochs=total_epochs, prune_linear=prune_linear, generator=generator)  # fmt: skip


@torch.no_grad()
def set_masks(masking: Masking, masks: dict[str, Tensor]) -> None:
    """Replace every mask of ``masking`` (same layers, shapes) and zero the weights they drop."""
    if list(masks) != masking.layer_names:
        raise ValueError(f"masks cover {list(masks)}, the masker {masking.layer_names}")
    masking.masks = {n: masks[n].detach().to(masking.masks[n]).clone() for n in masking.layer_names}
    masking.target_active = sum(int(m.count_nonzero()) for m in masking.masks.values())
    masking.apply_masks()


def restart_momentum(optimizer: torch.optim.Optimizer) -> None:
    """Drop the optimizer's momentum: a new phase starts as the paper's separate run would."""
    optimizer.state.clear()
