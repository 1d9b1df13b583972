"""DNR (Kundu et al., ASP-DAC 2021), the paper's method, as a :class:`TrainingMethod`.

Exactly what the engine did before methods existed, in the same order: masks at the target density
(random, seeded positions); ``train.warmup_epochs`` clean-only epochs, then the hybrid loss
``beta * (CE(clean) + rho/2 ||theta*m - z||^2) + (1 - beta) * CE(adv)`` (Eq. 6) under the engine's
MultiStep learning-rate schedule; after every epoch but the last the masks are rewired and ``z``
snapshotted. Only hybrid epochs may be selected (the final phase, as for every method).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from dnr_sweep.methods.base import EpochPlan, Phase, TrainingMethod
from dnr_sweep.sparsity import Masking


class DNRMethod(TrainingMethod):
    name = "dnr"

    def phases(self) -> list[Phase]:
        train, dnr = self.config.train, self.config.dnr
        phases = [Phase("warmup", train.warmup_epochs, None, 1.0), Phase("hybrid", train.epochs - train.warmup_epochs,
                                                                        None, dnr.beta)]  # fmt: skip
        return [p for p in phases if p.epochs > 0]

    @property
    def pruning_type(self) -> str:
        return self.config.dnr.pruning

    def make_masking(self, model: nn.Module, optimizer: torch.optim.Optimizer, generator: torch.Generator) -> Masking:
        dnr = self.config.dnr
        return Masking(model, optimizer, density=dnr.density, pruning=dnr.pruning, prune_rate=dnr.prune_rate,
                       total_epochs=self.config.train.epochs, prune_linear=dnr.prune_linear,
                       generator=generator)  # fmt: skip

    def start_epoch(self, epoch: int) -> EpochPlan:
        phase, index, final = self.phase_at(epoch)
        return EpochPlan(phase.name, phase.beta, selectable=final, index=index)

    def regulariser(self, plan: EpochPlan) -> Tensor | None:
        dnr = self.config.dnr
        if plan.phase == "hybrid" and dnr.dynamic_l2 and dnr.rho > 0:
            return self.run.l2.penalty()
        return None

    def objective(self, loss_clean: Tensor, loss_adv: Tensor, loss_reg: Tensor, beta: float) -> Tensor:
        return beta * (loss_clean + loss_reg) + (1.0 - beta) * loss_adv

    def end_epoch(self, epoch: int, last: bool) -> float:
        if last:  # a regrown weight starts at zero: rewiring now would leave the model below its target
            return 0.0
        stats = self.run.masking.rewire(epoch)
        self.run.l2.snapshot()
        return stats.prune_rate

    def state_dict(self) -> dict[str, Any]:
        return {}
