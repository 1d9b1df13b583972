"""Training methods beside DNR, one module each, behind one interface (:mod:`.base`).

``get(name)`` returns a method's class; an unknown name raises ``ValueError`` listing the valid
ones (the names are the run contract's :data:`~dnr_sweep.foundation.run_contract.METHODS`, which the config's
``method:`` field accepts).

=========  ==========================================================  ============================
name       what                                                        phases
=========  ==========================================================  ============================
dnr        Dynamic Network Rewiring (the paper)                        warmup, hybrid
admm       ADMM robust pruning (Ye et al. 2019, the paper's [17])      pretrain, admm, retrain
lasso      L1 robust sparse regularisation (Rakin et al. 2019, [21])   lasso, retrain
hydra      HYDRA (Sehwag et al. 2020, [20])                            pretrain, prune, finetune
=========  ==========================================================  ============================
"""

from __future__ import annotations

from dnr_sweep.foundation import run_contract as rc
from dnr_sweep.methods.admm import ADMMMethod
from dnr_sweep.methods.base import EpochPlan, MethodRun, Phase, TrainingMethod
from dnr_sweep.methods.dnr import DNRMethod
from dnr_sweep.methods.hydra import HydraMethod
from dnr_sweep.methods.lasso import LassoMethod

__all__ = ["EpochPlan", "MethodRun", "Phase", "TrainingMethod", "REGISTRY", "get", "build"]

REGISTRY: dict[str, type[TrainingMethod]] = {m.name: m for m in (DNRMethod, ADMMMethod, LassoMethod, HydraMethod)}
if tuple(REGISTRY) != rc.METHODS:  # the config accepts exactly the names registered here
    raise ImportError(f"method registry {tuple(REGISTRY)} differs from run_contract.METHODS {rc.METHODS}")


def get(name: str) -> type[TrainingMethod]:
    """The method class called ``name``; ``ValueError`` naming it and listing the valid names."""
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown training method {name!r}; valid: {', '.join(REGISTRY)}") from None


def build(config) -> TrainingMethod:
    """The configured method (``config.method``), not yet attached to a run."""
    return get(config.method)(config)
