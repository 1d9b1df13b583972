"""The grammar of attack names: ``clean``, ``fgsm``, ``pgd``, ``pgdK``, ``pgdKxR``, ``autoattack``.

One home for the names the ``evaluate:`` block, ``dnr-sweep evaluate --attacks`` and the attack
metrics (``pgd50x10_acc``) use: :mod:`dnr_sweep.config` validates with :func:`parse_attack`,
:mod:`dnr_sweep.evaluation` runs :class:`AttackSpec` objects, :mod:`dnr_sweep.foundation.run_contract` builds its
metric pattern from :data:`ATTACK_NAME_RE`. Standard library only (no torch), so config validation
and the reports stay light.

Forms (:data:`ATTACK_FORMS`)::

    clean        no attack
    fgsm         FGSM at the config's eval FGSM eps
    pgd          the config's eval PGD (steps, restarts, random start as configured)
    pgdK         K steps, one restart, random start as configured   (pgd20)
    pgdKxR       K steps, R restarts, random start                   (pgd50x10)
    autoattack   standard AutoAttack (Croce & Hein 2020), needs the [eval] extra

``K`` and ``R`` are positive integers without leading zeros. :func:`parse_attack` accepts the name
with surrounding whitespace and in any case and returns the canonical (lower-case) spelling in
:attr:`AttackSpec.name`; :data:`ATTACK_NAME_RE` matches the canonical spellings only.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from dnr_sweep.foundation.bounds import MAX_ATTACK_STEPS, MAX_RESTARTS

AttackKind = Literal["clean", "fgsm", "pgd", "autoattack"]


@dataclass(frozen=True)
class AttackSpec:
    """A parsed attack name. ``steps``/``restarts`` are set for ``pgdK``/``pgdKxR`` only."""

    name: str  # canonical spelling, e.g. "pgd50x10"
    kind: AttackKind
    steps: int | None = None
    restarts: int | None = None
    random_start: bool | None = None  # None: as configured


_COUNT = r"[1-9][0-9]*"  # a positive integer without leading zeros


def _bounded(text: str, hi: int, what: str) -> int:
    if len(text) > len(str(hi)) or int(text) > hi:  # the length first: int() of 10**5 digits is slow
        raise ValueError(f"{what} {text if len(text) <= 24 else text[:20] + '...'} is above the bound {hi}")
    return int(text)


def _steps(text: str) -> int:
    return _bounded(text, MAX_ATTACK_STEPS, "pgdK: K (PGD steps)")


def _restarts(text: str) -> int:
    return _bounded(text, MAX_RESTARTS, "pgdKxR: R (random restarts)")


#: (pattern of the canonical name, description of the form, how to build the spec from the match)
_FORMS: Final[tuple[tuple[str, str, Callable[[re.Match[str]], AttackSpec]], ...]] = (
    ("clean", "clean", lambda m: AttackSpec("clean", "clean")),
    ("fgsm", "fgsm", lambda m: AttackSpec("fgsm", "fgsm")),
    ("pgd", "pgd (the config's eval PGD)", lambda m: AttackSpec("pgd", "pgd")),
    (rf"pgd({_COUNT})", "pgdK (K steps, e.g. pgd20)",
     lambda m: AttackSpec(m[0], "pgd", steps=_steps(m[1]), restarts=1)),
    (rf"pgd({_COUNT})x({_COUNT})", "pgdKxR (K steps, R random restarts, e.g. pgd50x10)",
     lambda m: AttackSpec(m[0], "pgd", steps=_steps(m[1]), restarts=_restarts(m[2]), random_start=True)),
    ("autoattack", "autoattack (standard AutoAttack, needs the [eval] extra)",
     lambda m: AttackSpec("autoattack", "autoattack")),
)  # fmt: skip
_COMPILED: Final = tuple((re.compile(pattern), build) for pattern, _, build in _FORMS)

#: one line per form, for error messages and help texts
ATTACK_FORMS: Final[tuple[str, ...]] = tuple(form for _, form, _ in _FORMS)

#: the canonical attack names (use with ``fullmatch``); groups are non-capturing, so it embeds cleanly
ATTACK_NAME_RE: Final = re.compile("|".join(re.sub(r"\((?!\?)", "(?:", pattern) for pattern, _, _ in _FORMS))


def parse_attack(name: str) -> AttackSpec:
    """Parse one attack name (whitespace around it and upper case allowed).

    Raises ``ValueError`` naming the value and listing the valid forms.
    """
    text = name.strip().lower()
    for pattern, build in _COMPILED:
        match = pattern.fullmatch(text)
        if match:
            try:
                return build(match)
            except ValueError as exc:
                raise ValueError(f"attack {name.strip()!r}: {exc}") from None
    raise ValueError(f"unknown attack {name!r}; valid forms: {', '.join(ATTACK_FORMS)}")


def parse_attacks(names: str | Sequence[str]) -> list[AttackSpec]:
    """Parse a comma-separated string or a list of names; duplicates are dropped, order kept."""
    items = names.split(",") if isinstance(names, str) else list(names)
    specs = [parse_attack(item) for item in items if item.strip()]
    if not specs:
        raise ValueError(f"no attack given; valid forms: {', '.join(ATTACK_FORMS)}")
    return list({spec.name: spec for spec in specs}.values())
