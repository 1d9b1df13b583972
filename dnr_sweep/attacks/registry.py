"""The attacks, in one registry: each kind of the attack-name grammar is one :class:`Attack` entry (its
perturbation function, label, metric name), used alike by training (``TrainingMethod.adversary``), per-epoch
evaluation (``engine.evaluate``) and the post-training evaluator (``evaluation.Evaluator``).

An attack perturbs a batch under :class:`AttackSettings` (the radius and PGD's schedule; an attack reads
the settings it needs), drawing any random start from the given generator. AutoAttack is the one
entry without a per-batch function: it runs a whole set through the optional ``pyautoattack`` package
and reports its own flags (``Evaluator.autoattack``). :func:`get` fails loudly, listing the kinds.

To add an attack: its function (here or a module of its own), its entry in :data:`ATTACKS`, and its
name form in :mod:`dnr_sweep.foundation.attack_names`; its metric (``<name>_acc``) follows from the name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

import torch
from torch import Tensor, nn

from dnr_sweep.attacks.gradient import BnMode, fgsm, pgd
from dnr_sweep.foundation import run_contract as rc
from dnr_sweep.foundation.attack_names import AttackKind


@dataclass(frozen=True)
class AttackSettings:
    """One attack configuration (hashable: the evaluator caches a result per kind and settings)."""

    eps: float  # L-inf radius in [0, 1] pixel space
    alpha: float = 0.0  # PGD step size
    steps: int = 1  # PGD steps
    restarts: int = 1  # PGD random restarts (the worst case per example counts)
    random_start: bool = False  # PGD starts at a uniform point of the eps-ball
    bn_mode: BnMode = "eval"  # BatchNorm mode while the attack runs (training adversaries may use "train")


Perturb = Callable[[nn.Module, Tensor, Tensor, AttackSettings, "torch.Generator | None"], Tensor]


def _clean(model: nn.Module, images: Tensor, labels: Tensor, settings: AttackSettings, generator=None) -> Tensor:
    return images


def _fgsm(model: nn.Module, images: Tensor, labels: Tensor, settings: AttackSettings, generator=None) -> Tensor:
    return fgsm(model, images, labels, eps=settings.eps)


def _pgd(model: nn.Module, images: Tensor, labels: Tensor, settings: AttackSettings, generator=None) -> Tensor:
    return pgd(
        model, images, labels, eps=settings.eps, alpha=settings.alpha, steps=settings.steps,
        random_start=settings.random_start, restarts=settings.restarts, generator=generator, bn_mode=settings.bn_mode,
    )  # fmt: skip


@dataclass(frozen=True)
class Attack:
    """One kind of attack of the name grammar."""

    kind: AttackKind
    label: str  # for reports and messages, e.g. "PGD"
    perturb: Perturb | None  # None: runs a whole set through its own library (AutoAttack)
    reads: tuple[str, ...] = ()  # the AttackSettings fields it uses (the rest do not change its result)
    random: bool = False  # draws random starts from the generator it is given

    def key(self, settings: AttackSettings) -> AttackSettings:
        """``settings`` with the fields the attack does not read at their defaults: one cache key per result."""
        return AttackSettings(eps=settings.eps if "eps" in self.reads else 0.0,
                              **{f: getattr(settings, f) for f in self.reads if f != "eps"})  # fmt: skip

    def metric(self, name: str | None = None, split: rc.Split = "test") -> str:
        """The metric of the attack ``name`` (default: the kind), e.g. ``pgd50x10_acc`` / ``val_fgsm_acc``."""
        return rc.attack_metric(name or self.kind, split)


_PGD_READS = ("eps", "alpha", "steps", "restarts", "random_start", "bn_mode")

ATTACKS: Final = MappingProxyType(
    {
        "clean": Attack("clean", "clean", _clean),
        "fgsm": Attack("fgsm", "FGSM", _fgsm, reads=("eps",)),
        "pgd": Attack("pgd", "PGD", _pgd, reads=_PGD_READS, random=True),
        "autoattack": Attack("autoattack", "AutoAttack", None),
    }
)


def get(kind: str) -> Attack:
    """The attack ``kind``; ``ValueError`` naming it and listing the valid kinds otherwise."""
    try:
        return ATTACKS[kind]
    except (KeyError, TypeError):
        raise ValueError(f"unknown attack kind {kind!r}; valid: {', '.join(ATTACKS)}") from None


def perturb(
    kind: str,
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    settings: AttackSettings,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Adversarial images of attack ``kind`` for one batch."""
    attack = get(kind)
    if attack.perturb is None:
        raise ValueError(f"{attack.label} runs over a whole set, not batch by batch; use the evaluator")
    return attack.perturb(model, images, labels, settings, generator)
