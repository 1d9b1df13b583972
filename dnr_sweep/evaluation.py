"""Robustness evaluation beyond PGD-7: restarts, AutoAttack, attack-strength curves, gradient-masking checks.

The paper (Kundu et al. 2021, Sec. 4.1) reports single-restart PGD-7 at eps 8/255 only, and argues from
its Fig. 4 (accuracy falls with more iterations and larger eps) that its robustness is not gradient
obfuscation. This module makes those arguments measurable for any trained model:

* :func:`evaluate_model` - accuracy (%) under named attacks: ``clean``, ``fgsm``, ``pgd`` (the config's
  eval PGD), ``pgdK`` (K steps), ``pgdKxR`` (K steps, R random restarts) and ``autoattack`` (Croce &
  Hein 2020, standard version, through the optional ``pyautoattack`` package). The names' grammar
  lives in :mod:`dnr_sweep.attack_names`.
* :func:`strength_curves` - Fig. 4: PGD accuracy vs steps (at the configured eps) and vs eps (at the
  configured steps), saved as ``attack_strength.json`` by :func:`write_strength_curves`.
* :func:`gradient_masking_checks` - the sanity checks of Athalye, Carlini & Wagner (ICML 2018, Sec. 3.1)
  and AutoAttack's flags, one function each (``steps_restarts_check``, ``eps_growth_check``, ...), each
  returning a :class:`CheckResult` (``evaluation.json``: ``{"name", "status": "pass" | "warn", "detail"}``).

All attacks are L-inf in [0, 1] pixel space, run with the model in eval mode (its modes are restored),
on the first ``limit`` examples of the split in order. Every PGD variant draws its random start from a
fresh ``torch.Generator`` seeded with ``seed``, so a result does not depend on which other attacks ran
before it, and ``pgdKxR``'s first attempt is exactly ``pgdK`` with a random start.

Step size for other radii: an eps sweep keeps the configured ratio ``alpha / eps`` (``alpha_e = alpha *
e / eps``), so every radius gets the same relative attack and 7 steps can reach the boundary of the
large-eps ball (fixed alpha 0.01 x 7 steps travels only 0.07 < 64/255).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset

from dnr_sweep import checkpoint
from dnr_sweep.attack_names import AttackSpec, parse_attack, parse_attacks
from dnr_sweep.attacks import accuracy, attack_mode, fgsm, pgd
from dnr_sweep.run_contract import ATTACK_STRENGTH_FILE, EVALUATION_FILE

CURVE_STEPS: tuple[int, ...] = (1, 2, 5, 7, 10, 20, 50)  # Fig. 4 (a), (c)
CURVE_EPS: tuple[float, ...] = tuple(k / 255 for k in (1, 2, 4, 8, 12, 16))  # Fig. 4 (b), (d)

LARGE_EPS = 64 / 255  # Athalye et al.: at a large radius every model should be (almost) always fooled
LARGE_EPS_MAX_ACC = 5.0  # % accuracy allowed at LARGE_EPS
TOLERANCE_PP = 1.0  # sampling-noise slack for the comparisons, percentage points ...
TOLERANCE_EXAMPLES = 2  # ... but never less than this many examples of the evaluated set

EVAL_EXTRA_HINT = "pip install 'dnr-sweep[eval]'"
AutoAttackVersion = Literal["standard", "custom"]

# --------------------------------------------------------------------------------------------------
# The optional AutoAttack dependency


def require_autoattack() -> type:
    """``pyautoattack.AutoAttack``, or an ``ImportError`` that names the ``[eval]`` extra to install."""
    try:
        from pyautoattack import AutoAttack
    except ImportError as exc:
        raise ImportError(
            f"the 'autoattack' attack needs the pyautoattack package ({exc}); install the optional "
            f"extra: {EVAL_EXTRA_HINT}"
        ) from None
    return AutoAttack


class _Collect(logging.Handler):
    """Collects AutoAttack's warnings (its gradient-masking flags) instead of printing them."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message not in self.messages:
            self.messages.append(message)


