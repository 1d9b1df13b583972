"""Robustness evaluation beyond PGD-7: restarts, AutoAttack, attack-strength curves, gradient-masking checks.

One module per concept: ``evaluator`` (:class:`Evaluator`, :func:`evaluate_model`: accuracy under named
attacks), ``masking_checks`` (Athalye et al.'s sanity checks and AutoAttack's flags), ``strength_curves``
(the paper's Fig. 4). This module re-exports their public names.
"""

from dnr_sweep.evaluation.evaluator import (
    CURVE_EPS,
    CURVE_STEPS,
    EVAL_EXTRA_HINT,
    LARGE_EPS,
    LARGE_EPS_MAX_ACC,
    TOLERANCE_EXAMPLES,
    TOLERANCE_PP,
    AutoAttackVersion,
    Evaluator,
    evaluate_model,
    require_autoattack,
    write_evaluation,
)
from dnr_sweep.evaluation.masking_checks import (
    CheckResult,
    all_passed,
    autoattack_flags_check,
    autoattack_vs_pgd_check,
    check_entries,
    eps_growth_check,
    fgsm_vs_pgd_check,
    gradient_masking_checks,
    steps_restarts_check,
    zero_gradients_check,
)
from dnr_sweep.evaluation.strength_curves import (
    strength_curves,
    write_strength_curves,
)

__all__ = [
    "AutoAttackVersion",
    "CURVE_EPS",
    "CURVE_STEPS",
    "CheckResult",
    "EVAL_EXTRA_HINT",
    "Evaluator",
    "LARGE_EPS",
    "LARGE_EPS_MAX_ACC",
    "TOLERANCE_EXAMPLES",
    "TOLERANCE_PP",
    "all_passed",
    "autoattack_flags_check",
    "autoattack_vs_pgd_check",
    "check_entries",
    "eps_growth_check",
    "evaluate_model",
    "fgsm_vs_pgd_check",
    "gradient_masking_checks",
    "require_autoattack",
    "steps_restarts_check",
    "strength_curves",
    "write_evaluation",
    "write_strength_curves",
    "zero_gradients_check",
]
