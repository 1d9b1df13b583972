"""The metrics a searcher, scheduler or ``tune.metric`` may choose by: validation and sparsity figures
from the run contract; a test figure is refused with its validation twin named.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator

from dnr_sweep.foundation import run_contract as rc

Direction = Literal["max", "min"]


def _choosable_metric(value: str) -> str:
    """Only validation and sparsity figures choose; a test figure is refused with its val twin."""
    if value in rc.CHOOSABLE_METRICS:
        return value
    twin = rc.validation_twin(value)
    if twin is not None:
        raise ValueError(
            f"{value!r} is a test-split figure, and only validation chooses; use {twin!r} "
            "(the test figures are measured once on the selected weights and only reported)"
        )
    raise ValueError(f"no trial reports {value!r} to choose by; valid metrics: {', '.join(rc.CHOOSABLE_METRICS)}")


Metric = Annotated[str, AfterValidator(_choosable_metric)]
