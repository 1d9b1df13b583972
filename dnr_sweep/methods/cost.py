"""Training cost in forward-equivalents (FE), as the run contract defines them
(:data:`dnr_sweep.foundation.run_contract.TRAIN_FWD_EQUIV`): one forward pass of one image is 1 FE, a backward
pass 2 FE. Counted from what the engine's training step runs, the same for every method."""

from __future__ import annotations

FORWARD = 1
BACKWARD = 2


def attack_cost(kind: str, steps: int) -> int:
    """FE per image of generating one training adversary: each step a forward and an input-gradient
    backward; TRADES' KL adversary adds the one clean forward that gives its target
    (:func:`dnr_sweep.attacks.trades.perturb`)."""
    if kind == "pgd":
        return steps * (FORWARD + BACKWARD)
    if kind == "fgsm":
        return FORWARD + BACKWARD
    if kind == "trades":
        return FORWARD + steps * (FORWARD + BACKWARD)
    raise ValueError(f"unknown training attack {kind!r}; valid: pgd, fgsm, trades")


def step_cost(*, adversarial: bool, kind: str, steps: int) -> int:
    """FE per image of one training step: the adversary (if any), the clean forward (always: the
    training accuracy reads it; TRADES' KL term reuses it), the adversarial forward, and the loss's
    backward through each."""
    forwards = 2 if adversarial else 1
    return (attack_cost(kind, steps) if adversarial else 0) + forwards * (FORWARD + BACKWARD)
