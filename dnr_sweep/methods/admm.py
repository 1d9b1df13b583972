"""ADMM robust pruning (Ye et al., "Adversarial Robustness vs. Model Compression, or Both?", ICCV
2019; the DNR paper's [17] and Section 4.3), run as the authors' code runs it
(yeshaokai/Robustness-Aware-Pruning-ADMM, ``admm/admm.py``; :class:`ADMMMethod` lists what is kept).

1. ``pretrain``: dense adversarial training.
2. ``admm``: ``min_W  loss(W) + rho/2 * sum_l ||W_l - Z_l + U_l||^2`` with the per-layer cardinality
   constraint ``card(Z_l) <= k_l`` on the auxiliary ``Z`` and the scaled dual ``U``, updated every
   ``admm.update_every`` epochs while ``rho`` grows by ``admm.rho_growth`` at each update.
3. ``retrain``: hard pruning (each layer keeps its ``k_l`` largest ``|W|``) and masked adversarial
   retraining; only these epochs are selected.

Per-layer budgets ``k_l``: ``admm.layer_ratios`` ``naive`` (the paper's "ADMM naive": the first
prunable layer dense, the others at one density meeting the target), ``uniform`` (every layer at the
target), or an explicit ``{layer: density}`` for every prunable layer (Ye et al. tune these by hand).
The hard prune meets the budgets exactly, so the density is the target's to the weight. Whether the
ADMM phase did its work is reported: per epoch the residual ``||W - Z||`` and ``rho``, per run the
weight energy the hard prune removed beside what magnitude pruning of the pre-trained weights removes.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from dnr_sweep.methods import pruning
from dnr_sweep.methods.base import MethodRun, Phase
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


def updates_after(index: int, epochs: int, every: int) -> bool:
    """Whether Z and U are updated after ADMM-phase epoch ``index`` (0-based) of ``epochs``: after every
    ``every`` epochs, never after the last (the authors update at the start of epoch ``e > 0`` with
    ``e % admm_epoch == 0``, so none follows their phase's last epoch)."""
    return (index + 1) % every == 0 and index + 1 < epochs


def rho_at(rho: float, growth: float, index: int, every: int) -> float:
    """The penalty of ADMM-phase epoch ``index``: ``rho * growth ** (Z/U updates before it)``."""
    return rho * growth ** (index // every)


def primal_residual(weights: dict[str, Tensor], z: dict[str, Tensor]) -> float:
    """``sqrt(sum_l ||W_l - Z_l||_F^2)`` over the layers (float64 sum)."""
    return math.sqrt(sum(float((weights[n].double() - z[n].double()).pow(2).sum()) for n in weights))


class ADMMMethod(PhasedMethod):
    """ADMM robust pruning as the authors' code runs it (``admm/admm.py``, ``ADMM_examples/cifar10``).

    Kept from the authors' code:

    - at the ADMM phase's start ``Z = proj(W)``, ``U = 0`` (``admm_initialization``);
    - every ``update_every`` epochs (their ``admm_epoch``: 20 in the CIFAR-10 config) ``rho`` is first
      multiplied by ``rho_growth`` (their ``multi_rho``: 1.3, on in every example config; starting at
      ``rho`` = 1e-3, never capped), then ``Z <- proj(W + U)`` and ``U <- U + W - Z``; their update runs at
      the start of ADMM epoch ``e > 0`` with ``e % admm_epoch == 0``, here after the epoch before it, so
      no update follows the phase's last epoch and the epochs after the ``j``-th update train with
      ``rho * 1.3**j``. ``U`` is not rescaled when ``rho`` grows (scaled ADMM would take ``U * rho_old/rho_new``);
    - the penalty ``rho/2 * sum_l ||W_l - Z_l + U_l||^2`` is added to the loss (theirs: to the adversarial
      loss, i.e. ``beta = 0``); the retraining's hard prune keeps each layer's largest ``|W|``.

    Deviations:

    - ``U`` is a constant of the penalty. Their U-update reads the weight Parameter with autograd on, so
      ``U`` keeps ``W``'s graph and after ``k`` updates the penalty's gradient is ``(1 + k) * rho *
      (W - Z + U)`` (checked by running their update on one tensor); ADMM, as their paper writes it, has
      ``rho * (W - Z + U)``;
    - ``proj`` keeps exactly ``k_l`` weights per layer (ties to the lower index) where theirs keeps
      ``|w| > np.percentile(|w|, 100 * prune_ratio)``: the same set up to interpolation and ties;
    - the learning rate anneals by a per-epoch cosine within each phase; theirs restarts at every Z/U
      update and divides by 10 every ``admm_epoch / 3`` epochs (ADMM), per-step cosine (pretrain),
      MultiStep at 80 and 150 (retrain); weight decay and momentum are ``train.*`` (theirs 1e-4, 0.9).

    Reported: per ADMM epoch ``admm_residual`` (:func:`primal_residual` after the epoch's training, before
    its update) and ``admm_rho``; per run ``prune_energy_removed`` (the hard prune, on the weights leaving
    the ADMM phase) and ``magnitude_energy_removed`` (the same budgets on the weights entering it).
    """

    name = "admm"

    def __init__(self, config) -> None:
        super().__init__(config)
        self.z: dict[str, Tensor] = {}
        self.u: dict[str, Tensor] = {}
        self.budget: dict[str, int] = {}
        self.energy: dict[str, float] = {}  # run-level figures, kept through state_dict
        self._epoch_figures: dict[str, float] = {}

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

    def attach(self, run: MethodRun) -> None:
        super().attach(run)
        layers = self.prunable()
        counts = layer_budget(self.config, [n for n, _ in layers], [w.numel() for _, w in layers])
        self.budget = {n: k for (n, _), k in zip(layers, counts, strict=True)}

    def _weights(self) -> dict[str, Tensor]:
        return {n: w.detach() for n, w in self.prunable()}

    def rho(self, index: int) -> float:
        """The penalty of ADMM-phase epoch ``index`` (0-based)."""
        a = self.config.admm
        return rho_at(a.rho, a.rho_growth, index, a.update_every)

    @torch.no_grad()
    def enter(self, phase: Phase, *, fresh: bool) -> None:
        if phase.name == "admm" and fresh:
            weights = self._weights()
            self.u = {n: torch.zeros_like(w) for n, w in weights.items()}
            self.z = z_update(weights, self.u, self.budget)
            self.energy["magnitude_energy_removed"] = pruning.energy_removed(weights, self.z)
        elif phase.name == "retrain" and fresh:
            weights = self._weights()
            masks = {n: pruning.topk_mask(w, self.budget[n]) for n, w in weights.items()}
            self.energy["prune_energy_removed"] = pruning.energy_removed(weights, pruning.masked(weights, masks))
            pruning.set_masks(self.run.masking, masks)
            self.z, self.u = {}, {}

    def regulariser(self, plan) -> Tensor | None:
        if plan.phase != "admm":
            return None
        terms = [(w - self.z[n] + self.u[n]).pow(2).sum() for n, w in self.prunable()]
        return 0.5 * self.rho(plan.index) * torch.stack(terms).sum()

    @torch.no_grad()
    def end_epoch(self, epoch: int, last: bool) -> float:
        phase, index, _ = self.phase_at(epoch)
        self._epoch_figures = {}
        if phase.name == "admm":
            weights = self._weights()
            self._epoch_figures = {"admm_residual": primal_residual(weights, self.z), "admm_rho": self.rho(index)}
            if updates_after(index, phase.epochs, self.config.admm.update_every):
                self.z = z_update(weights, self.u, self.budget)
                self.u = u_update(weights, self.z, self.u)
        return 0.0

    def epoch_metrics(self) -> dict[str, float]:
        return dict(self._epoch_figures)

    def run_metrics(self) -> dict[str, float]:
        return dict(self.energy)

    def state_dict(self) -> dict[str, Any]:
        return {"z": dict(self.z), "u": dict(self.u), "energy": dict(self.energy)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        device = self.run.device
        self.z = {n: t.to(device) for n, t in state.get("z", {}).items()}
        self.u = {n: t.to(device) for n, t in state.get("u", {}).items()}
        self.energy = {k: float(v) for k, v in state.get("energy", {}).items()}
