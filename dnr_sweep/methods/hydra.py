"""HYDRA (Sehwag et al., "HYDRA: Pruning Adversarially Robust Neural Networks", NeurIPS 2020; the
DNR paper's [20]), following the authors' code (inspire-group/hydra) and its defaults.

1. ``pretrain``: dense adversarial training.
2. ``prune``: each prunable weight gets a score ``s = sqrt(6 / fan_in) * W / max|W|``; a layer computes
   with ``W * m``, ``m`` the top-k of ``|s|`` (``k = round(hydra.density * numel)``), the mask's
   gradient passing straight through to the scores. Weights are frozen; BatchNorm's affine trains with
   the scores unless ``hydra.freeze_bn: true``.
3. ``finetune``: the mask is fixed to the final top-k and the kept weights are adversarially
   fine-tuned; only these epochs are selected.

Every phase trains with TRADES (``hydra.loss: trades``, :mod:`dnr_sweep.attacks.trades`) or with
``beta * CE(clean) + (1 - beta) * CE(adv)`` (``hydra.loss: pgd``). What is kept of the authors'
defaults and what differs: :class:`dnr_sweep.config.methods.HydraConfig` and docs/BASELINES.md.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from dnr_sweep.attacks import trades
from dnr_sweep.methods import pruning
from dnr_sweep.methods.base import MethodRun, Phase
from dnr_sweep.methods.phased import PhasedMethod


class TopKStraightThrough(torch.autograd.Function):
    """Forward: the 0/1 top-``k`` mask of ``scores``; backward: the gradient passed through unchanged."""

    @staticmethod
    def forward(ctx: Any, scores: Tensor, k: int) -> Tensor:
        return pruning.topk_mask(scores, k)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return grad, None


def scaled_score_init(weight: Tensor) -> Tensor:
    """``sqrt(6 / fan_in) * W / max|W|`` (HYDRA's ``initialize_scaled_score``)."""
    fan_in = nn.init._calculate_correct_fan(weight, "fan_in")
    peak = weight.detach().abs().max()
    scale = math.sqrt(6.0 / fan_in)
    return scale * weight.detach() / peak if peak > 0 else torch.full_like(weight, scale)


def masked_forward(module: nn.Module, scores: Tensor, k: int):
    """A forward for ``module`` (Conv2d or Linear) computing with ``weight * topk(|scores|)``."""

    def forward(x: Tensor) -> Tensor:
        weight = module.weight * TopKStraightThrough.apply(scores.abs(), k)
        if isinstance(module, nn.Conv2d):
            return module._conv_forward(x, weight, module.bias)
        return F.linear(x, weight, module.bias)

    return forward


class HydraMethod(PhasedMethod):
    name = "hydra"

    def __init__(self, config) -> None:
        super().__init__(config)
        self.scores: dict[str, nn.Parameter] = {}
        self.score_optimizer: torch.optim.Optimizer | None = None
        self._pending_optimizer: dict[str, Any] | None = None
        self._hooked: list[nn.Module] = []

    def attach(self, run: MethodRun) -> None:
        """HYDRA's phases share the run's SGD; its weight decay is ``hydra.weight_decay``."""
        super().attach(run)
        for group in run.optimizer.param_groups:
            group["weight_decay"] = self.config.hydra.weight_decay

    def phases(self) -> list[Phase]:
        h = self.config.hydra
        beta = h.beta if h.loss == "pgd" else 0.0  # TRADES: every step adversarial, its KL weighed by trades_beta
        phases = [Phase("pretrain", h.pretrain_epochs, h.pretrain_lr, beta), Phase("prune", h.prune_epochs,
                  h.prune_lr, beta), Phase("finetune", h.finetune_epochs, h.finetune_lr, beta)]  # fmt: skip
        return [p for p in phases if p.epochs > 0]

    def budget(self) -> dict[str, int]:
        return {n: pruning.kept(self.config.hydra.density, w.numel()) for n, w in self.prunable()}

    def _modules(self) -> dict[str, nn.Module]:
        wanted = set(self.run.masking.layer_names)
        return {n: m for n, m in self.run.model.named_modules() if n in wanted}

    def enter(self, phase: Phase, *, fresh: bool) -> None:
        if phase.name == "prune":
            self._unhook()  # entering twice (a caller's own start_epoch) hooks each layer once
            if fresh or not self.scores:
                self.scores = {n: nn.Parameter(scaled_score_init(w)) for n, w in self.prunable()}
            momentum, decay = self.config.train.momentum, self.config.hydra.weight_decay
            self.score_optimizer = torch.optim.SGD(list(self.scores.values()), lr=phase.lr,
                                                   momentum=momentum, weight_decay=decay)  # fmt: skip
            if self._pending_optimizer is not None and not fresh:
                self.score_optimizer.load_state_dict(self._pending_optimizer)
            self._pending_optimizer = None
            self._freeze()
            budget = self.budget()
            for name, module in self._modules().items():
                module.forward = masked_forward(module, self.scores[name], budget[name])
                self._hooked.append(module)
        elif phase.name == "finetune":
            if fresh and self.scores:
                budget = self.budget()
                pruning.set_masks(
                    self.run.masking, {n: pruning.topk_mask(s, budget[n]) for n, s in self.scores.items()}
                )
            self._unhook()
            self.scores, self.score_optimizer = {}, None

    def _freeze(self) -> None:
        """The score phase's trainable parameters: BatchNorm affine (unless ``hydra.freeze_bn``), nothing else
        of the model (the authors' ``freeze_vars`` of every ``weight`` and ``bias`` outside BatchNorm)."""
        train_bn = not self.config.hydra.freeze_bn
        for module in self.run.model.modules():
            for p in module.parameters(recurse=False):
                p.requires_grad_(train_bn and isinstance(module, _BatchNorm))

    def _unhook(self) -> None:
        for module in self._hooked:
            del module.forward  # the class's own forward again
        self._hooked = []
        for p in self.run.model.parameters():
            p.requires_grad_(True)

    def start_epoch(self, epoch: int):
        plan = super().start_epoch(epoch)
        if plan.phase == "prune" and self.score_optimizer is not None:
            for group in self.score_optimizer.param_groups:
                group["lr"] = self.run.optimizer.param_groups[0]["lr"]
        return plan

    def step(self, plan) -> None:
        if plan.phase == "prune":  # the weights are frozen: the scores and BatchNorm's affine parameters move
            assert self.score_optimizer is not None
            self.score_optimizer.step()
            self.score_optimizer.zero_grad(set_to_none=True)
            self.run.optimizer.step()  # only parameters with a gradient: BatchNorm's (none with freeze_bn)
        else:
            self.run.masking.step()

    # -- the loss: TRADES (the authors' --trainer adv) or the baselines' PGD loss
    def adversary(self, model: nn.Module, images: Tensor, labels: Tensor, generator: torch.Generator) -> Tensor:
        if self.config.hydra.loss == "pgd":
            return super().adversary(model, images, labels, generator)
        spec = self.config.attack.train
        return trades.perturb(model, images, eps=spec.eps, alpha=spec.alpha, steps=spec.steps,
                              generator=generator, bn_mode=spec.bn_mode)  # fmt: skip

    @property
    def training_attack(self) -> str:
        return "trades" if self.config.hydra.loss == "trades" else super().training_attack

    def adversarial_loss(self, logits_adv: Tensor, logits_clean: Tensor, labels: Tensor) -> Tensor:
        if self.config.hydra.loss == "pgd":
            return super().adversarial_loss(logits_adv, logits_clean, labels)
        return trades.robust_term(logits_adv, logits_clean)

    def objective(self, loss_clean: Tensor, loss_adv: Tensor, loss_reg: Tensor, beta: float) -> Tensor:
        """``CE(clean) + trades_beta * KL`` (TRADES); ``loss: pgd``: the baselines' ``beta``-weighted loss."""
        if self.config.hydra.loss == "pgd":
            return super().objective(loss_clean, loss_adv, loss_reg, beta)
        return loss_clean + self.config.hydra.trades_beta * loss_adv + loss_reg

    def masks(self) -> dict[str, Tensor]:
        if self.scores:
            budget = self.budget()
            return {n: pruning.topk_mask(s, budget[n]) for n, s in self.scores.items()}
        return super().masks()

    def mask_density(self) -> float:
        if not self.scores:
            return super().mask_density()
        return sum(int(m.count_nonzero()) for m in self.masks().values()) / self.run.masking.num_prunable

    @contextlib.contextmanager
    def network_as_computed(self) -> Iterator[None]:
        """In the score phase: each layer's weight times its top-k mask, put back afterwards."""
        if not self.scores:
            yield
            return
        masks, modules = self.masks(), self._modules()
        kept = {n: modules[n].weight.detach().clone() for n in masks}
        try:
            with torch.no_grad():
                for n, mask in masks.items():
                    modules[n].weight.mul_(mask)
            yield
        finally:
            with torch.no_grad():
                for n, weight in kept.items():
                    modules[n].weight.copy_(weight)

    def state_dict(self) -> dict[str, Any]:
        if not self.scores:
            return {}
        return {"scores": {n: s.detach().clone() for n, s in self.scores.items()},
                "optimizer": self.score_optimizer.state_dict() if self.score_optimizer is not None else None}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        device = self.run.device
        self.scores = {n: nn.Parameter(t.to(device)) for n, t in state.get("scores", {}).items()}
        self._pending_optimizer = state.get("optimizer")
