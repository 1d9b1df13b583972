"""Upper bounds of every count a user gives (config fields, flags, attack names): each keeps a value that
validates from crashing later (a seed torch or NumPy rejects) or running for ever (``epochs: 1e22``,
``pgd99999999999999999999``). Messages name the bound; raise one here if a real use needs more.

Standard library only: the attack-name grammar and the config both use it.
"""

from __future__ import annotations

#: seeds: NumPy's RandomState and Optuna's samplers take [0, 2**32 - 1]; torch.manual_seed takes more
MAX_SEED = 2**32 - 1
MAX_EPOCHS = 10_000  # the paper trains 200; a thousand times a CIFAR epoch is weeks on one GPU
MAX_ATTACK_STEPS = 10_000  # PGD steps per example (the strongest evaluations use 100 to 1,000)
MAX_RESTARTS = 1_000  # PGD random restarts per example
MAX_BATCH_SIZE = 1 << 20  # images per batch
MAX_IMAGES = 10**9  # an image count (eval_subset, limit)
MAX_CHECKPOINTS = 1_000  # checkpoints kept per trial
MAX_FAILURES = 1_000  # retries of one failed trial (tune.max_failures; -1, without end, stays allowed)


def check_count(value: int, *, lo: int, hi: int, what: str) -> int:
    """``value`` when ``lo <= value <= hi``; else ``ValueError`` naming the bounds."""
    if not lo <= value <= hi:
        raise ValueError(f"{what} must be in [{lo}, {hi}], got {value}")
    return value
