"""What the baselines (ADMM, Lasso, HYDRA) share: dense start, phases with cosine learning rates,
momentum restarted at each phase, the loss ``beta * CE(clean) + (1 - beta) * CE(adv) + regulariser``,
and selection within the final phase only."""

from __future__ import annotations

from abc import abstractmethod

import torch
from torch import Tensor, nn

from dnr_sweep.methods import pruning
from dnr_sweep.methods.base import EpochPlan, Phase, TrainingMethod, cosine_lr
from dnr_sweep.sparsity import Masking


class PhasedMethod(TrainingMethod):
    """A baseline: subclasses list their phases and react to entering one (:meth:`enter`)."""

    def __init__(self, config) -> None:
        super().__init__(config)
        self.current: str | None = None  # the phase entered last (None: none yet in this process)

    def make_masking(self, model: nn.Module, optimizer: torch.optim.Optimizer, generator: torch.Generator) -> Masking:
        epochs = sum(phase.epochs for phase in self.phases())  # train.epochs, which the config derives from them
        return pruning.dense_masking(model, optimizer, prune_linear=self.config.dnr.prune_linear,
                                     total_epochs=epochs, generator=generator)  # fmt: skip

    def start_epoch(self, epoch: int) -> EpochPlan:
        phase, index, final = self.phase_at(epoch)
        if phase.name != self.current:
            fresh = index == 0
            if fresh:
                pruning.restart_momentum(self.run.optimizer)
            self.enter(phase, fresh=fresh)
            self.current = phase.name
        assert phase.lr is not None
        for group in self.run.optimizer.param_groups:
            group["lr"] = cosine_lr(phase.lr, index, phase.epochs)
        return EpochPlan(phase.name, phase.beta, selectable=final, index=index)

    @abstractmethod
    def enter(self, phase: Phase, *, fresh: bool) -> None:
        """Phase ``phase`` begins (``fresh``) or a resumed run continues inside it (state already loaded)."""

    def objective(self, loss_clean: Tensor, loss_adv: Tensor, loss_reg: Tensor, beta: float) -> Tensor:
        return beta * loss_clean + (1.0 - beta) * loss_adv + loss_reg

    def prunable(self) -> list[tuple[str, nn.Parameter]]:
        return self.run.masking.named_weights()