# --------------------------------------------------------------------------------------------------
# The evaluator: runs attacks over a dataset, caching each distinct attack configuration


@dataclass(frozen=True)
class _PGDKey:
    eps: float
    alpha: float
    steps: int
    random_start: bool
    restarts: int


class Evaluator:
    """Accuracy of one model on the first ``limit`` examples of ``dataset`` under L-inf attacks.

    Arguments:
        model: classifier taking images in [0, 1], returning logits; moved to ``device``.
        dataset: items ``(image tensor in [0, 1], int label)``, e.g. ``DataSplits.test``.
        eps: L-inf radius of ``pgd``, ``pgdK``, ``pgdKxR``, ``autoattack`` (and ``fgsm`` unless
            ``fgsm_eps``).
        pgd_alpha, pgd_steps, pgd_random_start, pgd_restarts: the config's eval PGD (``pgd``); ``pgdK``
            uses ``pgd_alpha`` and ``pgd_random_start`` with one restart; ``pgdKxR`` a random start.
        fgsm_eps: radius of ``fgsm`` (default ``eps``).
        batch_size, limit, seed, device: loader batch size, number of examples (``None``: all), seed of
            every random start and of AutoAttack, where to compute.
        autoattack_version: ``"standard"`` (APGD-CE, APGD-T, FAB-T, Square: the number to report) or
            ``"custom"`` with ``autoattack_attacks`` (e.g. ``["apgd-ce", "apgd-t"]``, cheaper).

    Results are cached per attack configuration, so checks and curves reuse what was already run.
    """

    def __init__(
        self,
        model: nn.Module,
        dataset: Dataset,
        *,
        eps: float,
        pgd_alpha: float,
        pgd_steps: int,
        pgd_random_start: bool = True,
        pgd_restarts: int = 1,
        fgsm_eps: float | None = None,
        batch_size: int = 256,
        limit: int | None = None,
        seed: int = 0,
        device: str | torch.device = "cpu",
        autoattack_version: AutoAttackVersion = "standard",
        autoattack_attacks: Sequence[str] | None = None,
    ) -> None:
        if not 0 <= eps <= 1:
            raise ValueError(f"eps must be in [0, 1] (L-inf radius in pixel units), got {eps}")
        if fgsm_eps is not None and not 0 <= fgsm_eps <= 1:
            raise ValueError(f"fgsm_eps must be in [0, 1], got {fgsm_eps}")
        if not pgd_alpha > 0 or pgd_steps < 1 or pgd_restarts < 1:
            raise ValueError(
                f"PGD needs alpha > 0, steps >= 1, restarts >= 1; got alpha={pgd_alpha}, "
                f"steps={pgd_steps}, restarts={pgd_restarts}"
            )
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be >= 1 (or None for the whole split), got {limit}")
        if autoattack_version not in ("standard", "custom"):
            raise ValueError(f"autoattack_version must be 'standard' or 'custom', got {autoattack_version!r}")
        if (autoattack_version == "custom") != (autoattack_attacks is not None):
            raise ValueError("autoattack_attacks is required with autoattack_version='custom' and only then")
        self.device = torch.device(device)
        self.model = model.to(self.device)
        if limit is not None and limit < len(dataset):  # type: ignore[arg-type]
            dataset = Subset(dataset, range(limit))
        self.dataset = dataset
        self.n = len(dataset)  # type: ignore[arg-type]
        if self.n == 0:
            raise ValueError("the dataset to evaluate on is empty (is the split empty, e.g. val_size: 0?)")
        self.eps, self.fgsm_eps = eps, eps if fgsm_eps is None else fgsm_eps
        self.alpha, self.steps = pgd_alpha, pgd_steps
        self.random_start, self.restarts = pgd_random_start, pgd_restarts
        self.batch_size, self.seed = batch_size, seed
        self.autoattack_version = autoattack_version
        self.autoattack_attacks = list(autoattack_attacks) if autoattack_attacks is not None else None
        self.autoattack_flags: list[str] = []
        self._cache: dict[object, float] = {}

    # -- bookkeeping ---------------------------------------------------------------------------

    @property
    def tolerance(self) -> float:
        """Percentage points allowed for sampling noise: ``max(TOLERANCE_PP, TOLERANCE_EXAMPLES / n)``."""
        return max(TOLERANCE_PP, 100.0 * TOLERANCE_EXAMPLES / self.n)

    def _batches(self) -> Iterator[tuple[Tensor, Tensor]]:
        for images, labels in DataLoader(self.dataset, batch_size=self.batch_size, shuffle=False):
            yield images.to(self.device), labels.to(self.device)

    def _generator(self) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(self.seed)

    def _percent(self, key: object, attack: Callable[[Tensor, Tensor], Tensor]) -> float:
        """Accuracy (%) on ``attack(images, labels)`` over all batches, cached under ``key``."""
        if key not in self._cache:
            correct = torch.zeros((), dtype=torch.long, device=self.device)
            for images, labels in self._batches():
                correct += accuracy(self.model, attack(images, labels), labels)
            self._cache[key] = 100.0 * int(correct) / self.n
        return self._cache[key]

    # -- single attacks --------------------------------------------------------------------------

    def clean(self) -> float:
        return self._percent("clean", lambda x, y: x)

    def fgsm(self, eps: float | None = None) -> float:
        eps = self.fgsm_eps if eps is None else eps
        return self._percent(("fgsm", eps), lambda x, y: fgsm(self.model, x, y, eps=eps))

    def pgd(
        self,
        *,
        eps: float | None = None,
        steps: int | None = None,
        restarts: int | None = None,
        random_start: bool | None = None,
    ) -> float:
        """PGD accuracy; unset arguments are the configured ones. A different ``eps`` scales alpha."""
        eps = self.eps if eps is None else eps
        alpha = self.alpha if eps == self.eps else self.alpha * eps / self.eps
        key = _PGDKey(
            eps=eps, alpha=alpha, steps=self.steps if steps is None else steps,
            random_start=self.random_start if random_start is None else random_start,
            restarts=self.restarts if restarts is None else restarts,
        )  # fmt: skip
        if key.eps == 0:
            return self.clean()
        generator = self._generator()  # one per configuration, shared by its batches, in order

        def attack(images: Tensor, labels: Tensor) -> Tensor:
            return pgd(
                self.model,
                images,
                labels,
                eps=key.eps,
                alpha=key.alpha,
                steps=key.steps,
                random_start=key.random_start,
                restarts=key.restarts,
                generator=generator,
            )

        return self._percent(key, attack)

    def autoattack(self) -> float:
        """AutoAttack accuracy (%); its warnings (masking flags) are kept in ``autoattack_flags``."""
        if "autoattack" in self._cache:
            return self._cache["autoattack"]
        auto_attack_cls = require_autoattack()
        logger = logging.getLogger("auto-attack")
        collect, propagate = _Collect(), logger.propagate
        logger.addHandler(collect)
        logger.propagate = False  # its debug progress and warnings would go to the root logger
        try:
            adversary = auto_attack_cls(
                self.model, norm="Linf", eps=self.eps, version=self.autoattack_version,
                attacks=self.autoattack_attacks, seed=self.seed, device=self.device,
            )  # fmt: skip
            correct = 0
            with attack_mode(self.model, "eval"):
                for images, labels in self._batches():
                    _, y_adv = adversary.run_standard_evaluation(images, labels, batch_size=len(labels))
                    correct += int((y_adv == labels).sum())
        finally:
            logger.removeHandler(collect)
            logger.propagate = propagate
        self.autoattack_flags = collect.messages
        self._cache["autoattack"] = 100.0 * correct / self.n
        return self._cache["autoattack"]

    def zero_gradient_count(self) -> int:
        """Examples whose cross-entropy input gradient is exactly zero (AutoAttack's zero-gradient flag)."""
        if "zero_grad" not in self._cache:
            zero = 0
            with torch.enable_grad(), attack_mode(self.model, "eval"):
                for images, labels in self._batches():
                    x = images.detach().requires_grad_(True)
                    loss = F.cross_entropy(self.model(x), labels, reduction="sum")
                    (grad,) = torch.autograd.grad(loss, x)
                    zero += int((grad.flatten(1).abs().sum(dim=1) == 0).sum())
            self._cache["zero_grad"] = float(zero)
        return int(self._cache["zero_grad"])

    # -- named attacks ---------------------------------------------------------------------------

    def run(self, spec: AttackSpec | str) -> float:
        """Accuracy (%) under one named attack (see :data:`~dnr_sweep.attack_names.ATTACK_FORMS`)."""
        spec = parse_attack(spec) if isinstance(spec, str) else spec
        if spec.kind == "clean":
            return self.clean()
        if spec.kind == "fgsm":
            return self.fgsm()
        if spec.kind == "autoattack":
            return self.autoattack()
        if spec.steps is None:  # "pgd": the configured eval PGD
            return self.pgd()
        return self.pgd(steps=spec.steps, restarts=spec.restarts, random_start=spec.random_start)

    def evaluate(self, attacks: str | Sequence[str]) -> dict[str, float]:
        return {spec.name: self.run(spec) for spec in parse_attacks(attacks)}

    def pgd_points(self) -> list[tuple[str, int, int, float]]:
        """PGD results run so far at the configured eps and alpha: (label, steps, restarts, accuracy %)."""
        points = []
        for key, value in self._cache.items():
            if isinstance(key, _PGDKey) and key.eps == self.eps and key.alpha == self.alpha:
                label = f"pgd{key.steps}" + (f"x{key.restarts}" if key.restarts > 1 else "")
                label += "" if key.random_start else " (no random start)"
                points.append((label, key.steps, key.restarts, value))
        return sorted(points, key=lambda p: (p[1], p[2]))

    def pgd_radii(self) -> set[float]:
        """Radii > 0 run so far with the configured steps and random start, one restart (an eps curve)."""
        return {
            key.eps for key in self._cache
            if isinstance(key, _PGDKey) and key.eps > 0 and key.steps == self.steps and key.restarts == 1
            and key.random_start == self.random_start
        }  # fmt: skip

    @property
    def autoattack_accuracy(self) -> float | None:
        """AutoAttack accuracy (%) if :meth:`autoattack` has run, else None (it is never run implicitly)."""
        return self._cache.get("autoattack")

    # -- Fig. 4 ----------------------------------------------------------------------------------

    def strength_curves(
        self, steps_values: Sequence[int] = CURVE_STEPS, eps_values: Sequence[float] = CURVE_EPS
    ) -> dict[str, dict[str, float]]:
        """``{"steps": {"1": acc, ...}, "eps": {"0.0039...": acc, ...}}`` (string keys, accuracy %)."""
        return {
            "steps": {str(int(k)): self.pgd(steps=int(k), restarts=1) for k in steps_values},
            "eps": {str(float(e)): self.pgd(eps=float(e), restarts=1) for e in eps_values},
        }

    # -- Athalye et al. / AutoAttack checks ------------------------------------------------------

    def checks(self) -> list[dict[str, str]]:
        """:func:`gradient_masking_checks` as ``evaluation.json`` entries ``{"name", "status", "detail"}``."""
        return [result.as_dict() for result in gradient_masking_checks(self)]


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


