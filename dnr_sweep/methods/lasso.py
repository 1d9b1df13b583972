"""L1 Lasso robust sparse regularisation (Rakin et al., "Robust Sparse Regularization", 2019; the
DNR paper's [21]).

1. ``lasso``: adversarial training from scratch (no pre-trained model, as Table 2 marks it) with
   ``lambda * sum_l |W_l|_1`` over the prunable weights added to the loss (gradient
   ``lambda * sign(W)``, 0 at 0).
2. ``retrain``: every prunable weight with ``|w| < lasso.threshold`` is set to zero (each layer keeps
   at least its largest weight, or the network would be cut) and the rest is retrained under that
   mask; only these epochs are selected.

The compression is an outcome, not a target: it is reported as measured on the weights, and a
search over ``lasso.lam`` (and ``threshold``) is how a user lands near a compression.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dnr_sweep.methods import pruning
from dnr_sweep.methods.base import Phase
from dnr_sweep.methods.phased import PhasedMethod


def l1_penalty(weights: list[Tensor], lam: float) -> Tensor:
    """``lam * sum |w|`` over ``weights``."""
    return lam * torch.stack([w.abs().sum() for w in weights]).sum()


def threshold_mask(weight: Tensor, threshold: float) -> Tensor:
    """1 where ``|w| >= threshold``, else 0; at least the largest ``|w|`` is kept."""
    mask = (weight.detach().abs() >= threshold).to(weight.dtype)
    if not mask.any():
        mask = pruning.topk_mask(weight, 1)
    return mask


class LassoMethod(PhasedMethod):
    name = "lasso"

    def phases(self) -> list[Phase]:
        c = self.config.lasso
        return [Phase("lasso", c.lasso_epochs, c.lasso_lr, c.beta), Phase("retrain", c.retrain_epochs, c.retrain_lr,
                                                                         c.beta)]  # fmt: skip

    @torch.no_grad()
    def enter(self, phase: Phase, *, fresh: bool) -> None:
        if phase.name == "retrain" and fresh:
            threshold = self.config.lasso.threshold
            pruning.set_masks(self.run.masking, {n: threshold_mask(w, threshold) for n, w in self.prunable()})

    def regulariser(self, plan) -> Tensor | None:
        if plan.phase != "lasso":
            return None
        return l1_penalty([w for _, w in self.prunable()], self.config.lasso.lam)
