"""L1 Lasso robust sparse regularisation (Rakin et al., "Robust Sparse Regularization", 2019; the
DNR paper's [21]).

1. ``lasso``: adversarial training from scratch (no pre-trained model, as Table 2 marks it) with
   ``lambda * sum_l |W_l|_1`` over the prunable weights added to the loss (gradient
   ``lambda * sign(W)``, 0 at 0).
2. ``retrain``: one global threshold zeroes every prunable weight below it (each layer keeps at least
   its largest weight, or the network would be cut) and the rest is retrained under that mask; only
   these epochs are selected.

The threshold is ``lasso.threshold`` (Rakin et al.'s mode: the compression is an outcome of lambda
and the threshold), or it is chosen so that ``lasso.density`` of the prunable weights is kept, to the
weight (:func:`global_keep_masks`), so that Lasso is compared with the other methods at their
compression. The weight energy the threshold step removed is reported (``prune_energy_removed``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from dnr_sweep.methods import pruning
from dnr_sweep.methods.base import Phase
from dnr_sweep.methods.phased import PhasedMethod
from dnr_sweep.sparsity import prunable_layers


def l1_penalty(weights: list[Tensor], lam: float) -> Tensor:
    """``lam * sum |w|`` over ``weights``."""
    return lam * torch.stack([w.abs().sum() for w in weights]).sum()


def threshold_mask(weight: Tensor, threshold: float) -> Tensor:
    """1 where ``|w| >= threshold``, else 0; at least the largest ``|w|`` is kept."""
    mask = (weight.detach().abs() >= threshold).to(weight.dtype)
    if not mask.any():
        mask = pruning.topk_mask(weight, 1)
    return mask


def global_keep_masks(weights: dict[str, Tensor], keep: int) -> dict[str, Tensor]:
    """Masks that keep exactly ``keep`` weights over all layers by one global threshold on ``|w|``, each
    layer keeping at least its largest ``|w|`` (first occurrence on ties). Among equal ``|w|`` at the
    threshold, the earlier layer (the order of ``weights``), then the lower flat index, is kept.
    ``ValueError`` when ``keep`` is below the number of layers or above the number of weights."""
    names = list(weights)
    flats = [weights[n].detach().abs().flatten() for n in names]
    total = sum(f.numel() for f in flats)
    if not len(names) <= keep <= total:
        raise ValueError(f"keep must be in [{len(names)}, {total}] (each of {len(names)} layers keeps its largest "
                         f"weight), got {keep}")  # fmt: skip
    scores = torch.cat([f.double() for f in flats])
    offsets = [0]
    for f in flats:
        offsets.append(offsets[-1] + f.numel())
    for start, f in zip(offsets[:-1], flats, strict=True):
        scores[start + int(torch.argmax(f))] = torch.inf  # a layer's largest weight goes first
    order = torch.sort(scores.cpu(), descending=True, stable=True).indices
    flat_mask = torch.zeros(total, dtype=torch.bool)
    flat_mask[order[:keep]] = True
    return {n: flat_mask[offsets[k] : offsets[k + 1]].reshape(weights[n].shape).to(weights[n])
            for k, n in enumerate(names)}  # fmt: skip


class LassoMethod(PhasedMethod):
    name = "lasso"

    def __init__(self, config) -> None:
        super().__init__(config)
        self.energy: dict[str, float] = {}  # run-level figures, kept through state_dict

    def phases(self) -> list[Phase]:
        c = self.config.lasso
        return [Phase("lasso", c.lasso_epochs, c.lasso_lr, c.beta), Phase("retrain", c.retrain_epochs, c.retrain_lr,
                                                                         c.beta)]  # fmt: skip

    @classmethod
    def check(cls, config, model: nn.Module) -> list[str]:
        density = config.lasso.density
        if density is None:
            return []
        numels = [m.weight.numel() for _, m in prunable_layers(model, config.dnr.prune_linear)]
        if round(density * sum(numels)) < len(numels):
            return [f"lasso.density: {density:g} keeps {round(density * sum(numels))} of {sum(numels)} prunable "
                    f"weights, fewer than the {len(numels)} layers that each keep their largest weight; raise it "
                    f"to at least {len(numels) / sum(numels):.3g}"]  # fmt: skip
        return []

    def retrain_masks(self, weights: dict[str, Tensor]) -> dict[str, Tensor]:
        """The threshold step's masks: ``lasso.threshold`` per weight, or the global one meeting ``lasso.density``."""
        c = self.config.lasso
        if c.density is None:
            return {n: threshold_mask(w, c.fixed_threshold) for n, w in weights.items()}
        return global_keep_masks(weights, round(c.density * sum(w.numel() for w in weights.values())))

    @torch.no_grad()
    def enter(self, phase: Phase, *, fresh: bool) -> None:
        if phase.name == "retrain" and fresh:
            weights = {n: w.detach() for n, w in self.prunable()}
            masks = self.retrain_masks(weights)
            self.energy["prune_energy_removed"] = pruning.energy_removed(weights, pruning.masked(weights, masks))
            pruning.set_masks(self.run.masking, masks)

    def regulariser(self, plan) -> Tensor | None:
        if plan.phase != "lasso":
            return None
        return l1_penalty([w for _, w in self.prunable()], self.config.lasso.lam)

    def run_metrics(self) -> dict[str, float]:
        return dict(self.energy)

    def state_dict(self) -> dict[str, Any]:
        return {"energy": dict(self.energy)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.energy = {k: float(v) for k, v in state.get("energy", {}).items()}
