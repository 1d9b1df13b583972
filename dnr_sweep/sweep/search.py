"""The search space, search algorithm and scheduler of a sweep, from its validated config.

``search:`` rules map to Tune's sampling functions (``grid`` -> ``tune.grid_search``, ``choice``, ``uniform``,
``loguniform``, ``randint``, ``quniform``); the config layer already refused raw Tune keys (``grid_search``/``eval``:
Tune would evaluate an ``{eval: ...}`` dict as code). ``tune.search_alg``: none (grid and random variants) or
a searcher of the registry :mod:`dnr_sweep.config.searchers` (Optuna: TPE, NSGA-II, GP or random sampler; single-
or multi-objective), built by :mod:`dnr_sweep.sweep.searchers`; one that cannot take grid dimensions has them
rejected by the config layer, which says to use ``choice``. ``tune.points_to_evaluate`` run first.
``tune.scheduler``: none or ASHA on one metric, optionally with rungs per group of trials (``group_by``). A trial
it stops early reports partial metrics; Optuna is told it completed, so the results mark such trials
``early_stopped`` and the Pareto code leaves them out.
"""

from __future__ import annotations

import copy
from typing import Any

from dnr_sweep.config import SearchSpec, SweepConfig
from dnr_sweep.foundation.errors import ConfigError
from dnr_sweep.sweep.searchers import BUILDERS

# ------------------------------------------------------------------------------------------------
# Search space, search algorithm, scheduler


def tune_domain(spec: SearchSpec) -> Any:
    from ray import tune  # lazy: Ray takes seconds to import; `run` checks the config and the address first

    kind, value = spec.rule
    if kind == "grid":
        return tune.grid_search(list(value))
    if kind == "choice":
        return tune.choice(list(value))
    if kind == "uniform":
        return tune.uniform(*value)
    if kind == "loguniform":
        return tune.loguniform(*value)
    if kind == "randint":
        return tune.randint(*value)
    if kind == "quniform":
        return tune.quniform(*value)
    raise ValueError(f"unknown search rule {kind!r}; valid: grid, choice, uniform, loguniform, randint, quniform")


def param_space(config: SweepConfig) -> dict[str, Any]:
    """Tune's param_space: one flat entry per dotted search path.

    Raises:
        ConfigError: Tune refuses a rule (its own checks, run here before Ray starts).
    """
    space = {}
    for path, spec in config.search.items():
        try:
            space[path] = tune_domain(spec)
        except ValueError as exc:
            raise ConfigError(f"search.{path}.{spec.rule[0]}: Ray Tune refuses it: {exc}") from None
    return space


def objectives(config: SweepConfig) -> dict[str, str]:
    """The metrics the search optimises: Optuna's objectives, or the single tune.metric."""
    alg = config.tune.search_alg
    if alg is not None and alg.chosen[1].objectives:
        return dict(alg.chosen[1].objectives)
    return {config.tune.metric: config.tune.mode} if config.tune.metric is not None else {}


def build_search_alg(config: SweepConfig) -> Any:
    """The configured searcher (the registry :mod:`dnr_sweep.config.searchers`, built by
    :data:`dnr_sweep.sweep.searchers.BUILDERS`), or Tune's own variant generator.

    ``tune.points_to_evaluate`` are run first either way: a searcher enqueues them, Tune's generator
    crosses each with the grid dimensions.
    """
    alg = config.tune.search_alg
    points = copy.deepcopy(config.tune.points_to_evaluate) or None
    if alg is None:
        if points is None:
            return None
        from ray.tune.search.basic_variant import BasicVariantGenerator  # lazy: Ray, as in tune_domain

        return BasicVariantGenerator(points_to_evaluate=points)
    searcher, spec = alg.chosen
    return BUILDERS[searcher.name](spec, objectives(config), points)


def build_scheduler(config: SweepConfig) -> Any:
    """ASHA on one validation metric; with ``group_by``, one ASHA per group (dnr_sweep/sweep/grouped_asha.py)."""
    if config.tune.scheduler is None:
        return None
    from ray.tune.schedulers import ASHAScheduler  # lazy: Ray, as in tune_domain

    asha = config.tune.scheduler.asha
    settings = {
        "metric": asha.metric or config.tune.metric,
        "mode": asha.mode or config.tune.mode,
        "time_attr": "training_iteration",
        "max_t": asha.max_t or config.train.epochs,
        "grace_period": asha.grace_period,
        "reduction_factor": asha.reduction_factor,
    }
    if asha.group_by:
        from dnr_sweep.sweep.grouped_asha import GroupedASHAScheduler  # lazy: imports Ray, as above

        return GroupedASHAScheduler(asha.group_by, **settings)
    return ASHAScheduler(**settings)
