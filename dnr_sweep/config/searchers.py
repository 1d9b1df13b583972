"""The searchers a sweep may use (``tune.search_alg``), in one registry: each is one :class:`Searcher` entry
(its config block, what it can do) from which the config's allowed names come, as Ray Tune's
``SEARCH_ALG_IMPORT`` keys its search algorithms by name.

The facts here are what config validation needs without Ray or Optuna installed: the block's model
(``tune.search_alg.<name>``), whether the searcher takes several objectives, grid dimensions, or needs at
least one search dimension. Building the Tune searcher needs Ray and lives in
:mod:`dnr_sweep.sweep.searchers`, whose ``BUILDERS`` are keyed by the same names (a test checks they
agree), like :mod:`dnr_sweep.data.specs` and its builders. Optuna's samplers are a registry of their own
(:data:`OPTUNA_SAMPLERS`), their classes named by import path and imported only when a sweep starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Annotated, Any, Final, Literal

from pydantic import Field, create_model, model_validator

from dnr_sweep.config.fields import MAX_TRIALS, NUMBER, Seed, Strict, in_range
from dnr_sweep.config.metrics import Direction, Metric

# --------------------------------------------------------------------------------------------
# Optuna's samplers


@dataclass(frozen=True)
class Sampler:
    """One Optuna sampler: its class by import path, and the ``tune.search_alg.optuna`` fields only it takes."""

    cls: str  # "module.Class", imported when the sweep starts (dnr_sweep.sweep.searchers)
    label: str  # for messages
    options: tuple[str, ...] = ()  # OptunaConfig fields passed to the class as keyword arguments


OPTUNA_SAMPLERS: Final = MappingProxyType(
    {
        "tpe": Sampler("optuna.samplers.TPESampler", "TPE"),
        "nsga2": Sampler("optuna.samplers.NSGAIISampler", "NSGA-II", options=("population_size",)),
        "gp": Sampler("optuna.samplers.GPSampler", "GP"),
        "random": Sampler("optuna.samplers.RandomSampler", "random"),
    }
)
SamplerName = Literal[tuple(OPTUNA_SAMPLERS)]  # type: ignore[valid-type]  # the registry's names


class OptunaConfig(Strict):
    sampler: SamplerName = "tpe"
    objectives: dict[Metric, Direction] | None = Field(
        None, description="multi-objective search, e.g. {val_pgd_acc: max, compression: max}"
    )
    seed: Seed | None = None
    population_size: Annotated[int, NUMBER, in_range(2, MAX_TRIALS)] | None = Field(
        None,
        description="NSGA-II only: trials per generation (Optuna's default 50; a generation smaller than "
        "the trial budget, or NSGA-II is random search)",
    )

    @model_validator(mode="after")
    def _options_of_the_sampler(self) -> OptunaConfig:
        for option in ("population_size",):
            owners = [name for name, sampler in OPTUNA_SAMPLERS.items() if option in sampler.options]
            if getattr(self, option) is not None and self.sampler not in owners:
                labels = "/".join(OPTUNA_SAMPLERS[name].label for name in owners)
                raise ValueError(
                    f"{option} is an {labels} setting, but sampler is {self.sampler!r}; "
                    f"drop {option} or use sampler: {owners[0]}"
                )
        return self

    def sampler_options(self) -> dict[str, Any]:
        """Keyword arguments of the sampler class: ``seed`` and the set options only it takes."""
        options = {"seed": self.seed}
        for option in OPTUNA_SAMPLERS[self.sampler].options:
            if getattr(self, option) is not None:
                options[option] = getattr(self, option)
        return options


# --------------------------------------------------------------------------------------------
# The searchers


@dataclass(frozen=True)
class Searcher:
    """One ``tune.search_alg`` entry. Its config model must have an ``objectives`` field."""

    name: str  # the YAML key, e.g. "optuna"
    label: str  # for messages, e.g. "Optuna"
    config: type[Strict]
    multi_objective: bool  # takes several objectives
    accepts_grid: bool  # takes grid dimensions (Tune's grid_search)
    needs_dimensions: bool  # needs at least one search dimension


SEARCHERS: Final = MappingProxyType(
    {
        "optuna": Searcher(
            "optuna", "Optuna", OptunaConfig, multi_objective=True, accepts_grid=False, needs_dimensions=True
        ),
    }
)
SEARCHER_NAMES: Final[tuple[str, ...]] = tuple(SEARCHERS)


def get(name: str) -> Searcher:
    """The searcher ``name``; ``ValueError`` naming it and listing the valid names otherwise."""
    try:
        return SEARCHERS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown searcher {name!r}; valid: {', '.join(SEARCHER_NAMES)}") from None


class _SearchAlgBase(Strict):
    """``tune.search_alg``: exactly one searcher's block, keyed by its name."""

    @model_validator(mode="before")
    @classmethod
    def _one_searcher(cls, data: Any) -> Any:
        valid = ", ".join(SEARCHER_NAMES)
        if not isinstance(data, Mapping):
            raise ValueError(f"expected a mapping with one of {valid}, e.g. {{optuna: {{sampler: tpe}}}}; got {data!r}")
        for key in data:
            if key not in SEARCHERS:
                raise ValueError(f"unknown searcher {key!r}; valid: {valid}")
        if len(data) != 1:
            raise ValueError(f"expected exactly one searcher of {valid}, got {sorted(data) or 'none'}")
        return data

    @model_validator(mode="after")
    def _objectives_it_can_take(self) -> _SearchAlgBase:
        searcher, spec = self.chosen
        if not searcher.multi_objective and len(spec.objectives or {}) > 1:
            raise ValueError(f"{searcher.name}: {searcher.label} optimises one objective; give one or use optuna")
        return self

    @property
    def chosen(self) -> tuple[Searcher, Any]:
        """The searcher and its validated block."""
        for name, searcher in SEARCHERS.items():
            spec = getattr(self, name)
            if spec is not None:
                return searcher, spec
        raise AssertionError("unreachable: validated to have one searcher")


SearchAlgConfig = create_model(
    "SearchAlgConfig",
    __base__=_SearchAlgBase,
    __module__=__name__,
    **{name: (searcher.config | None, None) for name, searcher in SEARCHERS.items()},
)
