"""Prune and regrow: the rewiring step of DNR (Algorithm 1, lines 17-26, and Section 3.3).

At the end of epoch ``i`` every rewired layer gives up a fraction ``p_i`` of its active units (the
smallest magnitudes) and the freed budget is handed back in proportion to the layers' *momentum
importance*; each layer regrows its share at the inactive positions whose momentum is largest.

- **irregular**: the unit is one weight; the shares are integers summing exactly to the pruned
  total, so the global active count never changes.
- **channel**: the unit is the input slice ``W[:, c]``; the budget, in weights, is ``target - active
  after pruning`` (no drift over many rewirings), converted to whole channels within half a slice.

Shares are computed exactly (``fractions.Fraction``) by water filling under each layer's capacity,
going first to positions with nonzero momentum (a zero-momentum one could never learn). A unit
pruned and regrown in the same round keeps its value; optimizer momentum is never touched. Every
choice the paper leaves open (rounding, ties, capacities): docs/DNR.md, "Choices the paper leaves open".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

import torch
from torch import Tensor

__all__ = [
    "RewireStats",
    "water_fill",
    "largest_remainder",
    "round_to_slices",
    "channel_view",
    "rewire_irregular",
    "rewire_channel",
]


@dataclass(frozen=True)
class RewireStats:
    """What one rewiring did. Counts are in weights; ``*_channels`` only in the channel modes.

    Keys are layer names, except in channel_group mode: channel-space keys (the space's first
    producer), ``*_channels`` counting groups and ``pruned``/``regrown`` the change of the active
    count as each space pruned and each group was revived."""

    epoch: int
    prune_rate: float
    pruned: dict[str, int]
    regrown: dict[str, int]
    importance: dict[str, float]
    active: int  # active prunable weights (mask entries, stem included) after the rewiring
    pruned_channels: dict[str, int] = field(default_factory=dict)
    regrown_channels: dict[str, int] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------
# Allocation (pure Python, exact arithmetic)
# ----------------------------------------------------------------------------------------------


def water_fill(
    budget: int | Fraction,
    weights: Sequence[float],
    capacity: Sequence[int | Fraction],
    fallback: Sequence[float],
) -> list[Fraction]:
    """Split ``budget`` in proportion to ``weights`` with per-entry caps, exactly.

    Returns real shares ``s_l = min(capacity_l, lam * w_l)`` summing to ``budget``. When all the
    still-open entries have zero weight, ``fallback`` weights are used for them (and if those are zero
    too, the remaining capacity). Requires ``0 <= budget <= sum(capacity)``.
    """
    n = len(capacity)
    if not (len(weights) == len(fallback) == n):
        raise ValueError("weights, capacity and fallback must have the same length")
    budget = Fraction(budget)
    caps = [Fraction(c) for c in capacity]
    if budget < 0 or budget > sum(caps, Fraction(0)):
        raise ValueError(f"budget {budget} outside [0, total capacity {sum(caps, Fraction(0))}]")
    shares = [Fraction(0)] * n
    open_ = [i for i in range(n) if caps[i] > 0]
    remaining = budget
    while remaining > 0:
        w = {i: Fraction(max(float(weights[i]), 0.0)) for i in open_}
        if sum(w.values()) == 0:
            w = {i: Fraction(max(float(fallback[i]), 0.0)) for i in open_}
        if sum(w.values()) == 0:
            w = {i: caps[i] for i in open_}
        total_w = sum(w.values(), Fraction(0))
        ideal = {i: remaining * w[i] / total_w for i in open_}
        capped = [i for i in open_ if ideal[i] >= caps[i]]
        if not capped:
            for i in open_:
                shares[i] = ideal[i]
            break
        for i in capped:
            shares[i] = caps[i]
            remaining -= caps[i]
        open_ = [i for i in open_ if i not in capped]
    return shares


def largest_remainder(shares: Sequence[Fraction], total: int) -> list[int]:
    """Round real ``shares`` (summing to the integer ``total``) to integers summing to ``total``.

    Floors first, then one more for the largest fractional parts (ties: lower index). An integer
    share is never changed, so rounding never exceeds an integer cap that the real share respects.
    """
    floors = [math.floor(s) for s in shares]
    left = total - sum(floors)
    order = sorted(range(len(shares)), key=lambda i: (-(shares[i] - floors[i]), i))
    for i in order[:left]:
        floors[i] += 1
    return floors


def round_to_slices(ideal: Sequence[Fraction], slice_sizes: Sequence[int], budget: Fraction | int) -> list[int]:
    """Round real channel counts to whole channels, keeping ``sum n_l * s_l`` close to ``budget``.

    Floor every count, then visit layers by largest fractional remainder (ties: lower index) and add
    one channel while ``total + s_l / 2 <= budget``. Each result is ``floor`` or ``ceil`` of its ideal,
    and when ``sum ideal_l * s_l == budget`` the total ends within ``max(s_l) / 2`` of the budget.
    """
    budget = Fraction(budget)
    counts = [math.floor(x) for x in ideal]
    total = Fraction(sum(c * s for c, s in zip(counts, slice_sizes, strict=True)))
    order = sorted((i for i in range(len(ideal)) if ideal[i] > counts[i]), key=lambda i: (-(ideal[i] - counts[i]), i))
    for i in order:
        if total + Fraction(slice_sizes[i], 2) <= budget:
            counts[i] += 1
            total += slice_sizes[i]
    return counts


# ----------------------------------------------------------------------------------------------
# Selection (tensors)
# ----------------------------------------------------------------------------------------------


def _smallest(scores: Tensor, candidates: Tensor, k: int) -> Tensor:
    """Flat indices of the ``k`` candidates (bool, flat) with the smallest score; ties: lower index."""
    idx = torch.nonzero(candidates, as_tuple=False).flatten()
    if k <= 0:
        return idx[:0]
    order = torch.sort(scores[idx], stable=True).indices
    return idx[order[:k]]


def _largest(scores: Tensor, candidates: Tensor, k: int) -> Tensor:
    """Flat indices of the ``k`` candidates (bool, flat) with the largest score; ties: lower index."""
    idx = torch.nonzero(candidates, as_tuple=False).flatten()
    if k <= 0:
        return idx[:0]
    order = torch.sort(scores[idx], descending=True, stable=True).indices
    return idx[order[:k]]


def _mean_abs_over(momentum: Tensor, active: Tensor) -> float:
    n = int(active.sum().item())
    if n == 0:
        return 0.0
    return float(momentum.abs()[active].double().sum().item()) / n


def _normalised(values: Sequence[float]) -> list[float]:
    s = sum(values)
    return [v / s if s > 0 else 0.0 for v in values]


def _live_first_shares(
    budget: int,
    importance: Sequence[float],
    live: Sequence[int],
    capacity: Sequence[int],
    sizes: Sequence[float],
    rounding: Callable[[Sequence[Fraction], int], list[int]] | None,
) -> list:
    """Split ``budget`` by importance, first over the ``live`` (nonzero-momentum) candidates only.

    Stage 1 water-fills ``min(budget, sum(live))`` with each layer capped at its live candidates;
    what is left (only when the live candidates run out) is water-filled over the remaining
    zero-momentum capacity ``capacity - live``. With ``rounding`` (e.g. :func:`largest_remainder`)
    each stage is rounded to integers that sum to its budget exactly; without it the real shares are
    returned (summed per layer).
    """
    first = min(budget, sum(live))
    dead = [c - v for c, v in zip(capacity, live, strict=True)]
    stages = [(first, live), (budget - first, dead)]
    total: list = [0] * len(capacity)
    for amount, caps in stages:
        if amount <= 0:
            continue
        shares = water_fill(amount, importance, caps, sizes)
        part = rounding(shares, amount) if rounding is not None else shares
        total = [a + b for a, b in zip(total, part, strict=True)]
    return total


def channel_view(t: Tensor) -> Tensor:
    """View ``t`` (``(M, N, ...)``) as ``(N, M * prod(...))``: row ``c`` is the slice ``t[:, c]``."""
    return t.transpose(0, 1).reshape(t.shape[1], -1)


def channel_mask_to_full(channel_mask: Tensor, like: Tensor) -> Tensor:
    """Broadcast a per-input-channel 0/1 vector to a mask of ``like``'s shape (constant per slice)."""
    shape = [1, like.shape[1]] + [1] * (like.dim() - 2)
    return channel_mask.to(like.dtype).reshape(shape).expand_as(like).contiguous()


