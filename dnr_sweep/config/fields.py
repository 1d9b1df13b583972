"""Constrained value types of the config: ranges whose messages say the valid range and the value given,
upper bounds that keep a config from exhausting the machine, names, and the strict base of every block.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
)

from dnr_sweep.foundation.attack_names import parse_attack
from dnr_sweep.foundation.bounds import (
    MAX_ATTACK_STEPS,
    MAX_BATCH_SIZE,
    MAX_CHECKPOINTS,
    MAX_EPOCHS,
    MAX_IMAGES,
    MAX_RESTARTS,
    MAX_SEED,
)

# --------------------------------------------------------------------------------------------
# Constrained value types with messages that say the valid range and the value given


def _bound(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


def in_range(lo: float | None, hi: float | None, *, lo_open: bool = False, hi_open: bool = False):
    left = "(" if lo_open or lo is None else "["
    right = ")" if hi_open or hi is None else "]"  # an infinite end is never in the range
    text = f"{left}{'-inf' if lo is None else _bound(lo)}, {'inf' if hi is None else _bound(hi)}{right}"

    def check(value: float) -> float:
        bad = (
            (isinstance(value, float) and not math.isfinite(value))
            or (lo is not None and (value <= lo if lo_open else value < lo))
            or (hi is not None and (value >= hi if hi_open else value > hi))
        )
        if bad:
            raise ValueError(f"must be in {text}, got {value}")
        return value

    return AfterValidator(check)


_FRACTION_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*/\s*([0-9]*\.?[0-9]+)\s*$")


def parse_eps(value: Any) -> Any:
    """Accept ``8/255``-style strings as well as numbers for attack budgets."""
    if isinstance(value, str):
        match = _FRACTION_RE.match(value)
        if match:
            denominator = float(match.group(2))
            if denominator == 0:
                raise ValueError(f"division by zero in {value!r}")
            return float(match.group(1)) / denominator
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"expected a number or a fraction like '8/255', got {value!r}") from None
    return value


def _not_bool(value: Any) -> Any:
    """``true``/``false`` where a number is expected is a mistake (pydantic would read it as 1/0)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got the boolean {str(value).lower()}")
    return value


NUMBER = BeforeValidator(_not_bool)

# Upper bounds that keep a config from exhausting the machine before it trains (a width of 100
# builds a model of ~10^11 weights; 10^6 workers or trials fork or allocate without end)
MAX_WIDTH = 4.0
MAX_IMAGE_SIZE = 512
MAX_WORKERS = 64
MAX_THREADS = 1024
MAX_TRIALS = 100_000

Density = Annotated[float, NUMBER, in_range(0.0, 1.0, lo_open=True)]
Fraction = Annotated[float, NUMBER, in_range(0.0, 1.0)]
NonNegFloat = Annotated[float, NUMBER, in_range(0.0, None)]
PosFloat = Annotated[float, NUMBER, in_range(0.0, None, lo_open=True)]
PosInt = Annotated[int, NUMBER, in_range(1, None)]
NonNegInt = Annotated[int, NUMBER, in_range(0, None)]
Int = Annotated[int, NUMBER]
Seed = Annotated[int, NUMBER, in_range(0, MAX_SEED)]  # what torch.manual_seed, NumPy and Optuna all accept
Epochs = Annotated[int, NUMBER, in_range(1, MAX_EPOCHS)]
NonNegEpochs = Annotated[int, NUMBER, in_range(0, MAX_EPOCHS)]
AttackSteps = Annotated[int, NUMBER, in_range(1, MAX_ATTACK_STEPS)]
Restarts = Annotated[int, NUMBER, in_range(1, MAX_RESTARTS)]
BatchSize = Annotated[int, NUMBER, in_range(1, MAX_BATCH_SIZE)]
Images = Annotated[int, NUMBER, in_range(1, MAX_IMAGES)]
Checkpoints = Annotated[int, NUMBER, in_range(1, MAX_CHECKPOINTS)]
Eps = Annotated[float, NUMBER, BeforeValidator(parse_eps), in_range(0.0, 1.0)]


class Strict(BaseModel):
    """Base for every config block: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


MAX_NAME = 100  # a folder name; file systems stop at 255 bytes, Tune adds to it


def check_name(value: str) -> str:
    if len(value) > MAX_NAME:
        raise ValueError(f"must be at most {MAX_NAME} characters (a folder name), got {len(value)}")
    if not NAME_RE.match(value) or ".." in value:
        raise ValueError(f"must be a plain folder name (letters, digits, '_', '-', '.'; no '/' or '..'), got {value!r}")
    return value


RunName = Annotated[str, AfterValidator(check_name)]


def attack_name(value: str) -> str:
    """The canonical spelling of an attack name (``' PGD20'`` -> ``'pgd20'``); the grammar's error otherwise."""
    return parse_attack(value).name
