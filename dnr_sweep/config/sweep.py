"""The blocks of a sweep (``search``, ``tune``, ``report``) and :class:`SweepConfig`: a run config plus
how Ray Tune varies it. Metrics a searcher, scheduler or ``tune.metric`` may use are :mod:`.metrics`;
the searchers (``tune.search_alg``) are the registry :mod:`.searchers`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from dnr_sweep.config.fields import (
    MAX_TRIALS,
    NUMBER,
    Checkpoints,
    Epochs,
    NonNegFloat,
    PosFloat,
    Strict,
    in_range,
)
from dnr_sweep.config.metrics import Direction, Metric, _choosable_metric
from dnr_sweep.config.run import RunConfig
from dnr_sweep.config.searchers import OptunaConfig, SearchAlgConfig
from dnr_sweep.foundation.bounds import MAX_FAILURES

__all__ = [  # Direction, Metric, OptunaConfig, SearchAlgConfig: re-exported from their own modules
    "AshaConfig", "Direction", "Metric", "OptunaConfig", "ReportConfig", "Resources", "SchedulerConfig",
    "SearchAlgConfig", "SearchSpec", "SweepConfig", "TuneConfig", "_choosable_metric",
]  # fmt: skip

# --------------------------------------------------------------------------------------------
# A sweep


class SearchSpec(Strict):
    """One sampling rule for one dotted path. Exactly one of the fields is set."""

    grid: list[Any] | None = None
    choice: list[Any] | None = None
    uniform: tuple[float, float] | None = None
    loguniform: tuple[float, float] | None = None
    randint: tuple[int, int] | None = None
    quniform: tuple[float, float, float] | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_rule(cls, data: Any) -> Any:
        valid = ", ".join(cls.model_fields)
        if not isinstance(data, Mapping):
            raise ValueError(f"expected a mapping with one of {valid}, e.g. {{grid: [0.1, 0.5]}}; got {data!r}")
        for raw in ("grid_search", "eval", "sample_from"):
            if raw in data:
                raise ValueError(
                    f"raw Ray Tune key {raw!r} is not accepted (Tune would evaluate it as code); use one of {valid}"
                )
        if len(data) != 1:
            raise ValueError(f"expected exactly one of {valid}, got {sorted(data) or 'nothing'}")
        return data

    @model_validator(mode="after")
    def _shape(self) -> SearchSpec:
        kind, value = self.rule
        if kind in ("grid", "choice") and not value:
            raise ValueError(f"{kind}: must list at least one value")
        if kind in ("uniform", "loguniform", "quniform") and not all(math.isfinite(v) for v in value):
            raise ValueError(f"{kind}: bounds must be finite numbers, got {list(value)}")
        if kind in ("uniform", "loguniform", "randint", "quniform") and not value[0] < value[1]:
            raise ValueError(f"{kind}: lower bound must be below upper bound, got {list(value)}")
        if kind == "loguniform" and value[0] <= 0:
            raise ValueError(f"loguniform: bounds must be > 0, got {list(value)}")
        if kind == "quniform":
            low, high, q = value
            if q <= 0:
                raise ValueError(f"quniform: step q must be > 0, got {q}")
            for name, bound in (("lower", low), ("upper", high)):  # Ray Tune's own rule, refused before Ray starts
                if not math.isclose(bound / q, round(bound / q)):
                    raise ValueError(f"quniform: the {name} bound {bound:g} is not a multiple of the step q={q:g}; "
                                     "choose bounds that are")  # fmt: skip
        return self

    @property
    def rule(self) -> tuple[str, Any]:
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is not None:
                return name, value
        raise AssertionError("unreachable: validated to have one rule")

    def probe_values(self) -> list[Any]:
        """Values that must each be valid for the target field: all of a list; the ends of a range
        and, for the float rules, a value inside it that is not a whole number (what the sampler
        draws, so a float rule on an integer field is caught)."""
        kind, value = self.rule
        if kind in ("grid", "choice"):
            return list(value)
        if kind == "randint":  # Tune's randint excludes the upper bound
            return [value[0], value[1] - 1]
        low, high = value[0], value[1]
        if kind == "uniform":
            inside = low + (high - low) * 0.4142
        elif kind == "loguniform":
            inside = low * (high / low) ** 0.4142
        else:  # quniform: multiples of q; a fractional q draws fractional values
            q = value[2]
            inside = round((low + q) / q) * q if low + q < high else high
        return [low, high, inside]


class AshaConfig(Strict):
    grace_period: Epochs = 1
    reduction_factor: Annotated[float, NUMBER, in_range(1.0, None, lo_open=True)] = 3.0
    max_t: Epochs | None = Field(None, description="defaults to train.epochs")
    metric: Metric | None = Field(None, description="defaults to tune.metric")
    mode: Direction | None = None
    group_by: list[str] | None = Field(
        None,
        description="search paths whose values get rungs of their own, e.g. [dnr.density, dnr.pruning]: a trial "
        "is only compared with trials of the same density and pruning type (a sparser model is less accurate "
        "by design, so one shared rung would stop the high-compression trials first)",
    )


class SchedulerConfig(Strict):
    asha: AshaConfig


class Resources(Strict):
    cpu: PosFloat = 1.0
    gpu: NonNegFloat = 0.0


class TuneConfig(Strict):
    num_samples: Annotated[int, NUMBER, in_range(1, MAX_TRIALS)] = 1
    metric: Metric | None = Field(
        "val_clean_acc", description="the single metric of the searcher/scheduler and the 'best trial'"
    )
    mode: Direction = "max"
    scheduler: SchedulerConfig | None = None
    search_alg: SearchAlgConfig | None = None
    # more trials at a time than a sweep may have means nothing (Tune would take any number)
    max_concurrent_trials: Annotated[int, NUMBER, in_range(1, MAX_TRIALS)] | None = None
    resources_per_trial: Resources = Field(default_factory=Resources)
    max_failures: Annotated[int, NUMBER, in_range(-1, MAX_FAILURES)] = 2
    checkpoint_every: Epochs | Literal["auto"] = Field(
        "auto",
        description="epochs between a trial's checkpoints; 'auto': as often as keeps the measured save "
        "time (serialise + copy to storage) at most 2% of the training time between checkpoints",
    )
    keep_checkpoints: Checkpoints = Field(2, description="checkpoints kept per trial (the newest)")
    points_to_evaluate: list[dict[str, Any]] | None = Field(
        None,
        description="configurations run first, as given (dotted search path -> value), e.g. the paper's "
        "defaults; each takes one of num_samples and is crossed with the grid dimensions it does not set",
    )

    @field_validator("checkpoint_every", mode="before")
    @classmethod
    def _epochs_or_auto(cls, value: Any) -> Any:
        if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            return value
        raise ValueError(f"must be 'auto' or a whole number of epochs >= 1, got {value!r}")


class ReportConfig(Strict):
    x: str = "compression"
    y: list[str] = Field(default_factory=lambda: ["clean_acc", "fgsm_acc", "pgd_acc"])
    group_by: str = "dnr.pruning"
    objectives: dict[str, Direction] | None = None
    formats: list[Literal["pdf", "png", "svg"]] = Field(default_factory=lambda: ["pdf", "png"])
    live_every_s: NonNegFloat = Field(
        60.0, description="refresh the live report at most this often (and after each finished trial)"
    )
    live: bool = Field(True, description="refresh results and report while the sweep runs")
    table2_compression: PosFloat | None = Field(
        None,
        description="Table 2's reference compression: each method is reported at its best configuration "
        "within +-10% of it (default: DNR's chosen configuration's compression, else the methods' median)",
    )


class SweepConfig(RunConfig):
    """A run config (the base every trial starts from) plus what to vary and how to run it."""

    search: dict[str, SearchSpec] = Field(default_factory=dict)
    tune: TuneConfig = Field(default_factory=TuneConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)

    def base_run(self) -> RunConfig:
        return RunConfig.model_validate(self.model_dump(include=set(RunConfig.model_fields)))

    def grid_size(self) -> int:
        """Trials Tune will create: the product of grid sizes times num_samples."""
        size = 1
        for spec in self.search.values():
            kind, value = spec.rule
            if kind == "grid":
                size *= len(value)
        return size * self.tune.num_samples