# --------------------------------------------------------------------------------------------------
# Function API


def evaluate_model(
    model: nn.Module,
    dataset: Dataset,
    *,
    attacks: str | Sequence[str],
    eps: float,
    pgd_alpha: float,
    pgd_steps: int,
    pgd_random_start: bool = True,
    pgd_restarts: int = 1,
    fgsm_eps: float | None = None,
    batch_size: int = 256,
    limit: int | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    autoattack_version: AutoAttackVersion = "standard",
    autoattack_attacks: Sequence[str] | None = None,
) -> dict[str, float]:
    """Top-1 accuracy (%) of ``model`` on ``dataset`` under each named attack, keyed by the name.

    ``attacks``: names of the forms in :data:`~dnr_sweep.attack_names.ATTACK_FORMS` (a list or a comma-separated string), e.g.
    ``["clean", "fgsm", "pgd", "pgd20", "pgd50x10", "autoattack"]``. See :class:`Evaluator` for the
    other arguments.

    Example::
        >>> evaluate_model(model, splits.test, attacks="clean,pgd,pgd50x10", eps=8 / 255,
        ...                pgd_alpha=0.01, pgd_steps=7)  # doctest: +SKIP
        {'clean': 84.1, 'pgd': 50.3, 'pgd50x10': 48.7}

    Raises:
        ValueError: an unknown attack name (the message lists the valid forms), a bad setting.
        ImportError: ``autoattack`` without the ``pyautoattack`` package (names the ``[eval]`` extra).
    """
    specs = parse_attacks(attacks)
    if any(spec.kind == "autoattack" for spec in specs):
        require_autoattack()  # fail before any other attack has run
    evaluator = Evaluator(
        model, dataset, eps=eps, pgd_alpha=pgd_alpha, pgd_steps=pgd_steps, pgd_random_start=pgd_random_start,
        pgd_restarts=pgd_restarts, fgsm_eps=fgsm_eps, batch_size=batch_size, limit=limit, seed=seed,
        device=device, autoattack_version=autoattack_version, autoattack_attacks=autoattack_attacks,
    )  # fmt: skip
    return evaluator.evaluate([spec.name for spec in specs])