# ----------------------------------------------------------------------------------------------
# Rewiring (in place on weights and masks)
# ----------------------------------------------------------------------------------------------


@torch.no_grad()
def rewire_irregular(
    weights: Sequence[Tensor], masks: Sequence[Tensor], momenta: Sequence[Tensor], prune_rate: float
) -> tuple[list[int], list[int], list[float]]:
    """Prune ``round(p * active_l)`` smallest-|w| weights per layer, regrow by momentum; in place.

    ``momenta[l]`` has the weight's shape (zeros when the optimizer has none). Returns per-layer
    ``(pruned, regrown, normalised importance)``. The total number of mask entries is unchanged.
    """
    n = len(weights)
    flat_masks = [m.reshape(-1).bool() for m in masks]
    importance = _normalised([_mean_abs_over(mo.reshape(-1), fm) for mo, fm in zip(momenta, flat_masks, strict=True)])
    pruned: list[int] = []
    keep: list[Tensor] = []
    for w, fm in zip(weights, flat_masks, strict=True):
        active = int(fm.sum().item())
        k = round(prune_rate * active)
        drop = _smallest(w.reshape(-1).abs(), fm, k)
        kept = fm.clone()
        kept[drop] = False
        keep.append(kept)
        pruned.append(int(drop.numel()))
    live = [int(((~kept) & (mo.reshape(-1) != 0)).sum().item()) for kept, mo in zip(keep, momenta, strict=True)]
    capacity = [int((~kept).sum().item()) for kept in keep]
    budget = sum(pruned)
    sizes = [float(w.numel()) for w in weights]
    regrown = _live_first_shares(budget, importance, live, capacity, sizes, largest_remainder)
    for i in range(n):
        kept = keep[i]
        grow = _largest(momenta[i].reshape(-1).abs(), ~kept, regrown[i])
        new = kept.clone()
        new[grow] = True
        # Only what the final mask removes becomes 0 (Algorithm 1: Prune, Regrow, then applyMask):
        # a weight pruned and regrown in the same round keeps its value, one regrown from 0 starts at 0.
        weights[i].mul_(new.reshape(weights[i].shape).to(weights[i].dtype))
        masks[i].copy_(new.reshape(masks[i].shape).to(masks[i].dtype))
    return pruned, regrown, importance


