"""Gradient-masking checks: the sanity checks of Athalye, Carlini & Wagner (ICML 2018, Sec. 3.1) and AutoAttack's
flags, one function each (``steps_restarts_check``, ``eps_growth_check``, ...), each returning a
:class:`CheckResult` (``evaluation.json``: ``{"name", "status": "pass" | "warn", "detail"}``), composed by
:func:`gradient_masking_checks`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from dnr_sweep.evaluation.evaluator import LARGE_EPS, LARGE_EPS_MAX_ACC, Evaluator

# --------------------------------------------------------------------------------------------------
# Gradient-masking checks: one function each, composed by gradient_masking_checks


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one gradient-masking check; ``warn`` means "look closer", not "broken"."""

    name: str
    status: Literal["pass", "warn"]
    detail: str  # the measured figures the verdict rests on

    @classmethod
    def of(cls, name: str, ok: bool, detail: str) -> CheckResult:
        return cls(name, "pass" if ok else "warn", detail)

    @property
    def passed(self) -> bool:
        return self.status == "pass"

    def as_dict(self) -> dict[str, str]:
        """The ``evaluation.json`` entry."""
        return {"name": self.name, "status": self.status, "detail": self.detail}


def _tolerance_note(evaluator: Evaluator) -> str:
    return f"tolerance {evaluator.tolerance:.2f} pp"


def steps_restarts_check(evaluator: Evaluator) -> CheckResult:
    """``steps_restarts``: PGD accuracy must not rise with more steps or more restarts.

    Athalye, Carlini & Wagner (ICML 2018), Sec. 3.1: an attack that gets *weaker* as it gets more
    compute ("iterative attacks perform worse than one-step attacks") signals masked gradients.
    Compared: every pair of PGD runs at the configured eps and alpha where one has >= steps and >=
    restarts of the other. When no run has more steps (restarts) than the configured PGD-K,
    ``pgd{max(20, 2K)}`` (``pgd{K}x5``, random start) runs first.
    """
    tol = evaluator.tolerance
    evaluator.pgd()
    points = evaluator.pgd_points()
    if not any(steps > evaluator.steps for _, steps, _, _ in points):
        evaluator.pgd(steps=max(20, 2 * evaluator.steps), restarts=1)
    if not any(restarts > 1 for _, _, restarts, _ in points):
        evaluator.pgd(steps=evaluator.steps, restarts=5, random_start=True)
    points = evaluator.pgd_points()
    worst: tuple[float, str] | None = None
    for la, sa, ra, acc_a in points:
        for lb, sb, rb, acc_b in points:
            if (sb, rb) != (sa, ra) and sb >= sa and rb >= ra and acc_b - acc_a > tol:
                rise = acc_b - acc_a
                if worst is None or rise > worst[0]:
                    worst = (rise, f"{lb} {acc_b:.2f}% > {la} {acc_a:.2f}%")
    listing = ", ".join(f"{label} {acc:.2f}%" for label, _, _, acc in points)
    rises = f"; rises: {worst[1]}" if worst else ""
    return CheckResult.of(
        "steps_restarts", worst is None,
        f"PGD at eps {evaluator.eps:.4g}: {listing}{rises} ({_tolerance_note(evaluator)})",
    )  # fmt: skip


def eps_growth_check(evaluator: Evaluator) -> CheckResult:
    """``eps_growth``: PGD accuracy must not rise with eps, and must be <= 5% at a large radius.

    Athalye, Carlini & Wagner (ICML 2018), Sec. 3.1: "increasing the distortion bound does not increase
    success" and "unbounded attacks do not reach 100% success" signal masked gradients. Radii: eps x 1,
    2, 4, the large radius ``max(64/255, min(1, 8 eps))`` (64/255 = 8 x the paper's 8/255; 8 x eps keeps
    the test meaningful for digits' eps 0.1-0.2) and every radius already run at the configured steps
    (e.g. the Fig. 4 eps curve); alpha is scaled with eps.
    """
    tol = evaluator.tolerance
    large = max(LARGE_EPS, min(1.0, 8 * evaluator.eps))
    radii = {e for e in (evaluator.eps, 2 * evaluator.eps, 4 * evaluator.eps) if 0 < e < large} | {large}
    radii = sorted(radii | {e for e in evaluator.pgd_radii() if e < large})
    accs = [evaluator.pgd(eps=e, restarts=1) for e in radii]
    rises = [f"{accs[i + 1]:.2f}% at {radii[i + 1]:.4g} > {accs[i]:.2f}% at {radii[i]:.4g}"
             for i in range(len(radii) - 1) if accs[i + 1] - accs[i] > tol]  # fmt: skip
    unbroken = [f"{accs[-1]:.2f}% > {LARGE_EPS_MAX_ACC:g}% at eps {large:.4g}"] if accs[-1] > LARGE_EPS_MAX_ACC else []
    problems = rises + unbroken
    curve = ", ".join(f"eps {e:.4g}: {a:.2f}%" for e, a in zip(radii, accs, strict=True))
    ratio = evaluator.alpha / evaluator.eps if evaluator.eps else float("nan")
    return CheckResult.of(
        "eps_growth", not problems,
        f"PGD-{evaluator.steps} (alpha/eps {ratio:.3g}): {curve}"
        + (f"; {'; '.join(problems)}" if problems else "") + f" ({_tolerance_note(evaluator)})",
    )  # fmt: skip


