"""Attack-strength curves (the paper's Fig. 4): PGD accuracy vs steps (at the configured eps) and vs eps (at the
configured steps), saved as ``attack_strength.json`` (earlier curves kept beside it, never replaced).

Step size for other radii: an eps sweep keeps the configured ratio ``alpha / eps`` (``alpha_e = alpha * e /
eps``), so every radius gets the same relative attack and 7 steps can reach the boundary of the large-eps ball
(fixed alpha 0.01 x 7 steps travels only 0.07 < 64/255).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn
from torch.utils.data import Dataset

from dnr_sweep.artifacts import checkpoint
from dnr_sweep.evaluation.evaluator import CURVE_EPS, CURVE_STEPS, Evaluator
from dnr_sweep.foundation import files, reader
from dnr_sweep.foundation.run_contract import ATTACK_STRENGTH_FILE
from dnr_sweep.foundation.schemas import AttackStrength


def strength_curves(
    model: nn.Module | Evaluator,
    dataset: Dataset | None = None,
    *,
    steps_values: Sequence[int] = CURVE_STEPS,
    eps_values: Sequence[float] = CURVE_EPS,
    **settings: Any,
) -> dict[str, dict[str, float]]:
    """Fig. 4: PGD accuracy (%) vs steps (at ``eps``) and vs eps (at ``pgd_steps``, alpha scaled with eps).

    ``model``: an :class:`Evaluator` (its cached results are reused), or a model with ``dataset`` and
    ``settings``, the keyword arguments of :class:`Evaluator` (``eps``, ``pgd_alpha``, ``pgd_steps``, ...).
    Returns ``{"steps": {"1": acc, ..., "50": acc}, "eps": {str(float(e)): acc, ...}}``, the shape of
    ``attack_strength.json`` (:func:`write_strength_curves`).
    """
    if isinstance(model, Evaluator):
        if dataset is not None or settings:
            raise TypeError("strength_curves(evaluator) takes no dataset or settings: the evaluator has them")
        evaluator = model
    else:
        evaluator = Evaluator(model, dataset, **settings)
    return evaluator.strength_curves(steps_values, eps_values)


def write_strength_curves(curves: dict[str, dict[str, float]], folder: str | Path) -> Path:
    """Write ``curves`` as ``<folder>/attack_strength.json`` (atomically); returns the path.

    Curves written there before are kept, never replaced: as ``attack_strength.earlier-<n>.json``
    (:func:`~dnr_sweep.foundation.files.keep_earlier`), whole, since a curve measured under other settings (eps,
    alpha, ``--limit``, seed: not in the file) cannot be merged point by point into a new one.
    """
    unknown = set(curves) - {"steps", "eps"}
    if unknown:
        raise ValueError(f"attack-strength curves have unknown key(s) {sorted(unknown)}; valid: eps, steps")
    path = Path(folder) / ATTACK_STRENGTH_FILE
    earlier, _ = reader.read_lenient(path, AttackStrength, unusable="kept as it is", prune=False)
    new = {kind: {float(k): float(v) for k, v in curves.get(kind, {}).items()} for kind in ("steps", "eps")}
    same = earlier is not None and earlier.curves() == new
    if not same:
        files.keep_earlier(path)
    return checkpoint.write_json(curves, path)
