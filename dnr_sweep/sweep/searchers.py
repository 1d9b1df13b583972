"""How each searcher of :mod:`dnr_sweep.config.searchers` becomes a Ray Tune searcher.

``BUILDERS`` is keyed by the registry's names (``tests/test_search.py`` checks they agree); a builder takes
the searcher's validated block, the objectives (metric -> "max"/"min") and the points to run first.
Ray and the searcher's library are imported here, when a sweep starts, never by the config layer.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from types import MappingProxyType
from typing import Any, Final

from dnr_sweep.config.searchers import OPTUNA_SAMPLERS, OptunaConfig


def import_path(path: str) -> Any:
    """The object named ``"package.module.Name"``."""
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


class PicklableLock:
    """A ``threading.Lock`` that pickles as a fresh, released lock.

    Tune pickles the searcher with the Tuner's state when the sweep starts (and on each experiment
    checkpoint), but Optuna 5's genetic samplers (NSGA-II, NSGA-III) keep a ``threading.Lock`` for their
    generation cache, which cannot be pickled: without this every NSGA-II sweep fails in
    ``tune.Tuner(...)`` with "cannot pickle '_thread.lock' object". A lock guards in-process threads
    only, so a copy in another process starts with its own.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        return self._lock.acquire(blocking, timeout)

    def release(self) -> None:
        self._lock.release()

    def locked(self) -> bool:
        return self._lock.locked()

    def __enter__(self) -> bool:
        return self._lock.__enter__()

    def __exit__(self, *exc: object) -> None:
        self._lock.__exit__(*exc)

    def __reduce__(self) -> tuple[type, tuple]:
        return PicklableLock, ()


def picklable(sampler: Any) -> Any:
    """``sampler`` with every plain lock it holds made a :class:`PicklableLock` (found by type, not by
    Optuna's private attribute names), so Tune can pickle the searcher."""
    lock_type = type(threading.Lock())
    for name, value in list(vars(sampler).items()):
        if isinstance(value, lock_type):
            setattr(sampler, name, PicklableLock())
    return sampler


def optuna_search(spec: OptunaConfig, goals: dict[str, str], points: list[dict[str, Any]] | None) -> Any:
    """Tune's ``OptunaSearch`` with the configured sampler; one metric, or several (multi-objective)."""
    # lazy: Ray and Optuna take seconds to import; only an Optuna sweep needs them
    from ray.tune.search.optuna import OptunaSearch

    sampler = picklable(import_path(OPTUNA_SAMPLERS[spec.sampler].cls)(**spec.sampler_options()))
    if len(goals) == 1:
        ((metric, mode),) = goals.items()
        return OptunaSearch(metric=metric, mode=mode, sampler=sampler, points_to_evaluate=points)
    return OptunaSearch(metric=list(goals), mode=list(goals.values()), sampler=sampler, points_to_evaluate=points)


Builder = Callable[[Any, dict[str, str], list[dict[str, Any]] | None], Any]

#: one builder per searcher of dnr_sweep.config.searchers.SEARCHERS, by the same name
BUILDERS: Final[MappingProxyType[str, Builder]] = MappingProxyType({"optuna": optuna_search})