@torch.no_grad()
def rewire_channel(
    weights: Sequence[Tensor],
    masks: Sequence[Tensor],
    momenta: Sequence[Tensor],
    prune_rate: float,
    target_active: int,
) -> tuple[list[int], list[int], list[int], list[int], list[float]]:
    """Channel-mode rewiring of the given layers (the dense stem excluded by the caller); in place.

    ``target_active`` is the number of active weights these layers should hold together after the
    rewiring (the global target minus the stem). Returns per-layer ``(pruned channels, regrown
    channels, pruned weights, regrown weights, normalised importance)``.
    """
    n = len(weights)
    slice_sizes = [w.numel() // w.shape[1] for w in weights]
    ch_masks = [channel_view(m).amax(dim=1) > 0 for m in masks]
    importance = _normalised(
        [_mean_abs_over(mo.reshape(-1), m.reshape(-1).bool()) for mo, m in zip(momenta, masks, strict=True)]
    )
    pruned_ch: list[int] = []
    keep: list[Tensor] = []
    for w, cm in zip(weights, ch_masks, strict=True):
        k = round(prune_rate * int(cm.sum().item()))
        drop = _smallest(torch.linalg.vector_norm(channel_view(w), dim=1), cm, k)
        kept = cm.clone()
        kept[drop] = False
        keep.append(kept)
        pruned_ch.append(int(drop.numel()))
    active_after_prune = sum(int(k.sum().item()) * s for k, s in zip(keep, slice_sizes, strict=True))
    mom_norms = [torch.linalg.vector_norm(channel_view(mo), dim=1) for mo in momenta]
    zero_ch = [int((~k).sum().item()) for k in keep]
    live_ch = [int(((~k) & (mn != 0)).sum().item()) for k, mn in zip(keep, mom_norms, strict=True)]
    budget = max(0, target_active - active_after_prune)
    sizes = [float(w.numel()) for w in weights]
    shares = _live_first_shares(
        budget, importance, [c * s for c, s in zip(live_ch, slice_sizes, strict=True)],
        [z * s for z, s in zip(zero_ch, slice_sizes, strict=True)], sizes, None,
    )  # fmt: skip
    regrown_ch = round_to_slices([sh / s for sh, s in zip(shares, slice_sizes, strict=True)], slice_sizes, budget)
    for i in range(n):
        kept = keep[i]
        grow = _largest(mom_norms[i], ~kept, regrown_ch[i])
        new = kept.clone()
        new[grow] = True
        weights[i].mul_(channel_mask_to_full(new, weights[i]))  # see rewire_irregular
        masks[i].copy_(channel_mask_to_full(new, masks[i]))
    pruned_w = [c * s for c, s in zip(pruned_ch, slice_sizes, strict=True)]
    regrown_w = [c * s for c, s in zip(regrown_ch, slice_sizes, strict=True)]
    return pruned_ch, regrown_ch, pruned_w, regrown_w, importance
