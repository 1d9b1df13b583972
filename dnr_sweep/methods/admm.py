"""ADMM robust pruning (Ye et al., "Adversarial Robustness vs. Model Compression, or Both?", ICCV
2019; the DNR paper's [17] and Section 4.3): the three stages the paper ran.

1. ``pretrain``: dense adversarial training.
2. ``admm``: ``min_W  loss(W) + rho/2 * sum_l ||W_l - Z_l + U_l||^2`` with the per-layer cardinality
   constraint ``card(Z_l) <= k_l`` handled by the auxiliary variable ``Z``. At the phase's start
   ``Z = proj(W)``, ``U = 0``; after every epoch ``Z <- proj(W + U)`` (``proj``: keep each layer's
   ``k_l`` largest magnitudes, the Euclidean projection onto the constraint) and then
   ``U <- U + W - Z`` (the scaled dual update). ``rho_admm = 1e-3`` as in the paper.
3. ``retrain``: hard pruning (each layer keeps its ``k_l`` largest ``|W|``) and masked adversarial
   retraining; only these epochs are selected.

Per-layer budgets ``k_l``: ``admm.layer_ratios`` ``naive`` (the paper's "ADMM naive": the first
prunable layer dense, the others at one density meeting the target), ``uniform`` (every layer at the
target), or an explicit ``{layer: density}`` for every prunable layer (Ye et al. tune these by hand).
The hard prune meets the budgets exactly, so the density is the target's to the weight.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from dnr_sweep.methods import pruning
from dnr_sweep.methods.base import Phase
from dnr_sweep.methods.phased import PhasedMethod
from dnr_sweep.sparsity import prunable_layers


def layer_budget(config, names: list[str], numels: list[int]) -> list[int]:
    """Weights each prunable layer keeps under ``admm.layer_ratios`` (``ValueError`` naming the fix)."""
    admm = config.admm
    ratios = admm.layer_ratios
    if ratios == "naive":
        return pruning.naive_budget(numels, admm.density)
    if ratios == "uniform":
        return pruning.uniform_budget(numels, admm.density)
    unknown = sorted(set(ratios) - set(names))
    missing = [n for n in names if n not in ratios]
    if unknown or missing:
        parts = ([f"unknown layers {unknown}"] if unknown else []) + ([f"missing layers {missing}"] if missing else [])
        raise ValueError(f"{'; '.join(parts)}: give a density for every prunable layer of this model "
                         f"({', '.join(names)}), or use naive/uniform")  # fmt: skip
    return [pruning.kept(ratios[n], numel) for n, numel in zip(names, numels, strict=True)]


def z_update(weights: dict[str, Tensor], duals: dict[str, Tensor], budget: dict[str, int]) -> dict[str, Tensor]:
    """``Z_l = proj_{k_l}(W_l + U_l)`` per layer."""
    return {n: pruning.project(weights[n] + duals[n], budget[n]) for n in weights}


def u_update(weights: dict[str, Tensor], z: dict[str, Tensor], duals: dict[str, Tensor]) -> dict[str, Tensor]:
    """``U_l = U_l + W_l - Z_l`` per layer (the scaled dual ascent step)."""
    return {n: duals[n] + weights[n] - z[n] for n in weights}


class ADMMMethod(PhasedMethod):
    name = "admm"

    def __init__(self, config) -> None:
        super().__init__(config)
        self.z: dict[str, Tensor] = {}
        self.u: dict[str, Tensor] = {}
        self.budget: dict[str, int] = {}

    def phases(self) -> list[Phase]:
        a = self.config.admm
        phases = [Phase("pretrain", a.pretrain_epochs, a.pretrain_lr, a.beta), Phase("admm", a.admm_epochs, a.admm_lr,
                  a.beta), Phase("retrain", a.retrain_epochs, a.retrain_lr, a.beta)]  # fmt: skip
        return [p for p in phases if p.epochs > 0]

    @classmethod
    def check(cls, config, model: nn.Module) -> list[str]:
        layers = prunable_layers(model, config.dnr.prune_linear)
        try:
            layer_budget(config, [n for n, _ in layers], [m.weight.numel() for _, m in layers])
        except ValueError as exc:
            field = "admm.layer_ratios" if isinstance(config.admm.layer_ratios, dict) else "admm.density"
            return [f"{field}: {exc}"]
        return []

    def attach(self, run: Any) -> None:
        super().attach(run)
        layers = self.prunable()
        counts = layer_budget(self.config, [n for n, _ in layers], [w.numel() for _, w in layers])
        self.budget = {n: k for (n, _), k in zip(layers, counts, strict=True)}

    def _weights(self) -> dict[str, Tensor]:
        return {n: w.detach() for n, w in self.prunable()}

    @torch.no_grad()
    def enter(self, phase: Phase, *, fresh: bool) -> None:
        if phase.name == "admm" and fresh:
            weights = self._weights()
            self.u = {n: torch.zeros_like(w) for n, w in weights.items()}
            self.z = z_update(weights, self.u, self.budget)
        elif phase.name == "retrain" and fresh:
            pruning.set_masks(self.run.masking, {n: pruning.topk_mask(w, self.budget[n])
                                                 for n, w in self._weights().items()})  # fmt: skip
            self.z, self.u = {}, {}

    def regulariser(self, plan) -> Tensor | None:
        if plan.phase != "admm":
            return None
        rho = self.config.admm.rho
        terms = [(w - self.z[n] + self.u[n]).pow(2).sum() for n, w in self.prunable()]
        return 0.5 * rho * torch.stack(terms).sum()

    @torch.no_grad()
    def end_epoch(self, epoch: int, last: bool) -> float:
        if self.current == "admm":
            weights = self._weights()
            self.z = z_update(weights, self.u, self.budget)
            self.u = u_update(weights, self.z, self.u)
        return 0.0

    def state_dict(self) -> dict[str, Any]:
        return {"z": dict(self.z), "u": dict(self.u)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        device = self.run.device
        self.z = {n: t.to(device) for n, t in state.get("z", {}).items()}
        self.u = {n: t.to(device) for n, t in state.get("u", {}).items()}
