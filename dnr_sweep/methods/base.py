"""The interface between the training engine and a training method (DNR, ADMM, Lasso, HYDRA).

The engine (:class:`dnr_sweep.training.engine.TrainingRun`) owns what every method shares: data, model, SGD,
attacks, evaluation, selection, checkpoints. A method owns what makes it that method, through a
protocol the engine calls at fixed points:

1. :meth:`TrainingMethod.make_masking` and :meth:`TrainingMethod.attach` (with the run's
   :class:`MethodRun`), once;
2. :meth:`TrainingMethod.start_epoch` before each epoch: learning rate, phase, the :class:`EpochPlan`;
3. per step, :meth:`TrainingMethod.adversary`, :meth:`TrainingMethod.adversarial_loss`,
   :meth:`TrainingMethod.regulariser`, :meth:`TrainingMethod.objective` and :meth:`TrainingMethod.step`;
4. :meth:`TrainingMethod.end_epoch` (DNR: rewiring; ADMM: Z and U), :meth:`TrainingMethod.epoch_metrics`,
   and after the last epoch :meth:`TrainingMethod.run_metrics`.

Only epochs whose plan is ``selectable`` (the final phase) can be the result. A method's state
round-trips through ``state_dict``/``load_state_dict``; a resumed run re-enters its phase with
``fresh=False``.
"""

from __future__ import annotations

import contextlib
import math
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor

from dnr_sweep.attacks import registry as attack_registry
from dnr_sweep.attacks.registry import AttackSettings
from dnr_sweep.config.reads import MethodReads
from dnr_sweep.config.run import method_reads
from dnr_sweep.foundation import run_contract as rc

if TYPE_CHECKING:
    from torch import nn

    from dnr_sweep.config import RunConfig
    from dnr_sweep.sparsity import DynamicL2, Masking


@dataclass(frozen=True)
class Phase:
    """A stretch of epochs trained one way. ``lr``: initial learning rate, cosine-annealed to 0 over
    the phase (``None``: the engine's MultiStep schedule runs on, DNR's case); ``beta``: the clean
    weight of the loss (1.0: no adversarial examples are generated)."""

    name: str
    epochs: int
    lr: float | None
    beta: float

    def __post_init__(self) -> None:
        if self.name not in rc.PHASES:
            raise ValueError(f"unknown phase {self.name!r}; valid: {', '.join(rc.PHASES)}")


@dataclass(frozen=True)
class EpochPlan:
    """How the engine trains one epoch: its phase, the loss's clean weight, whether it may be selected."""

    phase: str
    beta: float
    selectable: bool
    index: int  # epoch within the phase, 0-based

    @property
    def adversarial(self) -> bool:
        """Whether the epoch's steps generate adversarial examples (the engine's one test: ``beta < 1``)."""
        return self.beta < 1.0


@runtime_checkable
class MethodRun(Protocol):
    """What a method may use of the run it trains (the engine's :class:`~dnr_sweep.training.engine.TrainingRun`
    provides it): the network, its SGD, the masks and the dynamic L2 term, and the device they live on."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    masking: Masking
    l2: DynamicL2
    device: torch.device


def cosine_lr(lr: float, index: int, epochs: int) -> float:
    """``lr * (1 + cos(pi * index / epochs)) / 2``: the learning rate of a phase's epoch ``index``."""
    return lr * 0.5 * (1.0 + math.cos(math.pi * index / epochs))