def strength_curves(
    model: nn.Module,
    dataset: Dataset,
    *,
    eps: float,
    pgd_alpha: float,
    pgd_steps: int,
    pgd_random_start: bool = True,
    steps_values: Sequence[int] = CURVE_STEPS,
    eps_values: Sequence[float] = CURVE_EPS,
    batch_size: int = 256,
    limit: int | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> dict[str, dict[str, float]]:
    """Fig. 4: PGD accuracy (%) vs steps (at ``eps``) and vs eps (at ``pgd_steps``, alpha scaled with eps).

    Returns ``{"steps": {"1": acc, ..., "50": acc}, "eps": {str(float(e)): acc, ...}}``, the shape of
    ``attack_strength.json`` (:func:`write_strength_curves`).
    """
    evaluator = Evaluator(
        model, dataset, eps=eps, pgd_alpha=pgd_alpha, pgd_steps=pgd_steps, pgd_random_start=pgd_random_start,
        batch_size=batch_size, limit=limit, seed=seed, device=device,
    )  # fmt: skip
    return evaluator.strength_curves(steps_values, eps_values)


def write_strength_curves(curves: dict[str, dict[str, float]], folder: str | Path) -> Path:
    """Write ``curves`` as ``<folder>/attack_strength.json`` (atomically); returns the path."""
    unknown = set(curves) - {"steps", "eps"}
    if unknown:
        raise ValueError(f"attack-strength curves have unknown key(s) {sorted(unknown)}; valid: eps, steps")
    return checkpoint.write_json(curves, Path(folder) / ATTACK_STRENGTH_FILE)


def all_passed(checks: Sequence[CheckResult | dict[str, str]]) -> bool:
    """Every check passed (``masking_checks_passed``); takes results or their ``evaluation.json`` dicts."""
    return all(c.passed if isinstance(c, CheckResult) else c["status"] == "pass" for c in checks)


def write_evaluation(result: dict, folder: str | Path) -> Path:
    """Write ``{attack: accuracy %, ..., "checks": [...], ...}`` as ``<folder>/evaluation.json``."""
    return checkpoint.write_json(result, Path(folder) / EVALUATION_FILE)