def fgsm_vs_pgd_check(evaluator: Evaluator) -> CheckResult:
    """``fgsm_vs_pgd``: FGSM accuracy must be >= PGD accuracy, both at the PGD eps.

    Athalye, Carlini & Wagner (ICML 2018), Sec. 3.1: "one-step attacks perform better than iterative
    attacks" signals masked gradients (or a PGD too weak for its radius).
    """
    base = evaluator.pgd()
    fgsm_acc = evaluator.fgsm(evaluator.eps)
    return CheckResult.of(
        "fgsm_vs_pgd", fgsm_acc >= base - evaluator.tolerance,
        f"FGSM {fgsm_acc:.2f}% vs PGD {base:.2f}% at eps {evaluator.eps:.4g} "
        f"(FGSM should not be the stronger attack; {_tolerance_note(evaluator)})",
    )  # fmt: skip


def autoattack_vs_pgd_check(evaluator: Evaluator) -> CheckResult:
    """``autoattack_vs_pgd``: AutoAttack accuracy must be <= PGD accuracy (runs AutoAttack if needed).

    AutoAttack (Croce & Hein, ICML 2020) is an ensemble of stronger attacks (APGD-CE, APGD-T, FAB-T,
    Square); doing worse than plain PGD means its attacks are misled, the signal Athalye, Carlini &
    Wagner (ICML 2018, Sec. 3.1) look for when one attack beats another it should not.
    """
    base = evaluator.pgd()
    auto = evaluator.autoattack()
    return CheckResult.of(
        "autoattack_vs_pgd", auto <= base + evaluator.tolerance,
        f"AutoAttack ({evaluator.autoattack_version}) {auto:.2f}% vs PGD {base:.2f}% at eps {evaluator.eps:.4g} "
        f"({_tolerance_note(evaluator)})",
    )  # fmt: skip


def zero_gradients_check(evaluator: Evaluator) -> CheckResult:
    """``zero_gradients``: no example may have an all-zero cross-entropy input gradient.

    AutoAttack's zero-gradient flag (Croce & Hein 2020, ``autoattack/checks.py``): a zero gradient
    leaves every gradient attack without a direction (e.g. a model that rounds its input).
    """
    zero = evaluator.zero_gradient_count()
    return CheckResult.of(
        "zero_gradients",
        zero == 0,
        f"{zero} of {evaluator.n} examples have an all-zero cross-entropy input gradient at the clean point",
    )


def autoattack_flags_check(evaluator: Evaluator) -> CheckResult:
    """``autoattack_flags``: AutoAttack raised none of its own warnings (runs AutoAttack if needed).

    AutoAttack (Croce & Hein 2020) checks for randomised defences, zero gradients, a Square attack that
    beats the gradient attacks, ... and logs a warning for each; they are collected here.
    """
    evaluator.autoattack()
    flags = evaluator.autoattack_flags
    return CheckResult.of("autoattack_flags", not flags, "; ".join(flags) or "AutoAttack raised no flag")


def gradient_masking_checks(evaluator: Evaluator) -> list[CheckResult]:
    """Every gradient-masking check, running the attacks each needs that have not run yet.

    In order: :func:`steps_restarts_check`, :func:`eps_growth_check`, :func:`fgsm_vs_pgd_check`,
    :func:`autoattack_vs_pgd_check` (only when AutoAttack already ran), :func:`zero_gradients_check`,
    :func:`autoattack_flags_check` (only when AutoAttack already ran). Every comparison allows
    :attr:`Evaluator.tolerance` percentage points of sampling noise.
    """
    autoattack_ran = evaluator.autoattack_accuracy is not None
    results = [steps_restarts_check(evaluator), eps_growth_check(evaluator), fgsm_vs_pgd_check(evaluator)]
    if autoattack_ran:
        results.append(autoattack_vs_pgd_check(evaluator))
    results.append(zero_gradients_check(evaluator))
    if autoattack_ran:
        results.append(autoattack_flags_check(evaluator))
    return results


def all_passed(checks: Sequence[CheckResult | dict[str, str]]) -> bool:
    """Every check passed (``masking_checks_passed``); takes results or their ``evaluation.json`` dicts."""
    return all(c.passed if isinstance(c, CheckResult) else c["status"] == "pass" for c in checks)


def check_entries(evaluator: Evaluator) -> list[dict[str, str]]:
    """:func:`gradient_masking_checks` as ``evaluation.json`` entries ``{"name", "status", "detail"}``."""
    return [result.as_dict() for result in gradient_masking_checks(evaluator)]
