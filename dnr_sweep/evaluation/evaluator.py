"""The evaluator: accuracy under named attacks over a dataset, each distinct attack configuration run once.

Names: ``clean``, ``fgsm``, ``pgd`` (the config's eval PGD), ``pgdK`` (K steps), ``pgdKxR`` (K steps, R random
restarts) and ``autoattack`` (Croce & Hein 2020, through the optional ``pyautoattack`` package); their grammar
lives in :mod:`dnr_sweep.foundation.attack_names`. All attacks are L-inf in [0, 1] pixel space, run with the model in
eval mode (its modes are restored), on the first ``limit`` examples of the split in order. Every PGD variant
draws its random start from a fresh ``torch.Generator`` seeded with ``seed``, so a result does not depend on
which other attacks ran before it, and ``pgdKxR``'s first attempt is exactly ``pgdK`` with a random start.

The paper (Kundu et al. 2021, Sec. 4.1) reports single-restart PGD-7 at eps 8/255 only; this package makes
its Fig. 4 argument (robustness is not gradient obfuscation) measurable for any trained model.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset

from dnr_sweep.artifacts import checkpoint
from dnr_sweep.attacks import registry as attack_registry
from dnr_sweep.attacks.gradient import accuracy, attack_mode
from dnr_sweep.attacks.registry import AttackSettings
from dnr_sweep.foundation import files, reader
from dnr_sweep.foundation.attack_names import AttackSpec, parse_attack, parse_attacks
from dnr_sweep.foundation.errors import DataRecoveryWarning
from dnr_sweep.foundation.run_contract import EVALUATION_FILE
from dnr_sweep.foundation.schemas import Evaluation

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
        from pyautoattack import AutoAttack  # optional: the [eval] extra
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
        self._cache: dict[tuple[str, AttackSettings | None], float] = {}  # (kind, settings) -> %

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

    def measure(self, kind: str, settings: AttackSettings) -> float:
        """Accuracy (%) under the registry's attack ``kind`` with ``settings``, cached per kind and the
        settings it reads; each configuration draws its random starts from a fresh generator seeded with
        ``seed``, shared by its batches in order."""
        attack = attack_registry.get(kind)
        if attack.perturb is None:
            return self.autoattack()
        key = attack.key(settings)
        if kind != "clean" and key.eps == 0:
            return self.clean()
        generator = self._generator() if attack.random else None
        return self._percent((kind, key), lambda x, y: attack.perturb(self.model, x, y, key, generator))

    def settings(self, spec: AttackSpec) -> AttackSettings:
        """The configured settings, with what the name sets (``pgdK``: steps, one restart; ``pgdKxR``: steps,
        restarts, a random start); ``fgsm`` at its own radius."""
        return AttackSettings(
            eps=self.fgsm_eps if spec.kind == "fgsm" else self.eps, alpha=self.alpha,
            steps=self.steps if spec.steps is None else spec.steps,
            restarts=self.restarts if spec.restarts is None else spec.restarts,
            random_start=self.random_start if spec.random_start is None else spec.random_start,
        )  # fmt: skip

    def clean(self) -> float:
        return self.measure("clean", AttackSettings(eps=0.0))

    def fgsm(self, eps: float | None = None) -> float:
        return self.measure("fgsm", AttackSettings(eps=self.fgsm_eps if eps is None else eps))

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
        settings = AttackSettings(
            eps=eps, alpha=alpha, steps=self.steps if steps is None else steps,
            random_start=self.random_start if random_start is None else random_start,
            restarts=self.restarts if restarts is None else restarts,
        )  # fmt: skip
        return self.measure("pgd", settings)

    def autoattack(self) -> float:
        """AutoAttack accuracy (%); its warnings (masking flags) are kept in ``autoattack_flags``."""
        if ("autoattack", None) in self._cache:
            return self._cache[("autoattack", None)]
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
        self._cache[("autoattack", None)] = 100.0 * correct / self.n
        return self._cache[("autoattack", None)]

    def zero_gradient_count(self) -> int:
        """Examples whose cross-entropy input gradient is exactly zero (AutoAttack's zero-gradient flag)."""
        if ("zero_grad", None) not in self._cache:
            zero = 0
            with torch.enable_grad(), attack_mode(self.model, "eval"):
                for images, labels in self._batches():
                    x = images.detach().requires_grad_(True)
                    loss = F.cross_entropy(self.model(x), labels, reduction="sum")
                    (grad,) = torch.autograd.grad(loss, x)
                    zero += int((grad.flatten(1).abs().sum(dim=1) == 0).sum())
            self._cache[("zero_grad", None)] = float(zero)
        return int(self._cache[("zero_grad", None)])

    # -- named attacks ---------------------------------------------------------------------------

    def run(self, spec: AttackSpec | str) -> float:
        """Accuracy (%) under one named attack (see :data:`~dnr_sweep.foundation.attack_names.ATTACK_FORMS`)."""
        spec = parse_attack(spec) if isinstance(spec, str) else spec
        return self.measure(spec.kind, self.settings(spec))

    def evaluate(self, attacks: str | Sequence[str]) -> dict[str, float]:
        return {spec.name: self.run(spec) for spec in parse_attacks(attacks)}

    def pgd_points(self) -> list[tuple[str, int, int, float]]:
        """PGD results run so far at the configured eps and alpha: (label, steps, restarts, accuracy %)."""
        points = []
        for (kind, key), value in self._cache.items():
            if kind == "pgd" and key.eps == self.eps and key.alpha == self.alpha:
                label = f"pgd{key.steps}" + (f"x{key.restarts}" if key.restarts > 1 else "")
                label += "" if key.random_start else " (no random start)"
                points.append((label, key.steps, key.restarts, value))
        return sorted(points, key=lambda p: (p[1], p[2]))

    def pgd_radii(self) -> set[float]:
        """Radii > 0 run so far with the configured steps and random start, one restart (an eps curve)."""
        return {
            key.eps for kind, key in self._cache
            if kind == "pgd" and key.eps > 0 and key.steps == self.steps and key.restarts == 1
            and key.random_start == self.random_start
        }  # fmt: skip

    @property
    def autoattack_accuracy(self) -> float | None:
        """AutoAttack accuracy (%) if :meth:`autoattack` has run, else None (it is never run implicitly)."""
        return self._cache.get(("autoattack", None))

    # -- Fig. 4 ----------------------------------------------------------------------------------

    def strength_curves(
        self, steps_values: Sequence[int] = CURVE_STEPS, eps_values: Sequence[float] = CURVE_EPS
    ) -> dict[str, dict[str, float]]:
        """``{"steps": {"1": acc, ...}, "eps": {"0.0039...": acc, ...}}`` (string keys, accuracy %)."""
        return {
            "steps": {str(int(k)): self.pgd(steps=int(k), restarts=1) for k in steps_values},
            "eps": {str(float(e)): self.pgd(eps=float(e), restarts=1) for e in eps_values},
        }


# --------------------------------------------------------------------------------------------------
# Function API


def evaluate_model(
    model: nn.Module, dataset: Dataset, *, attacks: str | Sequence[str], **settings: Any
) -> dict[str, float]:
    """Top-1 accuracy (%) of ``model`` on ``dataset`` under each named attack, keyed by the name.

    ``attacks``: names of the forms in :data:`~dnr_sweep.foundation.attack_names.ATTACK_FORMS` (a list or a comma-separated string), e.g.
    ``["clean", "fgsm", "pgd", "pgd20", "pgd50x10", "autoattack"]``. ``settings``: the keyword arguments
    of :class:`Evaluator` (``eps``, ``pgd_alpha``, ``pgd_steps``, ...), written once, there.

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
    evaluator = Evaluator(model, dataset, **settings)
    return evaluator.evaluate([spec.name for spec in specs])


def write_evaluation(result: dict, folder: str | Path) -> Path:
    """Write ``{attack: accuracy %, ..., "checks": [...], ...}`` as ``<folder>/evaluation.json``, merged by
    attack into what an earlier call wrote there (an attack measured again is replaced, the others are
    kept, and so are their settings, under ``"earlier"``); see :func:`merge_evaluations`."""
    path = Path(folder) / EVALUATION_FILE
    return checkpoint.write_json(merge_evaluations(_read_earlier(path), result), path)


def _read_earlier(path: Path) -> dict | None:
    """The earlier ``evaluation.json`` (:class:`~dnr_sweep.foundation.schemas.Evaluation`), or ``None``; one that
    is not what ``evaluate`` writes is kept aside whole, never overwritten nor merged in part."""
    if not path.exists() and not path.is_symlink():
        return None
    aside = path.with_name(path.name + ".unreadable")
    earlier, notes = reader.read_lenient(path, Evaluation, unusable=f"moved aside to {aside.name}", prune=False)
    if earlier is None:
        files.move(path, aside, replace=True)
        for note in notes:
            warnings.warn(note, DataRecoveryWarning, stacklevel=3)
        return None
    return earlier.as_dict()


def merge_evaluations(earlier: dict | None, new: dict) -> dict:
    """``new``, plus every attack of ``earlier`` that ``new`` did not measure (with the settings it was
    measured under, in ``earlier[attack]``): a second ``evaluate --attacks clean`` keeps the first call's
    ``fgsm`` figure instead of dropping it."""
    if not earlier:
        return new
    merged = dict(new)
    kept = dict(earlier.get("earlier") or {}) if isinstance(earlier.get("earlier"), dict) else {}
    for key, value in earlier.items():
        if key in ("checks", "settings", "earlier") or key in new or not isinstance(value, int | float):
            continue
        merged[key] = value
        kept[key] = {"accuracy": value, "settings": earlier.get("settings")}
    for key in list(kept):
        if key in new:
            del kept[key]  # measured again now: the new figure and settings stand
    if kept:
        merged["earlier"] = kept
    return merged
