"""How each searcher of :mod:`dnr_sweep.config.searchers` becomes a Ray Tune searcher.

``BUILDERS`` is keyed by the registry's names (``tests/test_search.py`` checks they agree); a builder takes
the searcher's validated block, the objectives (metric -> "max"/"min") and the points to run first.
Ray and the searcher's library are imported here, when a sweep starts, never by the config layer.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import MappingProxyType
from typing import Any, Final

from dnr_sweep.config.searchers import OPTUNA_SAMPLERS, OptunaConfig


def import_path(path: str) -> Any:
    """The object named ``"package.module.Name"``."""
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def optuna_search(spec: OptunaConfig, goals: dict[str, str], points: list[dict[str, Any]] | None) -> Any:
    """Tune's ``OptunaSearch`` with the configured sampler; one metric, or several (multi-objective)."""
    from ray.tune.search.optuna import OptunaSearch

    sampler = import_path(OPTUNA_SAMPLERS[spec.sampler].cls)(**spec.sampler_options())
    if len(goals) == 1:
        ((metric, mode),) = goals.items()
        return OptunaSearch(metric=metric, mode=mode, sampler=sampler, points_to_evaluate=points)
    return OptunaSearch(metric=list(goals), mode=list(goals.values()), sampler=sampler, points_to_evaluate=points)


Builder = Callable[[Any, dict[str, str], list[dict[str, Any]] | None], Any]

#: one builder per searcher of dnr_sweep.config.searchers.SEARCHERS, by the same name
BUILDERS: Final[MappingProxyType[str, Builder]] = MappingProxyType({"optuna": optuna_search})