class TrainingMethod(ABC):
    """One training method, called by the engine at the points the module docstring lists."""

    name: ClassVar[str]
    #: the run being trained, from :meth:`attach` on
    run: MethodRun

    def __init__(self, config: RunConfig) -> None:
        self.config = config

    # -- what the method is
    @abstractmethod
    def phases(self) -> list[Phase]:
        """The method's phases in order (phases of zero epochs left out)."""

    @classmethod
    def reads(cls) -> MethodReads:
        """The method-dependent config fields the method reads (``train.epochs``, ``dnr.*``, ...): its config
        block's declaration, which validation holds searches and ``--set`` to (:mod:`dnr_sweep.config.reads`)."""
        return method_reads(cls.name)

    @property
    def pruning_type(self) -> str:
        """Table 2's "pruning type" of the result (irregular, channel, channel_group)."""
        return "irregular"

    @classmethod
    def check(cls, config: RunConfig, model: nn.Module) -> list[str]:
        """Problems of ``config`` knowable from the built model (messages start with the field)."""
        return []

    # -- construction
    @abstractmethod
    def make_masking(self, model: nn.Module, optimizer: torch.optim.Optimizer, generator: torch.Generator) -> Masking:
        """The masks the run starts from."""

    def attach(self, run: MethodRun) -> None:
        """Called once the run has its model, optimizer, masking and dynamic L2 term."""
        self.run = run

    # -- one epoch
    def phase_at(self, epoch: int) -> tuple[Phase, int, bool]:
        """(phase, epoch within it, whether it is the final phase) of 0-based run epoch ``epoch``."""
        phases = self.phases()
        start = 0
        for k, phase in enumerate(phases):
            if epoch < start + phase.epochs:
                return phase, epoch - start, k == len(phases) - 1
            start += phase.epochs
        raise ValueError(f"epoch {epoch} is past the method's {start} epochs")

    @abstractmethod
    def start_epoch(self, epoch: int) -> EpochPlan:
        """Prepare 0-based epoch ``epoch`` (learning rate, phase entry); its plan."""

    def adversary(self, model: nn.Module, images: Tensor, labels: Tensor, generator: torch.Generator) -> Tensor:
        """This step's training adversaries of ``images`` against ``model``, random starts drawn from
        ``generator``. The engine calls it under its autocast, before the clean forward; by default the
        attack ``attack.train`` names, with its settings."""
        spec = self.config.attack.train
        settings = AttackSettings(eps=spec.eps, alpha=spec.alpha, steps=spec.steps,
                                  random_start=spec.random_start, bn_mode=spec.bn_mode)  # fmt: skip
        return attack_registry.perturb(spec.kind, model, images, labels, settings, generator)

    @property
    def training_attack(self) -> str:
        """The kind of attack :meth:`adversary` runs, as :func:`dnr_sweep.methods.cost.attack_cost` prices it."""
        return self.config.attack.train.kind

    def adversarial_loss(self, logits_adv: Tensor, logits_clean: Tensor, labels: Tensor) -> Tensor:
        """The loss's adversarial term (``loss_adv``, weighed by :meth:`objective`) from the adversaries'
        and the clean logits of this step: by default the mean cross-entropy on the adversaries."""
        return F.cross_entropy(logits_adv, labels)

    def regulariser(self, plan: EpochPlan) -> Tensor | None:
        """The method's regularisation term of this step (``None``: none)."""
        return None

    @abstractmethod
    def objective(self, loss_clean: Tensor, loss_adv: Tensor, loss_reg: Tensor, beta: float) -> Tensor:
        """The training loss from the clean cross-entropy, the adversarial term and the regulariser."""

    def step(self, plan: EpochPlan) -> None:
        """The optimizer step of this batch, then the masks re-applied."""
        self.run.masking.step()

    def end_epoch(self, epoch: int, last: bool) -> float:
        """After 0-based epoch ``epoch`` was trained and evaluated; the pruning rate it applied."""
        return 0.0

    def epoch_metrics(self) -> dict[str, float]:
        """The method's own figures of the epoch :meth:`end_epoch` just closed (run contract:
        ``METHOD_EPOCH_METRICS``); none by default."""
        return {}

    def run_metrics(self) -> dict[str, float]:
        """The method's own run-level figures (run contract: ``METHOD_RUN_METRICS``); kept through
        :meth:`state_dict`, so a resumed run reports them too. None by default."""
        return {}

    def masks(self) -> dict[str, Tensor]:
        """The masks the weights carry now (layer name -> 0/1 tensor)."""
        return dict(self.run.masking.masks)

    def mask_density(self) -> float:
        """Active entries of :meth:`masks` / all prunable weights."""
        return self.run.masking.mask_density()

    @contextlib.contextmanager
    def network_as_computed(self) -> Iterator[None]:
        """Inside: the model's weights as the network computes with them, so that sparsity is counted on
        what is evaluated. Most methods compute with the weights themselves; HYDRA's score phase
        multiplies them by the top-k of its scores in the forward pass."""
        yield

    # -- state
    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise ValueError(f"method {self.name} keeps no state, but the checkpoint holds {sorted(state)}")
